using CsiNvme.Metadata;
using CsiNvme.Replication;

namespace CsiNvme.Cluster;

/// <summary>The node's lease as a replicated volume checks it before starting and completing each change.</summary>
public sealed class LeaseGuard : ILeaseGuard
{
    private INodeMembership? _membership;

    /// <summary>The current membership; null (no lease) while the node is not joined.</summary>
    public INodeMembership? Membership
    {
        get => Volatile.Read(ref _membership);
        set => Volatile.Write(ref _membership, value);
    }

    public bool IsValid => Membership is { IsValid: true };
}
