using System.Net.Sockets;

namespace CsiNvme.Target.Tests;

/// <summary>
/// Malformed PDUs are fatal transport errors (TCP 1.0, 3.6.2.4 and 7.4.1): the target answers with a C2HTermReq
/// naming the error, closes that connection only, and keeps serving every other connection.
/// </summary>
public sealed class HostilePduTests
{
    private const int Bs = TargetHarness.BlockSize;

    /// <summary>A target with a healthy controller that wrote known data, and a second controller whose I/O queue misbehaves.</summary>
    private sealed class Scene : IAsyncDisposable
    {
        public Scene(TargetHarness harness, bool headerDigest, bool dataDigest)
        {
            Harness = harness;
            HealthyAdmin = harness.ConnectAdmin();
            Healthy = harness.ConnectIo(HealthyAdmin, 1);
            Random.Shared.NextBytes(Data);
            Assert.That(Healthy.WriteInCapsule(1, 0, Data, Bs).Status, Is.EqualTo(NvmeStatus.Success));
            HostileAdmin = harness.ConnectAdmin();
            Hostile = harness.ConnectIo(HostileAdmin, 1, headerDigest, dataDigest);
        }

        public TargetHarness Harness { get; }

        public TestHost HealthyAdmin { get; }

        public TestHost Healthy { get; }

        public TestHost HostileAdmin { get; }

        public TestHost Hostile { get; }

        public byte[] Data { get; } = new byte[8192];

        /// <summary>The healthy connections still work and nothing escaped as an unexpected exception.</summary>
        public void AssertOthersUnharmed()
        {
            Assert.That(Healthy.Read(1, 0, Data.Length, Bs).Data, Is.EqualTo(Data), "another connection still reads correct data");
            Assert.That(HealthyAdmin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(HostileAdmin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success), "only the offending connection was ended");
            Assert.That(Harness.Logs.Errors, Is.Empty);
        }

        public async ValueTask DisposeAsync()
        {
            Hostile.Dispose();
            HostileAdmin.Dispose();
            Healthy.Dispose();
            HealthyAdmin.Dispose();
            await Harness.DisposeAsync();
        }
    }

    private static async Task AssertTerminated(Action<TestHost> attack, TermReqFatalError expected, uint? field, Action<NvmeTargetOptions>? configure = null, bool headerDigest = false, bool dataDigest = false)
    {
        await using var scene = new Scene(TargetHarness.Start(configure), headerDigest, dataDigest);
        attack(scene.Hostile);
        var term = scene.Hostile.ExpectTermination();
        Assert.That(term.FatalErrorStatus, Is.EqualTo(expected), "FES");
        if (field is not null)
        {
            Assert.That(term.FatalErrorInformation, Is.EqualTo(field.Value), "FEI");
        }

        scene.AssertOthersUnharmed();
    }

    private static byte[] Header(PduType type, byte hlen, byte pdo, uint plen, int totalBytes, PduFlags flags = PduFlags.None)
    {
        var pdu = new byte[Math.Max(totalBytes, PduHeader.Size)];
        new PduHeader(type, flags, hlen, pdo, plen).Write(pdu);
        return pdu;
    }

    private static ushort RequestTransfer(TestHost host, ushort commandId, int length)
    {
        host.SendCapsule(TestHost.Command((byte)IoOpcode.Write, commandId, 1, TestHost.Transport(length), 2048, 0, TestHost.BlockCountField(length, Bs)));
        var r2t = host.ReceivePdu();
        Assert.That(r2t.Type, Is.EqualTo(PduType.R2T));
        return r2t.AsDataTransfer().TransferTag;
    }

    [TestCase((byte)0x0A)]
    [TestCase((byte)0xFF)]
    [TestCase((byte)PduType.CapsuleResp)]
    [TestCase((byte)PduType.ICReq)]
    public Task UnknownOrWrongDirectionPduType(byte type) =>
        AssertTerminated(h => h.Send(Header((PduType)type, 24, 0, 24, 24)), TermReqFatalError.InvalidPduHeaderField, 0);

    [Test]
    public Task WrongHeaderLength() =>
        AssertTerminated(h => h.Send(Header(PduType.CapsuleCmd, 64, 0, 72, 72)), TermReqFatalError.InvalidPduHeaderField, 2);

    [Test]
    public Task PduLengthSmallerThanHeaderLength() =>
        AssertTerminated(h => h.Send(Header(PduType.CapsuleCmd, 72, 0, 40, 72)), TermReqFatalError.InvalidPduHeaderField, 4);

    [Test]
    public Task DataOffsetInsideTheHeader() =>
        AssertTerminated(h => h.Send(Header(PduType.CapsuleCmd, 72, 16, 72 + 512, 72)), TermReqFatalError.InvalidPduHeaderField, 3);

    [Test]
    public Task H2CDataBeyondMaxH2CData() =>
        AssertTerminated(h => h.Send(Header(PduType.H2CData, 24, 24, 24 + (16u * 1024) + 4, 24)), TermReqFatalError.DataTransferLimitExceeded, 4,
            o => o.MaxH2CDataSize = 16 * 1024);

    [TestCase(16 * 1024 + 16u)]
    [TestCase(0xFFFF_0000u)]
    public Task InCapsuleDataBeyondIoccsz(uint dataLength) =>
        AssertTerminated(h => h.Send(Header(PduType.CapsuleCmd, 72, 72, unchecked(72 + dataLength), 72)), TermReqFatalError.InvalidPduHeaderField, 4);

    [Test]
    public Task HeaderDigestMismatch() =>
        AssertTerminated(
            h => h.Send(h.BuildCapsule(TestHost.Command((byte)IoOpcode.Flush, 1, 1, default), corruptHeaderDigest: true)),
            TermReqFatalError.HeaderDigestError, 0, headerDigest: true);

    [Test]
    public Task MissingHeaderDigestFlagAfterNegotiatingIt() =>
        AssertTerminated(h =>
        {
            var pdu = h.BuildCapsule(TestHost.Command((byte)IoOpcode.Flush, 1, 1, default));
            pdu[1] = 0;
            h.Send(pdu);
        }, TermReqFatalError.InvalidPduHeaderField, 1, headerDigest: true);

    [Test]
    public Task H2CDataWithUnknownTransferTag() =>
        AssertTerminated(h => h.Send(h.BuildH2CData(1, 7, 0, new byte[512], last: true)), TermReqFatalError.InvalidPduHeaderField, 10);

    [Test]
    public Task H2CDataForAFinishedTransfer() =>
        AssertTerminated(h =>
        {
            var tag = RequestTransfer(h, 0x11, 4096);
            h.Send(h.BuildH2CData(0x11, tag, 0, new byte[4096], last: true));
            Assert.That(h.ReceiveCompletion(0x11).Status, Is.EqualTo(NvmeStatus.Success));
            h.Send(h.BuildH2CData(0x11, tag, 0, new byte[4096], last: true));
        }, TermReqFatalError.InvalidPduHeaderField, 10);

    [Test]
    public Task H2CDataWithTheWrongCommandId() =>
        AssertTerminated(h =>
        {
            var tag = RequestTransfer(h, 0x21, 8192);
            h.Send(h.BuildH2CData(0x22, tag, 0, new byte[4096], last: false));
        }, TermReqFatalError.InvalidPduHeaderField, 8);

    [Test]
    public Task H2CDataBeyondTheR2TLength() =>
        AssertTerminated(h =>
        {
            var tag = RequestTransfer(h, 0x31, 8192);
            h.Send(h.BuildH2CData(0x31, tag, 0, new byte[12288], last: true));
        }, TermReqFatalError.DataTransferOutOfRange, 12);

    [Test]
    public Task H2CDataWithAWrongDataOffset() =>
        AssertTerminated(h =>
        {
            var tag = RequestTransfer(h, 0x41, 16384);
            h.Send(h.BuildH2CData(0x41, tag, 4096, new byte[4096], last: false));
        }, TermReqFatalError.PduSequenceError, 12);

    [Test]
    public Task H2CDataMarkedLastTooEarly() =>
        AssertTerminated(h =>
        {
            var tag = RequestTransfer(h, 0x51, 16384);
            h.Send(h.BuildH2CData(0x51, tag, 0, new byte[4096], last: true));
        }, TermReqFatalError.PduSequenceError, null);

    [Test]
    public Task H2CDataWhoseDatalDisagreesWithItsLength() =>
        AssertTerminated(h =>
        {
            var tag = RequestTransfer(h, 0x61, 8192);
            var pdu = h.BuildH2CData(0x61, tag, 0, new byte[4096], last: false);
            BinaryPrimitives.WriteUInt32LittleEndian(pdu.AsSpan(16), 2048);
            h.Send(pdu);
        }, TermReqFatalError.InvalidPduHeaderField, 16);

    [Test]
    public async Task TruncatedPduThenDisconnectEndsOnlyThatConnection()
    {
        await using var scene = new Scene(TargetHarness.Start(), false, false);
        var before = scene.Harness.Target.ConnectionCount;
        var capsule = scene.Hostile.BuildCapsule(TestHost.Command((byte)IoOpcode.Write, 9, 1, TestHost.InCapsule(4096), 0, 0, 7), new byte[4096]);
        scene.Hostile.Send(capsule.AsSpan(0, 1000));
        scene.Hostile.Socket.Shutdown(SocketShutdown.Send);
        Assert.That(scene.Hostile.WaitClosed(TimeSpan.FromSeconds(5)), Is.True);
        Assert.That(scene.Harness.WaitForConnectionCount(before - 1, TimeSpan.FromSeconds(5)), Is.True);
        scene.AssertOthersUnharmed();
        Assert.That(scene.Healthy.Read(1, 0, 4096, Bs).Data, Is.EqualTo(scene.Data.AsSpan(0, 4096).ToArray()), "the partial write never reached storage");
    }

    [Test]
    public async Task HostTermReqEndsTheConnectionQuietly()
    {
        await using var scene = new Scene(TargetHarness.Start(), false, false);
        var term = new byte[24];
        new TermReq(TermReqFatalError.PduSequenceError, 0).Write(term, PduType.H2CTermReq, default);
        scene.Hostile.Send(term);
        Assert.That(scene.Hostile.WaitClosed(TimeSpan.FromSeconds(5)), Is.True);
        scene.AssertOthersUnharmed();
    }
}
