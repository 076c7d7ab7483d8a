using CsiNvme.Target.Subsystems;

namespace CsiNvme.Target.Tests;

/// <summary>
/// What completed I/O reports to the namespace's SMART counters and metrics: commands that arrive together are
/// reported together, once per batch and kind, and nothing is lost or counted twice on the way.
/// </summary>
public sealed class IoAccountingTests
{
    private const int Bs = TargetHarness.BlockSize;

    [Test]
    public async Task PipelinedCommandsAreCountedOncePerBatchWithTheirBytesAndFailures()
    {
        await using var harness = TargetHarness.Start();
        var sink = new RecordingMetrics();
        harness.Namespace.Metrics = sink;
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);

        // 16 reads in one send (one TCP segment), then writes and a failing write in another.
        var reads = new List<byte>();
        for (ushort cid = 0; cid < 16; cid++)
        {
            reads.AddRange(io.BuildCapsule(TestHost.Command((byte)IoOpcode.Read, cid, 1, TestHost.Transport(4096), cid * 8u, 0, TestHost.BlockCountField(4096, Bs))));
        }

        io.Send(reads.ToArray());
        for (ushort cid = 0; cid < 16; cid++)
        {
            Assert.That(io.ReceiveCompletion(cid).Status, Is.EqualTo(NvmeStatus.Success));
        }

        var writes = new List<byte>();
        for (ushort cid = 100; cid < 108; cid++)
        {
            writes.AddRange(io.BuildCapsule(TestHost.Command((byte)IoOpcode.Write, cid, 1, TestHost.InCapsule(4096), cid * 8u, 0, TestHost.BlockCountField(4096, Bs)), new byte[4096]));
        }

        var pastTheEnd = (uint)(TargetHarness.VolumeSize / Bs);
        writes.AddRange(io.BuildCapsule(TestHost.Command((byte)IoOpcode.Write, 200, 1, TestHost.InCapsule(4096), pastTheEnd, 0, TestHost.BlockCountField(4096, Bs)), new byte[4096]));
        io.Send(writes.ToArray());
        for (ushort cid = 100; cid < 108; cid++)
        {
            Assert.That(io.ReceiveCompletion(cid).Status, Is.EqualTo(NvmeStatus.Success));
        }

        Assert.That(io.ReceiveCompletion(200).Status, Is.EqualTo(NvmeStatus.LbaOutOfRange));

        var calls = sink.Calls;
        var readCalls = calls.Where(c => c.Kind == IoKind.Read).ToList();
        var writeCalls = calls.Where(c => c.Kind == IoKind.Write).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(readCalls.Sum(c => c.Commands), Is.EqualTo(16));
            Assert.That(readCalls.Sum(c => c.Bytes), Is.EqualTo(16 * 4096));
            Assert.That(readCalls.Sum(c => c.Failed), Is.Zero);
            Assert.That(readCalls.Max(c => c.Commands), Is.GreaterThan(1), "reads that arrived together are reported together");
            Assert.That(writeCalls.Sum(c => c.Commands), Is.EqualTo(9));
            Assert.That(writeCalls.Sum(c => c.Failed), Is.EqualTo(1));
            Assert.That(writeCalls.Sum(c => c.Bytes), Is.EqualTo(8 * 4096), "a failed write moves no bytes");
            Assert.That(calls.All(c => c.ElapsedTicks >= 0), Is.True);
            Assert.That(harness.Namespace.Counters.ReadCommands, Is.EqualTo(16));
            Assert.That(harness.Namespace.Counters.BytesRead, Is.EqualTo(16 * 4096));
            Assert.That(harness.Namespace.Counters.WriteCommands, Is.EqualTo(8), "SMART counts completed commands only");
            Assert.That(harness.Namespace.Counters.BytesWritten, Is.EqualTo(8 * 4096));
        });
    }

    [Test]
    public async Task AWriteCompletedByR2TIsReportedWithItsOwnLatency()
    {
        await using var harness = TargetHarness.Start();
        var sink = new RecordingMetrics();
        harness.Namespace.Metrics = sink;
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var data = new byte[64 * 1024];

        Assert.That(io.WriteWithR2T(1, 0, data, Bs, 16 * 1024).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Execute(TestHost.Command((byte)IoOpcode.Flush, io.NextCommandId(), 1, default)).Status, Is.EqualTo(NvmeStatus.Success));

        var calls = sink.Calls;
        Assert.That(calls.Where(c => c.Kind == IoKind.Write).Select(c => (c.Commands, c.Failed, c.Bytes)), Is.EqualTo(new[] { (1, 0, 64L * 1024) }));
        Assert.That(calls.Where(c => c.Kind == IoKind.Flush).Select(c => (c.Commands, c.Failed, c.Bytes)), Is.EqualTo(new[] { (1, 0, 0L) }));
        Assert.That(harness.Namespace.Counters.WriteCommands, Is.EqualTo(1));
    }

    private sealed record Call(IoKind Kind, int Commands, int Failed, long Bytes, long ElapsedTicks);

    private sealed class RecordingMetrics : INamespaceMetrics
    {
        private readonly Lock _lock = new();
        private readonly List<Call> _calls = [];

        public IReadOnlyList<Call> Calls
        {
            get
            {
                lock (_lock)
                {
                    return [.. _calls];
                }
            }
        }

        public void Record(IoKind kind, int commands, int failed, long bytes, long elapsedTimestampTicks)
        {
            lock (_lock)
            {
                _calls.Add(new Call(kind, commands, failed, bytes, elapsedTimestampTicks));
            }
        }
    }
}
