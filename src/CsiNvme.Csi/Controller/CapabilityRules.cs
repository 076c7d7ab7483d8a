using Csi.V1;
using AccessMode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Controller;

/// <summary>
/// Which volume capabilities the driver supports. Block volumes take every access mode: the raw device
/// is shared as is and the workload (a VM being live-migrated) coordinates its writers. Filesystem
/// volumes are ext4 or xfs, neither of which is a cluster filesystem, so only single-node access and
/// read-only access from several nodes are safe; a second writer node would corrupt the filesystem.
/// </summary>
public static class CapabilityRules
{
    public static readonly string[] SupportedFilesystems = ["ext4", "xfs"];

    /// <summary>Null when supported, otherwise why not (for INVALID_ARGUMENT or ValidateVolumeCapabilities' message).</summary>
    public static string? Check(VolumeCapability? capability)
    {
        if (capability is null)
        {
            return "volume capability is missing";
        }

        if (capability.AccessMode is null || capability.AccessMode.Mode == AccessMode.Unknown)
        {
            return "volume capability has no access mode";
        }

        var mode = capability.AccessMode.Mode;
        if (!Enum.IsDefined(mode))
        {
            return $"access mode {(int)mode} is unknown";
        }

        switch (capability.AccessTypeCase)
        {
            case VolumeCapability.AccessTypeOneofCase.Block:
                return null;
            case VolumeCapability.AccessTypeOneofCase.Mount:
                var fsType = capability.Mount.FsType;
                if (fsType.Length > 0 && !SupportedFilesystems.Contains(fsType, StringComparer.Ordinal))
                {
                    return $"filesystem type '{fsType}' is not supported (use ext4 or xfs)";
                }

                if (mode is AccessMode.MultiNodeMultiWriter or AccessMode.MultiNodeSingleWriter)
                {
                    return $"access mode {mode} needs a block volume: {(fsType.Length > 0 ? fsType : "ext4")} cannot be written from several nodes at once";
                }

                return null;
            default:
                return "volume capability has neither block nor mount access type";
        }
    }

    /// <summary>Access modes that allow the volume on one node at a time.</summary>
    public static bool IsSingleNode(AccessMode mode) =>
        mode is AccessMode.SingleNodeWriter or AccessMode.SingleNodeReaderOnly or AccessMode.SingleNodeSingleWriter or AccessMode.SingleNodeMultiWriter;

    public static string Describe(VolumeCapability capability) =>
        $"{(capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.Block ? "block" : "mount")}/{capability.AccessMode?.Mode}";
}
