using System.Text.Json;
using System.Text.Json.Serialization;
using CsiNvme.Metadata;

using CsiNvme.Volumes.Backends;

namespace CsiNvme.Volumes.Pools;

/// <summary>
/// What a thin pool keeps with each image, in the image's annotation, so that --recover-metadata can rebuild the
/// image's metadata record: everything the record holds that the pool does not know itself. The pool already has the
/// name, id, kind, size (a resize grows the pool first) and block size. Written at creation and whenever the record's
/// access changes; JSON, so it can be read in a journal dump and extended.
/// </summary>
public sealed record ImageRecoveryInfo
{
    public const int CurrentVersion = 1;

    public int Version { get; init; } = CurrentVersion;

    /// <summary>The record's creation time (the pool's own is taken a moment earlier).</summary>
    public long CreatedUnixMs { get; init; }

    public bool AllowAnyHost { get; init; }

    public IReadOnlyList<string> AllowedHosts { get; init; } = [];

    /// <summary>
    /// Hosts that must authenticate with DH-HMAC-CHAP. Their secrets are not kept here (a pool holds no key to seal them
    /// with), so a rebuilt record locks these hosts out until their secrets are set again, rather than letting them in
    /// on their NQN alone.
    /// </summary>
    public IReadOnlyList<string> AuthenticatedHosts { get; init; } = [];

    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();

    /// <summary>A snapshot's source volume, which may be gone since.</summary>
    public Guid? SourceVolumeId { get; init; }

    public string? SourceVolumeName { get; init; }

    /// <summary>What a clone was made from: "snapshot NAME" or "volume NAME" (the pool's parent links say the same by id).</summary>
    public string? ClonedFrom { get; init; }

    public static string Of(VolumeRecord volume, string? clonedFrom) => Serialize(new ImageRecoveryInfo
    {
        CreatedUnixMs = volume.CreatedAt.ToUnixTimeMilliseconds(),
        AllowAnyHost = volume.AllowAnyHost,
        AllowedHosts = volume.AllowedHosts,
        AuthenticatedHosts = [.. volume.HostSecrets.Select(h => h.HostNqn)],
        Labels = volume.Labels,
        ClonedFrom = clonedFrom,
    });

    public static string Of(SnapshotRecord snapshot) => Serialize(new ImageRecoveryInfo
    {
        CreatedUnixMs = snapshot.CreatedAt.ToUnixTimeMilliseconds(),
        Labels = snapshot.Labels,
        SourceVolumeId = snapshot.SourceVolumeId,
        SourceVolumeName = snapshot.SourceVolumeName,
    });

    /// <summary>The annotation of an image, or null with the reason when there is none to read.</summary>
    public static ImageRecoveryInfo? Read(string annotation, out string? problem)
    {
        if (annotation.Length == 0)
        {
            problem = "was created before pools kept what rebuilds its record";
            return null;
        }

        try
        {
            var info = JsonSerializer.Deserialize(annotation, RecoveryJsonContext.Default.ImageRecoveryInfo);
            problem = info is null ? "has an empty recovery annotation" : null;
            return info;
        }
        catch (JsonException e)
        {
            problem = $"has a recovery annotation that cannot be read ({e.Message})";
            return null;
        }
    }

    /// <summary>The volume record an image stands for; <paramref name="info"/> null gives one without access or labels.</summary>
    public static VolumeRecord RebuildVolume(PoolImage image, string pool, ImageRecoveryInfo? info) => new(
        image.Id,
        image.Name,
        image.SizeBytes,
        image.BlockSize,
        info?.AllowAnyHost ?? false,
        info?.AllowedHosts.ToArray() ?? [],
        info is null ? image.CreatedAt : DateTimeOffset.FromUnixTimeMilliseconds(info.CreatedUnixMs))
    {
        Pool = pool,
        Labels = info?.Labels ?? new Dictionary<string, string>(),
        HostSecrets = [.. (info?.AuthenticatedHosts ?? []).Select(host => new HostSecretRecord(host, "", "", "sha256", "ffdhe2048"))],
    };

    public static SnapshotRecord RebuildSnapshot(PoolImage image, string pool, ImageRecoveryInfo? info) => new(
        image.Id,
        image.Name,
        info?.SourceVolumeId ?? Guid.Empty,
        info?.SourceVolumeName ?? "",
        image.SizeBytes,
        image.BlockSize,
        info is null ? image.CreatedAt : DateTimeOffset.FromUnixTimeMilliseconds(info.CreatedUnixMs),
        pool)
    {
        Labels = info?.Labels ?? new Dictionary<string, string>(),
    };

    private static string Serialize(ImageRecoveryInfo info) => JsonSerializer.Serialize(info, RecoveryJsonContext.Default.ImageRecoveryInfo);
}

/// <summary>
/// What a thin pool keeps about the metadata store it is used with, in the pool's annotation: a pool that meets another
/// store (another or an emptied data directory, a recreated metadata file) says which one it belongs to.
/// </summary>
public sealed record PoolOwner(Guid StoreId, string Store)
{
    public string Serialize() => JsonSerializer.Serialize(this, RecoveryJsonContext.Default.PoolOwner);

    /// <summary>null for a pool without an owner yet (new, or from before owners were recorded).</summary>
    public static PoolOwner? Read(string annotation)
    {
        if (annotation.Length == 0)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize(annotation, RecoveryJsonContext.Default.PoolOwner);
        }
        catch (JsonException)
        {
            // An annotation nobody here wrote names no store this server knows: treated as another store's.
            return new PoolOwner(Guid.Empty, $"an unreadable owner record ({annotation.Length} characters)");
        }
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ImageRecoveryInfo))]
[JsonSerializable(typeof(PoolOwner))]
internal sealed partial class RecoveryJsonContext : JsonSerializerContext;
