using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>
/// A replica subsystem takes changes only from the current replication epoch (<see cref="FeatureId.ReplicationEpoch"/>):
/// a newly promoted primary's higher epoch fences the old primary's connections, and an old epoch is refused.
/// </summary>
public sealed class EpochFenceTests
{
    private const int Bs = TargetHarness.BlockSize;
    private const string ReplicaNqn = "nqn.2024-01.io.csinvme:replica";

    private static (TestHost Admin, TestHost Io) Connect(TargetHarness harness)
    {
        var admin = harness.Initialize();
        var connect = admin.ConnectAdmin(ReplicaNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success));
        admin.ControllerId = (ushort)connect.Dw0;
        admin.Enable();
        var io = harness.Initialize();
        Assert.That(io.ConnectIo(1, admin.ControllerId, ReplicaNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
        return (admin, io);
    }

    private static Subsystem AddReplica(TargetHarness harness, EpochFence fence)
    {
        var subsystem = harness.Target.AddSubsystem(new Subsystem(ReplicaNqn, "sn-replica", allowAnyHost: false, [harness.Host.Nqn]) { Fence = fence });
        subsystem.AddNamespace(new TargetNamespace(1, harness.NewVolume(), Guid.NewGuid()));
        return subsystem;
    }

    [Test]
    public async Task Changes_need_the_current_epoch_and_a_higher_epoch_fences_the_older_primary()
    {
        await using var harness = TargetHarness.Start();
        var fence = new EpochFence(initial: 4);
        var subsystem = AddReplica(harness, fence);
        var (oldAdmin, oldIo) = Connect(harness);
        using var _ = oldAdmin;
        using var __ = oldIo;

        Assert.That(oldIo.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.ReservationConflict), "no epoch set");
        Assert.That(oldIo.Read(1, 0, Bs, Bs).Status, Is.EqualTo(NvmeStatus.Success), "reads need no epoch");
        Assert.That(oldAdmin.SetFeatures((byte)FeatureId.ReplicationEpoch, 3).Status, Is.EqualTo(NvmeStatus.ReservationConflict), "older than the fence");
        var set = oldAdmin.SetFeatures((byte)FeatureId.ReplicationEpoch, 4);
        Assert.That(set.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(oldIo.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.Success));

        var (newAdmin, newIo) = Connect(harness);
        using var ___ = newAdmin;
        using var ____ = newIo;
        Assert.That(newAdmin.SetFeatures((byte)FeatureId.ReplicationEpoch, 5).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(fence.Current, Is.EqualTo(5));
        Assert.That(oldIo.WaitClosed(TimeSpan.FromSeconds(30)), Is.True, "the old primary's I/O queue is torn down");
        Assert.That(oldAdmin.WaitClosed(TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(newIo.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(newAdmin.GetFeatures((byte)FeatureId.ReplicationEpoch).Dw0, Is.EqualTo(5u));

        // The node learns of a later promotion from the cluster metadata before the new primary connects.
        Assert.That(fence.Raise(6), Is.True);
        subsystem.FenceBelow(6);
        Assert.That(newIo.WaitClosed(TimeSpan.FromSeconds(30)), Is.True);
    }

    [Test]
    public async Task Subsystems_without_a_fence_ignore_the_feature()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        Assert.That(admin.SetFeatures((byte)FeatureId.ReplicationEpoch, 1).Status, Is.EqualTo(NvmeStatus.InvalidField));
        using var io = harness.ConnectIo(admin, 1);
        Assert.That(io.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.Success));
    }
}
