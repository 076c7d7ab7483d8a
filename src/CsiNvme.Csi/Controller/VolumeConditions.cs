using System.Globalization;
using Csi.V1;
using CsiNvme.Api;
using Mgmt = CsiNvme.Api.V1;

namespace CsiNvme.Csi.Controller;

/// <summary>
/// The volume_condition of ControllerGetVolume and ListVolumes, from what the storage server reports. Abnormal when no
/// host can reach the volume (it is exported on no NVMe/TCP listener), and in a cluster when the volume runs on fewer
/// copies than it keeps: a replica whose node is down, out of sync or rebuilding, or no primary up (a failover under
/// way). Such a volume still serves I/O (except without a primary, until one is promoted), but one more failure may
/// stop it: the CO and the operator should see it. A volume the server cannot open is not listed at all (NOT_FOUND),
/// which the CO treats as worse.
/// </summary>
internal static class VolumeConditions
{
    public const string InSync = "in-sync";
    public const string OutOfSync = "out-of-sync";
    public const string Rebuilding = "rebuilding";

    public static VolumeCondition Of(Mgmt.Volume volume)
    {
        if (volume.ListenAddresses.Count == 0)
        {
            return new VolumeCondition { Abnormal = true, Message = $"volume {volume.Name} is not exported on any NVMe/TCP listener" };
        }

        var exported = $"exported on {string.Join(",", volume.ListenAddresses)}; {volume.ConnectedHosts.Count} host(s) connected";
        if (volume.Replicas.Count == 0)
        {
            // A single server: the one copy is the volume.
            return new VolumeCondition { Abnormal = false, Message = exported };
        }

        var primaryUp = volume.Replicas.Any(r => r.Primary && r.NodeUp);
        var problems = new List<string>();
        if (!primaryUp)
        {
            problems.Add(volume.Primary.Length == 0
                ? "no primary (a failover is under way: writes wait for a replica to be promoted)"
                : $"primary {volume.Primary} is down (a failover is under way: writes wait for a replica to be promoted)");
        }

        foreach (var replica in volume.Replicas.Where(r => !r.Primary))
        {
            if (Problem(replica) is { } problem)
            {
                problems.Add($"replica on {replica.Node}: {problem}");
            }
        }

        var keeps = (int)Math.Max(1, volume.ReplicaCount);
        if (volume.Replicas.Count < keeps)
        {
            problems.Add($"{volume.Replicas.Count} of {keeps} replicas placed");
        }

        if (problems.Count == 0)
        {
            return new VolumeCondition
            {
                Abnormal = false,
                Message = $"{exported}; {volume.Replicas.Count} replica(s) in sync, primary {volume.Primary} at epoch {volume.Epoch}",
            };
        }

        return new VolumeCondition
        {
            Abnormal = true,
            Message = primaryUp
                ? $"volume {volume.Name} is degraded, still serving I/O from primary {volume.Primary}: {string.Join("; ", problems)}"
                : $"volume {volume.Name} has no primary serving I/O: {string.Join("; ", problems)}",
        };
    }

    /// <summary>Null for a replica in sync on a node that is up.</summary>
    private static string? Problem(Mgmt.Replica replica)
    {
        var state = replica.State switch
        {
            OutOfSync => replica.DirtyRegions > 0
                ? $"out of sync ({replica.DirtyRegions.ToString(CultureInfo.InvariantCulture)} region{(replica.DirtyRegions == 1 ? "" : "s")} to rebuild)"
                : "out of sync",
            Rebuilding => replica.RebuildRegionsTotal > 0
                ? $"rebuilding ({replica.RebuildRegionsDone.ToString(CultureInfo.InvariantCulture)}/{replica.RebuildRegionsTotal.ToString(CultureInfo.InvariantCulture)} regions, {ByteSize.Format((long)replica.RebuildBytesPerSecond)}/s)"
                : "rebuilding",
            InSync => null,
            _ => $"in state {replica.State}",
        };
        return replica.NodeUp ? state : state is null ? "node down" : $"{state}, node down";
    }
}
