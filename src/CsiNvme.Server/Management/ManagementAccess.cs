using CsiNvme.Api.Security;

namespace CsiNvme.Server.Management;

/// <summary>
/// The one table of which role may make which management call. <see cref="ManagementRole.Admin"/> may make every call
/// and is not listed; a method missing here is admin-only. The csi-controller row is exactly what
/// CsiNvme.Csi.Controller calls (ControllerService, NodeCapacity, RecordedVolume), so a stolen controller certificate
/// cannot drain nodes, open a volume to any host or verify replicas. docs/security.md has the same table for readers.
/// </summary>
internal static class ManagementAccess
{
    private const ManagementRole Controller = ManagementRole.CsiController;
    private const ManagementRole Reader = ManagementRole.CsiController | ManagementRole.ReadOnly;

    // A storage pod drains its own node before it stops and undrains it when back (the chart's lifecycle hooks), with
    // the node certificate it holds anyway.
    private const ManagementRole NodeLifecycle = ManagementRole.Node;

    private static readonly Dictionary<string, ManagementRole> s_methods = new(StringComparer.Ordinal)
    {
        ["/csinvme.v1.VolumeService/CreateVolume"] = Controller,
        ["/csinvme.v1.VolumeService/DeleteVolume"] = Controller,
        ["/csinvme.v1.VolumeService/ResizeVolume"] = Controller,
        ["/csinvme.v1.VolumeService/SetReplicaCount"] = Controller,
        ["/csinvme.v1.VolumeService/AllowHost"] = Controller,
        ["/csinvme.v1.VolumeService/DenyHost"] = Controller,
        ["/csinvme.v1.VolumeService/SetHostSecret"] = Controller,
        ["/csinvme.v1.VolumeService/ClearHostSecret"] = Controller,
        ["/csinvme.v1.VolumeService/CreateSnapshot"] = Controller,
        ["/csinvme.v1.VolumeService/DeleteSnapshot"] = Controller,
        ["/csinvme.v1.VolumeService/GetVolume"] = Reader,
        ["/csinvme.v1.VolumeService/ListVolumes"] = Reader,
        ["/csinvme.v1.VolumeService/GetSnapshot"] = Reader,
        ["/csinvme.v1.VolumeService/ListSnapshots"] = Reader,
        ["/csinvme.v1.NodeService/ListNodes"] = Reader | NodeLifecycle,
        ["/csinvme.v1.NodeService/DrainNode"] = NodeLifecycle,
        ["/csinvme.v1.NodeService/UndrainNode"] = NodeLifecycle,
        ["/csinvme.v1.ServerService/GetServerInfo"] = Reader | ManagementRole.Node,
        ["/csinvme.v1.ServerService/ListPools"] = Reader,
        // Admin only: SetAllowAnyHost, VerifyVolume, SetHostTlsPsk, ClearHostTlsPsk, SetTlsRequired (the CSI driver
        // does not configure NVMe/TCP TLS; an operator does).
    };

    /// <summary>Every method of this service belongs to the nodes (node_agent.proto): they call each other, nobody else does.</summary>
    private const string NodeAgentService = "/csinvme.v1.agent.NodeAgentService/";

    public static bool IsAllowed(ManagementRole role, string method)
    {
        if (role.HasFlag(ManagementRole.Admin))
        {
            return true;
        }

        if (method.StartsWith(NodeAgentService, StringComparison.Ordinal))
        {
            return role.HasFlag(ManagementRole.Node);
        }

        return s_methods.TryGetValue(method, out var allowed) && (allowed & role) != 0;
    }

    /// <summary>The method name without its service, for messages ("DeleteVolume").</summary>
    public static string ShortName(string method) => method[(method.LastIndexOf('/') + 1)..];
}
