using System.Buffers.Binary;
using CsiNvme.Storage;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>
/// Commands on an asynchronous volume (<see cref="IAsyncBlockVolume"/>) complete when the volume reports, from another
/// thread, in whatever order; both connection models (the suite runs under each).
/// </summary>
public sealed class DeferredCompletionTests
{
    private const int Bs = TargetHarness.BlockSize;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static (TargetHarness Harness, DeferredVolume Volume) Start(Action<NvmeTargetOptions>? configure = null)
    {
        DeferredVolume? deferred = null;
        var harness = TargetHarness.Start(configure, memory => deferred = new DeferredVolume(memory));
        return (harness, deferred!);
    }

    [Test]
    public async Task A_write_completes_only_when_the_volume_reports()
    {
        var (harness, volume) = Start();
        await using var _ = harness;
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var data = Pattern(4096, 1);

        io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, 0x1234, 1, TestHost.InCapsule(data.Length), 16, 0, TestHost.BlockCountField(data.Length, Bs)), data);
        Assert.That(volume.WaitHeld(1, Bound), Is.True, "the write reached the volume");
        Assert.That(io.Socket.Poll(200_000, System.Net.Sockets.SelectMode.SelectRead), Is.False, "no completion before the volume reports");

        Assert.That(volume.ReleaseAll(), Is.EqualTo(1));
        var completion = io.ReceiveCompletion(0x1234);
        Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Read(1, 16, data.Length, Bs).Data, Is.EqualTo(data));
    }

    [Test]
    public async Task Many_writes_in_flight_complete_once_each_when_reported_out_of_order()
    {
        var (harness, volume) = Start();
        await using var _ = harness;
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        const int count = 100;
        for (var i = 0; i < count; i++)
        {
            var data = Pattern(4096, 100 + i);
            io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, (ushort)(0x100 + i), 1, TestHost.InCapsule(data.Length), (uint)(i * 8), 0, TestHost.BlockCountField(data.Length, Bs)), data);
        }

        Assert.That(volume.WaitHeld(count, Bound), Is.True);
        volume.ReleaseAll();
        var seen = new HashSet<ushort>();
        for (var i = 0; i < count; i++)
        {
            var pdu = io.ReceivePdu();
            Assert.That(pdu.Type, Is.EqualTo(PduType.CapsuleResp));
            var cqe = pdu.AsCompletion();
            Assert.That(cqe.Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(seen.Add(cqe.CommandId), Is.True, $"command {cqe.CommandId:X} completed twice");
        }

        Assert.That(seen, Is.EquivalentTo(Enumerable.Range(0x100, count).Select(i => (ushort)i)));
        Assert.That(io.Read(1, 0, 4096, Bs).Status, Is.EqualTo(NvmeStatus.Success), "the stream is still in sync after the burst");
    }

    [Test]
    public async Task Reports_from_many_threads_while_the_host_keeps_sending()
    {
        var (harness, volume) = Start();
        await using var _ = harness;
        volume.AutoRelease = true;
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        const int rounds = 50;
        const int depth = 32;
        for (var round = 0; round < rounds; round++)
        {
            for (var i = 0; i < depth; i++)
            {
                var data = Pattern(Bs, round * depth + i);
                io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, (ushort)i, 1, TestHost.InCapsule(data.Length), (uint)i, 0, 0), data);
            }

            var seen = new HashSet<ushort>();
            for (var i = 0; i < depth; i++)
            {
                var cqe = io.ReceivePdu().AsCompletion();
                Assert.That(cqe.Status, Is.EqualTo(NvmeStatus.Success));
                Assert.That(seen.Add(cqe.CommandId), Is.True);
            }
        }

        Assert.That(volume.Started, Is.EqualTo(rounds * depth));
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task An_R2T_write_starts_each_chunk_and_completes_after_the_last_report(bool fua)
    {
        var (harness, volume) = Start(o => o.MaxH2CDataSize = 16 * 1024);
        await using var _ = harness;
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var data = Pattern(64 * 1024, 7);
        volume.AutoRelease = true;

        var write = io.WriteWithR2T(1, 4096, data, Bs, 16 * 1024, fua, commandId: 0x2222);

        Assert.That(write.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(volume.Started, Is.EqualTo(4), "one start per 16 KiB chunk");
        Assert.That(io.Read(1, 4096, data.Length, Bs).Data, Is.EqualTo(data));
    }

    [Test]
    public async Task Flush_write_zeroes_and_deallocate_wait_for_every_part()
    {
        var (harness, volume) = Start();
        await using var _ = harness;
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);

        io.SendCapsule(TestHost.Command((byte)IoOpcode.Flush, 0x10, 1, default));
        io.SendCapsule(TestHost.Command((byte)IoOpcode.WriteZeroes, 0x11, 1, default, 0, 0, 7));
        var ranges = new byte[3 * 16];
        for (var i = 0; i < 3; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(ranges.AsSpan(i * 16 + 4), 8);
            BinaryPrimitives.WriteUInt64LittleEndian(ranges.AsSpan(i * 16 + 8), (ulong)(1000 + i * 100));
        }

        io.SendCapsule(TestHost.Command((byte)IoOpcode.DatasetManagement, 0x12, 1, TestHost.InCapsule(ranges.Length), 2, 1u << 2), ranges);
        Assert.That(volume.WaitHeld(5, Bound), Is.True, "flush, write zeroes and three deallocated ranges");
        Assert.That(io.Socket.Poll(200_000, System.Net.Sockets.SelectMode.SelectRead), Is.False);

        volume.ReleaseAll();
        var statuses = Enumerable.Range(0, 3).Select(_ => io.ReceivePdu().AsCompletion()).ToDictionary(c => c.CommandId, c => c.Status);
        Assert.That(statuses.Keys, Is.EquivalentTo(new ushort[] { 0x10, 0x11, 0x12 }));
        Assert.That(statuses.Values, Is.All.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task A_failed_report_fails_the_command_and_a_path_failure_is_a_path_status()
    {
        var (harness, volume) = Start();
        await using var _ = harness;
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        volume.AutoRelease = true;

        volume.NextOutcome = StorageStatus.MediaError;
        Assert.That(io.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.WriteFault));

        volume.NextOutcome = StorageStatus.PathUnavailable;
        var status = io.WriteInCapsule(1, 0, new byte[Bs], Bs).Status;
        Assert.That(status, Is.EqualTo(NvmeStatus.AsymmetricAccessInaccessible));
        Assert.That(status.Type, Is.EqualTo(StatusCodeType.PathRelated));
        Assert.That(status.DoNotRetry, Is.False, "the host may retry it on another path");

        volume.NextOutcome = StorageStatus.Success;
        Assert.That(io.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task A_closed_connection_is_drained_only_when_its_deferred_commands_finished()
    {
        var (harness, volume) = Start();
        await using var _ = harness;
        using var admin = harness.ConnectAdmin();
        var io = harness.ConnectIo(admin, 1);
        for (var i = 0; i < 4; i++)
        {
            io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, (ushort)i, 1, TestHost.InCapsule(Bs), (uint)i, 0, 0), new byte[Bs]);
        }

        Assert.That(volume.WaitHeld(4, Bound), Is.True);
        var connection = harness.Target.Connections.Single(c => c.QueueId == 1);
        var drained = connection.WhenDrained;
        io.Dispose();
        Assert.That(harness.WaitForConnectionCount(1, Bound), Is.True, "the I/O queue's connection closed");
        Assert.That(connection.DeferredOutstanding, Is.EqualTo(4));
        Assert.That(drained.IsCompleted, Is.False, "four writes may still land");

        volume.ReleaseAll();
        Assert.That(await Task.WhenAny(drained, Task.Delay(Bound)), Is.SameAs(drained));
        Assert.That(connection.DeferredOutstanding, Is.Zero);
    }
}
