using Grpc.Core;

namespace CsiNvme.Csi.Node;

/// <summary>
/// What Probe checks on a node (spec, "Probe Errors"): the kernel's NVMe over Fabrics host is there (a missing
/// required dependency otherwise) and the staged-volume records can be written (the plugin is not healthy
/// otherwise). Either way no volume can be staged, so the CO is told at once rather than at the next stage.
/// </summary>
internal sealed class NodeHealth(INodePlatform platform, NodeStateStore state)
{
    /// <summary>Throws FAILED_PRECONDITION naming what is wrong; returns when the node can stage volumes.</summary>
    public void Check()
    {
        if (platform.Stat(platform.FabricsDevice).Kind == NodeFileKind.Missing)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"missing dependency: {platform.FabricsDevice} does not exist; load the kernel's NVMe/TCP host (modprobe nvme-tcp)"));
        }

        if (platform.WhyNotWritable(state.Directory) is { } why)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"not healthy: the staged-volume records cannot be written ({why})"));
        }
    }
}
