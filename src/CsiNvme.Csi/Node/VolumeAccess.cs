using Csi.V1;

namespace CsiNvme.Csi.Node;

/// <summary>The parts of a VolumeCapability the node acts on, validated.</summary>
internal sealed record VolumeAccess(bool IsBlock, string FsType, IReadOnlyList<string> MountFlags, VolumeCapability.Types.AccessMode.Types.Mode Mode)
{
    public bool IsReaderOnly => Mode is VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeReaderOnly
        or VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeReaderOnly;

    public override string ToString() => (IsBlock ? "block" : $"{FsType} filesystem") + $" ({Mode})";

    public static VolumeAccess From(VolumeCapability? capability)
    {
        if (capability is null)
        {
            throw NodeService.Invalid("volume_capability is required");
        }

        var mode = capability.AccessMode?.Mode ?? VolumeCapability.Types.AccessMode.Types.Mode.Unknown;
        if (mode == VolumeCapability.Types.AccessMode.Types.Mode.Unknown || !Enum.IsDefined(mode))
        {
            throw NodeService.Invalid("volume_capability.access_mode is required");
        }

        switch (capability.AccessTypeCase)
        {
            case VolumeCapability.AccessTypeOneofCase.Block:
                return new VolumeAccess(true, string.Empty, [], mode);
            case VolumeCapability.AccessTypeOneofCase.Mount:
                var fsType = string.IsNullOrWhiteSpace(capability.Mount.FsType) ? "ext4" : capability.Mount.FsType.Trim().ToLowerInvariant();
                if (fsType is not ("ext4" or "xfs"))
                {
                    throw NodeService.Invalid($"fs_type '{capability.Mount.FsType}' is not supported (ext4 or xfs)");
                }

                // A local filesystem mounted read-write on two nodes at once is corrupted by both.
                if (mode is VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeMultiWriter
                    or VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeSingleWriter)
                {
                    throw NodeService.Invalid($"{mode} is only supported for block volumes, not for {fsType} filesystems");
                }

                try
                {
                    Node.MountFlags.Parse(capability.Mount.MountFlags);
                }
                catch (FormatException e)
                {
                    throw NodeService.Invalid(e.Message);
                }

                return new VolumeAccess(false, fsType, capability.Mount.MountFlags.ToList(), mode);
            default:
                throw NodeService.Invalid("volume_capability needs an access type (block or mount)");
        }
    }
}

/// <summary>mount(8)-style options split into mount(2) flags and the filesystem's data string.</summary>
internal static class MountFlags
{
    private static readonly Dictionary<string, ulong> _flags = new(StringComparer.Ordinal)
    {
        ["ro"] = LinuxNodePlatform.MS_RDONLY,
        ["nosuid"] = LinuxNodePlatform.MS_NOSUID,
        ["nodev"] = LinuxNodePlatform.MS_NODEV,
        ["noexec"] = LinuxNodePlatform.MS_NOEXEC,
        ["sync"] = LinuxNodePlatform.MS_SYNCHRONOUS,
        ["dirsync"] = LinuxNodePlatform.MS_DIRSYNC,
        ["noatime"] = LinuxNodePlatform.MS_NOATIME,
        ["nodiratime"] = LinuxNodePlatform.MS_NODIRATIME,
        ["relatime"] = LinuxNodePlatform.MS_RELATIME,
        ["strictatime"] = LinuxNodePlatform.MS_STRICTATIME,
        ["lazytime"] = LinuxNodePlatform.MS_LAZYTIME,
    };

    // Defaults of mount(8) that need no flag.
    private static readonly HashSet<string> _noOps = new(StringComparer.Ordinal) { "rw", "defaults", "suid", "dev", "exec", "async", "atime", "diratime" };

    // Options that would change what is mounted rather than how.
    private static readonly HashSet<string> _refused = new(StringComparer.Ordinal) { "bind", "rbind", "remount", "move", "loop" };

    public static (ulong Flags, string? Data) Parse(IEnumerable<string> options)
    {
        ulong flags = 0;
        var data = new List<string>();
        foreach (var option in options.SelectMany(o => o.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            if (_refused.Contains(option))
            {
                throw new FormatException($"mount flag '{option}' is not allowed");
            }

            if (_flags.TryGetValue(option, out var flag))
            {
                flags |= flag;
            }
            else if (!_noOps.Contains(option))
            {
                data.Add(option);
            }
        }

        return (flags, data.Count == 0 ? null : string.Join(',', data));
    }
}
