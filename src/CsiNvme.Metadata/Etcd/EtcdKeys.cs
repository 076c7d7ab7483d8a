using System.Globalization;
using Google.Protobuf;

namespace CsiNvme.Metadata.Etcd;

/// <summary>The key layout under a store's prefix (documented on <see cref="EtcdMetadataStore"/>); the one place keys are built and parsed.</summary>
internal sealed class EtcdKeys
{
    public const string ClusterIdName = "cluster-id";
    public const string Ordinals = "ordinals/";
    public const string Known = "known/";
    public const string Nodes = "nodes/";
    public const string Volumes = "volumes/";
    public const string VolumeIds = "volume-ids/";
    public const string Snapshots = "snapshots/";
    public const string SnapshotIds = "snapshot-ids/";
    public const string PoolBindings = "pool-bindings/";
    public const string Reservations = "reservations/";

    public EtcdKeys(string prefix)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        if (!prefix.StartsWith('/') || !prefix.EndsWith('/'))
        {
            throw new ArgumentException($"the etcd key prefix must start and end with '/': '{prefix}'", nameof(prefix));
        }

        Prefix = prefix;
    }

    public string Prefix { get; }

    public ByteString ClusterId => Key(ClusterIdName);

    public ByteString Ordinal(int ordinal) => Key(Ordinals + ordinal.ToString(CultureInfo.InvariantCulture));

    public ByteString KnownNode(string name) => Key(Known + name);

    public ByteString LiveNode(string name) => Key(Nodes + name);

    public ByteString Volume(string name) => Key(Volumes + name);

    public ByteString VolumeId(Guid id) => Key(VolumeIds + id.ToString("D"));

    public ByteString Snapshot(string name) => Key(Snapshots + name);

    public ByteString SnapshotId(Guid id) => Key(SnapshotIds + id.ToString("D"));

    /// <summary>The pool bindings of one node: pool names are only unique per node.</summary>
    public string PoolBindingsOf(string scope) => PoolBindings + scope + "/";

    public ByteString PoolBinding(string scope, string pool) => Key(PoolBindingsOf(scope) + pool);

    public ByteString Reservation(Guid volumeId) => Key(Reservations + volumeId.ToString("D"));

    /// <summary>The whole store: every key under the prefix.</summary>
    public (ByteString Key, ByteString RangeEnd) All => Range("");

    /// <summary>Key and range end covering every key that starts with <paramref name="family"/> (one of the constants).</summary>
    public (ByteString Key, ByteString RangeEnd) Range(string family)
    {
        byte[] start = System.Text.Encoding.UTF8.GetBytes(Prefix + family);
        byte[] end = (byte[])start.Clone();

        // etcd's prefix range end: the prefix with its last byte incremented. Prefixes here end in '/' or a letter,
        // never 0xFF, so no carry is needed.
        end[^1]++;
        return (ByteString.CopyFrom(start), ByteString.CopyFrom(end));
    }

    /// <summary>Splits a key into its family and name, e.g. ("volumes/", "data-0"); null for keys outside the prefix.</summary>
    public (string Family, string Name)? Parse(ByteString key)
    {
        string text = key.ToStringUtf8();
        if (!text.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return null;
        }

        string rest = text[Prefix.Length..];
        foreach (string family in (ReadOnlySpan<string>)[Ordinals, Known, Nodes, Volumes, VolumeIds, Snapshots, SnapshotIds, PoolBindings, Reservations])
        {
            if (rest.StartsWith(family, StringComparison.Ordinal))
            {
                return (family, rest[family.Length..]);
            }
        }

        return (rest, "");
    }

    private ByteString Key(string relative) => ByteString.CopyFromUtf8(Prefix + relative);
}
