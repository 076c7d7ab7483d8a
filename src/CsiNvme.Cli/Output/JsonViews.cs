using System.Text.Json;
using System.Text.Json.Serialization;
using CsiNvme.Api;
using CsiNvme.Api.V1;

namespace CsiNvme.Cli.Output;

/// <summary>The --json shape of a volume. Keys are camelCase and stable: scripts parse them.</summary>
internal sealed record VolumeView(
    string Name,
    string Id,
    long SizeBytes,
    string Size,
    int BlockSize,
    string SubsystemNqn,
    string Nguid,
    string Uuid,
    bool AllowAnyHost,
    IReadOnlyList<string> AllowedHosts,
    IReadOnlyList<string> ListenAddresses,
    IReadOnlyList<string> ConnectedHosts,
    string Backend,
    DateTimeOffset? CreatedAt,
    string Pool,
    long AllocatedBytes,
    IReadOnlyDictionary<string, string> Labels,
    int ReplicaCount,
    string? Primary,
    long Epoch,
    IReadOnlyList<ReplicaView> Replicas)
{
    public static VolumeView From(Volume volume)
    {
        long size = checked((long)volume.SizeBytes);
        return new VolumeView(
            volume.Name,
            volume.Id,
            size,
            ByteSize.Format(size),
            (int)volume.BlockSize,
            volume.SubsystemNqn,
            volume.Nguid,
            volume.Uuid,
            volume.AllowAnyHost,
            [.. volume.AllowedHosts],
            [.. volume.ListenAddresses],
            [.. volume.ConnectedHosts],
            volume.Backend,
            volume.CreatedUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(volume.CreatedUnixMs) : null,
            volume.Pool,
            checked((long)volume.AllocatedBytes),
            new SortedDictionary<string, string>(volume.Labels, StringComparer.Ordinal),
            (int)Math.Max(1, volume.ReplicaCount),
            volume.Primary.Length == 0 ? null : volume.Primary,
            checked((long)volume.Epoch),
            [.. volume.Replicas.Select(ReplicaView.From)]);
    }
}

/// <summary>One replica of a volume (cluster only; a single server lists none).</summary>
internal sealed record ReplicaView(
    string Node,
    string State,
    bool Primary,
    bool NodeUp,
    string Pool,
    long InSyncEpoch,
    long DirtyRegions,
    IReadOnlyList<string> NvmeListenAddresses,
    RebuildView? Rebuild)
{
    public static ReplicaView From(Replica replica) => new(
        replica.Node,
        replica.State,
        replica.Primary,
        replica.NodeUp,
        replica.Pool,
        checked((long)replica.InSyncEpoch),
        checked((long)replica.DirtyRegions),
        [.. replica.NvmeListenAddresses],
        RebuildView.From(replica));
}

/// <summary>Progress of a replica's rebuild as the primary reports it; null when no rebuild runs.</summary>
internal sealed record RebuildView(long RegionsDone, long RegionsTotal, long BytesCopied, double BytesPerSecond)
{
    public static RebuildView? From(Replica replica) =>
        replica.RebuildRegionsTotal == 0 && replica.State != "rebuilding"
            ? null
            : new RebuildView(
                checked((long)replica.RebuildRegionsDone),
                checked((long)replica.RebuildRegionsTotal),
                checked((long)replica.RebuildBytesCopied),
                replica.RebuildBytesPerSecond);
}

/// <summary>A storage node as <c>node list</c> and <c>node drain|undrain</c> print it.</summary>
internal sealed record NodeView(
    string Name,
    int Ordinal,
    string State,
    string AdminState,
    string? DrainStatus,
    bool Drained,
    IReadOnlyList<NodePoolView> Pools,
    long FreeBytes,
    string Free,
    int VolumeCount,
    int PrimaryCount,
    IReadOnlyList<string> NvmeListenAddresses,
    string ManagementAddress,
    string Version)
{
    public static NodeView From(Node node)
    {
        long free = checked((long)node.FreeBytes);
        return new NodeView(
            node.Name,
            node.Ordinal,
            node.State,
            node.AdminState,
            node.DrainStatus.Length == 0 ? null : node.DrainStatus,
            NodePrinter.IsDrained(node),
            [.. node.Pools.Select(NodePoolView.From)],
            free,
            ByteSize.Format(free),
            (int)node.VolumeCount,
            (int)node.PrimaryCount,
            [.. node.NvmeListenAddresses],
            node.ManagementAddress,
            node.Version);
    }
}

internal sealed record NodePoolView(string Name, long CapacityBytes, long FreeBytes, string Capacity, string Free)
{
    public static NodePoolView From(Pool pool)
    {
        long capacity = checked((long)pool.CapacityBytes);
        long free = checked((long)pool.FreeBytes);
        return new NodePoolView(pool.Name, capacity, free, ByteSize.Format(capacity), ByteSize.Format(free));
    }
}

/// <summary>What <c>volume verify</c> found.</summary>
internal sealed record VerifyView(
    string Volume,
    bool Identical,
    bool AllInSync,
    int RegionSize,
    long RegionsCompared,
    IReadOnlyList<string> Nodes,
    IReadOnlyList<string> Skipped,
    long MismatchCount,
    IReadOnlyList<RegionMismatchView> Mismatches)
{
    public static VerifyView From(string volume, VerifyVolumeResponse response) => new(
        volume,
        response.Identical,
        response.AllInSync,
        (int)response.RegionSize,
        checked((long)response.RegionsCompared),
        [.. response.Nodes],
        [.. response.Skipped],
        checked((long)response.MismatchCount),
        [.. response.Mismatches.Select(m => new RegionMismatchView(
            checked((long)m.Offset),
            checked((long)m.Length),
            new SortedDictionary<string, string>(m.Checksums, StringComparer.Ordinal)))]);
}

internal sealed record RegionMismatchView(long Offset, long Length, IReadOnlyDictionary<string, string> Checksums);

internal sealed record SnapshotView(
    string Name,
    string Id,
    string SourceVolume,
    string SourceVolumeId,
    long SizeBytes,
    string Size,
    int BlockSize,
    string Pool,
    long AllocatedBytes,
    DateTimeOffset? CreatedAt,
    IReadOnlyDictionary<string, string> Labels)
{
    public static SnapshotView From(Snapshot snapshot)
    {
        long size = checked((long)snapshot.SizeBytes);
        return new SnapshotView(
            snapshot.Name,
            snapshot.Id,
            snapshot.SourceVolume,
            snapshot.SourceVolumeId,
            size,
            ByteSize.Format(size),
            (int)snapshot.BlockSize,
            snapshot.Pool,
            checked((long)snapshot.AllocatedBytes),
            snapshot.CreatedUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(snapshot.CreatedUnixMs) : null,
            new SortedDictionary<string, string>(snapshot.Labels, StringComparer.Ordinal));
    }
}

internal sealed record PoolView(
    string Name,
    string Path,
    string JournalPath,
    int ClusterSize,
    long CapacityBytes,
    long UsedBytes,
    long FreeBytes,
    string Capacity,
    string Used,
    string Free,
    int VolumeCount,
    int SnapshotCount)
{
    public static PoolView From(Pool pool)
    {
        long capacity = checked((long)pool.CapacityBytes);
        long used = checked((long)pool.UsedBytes);
        long free = checked((long)pool.FreeBytes);
        return new PoolView(
            pool.Name,
            pool.Path,
            pool.JournalPath,
            (int)pool.ClusterSize,
            capacity,
            used,
            free,
            ByteSize.Format(capacity),
            ByteSize.Format(used),
            ByteSize.Format(free),
            (int)pool.VolumeCount,
            (int)pool.SnapshotCount);
    }
}

internal sealed record ServerInfoView(
    string Version,
    string DiscoveryNqn,
    IReadOnlyList<string> NvmeListenAddresses,
    string ManagementAddress,
    string Backend,
    string DataDir,
    string MetadataStore,
    uint VolumeCount,
    uint ConnectionCount,
    DateTimeOffset? StartedAt)
{
    public static ServerInfoView From(ServerInfo info) => new(
        info.Version,
        info.DiscoveryNqn,
        [.. info.NvmeListenAddresses],
        info.ManagementAddress,
        info.Backend,
        info.DataDir,
        info.MetadataStore,
        info.VolumeCount,
        info.ConnectionCount,
        info.StartedUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(info.StartedUnixMs) : null);
}

internal sealed record DeletedView(string Deleted);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = true)]
[JsonSerializable(typeof(VolumeView))]
[JsonSerializable(typeof(VolumeView[]))]
[JsonSerializable(typeof(ServerInfoView))]
[JsonSerializable(typeof(DeletedView))]
[JsonSerializable(typeof(SnapshotView))]
[JsonSerializable(typeof(SnapshotView[]))]
[JsonSerializable(typeof(PoolView[]))]
[JsonSerializable(typeof(NodeView))]
[JsonSerializable(typeof(NodeView[]))]
[JsonSerializable(typeof(VerifyView))]
internal sealed partial class CliJsonContext : JsonSerializerContext;
