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
    DateTimeOffset? CreatedAt)
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
            volume.CreatedUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(volume.CreatedUnixMs) : null);
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
internal sealed partial class CliJsonContext : JsonSerializerContext;
