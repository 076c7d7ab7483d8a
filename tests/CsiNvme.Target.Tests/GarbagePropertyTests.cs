using System.Net.Sockets;
using CsCheck;
using CsiNvme.Storage;
using CsiNvme.Target.Subsystems;

namespace CsiNvme.Target.Tests;

/// <summary>
/// Random bytes after a valid ICReq, on a bare connection, an admin queue or an I/O queue, never crash the target:
/// each such connection ends, nothing is logged as an unexpected failure, and a healthy connection keeps reading
/// the right data.
/// </summary>
public sealed class GarbagePropertyTests
{
    private const string FuzzNqn = "nqn.2024-01.io.csinvme:fuzz";
    private const int Bs = TargetHarness.BlockSize;

    private enum Stage
    {
        AfterInitialize,
        OnAdminQueue,
        OnIoQueue,
    }

    private sealed record Attack(Stage Stage, bool HeaderDigest, bool DataDigest, byte[] Payload);

    /// <summary>Plausible common headers reach deeper than pure noise: known types, right or wrong HLEN, any PLEN.</summary>
    private static readonly Gen<byte[]> PlausibleHeader =
        Gen.Select(Gen.OneOf<byte>(2, 4, 6, 0, 1, 3, 5, 7, 9, 0x0A), Gen.Byte, Gen.OneOf(Gen.OneOf<byte>(24, 72), Gen.Byte),
                Gen.Byte, Gen.OneOf(Gen.UInt[0, 400], Gen.UInt), Gen.Byte.Array[0, 400],
                (type, flags, hlen, pdo, plen, rest) =>
                {
                    var pdu = new byte[PduHeader.Size + rest.Length];
                    new PduHeader((PduType)type, (PduFlags)flags, hlen, pdo, plen).Write(pdu);
                    rest.CopyTo(pdu, PduHeader.Size);
                    return pdu;
                });

    /// <summary>Well-formed capsules holding random SQEs: every admin and I/O handler sees arbitrary fields.</summary>
    private static readonly Gen<byte[]> RandomCommands =
        Gen.Byte.Array[SubmissionQueueEntry.Size].Array[1, 6].Select(sqes =>
        {
            var stream = new MemoryStream();
            foreach (var sqe in sqes)
            {
                var pdu = new byte[72];
                new PduHeader(PduType.CapsuleCmd, PduFlags.None, 72, 0, 72).Write(pdu);
                sqe.CopyTo(pdu, PduHeader.Size);
                stream.Write(pdu);
            }

            return stream.ToArray();
        });

    private static readonly Gen<Attack> Attacks =
        Gen.Select(Gen.Enum<Stage>(), Gen.Bool, Gen.Bool, Gen.OneOf(Gen.Byte.Array[1, 600], PlausibleHeader, RandomCommands),
            (stage, hd, dd, payload) => new Attack(stage, hd, dd, payload));

    [Test]
    public async Task RandomBytesNeverHurtTheTarget()
    {
        await using var harness = TargetHarness.Start(o => o.MaxIoQueues = 4096);
        // Hostile traffic goes to its own subsystem, so random Write Zeroes or DSM commands cannot touch the checked data.
        var fuzz = harness.Target.AddSubsystem(new Subsystem(FuzzNqn, "fuzz", allowAnyHost: false, [harness.Host.Nqn]));
        fuzz.AddNamespace(new TargetNamespace(1, harness.NewVolume(), Guid.NewGuid()));
        using var healthyAdmin = harness.ConnectAdmin();
        using var healthy = harness.ConnectIo(healthyAdmin, 1);
        var data = new byte[16384];
        Random.Shared.NextBytes(data);
        Assert.That(healthy.WriteInCapsule(1, 0, data, Bs).Status, Is.EqualTo(NvmeStatus.Success));

        using var fuzzAdmin = harness.Initialize();
        Assert.That(fuzzAdmin.ConnectAdmin(FuzzNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
        fuzzAdmin.Enable();
        var nextQueue = 0;

        Attacks.Sample(attack =>
        {
            using var host = harness.Initialize(attack.HeaderDigest, attack.DataDigest);
            switch (attack.Stage)
            {
                case Stage.OnAdminQueue:
                    Assert.That(host.ConnectAdmin(FuzzNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
                    break;
                case Stage.OnIoQueue:
                    var queueId = (ushort)(Interlocked.Increment(ref nextQueue) % 4000 + 1);
                    Assert.That(host.ConnectIo(queueId, fuzzAdmin.ControllerId, FuzzNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
                    break;
            }

            try
            {
                host.Send(attack.Payload);
                host.Socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                // The target may already have ended the connection while we were still sending.
            }

            Assert.That(host.WaitClosed(TimeSpan.FromSeconds(5)), Is.True, "the connection ends");
        }, iter: 1000, threads: 2, print: a => $"{a.Stage} hd={a.HeaderDigest} dd={a.DataDigest} {Convert.ToHexString(a.Payload)}");

        Assert.That(healthy.Read(1, 0, data.Length, Bs).Data, Is.EqualTo(data));
        Assert.That(healthyAdmin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(harness.Logs.Errors, Is.Empty, "no connection failed with an unexpected exception");
        using var late = harness.ConnectAdmin();
        Assert.That(late.Identify(1).Status, Is.EqualTo(NvmeStatus.Success), "the listener still accepts hosts");
    }
}
