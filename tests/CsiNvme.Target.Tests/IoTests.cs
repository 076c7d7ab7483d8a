using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>NVM I/O commands over NVMe/TCP (NVM command set 1.0, 3.2; TCP 1.0, 3.3 for the data transfers).</summary>
public sealed class IoTests
{
    private const int Bs = TargetHarness.BlockSize;

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static byte[] VolumeBytes(TargetHarness harness, long offset, int length)
    {
        var bytes = new byte[length];
        harness.Volume.Read(offset, bytes);
        return bytes;
    }

    [Test]
    public async Task InCapsuleWriteThenReadBackEchoesTheCommandIds()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var data = Pattern(4096, 1);

        var write = io.WriteInCapsule(1, 8, data, Bs, commandId: 0xC005);
        Assert.That(write.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(write.Entry.CommandId, Is.EqualTo((ushort)0xC005));
        Assert.That(write.Entry.SubmissionQueueId, Is.EqualTo((ushort)1));
        Assert.That(VolumeBytes(harness, 8 * Bs, 4096), Is.EqualTo(data), "the bytes reached the volume");

        var read = io.Read(1, 8, 4096, Bs, commandId: 0xFFFE);
        Assert.That(read.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(read.Entry.CommandId, Is.EqualTo((ushort)0xFFFE));
        Assert.That(read.DataPdus, Is.EqualTo(1), "one C2HData PDU with LAST_PDU");
        Assert.That(read.Data, Is.EqualTo(data));
    }

    [Test]
    public async Task LargestInCapsuleWriteNeedsNoR2T()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var data = Pattern(harness.Target.Options.InCapsuleDataSize, 2);
        Assert.That(io.WriteInCapsule(1, 100, data, Bs).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Read(1, 100, data.Length, Bs).Data, Is.EqualTo(data));
    }

    [TestCase(16 * 1024)]
    [TestCase(4096)]
    public async Task WriteBeyondTheCapsuleMovesByR2TInChunks(int chunk)
    {
        await using var harness = TargetHarness.Start(o => o.MaxH2CDataSize = 16 * 1024);
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        Assert.That(io.Negotiated.MaxH2CData, Is.EqualTo(16u * 1024));
        var data = Pattern(128 * 1024, 3);

        var write = io.WriteWithR2T(1, 2048, data, Bs, chunk, commandId: 0x8123);
        Assert.That(write.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(write.Entry.CommandId, Is.EqualTo((ushort)0x8123));
        Assert.That(VolumeBytes(harness, 2048L * Bs, data.Length), Is.EqualTo(data));
        Assert.That(io.Read(1, 2048, data.Length, Bs).Data, Is.EqualTo(data));
    }

    [Test]
    public async Task SeveralR2TTransfersInterleaveByTransferTag()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var first = Pattern(64 * 1024, 4);
        var second = Pattern(64 * 1024, 5);
        io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, 0x0101, 1, TestHost.Transport(first.Length), 0, 0, TestHost.BlockCountField(first.Length, Bs)));
        io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, 0x0102, 1, TestHost.Transport(second.Length), 1024, 0, TestHost.BlockCountField(second.Length, Bs)));
        var r2tA = io.ReceivePdu().AsDataTransfer();
        var r2tB = io.ReceivePdu().AsDataTransfer();
        Assert.That(r2tA.CommandId, Is.EqualTo((ushort)0x0101));
        Assert.That(r2tB.CommandId, Is.EqualTo((ushort)0x0102));
        Assert.That(r2tA.TransferTag, Is.Not.EqualTo(r2tB.TransferTag));

        // Second command's data first, halves interleaved: the target must route by TTAG.
        io.Send(io.BuildH2CData(0x0102, r2tB.TransferTag, 0, second.AsSpan(0, 32 * 1024), last: false));
        io.Send(io.BuildH2CData(0x0101, r2tA.TransferTag, 0, first.AsSpan(0, 32 * 1024), last: false));
        io.Send(io.BuildH2CData(0x0102, r2tB.TransferTag, 32 * 1024, second.AsSpan(32 * 1024), last: true));
        Assert.That(io.ReceiveCompletion(0x0102).Status, Is.EqualTo(NvmeStatus.Success));
        io.Send(io.BuildH2CData(0x0101, r2tA.TransferTag, 32 * 1024, first.AsSpan(32 * 1024), last: true));
        Assert.That(io.ReceiveCompletion(0x0101).Status, Is.EqualTo(NvmeStatus.Success));

        Assert.That(io.Read(1, 0, first.Length, Bs).Data, Is.EqualTo(first));
        Assert.That(io.Read(1, 1024, second.Length, Bs).Data, Is.EqualTo(second));
    }

    [Test]
    public async Task ForceUnitAccessWritesComplete()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var small = Pattern(4096, 6);
        var large = Pattern(64 * 1024, 7);
        Assert.That(io.WriteInCapsule(1, 0, small, Bs, fua: true).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.WriteWithR2T(1, 64, large, Bs, 32 * 1024, fua: true).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Read(1, 0, 4096, Bs).Data, Is.EqualTo(small));
        Assert.That(io.Read(1, 64, large.Length, Bs).Data, Is.EqualTo(large));
    }

    [Test]
    public async Task FlushOneNamespaceOrAll()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        Assert.That(io.Execute(TestHost.Command((byte)IoOpcode.Flush, io.NextCommandId(), 1, default)).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Execute(TestHost.Command((byte)IoOpcode.Flush, io.NextCommandId(), 0xFFFF_FFFF, default)).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Execute(TestHost.Command((byte)IoOpcode.Flush, io.NextCommandId(), 9, default)).Status, Is.EqualTo(NvmeStatus.InvalidNamespaceOrFormat));
    }

    [Test]
    public async Task WriteZeroesClearsOnlyItsRange()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var data = Pattern(8 * Bs, 8);
        io.WriteInCapsule(1, 10, data, Bs);

        var zero = io.Execute(TestHost.Command((byte)IoOpcode.WriteZeroes, io.NextCommandId(), 1, default, 12, 0, 3));
        Assert.That(zero.Status, Is.EqualTo(NvmeStatus.Success));
        var expected = (byte[])data.Clone();
        Array.Clear(expected, 2 * Bs, 4 * Bs);
        Assert.That(io.Read(1, 10, 8 * Bs, Bs).Data, Is.EqualTo(expected));

        var beyond = io.Execute(TestHost.Command((byte)IoOpcode.WriteZeroes, io.NextCommandId(), 1, default, (uint)(TargetHarness.VolumeSize / Bs - 1), 0, 1));
        Assert.That(beyond.Status, Is.EqualTo(NvmeStatus.LbaOutOfRange));
    }

    /// <summary>DSM ranges (NVM command set 1.0, Figure 39): attributes@0, blocks@4, SLBA@8.</summary>
    private static byte[] DsmRanges(int bufferLength, params (ulong Lba, uint Blocks)[] ranges)
    {
        var buffer = new byte[bufferLength];
        Array.Fill(buffer, (byte)0xEE);
        for (var i = 0; i < ranges.Length; i++)
        {
            var range = buffer.AsSpan(i * 16, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(range, 0);
            BinaryPrimitives.WriteUInt32LittleEndian(range[4..], ranges[i].Blocks);
            BinaryPrimitives.WriteUInt64LittleEndian(range[8..], ranges[i].Lba);
        }

        return buffer;
    }

    [Test]
    public async Task DeallocatedRangesReadAsZeroesAndOnlyNrRangesCount()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var data = Pattern(16 * Bs, 9);
        io.WriteInCapsule(1, 0, data, Bs);

        // A 4 KiB buffer like newer Linux hosts send, with bytes after the NR ranges that are not ranges at all.
        var ranges = DsmRanges(4096, (1, 2), (8, 4));
        var dsm = io.Execute(TestHost.Command((byte)IoOpcode.DatasetManagement, io.NextCommandId(), 1, TestHost.InCapsule(ranges.Length), 1, 1u << 2), ranges);
        Assert.That(dsm.Status, Is.EqualTo(NvmeStatus.Success));

        var expected = (byte[])data.Clone();
        Array.Clear(expected, 1 * Bs, 2 * Bs);
        Array.Clear(expected, 8 * Bs, 4 * Bs);
        Assert.That(io.Read(1, 0, 16 * Bs, Bs).Data, Is.EqualTo(expected));
    }

    [Test]
    public async Task DeallocateRangesCanArriveByR2T()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var data = Pattern(8 * Bs, 10);
        io.WriteInCapsule(1, 0, data, Bs);
        var ranges = DsmRanges(4096, (4, 4));

        const ushort cid = 0x0777;
        io.SendCapsule(TestHost.Command((byte)IoOpcode.DatasetManagement, cid, 1, TestHost.Transport(ranges.Length), 0, 1u << 2));
        var r2t = io.ReceivePdu();
        Assert.That(r2t.Type, Is.EqualTo(PduType.R2T));
        var request = r2t.AsDataTransfer();
        Assert.That(request.Length, Is.EqualTo((uint)ranges.Length));
        io.Send(io.BuildH2CData(cid, request.TransferTag, 0, ranges, last: true));
        Assert.That(io.ReceiveCompletion(cid).Status, Is.EqualTo(NvmeStatus.Success));

        var expected = (byte[])data.Clone();
        Array.Clear(expected, 4 * Bs, 4 * Bs);
        Assert.That(io.Read(1, 0, 8 * Bs, Bs).Data, Is.EqualTo(expected));
    }

    [Test]
    public async Task LbaOutOfRangeIsRefused()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        const ulong blocks = TargetHarness.VolumeSize / Bs;

        var past = io.Read(1, blocks, Bs, Bs);
        Assert.That(past.Status.Type, Is.EqualTo(StatusCodeType.Generic));
        Assert.That(past.Status.Code, Is.EqualTo(0x80));
        Assert.That(past.DataPdus, Is.Zero, "no data for a failed read");
        Assert.That(io.Read(1, blocks - 1, 2 * Bs, Bs).Status.Code, Is.EqualTo(0x80), "straddling the end");
        Assert.That(io.WriteInCapsule(1, blocks, new byte[Bs], Bs).Status.Code, Is.EqualTo(0x80));
        Assert.That(io.WriteWithR2T(1, blocks - 8, new byte[64 * 1024], Bs, 64 * 1024).Status.Code, Is.EqualTo(0x80), "refused before any R2T");
        Assert.That(io.Read(1, blocks - 1, Bs, Bs).Status, Is.EqualTo(NvmeStatus.Success), "the last block is fine");
    }

    [Test]
    public async Task UnknownNamespaceIsRefused()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        Assert.That(io.Read(1, 0, Bs, Bs).Status, Is.EqualTo(NvmeStatus.Success));
        foreach (var nsid in new uint[] { 0, 2, 0xFFFF_FFFF })
        {
            Assert.That(io.Read(nsid, 0, Bs, Bs).Status.Code, Is.EqualTo(0x0B), $"read NSID {nsid:X}");
            Assert.That(io.WriteInCapsule(nsid, 0, new byte[Bs], Bs).Status.Code, Is.EqualTo(0x0B), $"write NSID {nsid:X}");
        }
    }

    [Test]
    public async Task TransfersBeyondMdtsAndShortSglsAreRefused()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var mdts = harness.Target.Options.MaxDataTransferSize;
        Assert.That(io.Read(1, 0, mdts * 2, Bs).Status, Is.EqualTo(NvmeStatus.InvalidField));

        var shortSgl = io.Execute(TestHost.Command((byte)IoOpcode.Read, io.NextCommandId(), 1, TestHost.Transport(Bs), 0, 0, TestHost.BlockCountField(2 * Bs, Bs)));
        Assert.That(shortSgl.Status.Code, Is.EqualTo(0x0F), "Data SGL Length Invalid");
        Assert.That(io.Execute(TestHost.Command(0x7E, io.NextCommandId(), 1, default)).Status, Is.EqualTo(NvmeStatus.InvalidOpcode));
    }

    [Test]
    public async Task PipelinedCommandsAllComplete()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        const int depth = 64;
        var batch = new MemoryStream();
        for (var i = 0; i < depth; i++)
        {
            var data = Pattern(4096, 100 + i);
            batch.Write(io.BuildCapsule(TestHost.Command((byte)IoOpcode.Write, (ushort)(0x1000 + i), 1, TestHost.InCapsule(4096), (uint)(i * 8), 0, 7), data));
        }

        io.Send(batch.ToArray());
        for (var i = 0; i < depth; i++)
        {
            Assert.That(io.ReceiveCompletion((ushort)(0x1000 + i)).Status, Is.EqualTo(NvmeStatus.Success));
        }

        for (var i = 0; i < depth; i++)
        {
            Assert.That(io.Read(1, (ulong)(i * 8), 4096, Bs).Data, Is.EqualTo(Pattern(4096, 100 + i)));
        }
    }

    [Test]
    public async Task ABatchOfCommandsAtAndPastTheEdgesCompletesAsEachWouldAlone()
    {
        // The target hints a batch's reads and writes to the volume before validating them; whatever they address,
        // each command must still complete exactly as it would on its own.
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        const ulong lastLba = TargetHarness.VolumeSize / Bs - 1;
        var first = Pattern(4096, 1);
        var last = Pattern(Bs, 2);
        var batch = new MemoryStream();
        void Add(byte opcode, ushort id, uint nsid, ulong lba, int bytes, bool inCapsule, byte[]? data = null) =>
            batch.Write(io.BuildCapsule(
                TestHost.Command(opcode, id, nsid, inCapsule ? TestHost.InCapsule(bytes) : TestHost.Transport(bytes), (uint)lba, (uint)(lba >> 32), TestHost.BlockCountField(bytes, Bs)),
                data));

        Add((byte)IoOpcode.Write, 0x2001, 1, 0, 4096, inCapsule: true, first);
        Add((byte)IoOpcode.Write, 0x2002, 1, lastLba, Bs, inCapsule: true, last);
        Add((byte)IoOpcode.Read, 0x2003, 1, 0, 4096, inCapsule: false);
        Add((byte)IoOpcode.Read, 0x2004, 1, lastLba, Bs, inCapsule: false);
        Add((byte)IoOpcode.Read, 0x2005, 1, lastLba, 2 * Bs, inCapsule: false);
        Add((byte)IoOpcode.Read, 0x2006, 1, ulong.MaxValue - 3, 4096, inCapsule: false);
        Add((byte)IoOpcode.Write, 0x2007, 1, lastLba, 2 * Bs, inCapsule: true, Pattern(2 * Bs, 3));
        Add((byte)IoOpcode.Read, 0x2008, 99, 0, 4096, inCapsule: false);
        Add((byte)IoOpcode.Read, 0x2009, 1, 0, 4096, inCapsule: false);
        io.Send(batch.ToArray());

        Assert.Multiple(() =>
        {
            Assert.That(io.ReceiveCompletion(0x2001).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(io.ReceiveCompletion(0x2002).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(io.ReceiveCompletion(0x2003).Data, Is.EqualTo(first), "a read after a write in the same batch sees it");
            Assert.That(io.ReceiveCompletion(0x2004).Data, Is.EqualTo(last));
            Assert.That(io.ReceiveCompletion(0x2005).Status, Is.EqualTo(NvmeStatus.LbaOutOfRange));
            Assert.That(io.ReceiveCompletion(0x2006).Status, Is.EqualTo(NvmeStatus.LbaOutOfRange));
            Assert.That(io.ReceiveCompletion(0x2007).Status, Is.EqualTo(NvmeStatus.LbaOutOfRange));
            Assert.That(io.ReceiveCompletion(0x2008).Status, Is.EqualTo(NvmeStatus.InvalidNamespaceOrFormat));
            Assert.That(io.ReceiveCompletion(0x2009).Data, Is.EqualTo(first));
        });
    }

    [Test]
    public async Task TwoControllersWithSeveralQueuesShareTheNamespace()
    {
        await using var harness = TargetHarness.Start();
        var second = NvmeHostIdentity.Create();
        harness.Subsystem.AllowHost(second.Nqn);
        using var adminA = harness.ConnectAdmin();
        using var adminB = harness.ConnectAdmin(host: second);
        Assert.That(adminA.ControllerId, Is.Not.EqualTo(adminB.ControllerId));
        var queues = new List<TestHost>();
        try
        {
            for (ushort q = 1; q <= 2; q++)
            {
                queues.Add(harness.ConnectIo(adminA, q));
                queues.Add(harness.ConnectIo(adminB, q, host: second));
            }

            const int commands = 100;
            const int size = 8192;
            var workers = queues.Select((queue, index) => Task.Run(() =>
            {
                var region = (ulong)index * commands * (size / Bs);
                for (var i = 0; i < commands; i++)
                {
                    var lba = region + (ulong)(i * (size / Bs));
                    var data = Pattern(size, index * 1000 + i);
                    var write = queue.WriteInCapsule(1, lba, data, Bs);
                    if (!write.Status.IsSuccess)
                    {
                        return $"queue {index} write {i}: {write.Status}";
                    }

                    var read = queue.Read(1, lba, size, Bs);
                    if (!read.Status.IsSuccess || !read.Data.AsSpan().SequenceEqual(data))
                    {
                        return $"queue {index} read {i}: {read.Status}";
                    }
                }

                return null;
            })).ToArray();
            var failures = await Task.WhenAll(workers);
            Assert.That(failures.Where(f => f is not null), Is.Empty);

            // Every region is visible through the other controller's queues too.
            for (var index = 0; index < queues.Count; index++)
            {
                var reader = queues[(index + 1) % queues.Count];
                var region = (ulong)index * commands * (size / Bs);
                var lba = region + (ulong)((commands - 1) * (size / Bs));
                Assert.That(reader.Read(1, lba, size, Bs).Data, Is.EqualTo(Pattern(size, index * 1000 + commands - 1)));
            }
        }
        finally
        {
            foreach (var queue in queues)
            {
                queue.Dispose();
            }
        }
    }
}
