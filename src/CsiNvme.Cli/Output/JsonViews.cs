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
    IReadOnlyDictionary<string, string> Labels)
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
            new SortedDictionary<string, string>(volume.Labels, StringComparer.Ordinal));
    }
}

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
internal sealed partial class CliJsonContext : JsonSerializerContext;
