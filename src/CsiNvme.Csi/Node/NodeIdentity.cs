using System.Security.Cryptography;
using System.Text;

namespace CsiNvme.Csi.Node;

/// <summary>
/// How a node names itself to the storage server: the CSI node id is also the NVMe host NQN the node
/// connects with, so ControllerPublishVolume can allow the node id on a volume as it is. The host id is
/// derived from the node name too, so a restarted driver (or a rebuilt node of the same name) presents
/// the same identity and the kernel never sees one host NQN with two host ids.
/// </summary>
public sealed record NodeIdentity(string NodeName, string HostNqn, Guid HostId)
{
    public const string NodeIdPrefix = "nqn.2026-11.io.csinvme:node:";

    /// <summary>NodeGetInfo.node_id: the host NQN.</summary>
    public string NodeId => HostNqn;

    public static NodeIdentity FromNodeName(string nodeName, string? hostNqnOverride = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nodeName);
        return new NodeIdentity(nodeName, string.IsNullOrEmpty(hostNqnOverride) ? NodeIdPrefix + nodeName : hostNqnOverride, HostIdOf(nodeName));
    }

    /// <summary>
    /// A version-8 style UUID (RFC 9562 §5.8) from the first 16 bytes of SHA-256(node name): stable per
    /// name, and a valid UUID as the kernel's hostid= option requires.
    /// </summary>
    public static Guid HostIdOf(string nodeName)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(nodeName), hash);
        var bytes = hash[..16];
        bytes[6] = (byte)((bytes[6] & 0x0F) | 0x80);
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80);
        return new Guid(bytes, bigEndian: true);
    }
}
