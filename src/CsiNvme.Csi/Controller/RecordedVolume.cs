using Csi.V1;
using AccessMode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Controller;

/// <summary>
/// What CreateVolume was asked for, kept in the storage server's labels of the volume so the driver stays
/// stateless: the capabilities (access type, filesystem, access mode), the content source and the node's
/// StorageClass parameters. Retried CreateVolume calls are compared with it, ListVolumes and ControllerGetVolume
/// rebuild the same volume_context from it, and ControllerPublishVolume checks capabilities against it.
/// </summary>
internal sealed class RecordedVolume
{
    private const string Prefix = "csi.nvme.csinvme.io/";
    public const string CapabilitiesKey = Prefix + "capabilities";
    public const string SourceKey = Prefix + "source";
    public const string ContextKeyPrefix = Prefix + "ctx.";

    private const string SnapshotSource = "snapshot:";
    private const string VolumeSource = "volume:";

    private RecordedVolume(IReadOnlyList<string> capabilities, string source, IReadOnlyDictionary<string, string> nodeContext)
    {
        Capabilities = capabilities;
        Source = source;
        NodeContext = nodeContext;
    }

    /// <summary>Canonical capabilities ("block:MultiNodeMultiWriter", "mount/ext4:SingleNodeWriter"), sorted; empty when not recorded.</summary>
    public IReadOnlyList<string> Capabilities { get; }

    /// <summary>"snapshot:ID", "volume:ID", or empty for an empty volume.</summary>
    public string Source { get; }

    public IReadOnlyDictionary<string, string> NodeContext { get; }

    /// <summary>False for a volume this driver did not create with labels (made by hand, or before labels existed).</summary>
    public bool IsRecorded => Capabilities.Count > 0;

    public static RecordedVolume FromRequest(IEnumerable<VolumeCapability> capabilities, VolumeContentSource? source, IReadOnlyDictionary<string, string> nodeContext) =>
        new(
            [.. capabilities.Select(Canonical).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)],
            source?.TypeCase switch
            {
                VolumeContentSource.TypeOneofCase.Snapshot => SnapshotSource + source.Snapshot.SnapshotId,
                VolumeContentSource.TypeOneofCase.Volume => VolumeSource + source.Volume.VolumeId,
                _ => string.Empty,
            },
            new Dictionary<string, string>(nodeContext, StringComparer.Ordinal));

    public static RecordedVolume FromLabels(IDictionary<string, string> labels)
    {
        var capabilities = labels.TryGetValue(CapabilitiesKey, out var text) && text.Length > 0
            ? text.Split(';')
            : [];
        var context = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in labels)
        {
            if (key.StartsWith(ContextKeyPrefix, StringComparison.Ordinal))
            {
                context[key[ContextKeyPrefix.Length..]] = value;
            }
        }

        return new RecordedVolume(capabilities, labels.TryGetValue(SourceKey, out var source) ? source : string.Empty, context);
    }

    public Dictionary<string, string> ToLabels()
    {
        var labels = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [CapabilitiesKey] = string.Join(';', Capabilities),
        };
        if (Source.Length > 0)
        {
            labels[SourceKey] = Source;
        }

        foreach (var (key, value) in NodeContext)
        {
            labels[ContextKeyPrefix + key] = value;
        }

        return labels;
    }

    /// <summary>The content source to report for the volume, rebuilt from <see cref="Source"/>.</summary>
    public VolumeContentSource? ContentSource() =>
        Source.StartsWith(SnapshotSource, StringComparison.Ordinal)
            ? new VolumeContentSource { Snapshot = new VolumeContentSource.Types.SnapshotSource { SnapshotId = Source[SnapshotSource.Length..] } }
            : Source.StartsWith(VolumeSource, StringComparison.Ordinal)
                ? new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = Source[VolumeSource.Length..] } }
                : null;

    /// <summary>Null when <paramref name="requested"/> asks for what this volume was created with; otherwise the first difference.</summary>
    public string? DifferenceFrom(RecordedVolume requested)
    {
        if (!Capabilities.SequenceEqual(requested.Capabilities, StringComparer.Ordinal))
        {
            return $"capabilities {string.Join(", ", Capabilities)}, not {string.Join(", ", requested.Capabilities)}";
        }

        if (Source != requested.Source)
        {
            return $"content source {(Source.Length > 0 ? Source : "none")}, not {(requested.Source.Length > 0 ? requested.Source : "none")}";
        }

        if (NodeContext.Count != requested.NodeContext.Count ||
            NodeContext.Any(p => !requested.NodeContext.TryGetValue(p.Key, out var v) || v != p.Value))
        {
            return $"parameters {Describe(NodeContext)}, not {Describe(requested.NodeContext)}";
        }

        return null;
    }

    /// <summary>
    /// Null when the volume may be used with <paramref name="capability"/>: same access type and filesystem as one
    /// recorded capability, and an access mode the volume was created for. A volume without a record accepts any.
    /// </summary>
    public string? Incompatibility(VolumeCapability capability)
    {
        if (!IsRecorded)
        {
            return null;
        }

        var wanted = Canonical(capability);
        if (Capabilities.Contains(wanted, StringComparer.Ordinal))
        {
            return null;
        }

        var wantedType = TypeOf(wanted);
        if (!Capabilities.Any(c => TypeOf(c) == wantedType))
        {
            return $"the volume was created as {string.Join(" or ", Capabilities.Select(TypeOf).Distinct())}, not {wantedType}";
        }

        return $"access mode {capability.AccessMode.Mode} is not one the volume was created with ({string.Join(", ", Capabilities)})";
    }

    /// <summary>True when every recorded access mode allows one node only (and the record exists).</summary>
    public bool IsSingleNodeOnly => IsRecorded && Capabilities.All(c => CapabilityRules.IsSingleNode(Enum.Parse<AccessMode>(c[(c.LastIndexOf(':') + 1)..])));

    /// <summary>A mount without a filesystem type gets ext4 on the node, so "" and "ext4" are the same capability.</summary>
    public static string Canonical(VolumeCapability capability) =>
        capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.Block
            ? $"block:{capability.AccessMode.Mode}"
            : $"mount/{(capability.Mount.FsType.Length > 0 ? capability.Mount.FsType : "ext4")}:{capability.AccessMode.Mode}";

    private static string TypeOf(string canonical) => canonical[..canonical.LastIndexOf(':')];

    private static string Describe(IReadOnlyDictionary<string, string> context) =>
        context.Count == 0 ? "(none)" : string.Join(",", context.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));
}
