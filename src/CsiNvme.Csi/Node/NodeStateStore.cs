using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace CsiNvme.Csi.Node;

/// <summary>
/// What the node knows about a volume it staged: written before the first kernel action of NodeStageVolume
/// and removed after the last one of NodeUnstageVolume, so a driver that crashed in between still knows
/// which subsystem to disconnect (NodeUnstageVolume only carries the volume id).
/// </summary>
public sealed record StagedVolume
{
    public required string VolumeId { get; init; }

    public required string StagingPath { get; init; }

    public required string SubsystemNqn { get; init; }

    public string Uuid { get; init; } = string.Empty;

    public string Nguid { get; init; } = string.Empty;

    /// <summary>
    /// Every listener of the volume's subsystem this node knows of, "ADDR:PORT": those of publish_context and those the
    /// path keeper found in a discovery log since. The keeper keeps a path to each.
    /// </summary>
    public required IReadOnlyList<string> Targets { get; init; }

    /// <summary>Storage nodes holding the volume (volume_context replicas): the live paths it should have.</summary>
    public int Replicas { get; init; } = 1;

    /// <summary>The connection settings of the stage, for the paths the keeper connects later; null in records written before.</summary>
    public FabricsConnectSettings? ConnectSettings { get; init; }

    /// <summary>The stage connected with DH-HMAC-CHAP secrets (kept in the kernel only, never in this record).</summary>
    public bool Authenticated { get; init; }

    public bool IsBlock { get; init; }

    /// <summary>ext4 or xfs for filesystem volumes; empty for block volumes.</summary>
    public string FsType { get; init; } = string.Empty;

    /// <summary>Device nodes this driver created itself (no udev/devtmpfs), removed again on unstage.</summary>
    public IReadOnlyList<string> CreatedDeviceNodes { get; init; } = [];
}

[JsonSerializable(typeof(StagedVolume))]
[JsonSourceGenerationOptions(WriteIndented = true)]
internal sealed partial class StagedVolumeJsonContext : JsonSerializerContext;

/// <summary>One JSON file per staged volume in a directory that outlives the driver process.</summary>
public sealed partial class NodeStateStore
{
    private const string Suffix = ".staged.json";

    public NodeStateStore(string directory)
    {
        Directory = directory;
        System.IO.Directory.CreateDirectory(directory);
    }

    public string Directory { get; }

    public StagedVolume? Load(string volumeId)
    {
        var path = PathOf(volumeId);
        try
        {
            var volume = JsonSerializer.Deserialize(File.ReadAllBytes(path), StagedVolumeJsonContext.Default.StagedVolume);
            return volume?.VolumeId == volumeId ? volume : null;
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }

    public IReadOnlyList<StagedVolume> All()
    {
        var result = new List<StagedVolume>();
        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*" + Suffix))
        {
            try
            {
                if (JsonSerializer.Deserialize(File.ReadAllBytes(file), StagedVolumeJsonContext.Default.StagedVolume) is { } volume)
                {
                    result.Add(volume);
                }
            }
            catch (Exception e) when (e is FileNotFoundException or JsonException)
            {
                // Removed concurrently, or a torn file from before atomic writes: not a staged volume.
            }
        }

        return result;
    }

    /// <summary>Writes the record atomically (temporary file, fsync, rename).</summary>
    public void Save(StagedVolume volume)
    {
        var path = PathOf(volume.VolumeId);
        var temporary = path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            JsonSerializer.Serialize(stream, volume, StagedVolumeJsonContext.Default.StagedVolume);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporary, path, overwrite: true);
    }

    public void Delete(string volumeId) => File.Delete(PathOf(volumeId));

    private string PathOf(string volumeId)
    {
        // Volume ids are opaque to the node; safe ones are kept readable, others hashed.
        var name = SafeName().IsMatch(volumeId)
            ? volumeId
            : "sha256-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(volumeId)));
        return Path.Combine(Directory, name + Suffix);
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex SafeName();
}
