using Csi.V1;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Tests;

/// <summary>Volume capabilities as a CO sends them.</summary>
internal static class Caps
{
    public static VolumeCapability Block(Mode mode = Mode.SingleNodeWriter) => new()
    {
        Block = new VolumeCapability.Types.BlockVolume(),
        AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode },
    };

    public static VolumeCapability Mount(string fsType = "ext4", Mode mode = Mode.SingleNodeWriter) => new()
    {
        Mount = new VolumeCapability.Types.MountVolume { FsType = fsType },
        AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode },
    };

    public static CreateVolumeRequest Create(string name, long requiredBytes = 0, long limitBytes = 0, params VolumeCapability[] capabilities)
    {
        var request = new CreateVolumeRequest { Name = name };
        request.VolumeCapabilities.Add(capabilities.Length > 0 ? capabilities : [Block()]);
        if (requiredBytes != 0 || limitBytes != 0)
        {
            request.CapacityRange = new CapacityRange { RequiredBytes = requiredBytes, LimitBytes = limitBytes };
        }

        return request;
    }

    /// <summary>A node id as NodeGetInfo reports it: the node's host NQN.</summary>
    public static string Node(string name) => $"nqn.2026-11.io.csinvme:node:{name}";

    public static string UniqueName(string prefix = "pvc") => $"{prefix}-{Guid.NewGuid():N}";
}
