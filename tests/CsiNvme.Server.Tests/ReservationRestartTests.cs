using CsiNvme.Api.V1;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Reservations;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>
/// NVMe reservations through the storage server: the state of each volume's namespace lives in the metadata store,
/// so a restart of the server (a power on) keeps what PTPL says to keep and clears the rest.
/// </summary>
[TestFixture]
public sealed class ReservationRestartTests
{
    private const ulong KeyA = 0xA1;
    private const ulong KeyB = 0xB2;

    private static async Task<NvmeController> ConnectAsync(InProcessServer server, Volume volume, NvmeHostIdentity host) =>
        await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id })
            .ConnectAsync(server.Server.Target.LocalEndpoints[0], volume.SubsystemNqn);

    private static async Task<NvmeStatus> SendAsync(NvmeController controller, IoOpcode opcode, ReservationCommandFields fields, ReservationKeys keys)
    {
        var data = new byte[opcode == IoOpcode.ReservationRelease ? ReservationKeys.ReleaseSize : ReservationKeys.RegisterOrAcquireSize];
        keys.Write(data);
        var sqe = new SubmissionQueueEntry((byte)opcode, 0x40, 0, 1, default, fields.ToCdw10(), 0, 0, 0, 0, 0);
        return (await controller.IoQueues[0].ExecuteAsync(sqe, data)).Status;
    }

    private static Task<NvmeStatus> RegisterAsync(NvmeController controller, ulong key, byte changePtpl = 0, ReservationRegisterAction action = ReservationRegisterAction.Register) =>
        SendAsync(controller, IoOpcode.ReservationRegister, new ReservationCommandFields((byte)action, false, 0, changePtpl),
            action == ReservationRegisterAction.Register ? new ReservationKeys(0, key) : new ReservationKeys(key, 0));

    private static Task<NvmeStatus> AcquireAsync(NvmeController controller, ulong key, ReservationType type) =>
        SendAsync(controller, IoOpcode.ReservationAcquire, new ReservationCommandFields(0, false, (byte)type, 0), new ReservationKeys(key, 0));

    private static async Task<NvmeStatus> WriteAsync(NvmeController controller) =>
        (await controller.IoQueues[0].WriteAsync(controller.Namespaces[0], 0, new byte[controller.Namespaces[0].BlockSize])).Status;

    [Test]
    public async Task Registrations_and_the_reservation_survive_a_restart_with_ptpl_and_are_cleared_without()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        var hostA = NvmeHostIdentity.Create();
        var hostB = NvmeHostIdentity.Create();
        Volume kept;
        Volume cleared;
        await using (var first = await InProcessServer.StartAsync(dir.Path))
        {
            kept = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "kept", SizeBytes = 4 << 20, AllowedHosts = { hostA.Nqn, hostB.Nqn } });
            cleared = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "cleared", SizeBytes = 4 << 20, AllowAnyHost = true });
            await using (var a = await ConnectAsync(first, kept, hostA))
            await using (var b = await ConnectAsync(first, kept, hostB))
            {
                Assert.That(a.Namespaces[0].Identify.ReservationCapabilities, Is.EqualTo(0xFF), "RESCAP: PTPL and every type");
                Assert.That(await RegisterAsync(a, KeyA, changePtpl: 3), Is.EqualTo(NvmeStatus.Success));
                Assert.That(await RegisterAsync(b, KeyB), Is.EqualTo(NvmeStatus.Success));
                Assert.That(await AcquireAsync(a, KeyA, ReservationType.WriteExclusiveRegistrantsOnly), Is.EqualTo(NvmeStatus.Success));
            }

            await using (var a = await ConnectAsync(first, cleared, hostA))
            {
                Assert.That(await RegisterAsync(a, KeyA), Is.EqualTo(NvmeStatus.Success));
                Assert.That(await AcquireAsync(a, KeyA, ReservationType.ExclusiveAccess), Is.EqualTo(NvmeStatus.Success));
            }
        }

        await using var second = await InProcessServer.StartAsync(dir.Path);
        var state = second.Server.Target.FindSubsystem(kept.SubsystemNqn)!.Namespaces[0].Reservations.Snapshot();
        Assert.Multiple(() =>
        {
            Assert.That(state.PersistThroughPowerLoss, Is.True);
            Assert.That(state.Type, Is.EqualTo(ReservationType.WriteExclusiveRegistrantsOnly));
            Assert.That(state.Holder, Is.EqualTo(hostA.Id));
            Assert.That(state.Registrants.Select(r => (r.HostId, r.Key)), Is.EqualTo(new[] { (hostA.Id, KeyA), (hostB.Id, KeyB) }));
            Assert.That(state.Generation, Is.EqualTo(2u));
        });

        var other = second.Server.Target.FindSubsystem(cleared.SubsystemNqn)!.Namespaces[0].Reservations.Snapshot();
        Assert.That((other.Type, other.Registrants.Count, other.Generation), Is.EqualTo((ReservationType.None, 0, 1u)),
            "without PTPL a power on releases and clears; the generation stays");

        await using var b2 = await ConnectAsync(second, kept, hostB);
        Assert.That(await WriteAsync(b2), Is.EqualTo(NvmeStatus.Success), "a registrant writes under Write Exclusive - Registrants Only");
        Assert.That(await RegisterAsync(b2, KeyB, action: ReservationRegisterAction.Unregister), Is.EqualTo(NvmeStatus.Success));
        Assert.That(await WriteAsync(b2), Is.EqualTo(NvmeStatus.ReservationConflict), "the reservation is enforced after the restart");

        // Deleting the volume deletes its reservation state with it.
        await second.Volumes.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "kept" });
        var recreated = await second.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "kept", SizeBytes = 4 << 20, AllowAnyHost = true });
        Assert.That(second.Server.Target.FindSubsystem(recreated.SubsystemNqn)!.Namespaces[0].Reservations.Snapshot().Registrants, Is.Empty);
    }
}
