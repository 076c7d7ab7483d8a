using System.Text.Json;
using System.Text.Json.Serialization;
using Google.Protobuf;

namespace CsiNvme.Metadata.Etcd;

// The JSON stored in etcd. Field names are spelled out and enums stored as fixed strings, so renaming a C# member
// never changes what is stored; unknown fields are ignored on read, so a newer node may add fields.

internal sealed class VolumeDocument
{
    [JsonPropertyName("id")] public Guid Id { get; set; }
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("sizeBytes")] public long SizeBytes { get; set; }
    [JsonPropertyName("blockSize")] public int BlockSize { get; set; }
    [JsonPropertyName("allowAnyHost")] public bool AllowAnyHost { get; set; }
    [JsonPropertyName("allowedHosts")] public List<string> AllowedHosts { get; set; } = [];
    [JsonPropertyName("createdUnixMs")] public long CreatedUnixMs { get; set; }
    [JsonPropertyName("pool")] public string Pool { get; set; } = "";
    [JsonPropertyName("labels")] public Dictionary<string, string> Labels { get; set; } = [];
    // 0 when a document lacks it: read as the replicas it lists, so nothing ever trims a volume to a default.
    [JsonPropertyName("replicaCount")] public int ReplicaCount { get; set; }
    [JsonPropertyName("replicas")] public List<ReplicaDocument> Replicas { get; set; } = [];
    [JsonPropertyName("primary")] public string Primary { get; set; } = "";
    [JsonPropertyName("epoch")] public long Epoch { get; set; }
    [JsonPropertyName("hostSecrets")] public List<HostSecretDocument> HostSecrets { get; set; } = [];
    [JsonPropertyName("tlsRequired")] public bool TlsRequired { get; set; }
    [JsonPropertyName("tlsPsks")] public List<TlsPskDocument> TlsPsks { get; set; } = [];
}

/// <summary>A sealed (encrypted) TLS PSK only: see <see cref="SecretSealer"/>.</summary>
internal sealed class TlsPskDocument
{
    [JsonPropertyName("hostNqn")] public string HostNqn { get; set; } = "";
    [JsonPropertyName("sealedPsk")] public string SealedPsk { get; set; } = "";
}

/// <summary>Sealed (encrypted) secrets only: see <see cref="SecretSealer"/>.</summary>
internal sealed class HostSecretDocument
{
    [JsonPropertyName("hostNqn")] public string HostNqn { get; set; } = "";
    [JsonPropertyName("sealedSecret")] public string SealedSecret { get; set; } = "";
    [JsonPropertyName("sealedCtrlSecret")] public string SealedControllerSecret { get; set; } = "";
    [JsonPropertyName("hash")] public string Hash { get; set; } = "";
    [JsonPropertyName("dhGroup")] public string DhGroup { get; set; } = "";
}

internal sealed class ReplicaDocument
{
    [JsonPropertyName("node")] public string Node { get; set; } = "";
    [JsonPropertyName("pool")] public string Pool { get; set; } = "";
    [JsonPropertyName("state")] public string State { get; set; } = "";
    [JsonPropertyName("inSyncEpoch")] public long InSyncEpoch { get; set; }
}

internal sealed class SnapshotDocument
{
    [JsonPropertyName("id")] public Guid Id { get; set; }
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("sourceVolumeId")] public Guid SourceVolumeId { get; set; }
    [JsonPropertyName("sourceVolumeName")] public string SourceVolumeName { get; set; } = "";
    [JsonPropertyName("sizeBytes")] public long SizeBytes { get; set; }
    [JsonPropertyName("blockSize")] public int BlockSize { get; set; }
    [JsonPropertyName("createdUnixMs")] public long CreatedUnixMs { get; set; }
    [JsonPropertyName("pool")] public string Pool { get; set; } = "";
    [JsonPropertyName("labels")] public Dictionary<string, string> Labels { get; set; } = [];
    [JsonPropertyName("nodes")] public List<string> Nodes { get; set; } = [];
}

internal sealed class NodeDocument
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("ordinal")] public int Ordinal { get; set; }
    [JsonPropertyName("nvmeListeners")] public List<string> NvmeListeners { get; set; } = [];

    // Absent when hosts use nvmeListeners too (and in documents of nodes from before it existed).
    [JsonPropertyName("hostNvmeListeners")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public List<string>? HostNvmeListeners { get; set; }

    [JsonPropertyName("managementAddress")] public string ManagementAddress { get; set; } = "";
    [JsonPropertyName("pools")] public List<NodePoolDocument> Pools { get; set; } = [];
    [JsonPropertyName("startedUnixMs")] public long StartedUnixMs { get; set; }
    [JsonPropertyName("version")] public string Version { get; set; } = "";
}

internal sealed class NodePoolDocument
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("capacityBytes")] public long CapacityBytes { get; set; }
    [JsonPropertyName("freeBytes")] public long FreeBytes { get; set; }
}

/// <summary>A node known to the cluster: written once when it reserves its ordinal; the admin state changes later.</summary>
internal sealed class KnownNodeDocument
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("ordinal")] public int Ordinal { get; set; }
    [JsonPropertyName("adminState")] public string AdminState { get; set; } = "";
}

[JsonSourceGenerationOptions(GenerationMode = JsonSourceGenerationMode.Default)]
[JsonSerializable(typeof(VolumeDocument))]
[JsonSerializable(typeof(SnapshotDocument))]
[JsonSerializable(typeof(NodeDocument))]
[JsonSerializable(typeof(KnownNodeDocument))]
internal sealed partial class EtcdJsonContext : JsonSerializerContext;

/// <summary>Converts records to the stored JSON and back.</summary>
internal static class EtcdDocuments
{
    public static ByteString Encode(VolumeRecord volume) => Serialize(new VolumeDocument
    {
        Id = volume.Id,
        Name = volume.Name,
        SizeBytes = volume.SizeBytes,
        BlockSize = volume.BlockSize,
        AllowAnyHost = volume.AllowAnyHost,
        AllowedHosts = [.. volume.AllowedHosts],
        CreatedUnixMs = volume.CreatedAt.ToUnixTimeMilliseconds(),
        Pool = volume.Pool,
        Labels = new Dictionary<string, string>(volume.Labels, StringComparer.Ordinal),
        ReplicaCount = volume.ReplicaCount,
        Replicas = [.. volume.Replicas.Select(r => new ReplicaDocument { Node = r.Node, Pool = r.Pool, State = r.State.Name(), InSyncEpoch = r.InSyncEpoch })],
        Primary = volume.Primary,
        Epoch = volume.Epoch,
        HostSecrets = [.. volume.HostSecrets.Select(h => new HostSecretDocument
        {
            HostNqn = h.HostNqn, SealedSecret = h.SealedSecret, SealedControllerSecret = h.SealedControllerSecret, Hash = h.Hash, DhGroup = h.DhGroup,
        })],
        TlsRequired = volume.TlsRequired,
        TlsPsks = [.. volume.TlsPsks.Select(t => new TlsPskDocument { HostNqn = t.HostNqn, SealedPsk = t.SealedPsk })],
    }, EtcdJsonContext.Default.VolumeDocument);

    public static VolumeRecord DecodeVolume(Mvccpb.KeyValue kv)
    {
        VolumeDocument d = Deserialize(kv, EtcdJsonContext.Default.VolumeDocument);
        return new VolumeRecord(
            d.Id,
            d.Name,
            d.SizeBytes,
            d.BlockSize,
            d.AllowAnyHost,
            d.AllowedHosts.AsReadOnly(),
            DateTimeOffset.FromUnixTimeMilliseconds(d.CreatedUnixMs))
        {
            Pool = d.Pool,
            Labels = d.Labels.AsReadOnly(),
            ReplicaCount = d.ReplicaCount > 0 ? d.ReplicaCount : Math.Max(1, d.Replicas.Count),
            Replicas = d.Replicas.Select(r => new ReplicaRecord(r.Node, r.Pool, ParseReplicaState(r.State, kv), r.InSyncEpoch)).ToArray().AsReadOnly(),
            Primary = d.Primary,
            Epoch = d.Epoch,
            HostSecrets = d.HostSecrets.Select(h => new HostSecretRecord(h.HostNqn, h.SealedSecret, h.SealedControllerSecret, h.Hash, h.DhGroup)).ToArray().AsReadOnly(),
            TlsRequired = d.TlsRequired,
            TlsPsks = d.TlsPsks.Select(t => new TlsPskRecord(t.HostNqn, t.SealedPsk)).ToArray().AsReadOnly(),
            Revision = kv.ModRevision,
        };
    }

    public static ByteString Encode(SnapshotRecord snapshot) => Serialize(new SnapshotDocument
    {
        Id = snapshot.Id,
        Name = snapshot.Name,
        SourceVolumeId = snapshot.SourceVolumeId,
        SourceVolumeName = snapshot.SourceVolumeName,
        SizeBytes = snapshot.SizeBytes,
        BlockSize = snapshot.BlockSize,
        CreatedUnixMs = snapshot.CreatedAt.ToUnixTimeMilliseconds(),
        Pool = snapshot.Pool,
        Labels = new Dictionary<string, string>(snapshot.Labels, StringComparer.Ordinal),
        Nodes = [.. snapshot.Nodes],
    }, EtcdJsonContext.Default.SnapshotDocument);

    public static SnapshotRecord DecodeSnapshot(Mvccpb.KeyValue kv)
    {
        SnapshotDocument d = Deserialize(kv, EtcdJsonContext.Default.SnapshotDocument);
        return new SnapshotRecord(
            d.Id,
            d.Name,
            d.SourceVolumeId,
            d.SourceVolumeName,
            d.SizeBytes,
            d.BlockSize,
            DateTimeOffset.FromUnixTimeMilliseconds(d.CreatedUnixMs),
            d.Pool)
        {
            Labels = d.Labels.AsReadOnly(),
            Nodes = d.Nodes.AsReadOnly(),
        };
    }

    public static ByteString Encode(NodeRecord node) => Serialize(new NodeDocument
    {
        Name = node.Name,
        Ordinal = node.Ordinal,
        NvmeListeners = [.. node.NvmeListeners],
        HostNvmeListeners = node.HostNvmeListeners.Count > 0 ? [.. node.HostNvmeListeners] : null,
        ManagementAddress = node.ManagementAddress,
        Pools = [.. node.Pools.Select(p => new NodePoolDocument { Name = p.Name, CapacityBytes = p.CapacityBytes, FreeBytes = p.FreeBytes })],
        StartedUnixMs = node.StartedAt.ToUnixTimeMilliseconds(),
        Version = node.Version,
    }, EtcdJsonContext.Default.NodeDocument);

    public static NodeRecord DecodeNode(Mvccpb.KeyValue kv)
    {
        NodeDocument d = Deserialize(kv, EtcdJsonContext.Default.NodeDocument);
        return new NodeRecord(
            d.Name,
            d.Ordinal,
            d.NvmeListeners.AsReadOnly(),
            d.ManagementAddress,
            d.Pools.Select(p => new NodePoolRecord(p.Name, p.CapacityBytes, p.FreeBytes)).ToArray().AsReadOnly(),
            DateTimeOffset.FromUnixTimeMilliseconds(d.StartedUnixMs),
            d.Version)
        {
            HostNvmeListeners = d.HostNvmeListeners?.AsReadOnly() ?? (IReadOnlyList<string>)[],
        };
    }

    public static ByteString EncodeKnown(string name, int ordinal, NodeAdminState state) => Serialize(
        new KnownNodeDocument { Name = name, Ordinal = ordinal, AdminState = AdminStateText(state) },
        EtcdJsonContext.Default.KnownNodeDocument);

    public static (string Name, int Ordinal, NodeAdminState AdminState) DecodeKnown(Mvccpb.KeyValue kv)
    {
        KnownNodeDocument d = Deserialize(kv, EtcdJsonContext.Default.KnownNodeDocument);
        NodeAdminState state = d.AdminState switch
        {
            "active" => NodeAdminState.Active,
            "draining" => NodeAdminState.Draining,
            _ => throw Invalid(kv, $"unknown admin state '{d.AdminState}'"),
        };
        return (d.Name, d.Ordinal, state);
    }

    private static ReplicaState ParseReplicaState(string text, Mvccpb.KeyValue kv) =>
        ReplicaStateNames.TryParse(text, out var state) ? state : throw Invalid(kv, $"unknown replica state '{text}'");

    private static string AdminStateText(NodeAdminState state) => state switch
    {
        NodeAdminState.Active => "active",
        NodeAdminState.Draining => "draining",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, "unknown admin state"),
    };

    private static ByteString Serialize<T>(T document, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) =>
        ByteString.CopyFrom(JsonSerializer.SerializeToUtf8Bytes(document, type));

    private static T Deserialize<T>(Mvccpb.KeyValue kv, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        try
        {
            return JsonSerializer.Deserialize(kv.Value.Span, type) ?? throw Invalid(kv, "null document");
        }
        catch (JsonException e)
        {
            throw Invalid(kv, e.Message, e);
        }
    }

    private static InvalidDataException Invalid(Mvccpb.KeyValue kv, string problem, Exception? inner = null) =>
        new($"etcd key {kv.Key.ToStringUtf8()} (revision {kv.ModRevision}) holds an unreadable record: {problem}", inner);
}
