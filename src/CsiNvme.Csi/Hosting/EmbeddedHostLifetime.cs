using Microsoft.Extensions.Hosting;

namespace CsiNvme.Csi.Hosting;

/// <summary>
/// Replaces the console lifetime: the driver is started and stopped by its owner (Program handles
/// SIGTERM/SIGINT; tests host several drivers in one process), so the web host must not hook signals.
/// </summary>
internal sealed class EmbeddedHostLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
