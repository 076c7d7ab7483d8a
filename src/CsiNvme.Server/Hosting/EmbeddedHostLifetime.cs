using Microsoft.Extensions.Hosting;

namespace CsiNvme.Server.Hosting;

/// <summary>
/// Replaces the console lifetime: <see cref="StorageServer"/> is started and stopped by its owner
/// (Program handles SIGTERM/SIGINT itself; tests host several servers in one process), so the web
/// host must not hook process signals on its own.
/// </summary>
internal sealed class EmbeddedHostLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
