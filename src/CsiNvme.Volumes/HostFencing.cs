using CsiNvme.Target.Subsystems;

namespace CsiNvme.Volumes;

/// <summary>
/// The fencing rule of host removal, one definition for the single server and every node of a cluster: the call that
/// removes a host returns only once the host has no controller left on the volume and every command those controllers
/// accepted has completed or been dropped, so nothing the host sent can land afterwards. Bounded: commands of a
/// replicated volume wait for their replicas, whose own timeouts end them well within
/// <see cref="DrainTimeout"/>; past it the call fails (safe to retry) and the host stays removed.
/// </summary>
public static class HostFencing
{
    /// <summary>Below the cluster's agent call timeout (30 s), so a node reports its own failure rather than a deadline.</summary>
    public static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(20);

    /// <summary>Waits for <paramref name="drained"/> (from <see cref="Subsystem.DenyHost"/> or a <c>WhenHostDrained</c>) within the bound.</summary>
    /// <param name="where">Appended to the message: which node waited, in a cluster.</param>
    public static async Task WaitAsync(Task drained, Subsystem subsystem, string volumeName, CancellationToken cancellationToken, string where = "", TimeSpan? bound = null)
    {
        var timeout = bound ?? DrainTimeout;
        try
        {
            await drained.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new VolumeException(
                VolumeError.Unavailable,
                $"volume {volumeName}{where}: host {string.Join(", ", subsystem.DrainingHosts.DefaultIfEmpty("(removed)"))} lost access and has no controller " +
                $"left on subsystem {subsystem.Nqn}, but commands it sent before are still running after {timeout.TotalSeconds:0} s; the host stays " +
                "removed, try again to wait for them");
        }
    }
}
