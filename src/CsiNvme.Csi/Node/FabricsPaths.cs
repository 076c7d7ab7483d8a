using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Csi.Node;

/// <summary>What connecting one listener of a volume gave: the new (or existing) controller, or why not.</summary>
public sealed record PathConnectResult(FabricsTarget Target, string? Controller, bool WasConnected, string? Error)
{
    /// <summary>True when this call made a new controller.</summary>
    public bool IsNew => Controller is not null && !WasConnected;
}

/// <summary>
/// Connects and disconnects the paths of volumes through the kernel's fabrics device, for NodeStageVolume,
/// NodeUnstageVolume and the path keeper. One step at a time node-wide: connecting and disconnecting look at every
/// controller of a subsystem, and two volumes of one subsystem (or a stage and the keeper) must not interleave them.
/// </summary>
internal sealed class FabricsPaths(NodeOptions options, INodePlatform platform, ILogger<FabricsPaths> logger)
{
    private readonly SemaphoreSlim _lock = new(1, 1);

    private string HostNqn => options.Identity.HostNqn;

    /// <summary>Holds the node-wide fabrics lock until disposed, for a caller that decides on the controllers first.</summary>
    public async Task<IDisposable> LockAsync(CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken);
        return new Releaser(_lock);
    }

    /// <summary>
    /// Connects every target that has no active controller of <paramref name="nqn"/> for this host; targets with one are
    /// reported as connected already. A failed target does not stop the others.
    /// </summary>
    public async Task<IReadOnlyList<PathConnectResult>> ConnectAsync(
        string volumeId, string nqn, IEnumerable<FabricsTarget> targets, FabricsConnectSettings settings, CancellationToken cancellationToken)
    {
        using var held = await LockAsync(cancellationToken);
        var results = new List<PathConnectResult>();
        foreach (var target in targets)
        {
            var existing = platform.Sysfs.ControllersOf(nqn, HostNqn).FirstOrDefault(c => c.IsActive && c.Matches(target));
            if (existing is not null)
            {
                NodeLog.AlreadyConnected(logger, volumeId, existing.Name, target.ToString());
                results.Add(new PathConnectResult(target, existing.Name, true, null));
                continue;
            }

            try
            {
                var controller = await Task.Run(
                    () => platform.ConnectFabrics(settings.BuildConnectString(target, nqn, HostNqn, options.Identity.HostId)),
                    cancellationToken);
                NodeLog.Connected(logger, volumeId, controller, target.ToString(), nqn);
                results.Add(new PathConnectResult(target, controller, false, null));
            }
            catch (IOException e)
            {
                NodeLog.ConnectFailed(logger, volumeId, target.ToString(), e.Message);
                results.Add(new PathConnectResult(target, null, false, e.Message));
            }
        }

        return results;
    }

    /// <summary>Deletes every controller of <paramref name="nqn"/> for this host and waits until the kernel has removed them.</summary>
    /// <remarks>The caller holds <see cref="LockAsync"/>.</remarks>
    public async Task DisconnectAllLockedAsync(string volumeId, string nqn, CancellationToken cancellationToken)
    {
        foreach (var controller in platform.Sysfs.ControllersOf(nqn, HostNqn))
        {
            await DeleteControllerLockedAsync(volumeId, controller.Name, nqn, cancellationToken);
        }

        var deadline = DateTime.UtcNow + options.DeviceTimeout;
        while (platform.Sysfs.ControllersOf(nqn, HostNqn).Count > 0)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new RpcException(new Status(StatusCode.Internal,
                    $"volume {volumeId}: controllers of {nqn} still present after delete_controller"));
            }

            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>Deletes one controller (a path the keeper gave up); gone already is fine.</summary>
    public async Task DeleteControllerAsync(string volumeId, string controller, string nqn, CancellationToken cancellationToken)
    {
        using var held = await LockAsync(cancellationToken);
        await DeleteControllerLockedAsync(volumeId, controller, nqn, cancellationToken);
    }

    private async Task DeleteControllerLockedAsync(string volumeId, string controller, string nqn, CancellationToken cancellationToken)
    {
        try
        {
            // The kernel removes the controller before the write returns (core.c, nvme_sysfs_delete).
            await Task.Run(() => platform.Sysfs.WriteControllerAttribute(controller, "delete_controller", "1"), cancellationToken);
            NodeLog.Disconnected(logger, volumeId, controller, nqn);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            // Deleted meanwhile (e.g. ctrl_loss_tmo expired): already what we want.
        }
    }

    private sealed class Releaser(SemaphoreSlim semaphore) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                semaphore.Release();
            }
        }
    }
}
