using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace CsiNvme.Host;

/// <summary>
/// The NVMe/TCP host (initiator): reads discovery logs and connects to NVM subsystems under one host identity.
/// </summary>
public sealed class NvmeTcpHost
{
    /// <summary>The well-known discovery NQN (NVMe-oF 1.1, 7.1).</summary>
    public const string DiscoveryNqn = "nqn.2014-08.org.nvmexpress.discovery";

    private readonly ILogger _logger;

    public NvmeTcpHost(NvmeTcpHostOptions options, ILoggerFactory? loggerFactory = null)
    {
        Options = options;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<NvmeTcpHost>();
    }

    public NvmeTcpHostOptions Options { get; }

    /// <summary>Connects to the discovery controller, reads the whole log page and disconnects.</summary>
    public async Task<DiscoveryLogPage> DiscoverAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        await using var controller = await ConnectDiscoveryAsync(endpoint, cancellationToken).ConfigureAwait(false);
        return await controller.GetDiscoveryLogAsync().ConfigureAwait(false);
    }

    /// <summary>A connection to the discovery controller (admin queue only, KATO 0).</summary>
    public Task<NvmeController> ConnectDiscoveryAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        NvmeController.ConnectAsync(endpoint, DiscoveryNqn, isDiscovery: true, Options, _logger, cancellationToken);

    /// <summary>Connects the admin queue and <see cref="NvmeTcpHostOptions.IoQueueCount"/> I/O queues to a subsystem.</summary>
    public Task<NvmeController> ConnectAsync(EndPoint endpoint, string subsystemNqn, CancellationToken cancellationToken = default) =>
        NvmeController.ConnectAsync(endpoint, subsystemNqn, isDiscovery: false, Options, _logger, cancellationToken);
}
