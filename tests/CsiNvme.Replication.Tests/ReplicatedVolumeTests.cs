using System.Net;
using CsiNvme.Host;
using CsiNvme.Target;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace CsiNvme.Replication.Tests;

/// <summary>
/// Primary-copy replication over real NVMe/TCP links to two replica nodes: changes land on every copy in the same
/// order, a failed replica is recorded out of sync before the change that skipped it completes, a delta rebuild brings
/// it back, epochs fence an old primary.
/// </summary>
public sealed class ReplicatedVolumeTests
{
    private const int Bs = ReplicationFixture.BlockSize;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Test]
    public async Task A_write_is_on_every_replica_when_it_completes()
    {
        await using var fixture = await ReplicationFixture.StartAsync();
        var log = new CompletionLog();
        for (var i = 0; i < 20; i++)
        {
            var data = Pattern(4096 * (1 + (i % 3)), i);
            var offset = (long)i * 64 * 1024;
            var status = await log.Run((ulong)i, (c, cookie) => fixture.Volume.StartWrite(offset, data, false, c, cookie));
            Assert.That(status, Is.EqualTo(StorageStatus.Success));
            foreach (var node in new[] { fixture.NodeB, fixture.NodeC })
            {
                var copy = new byte[data.Length];
                node.Copy.Read(offset, copy);
                Assert.That(copy, Is.EqualTo(data), $"write {i} on {node.Name} when it completed");
            }
        }

        Assert.That(fixture.Volume.Replicas.Select(r => r.WritesReplicated), Is.All.EqualTo(20));
    }

    [Test]
    public async Task Concurrent_overlapping_changes_from_a_real_host_leave_identical_copies()
    {
        await using var fixture = await ReplicationFixture.StartAsync();
        // The host-facing side: a target exporting the replicated volume, driven by our NVMe/TCP host on two queues at
        // depth, with writes small and large (R2T), write zeroes, deallocate and flushes over a small hot area.
        var options = new NvmeTargetOptions();
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, 0));
        await using var target = new NvmeTarget(options, NullLoggerFactory.Instance);
        var host = NvmeHostIdentity.Create();
        var subsystem = target.AddSubsystem(new Subsystem("nqn.2026-11.io.csinvme:volume:test", "sn-front", allowAnyHost: false, [host.Nqn]));
        subsystem.AddNamespace(new TargetNamespace(1, fixture.Volume, Guid.NewGuid()));
        var endpoint = target.Start()[0];
        await using var controller = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id, IoQueueCount = 2, IoQueueSize = 64 })
            .ConnectAsync(endpoint, subsystem.Nqn);
        var ns = controller.FindNamespace(1)!;

        async Task Worker(IoQueue queue, int seed)
        {
            var random = new Random(seed);
            var ranges = new byte[16];
            for (var i = 0; i < 400; i++)
            {
                var blocks = random.Next(10) switch
                {
                    0 => 256,
                    1 => 64,
                    _ => random.Next(1, 17),
                };
                var lba = (ulong)random.Next(0, 4096 - blocks);
                NvmeCompletion completion;
                switch (random.Next(20))
                {
                    case 0:
                        completion = await queue.WriteZeroesAsync(ns, lba, (uint)blocks);
                        break;
                    case 1:
                        IoQueue.WriteRange(ranges, lba, (uint)blocks);
                        completion = await queue.DatasetManagementAsync(ns, ranges);
                        break;
                    case 2:
                        completion = await queue.FlushAsync(ns);
                        break;
                    default:
                        completion = await queue.WriteAsync(ns, lba, Pattern(blocks * Bs, random.Next()), forceUnitAccess: random.Next(8) == 0);
                        break;
                }

                Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success));
            }
        }

        var workers = new List<Task>();
        for (var q = 0; q < 2; q++)
        {
            for (var w = 0; w < 8; w++)
            {
                workers.Add(Worker(controller.IoQueues[q], q * 100 + w));
            }
        }

        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromMinutes(5));
        var primary = fixture.LocalContents();
        Assert.That(fixture.NodeB.Contents().AsSpan().SequenceEqual(primary), Is.True, "node-b equals the primary");
        Assert.That(fixture.NodeC.Contents().AsSpan().SequenceEqual(primary), Is.True, "node-c equals the primary");
        Assert.That(fixture.Volume.Replicas.Select(r => r.Mode), Is.All.EqualTo(ReplicaMode.InSync));
    }

    [Test]
    public async Task A_failed_replica_is_recorded_before_the_write_that_skipped_it_completes_and_io_goes_on()
    {
        await using var fixture = await ReplicationFixture.StartAsync();
        fixture.Sink.Delay = TimeSpan.FromMilliseconds(300);
        var log = new CompletionLog();
        Assert.That(await log.Run(1, (c, k) => fixture.Volume.StartWrite(0, Pattern(4096, 1), false, c, k)), Is.EqualTo(StorageStatus.Success));
        Assert.That(await log.Run(3, (c, k) => fixture.Volume.StartFlush(c, k)), Is.EqualTo(StorageStatus.Success));
        Assert.That(await log.Run(4, (c, k) => fixture.Volume.StartWrite(2L << 20, Pattern(4096, 4), false, c, k)), Is.EqualTo(StorageStatus.Success));

        await fixture.NodeC.StopAsync();
        var write = log.Run(2, (c, k) => fixture.Volume.StartWrite(1 << 20, Pattern(4096, 2), false, c, k));
        Assert.That(await write, Is.EqualTo(StorageStatus.Success), "the primary and node-b still have it");
        var completedAt = DateTime.UtcNow;
        Assert.That(fixture.Sink.Marks.Select(m => m.Node), Is.EqualTo(new[] { "node-c" }), "recorded once");
        Assert.That(fixture.Sink.Marks.Single().DurableAt, Is.LessThanOrEqualTo(completedAt), "recorded before the write completed");

        for (var i = 0; i < 10; i++)
        {
            Assert.That(await log.Run((ulong)(10 + i), (c, k) => fixture.Volume.StartWrite((3L << 20) + i * 4096, Pattern(4096, i), false, c, k)), Is.EqualTo(StorageStatus.Success));
        }

        var c = fixture.Volume.Replicas.Single(r => r.Node == "node-c");
        Assert.That(c.Mode, Is.EqualTo(ReplicaMode.OutOfSync));
        var dirty = fixture.Volume.DirtyRegions("node-c");
        Assert.That(dirty.IsMarked(1), Is.True, "the region of the write that failed on it");
        Assert.That(dirty.IsMarked(3), Is.True, "the region written while it was out");
        Assert.That(dirty.IsMarked(2), Is.True, "written before it failed but never flushed there: a power failure could have lost it");
        Assert.That(dirty.IsMarked(0), Is.False, "written and flushed before it failed");
        Assert.That(dirty.MarkedCount, Is.EqualTo(3));
        Assert.That(fixture.Sink.Marks, Has.Count.EqualTo(1));
    }

    [Test]
    public async Task Without_an_out_of_sync_record_the_write_fails_with_a_path_status()
    {
        await using var fixture = await ReplicationFixture.StartAsync(options: new ReplicationOptions { RecordTimeout = TimeSpan.FromSeconds(1) });
        fixture.Sink.Fail = true;
        await fixture.NodeB.StopAsync();
        var log = new CompletionLog();
        Assert.That(await log.Run(1, (c, k) => fixture.Volume.StartWrite(0, Pattern(4096, 1), false, c, k)), Is.EqualTo(StorageStatus.PathUnavailable));
    }

    [Test]
    public async Task A_delta_rebuild_copies_only_the_regions_written_while_the_replica_was_out_and_verifies_them()
    {
        await using var fixture = await ReplicationFixture.StartAsync();
        var log = new CompletionLog();
        ulong cookie = 0;
        Task<StorageStatus> Write(long offset, int seed) => log.Run(++cookie, (c, k) => fixture.Volume.StartWrite(offset, Pattern(8192, seed), false, c, k));

        for (var i = 0; i < 32; i++)
        {
            Assert.That(await Write(i * (1L << 20), i), Is.EqualTo(StorageStatus.Success));
        }

        Assert.That(await log.Run(++cookie, (c, k) => fixture.Volume.StartFlush(c, k)), Is.EqualTo(StorageStatus.Success));
        await fixture.NodeC.StopAsync();
        for (var i = 0; i < 5; i++)
        {
            Assert.That(await Write((i * 3 + 1) * (1L << 20) + 4096, 100 + i), Is.EqualTo(StorageStatus.Success));
        }

        Assert.That(fixture.Volume.DirtyRegions("node-c").MarkedCount, Is.EqualTo(5));
        fixture.NodeC.Start();
        fixture.Volume.StartRebuilding("node-c", await fixture.NodeC.LinkAsync(epoch: 1));

        // I/O goes on during the rebuild, in the dirty regions too.
        using var stop = new CancellationTokenSource();
        var background = Task.Run(async () =>
        {
            var i = 0;
            while (!stop.IsCancellationRequested)
            {
                Assert.That(await Write((i % 16) * (1L << 20) + 512, 1000 + i), Is.EqualTo(StorageStatus.Success));
                i++;
            }
        });
        var job = new RebuildJob(fixture.Volume, "node-c", new RebuildOptions { BytesPerSecond = 0 }, NullLogger<RebuildJob>.Instance);
        var result = await job.RunAsync().WaitAsync(Bound);
        stop.Cancel();
        await background.WaitAsync(Bound);

        Assert.That(result.Succeeded, Is.True, result.Error);
        Assert.That(result.RegionsCopied, Is.EqualTo(5), "a delta rebuild");
        Assert.That(result.BytesCopied, Is.EqualTo(5L << 20));
        fixture.Volume.MarkInSync("node-c");
        Assert.That(fixture.NodeC.Contents().AsSpan().SequenceEqual(fixture.LocalContents()), Is.True);
        Assert.That(fixture.NodeB.Contents().AsSpan().SequenceEqual(fixture.LocalContents()), Is.True);
    }

    [Test]
    public async Task A_full_rebuild_fills_a_new_empty_replica()
    {
        await using var fixture = await ReplicationFixture.StartAsync();
        var log = new CompletionLog();
        for (var i = 0; i < 8; i++)
        {
            Assert.That(await log.Run((ulong)i, (c, k) => fixture.Volume.StartWrite(i * (3L << 20), Pattern(65536, i), false, c, k)), Is.EqualTo(StorageStatus.Success));
        }

        await using var nodeD = new ReplicaNode("node-d", ReplicationFixture.Size, Bs);
        nodeD.Start();
        fixture.Volume.AddReplica("node-d", ReplicaMode.OutOfSync, null);
        fixture.Volume.StartRebuilding("node-d", await nodeD.LinkAsync(epoch: 1));
        var result = await new RebuildJob(fixture.Volume, "node-d", new RebuildOptions { BytesPerSecond = 0 }, NullLogger<RebuildJob>.Instance).RunAsync().WaitAsync(Bound);
        Assert.That(result.Succeeded, Is.True, result.Error);
        Assert.That(result.BytesCopied, Is.EqualTo(ReplicationFixture.Size));
        Assert.That(nodeD.Contents().AsSpan().SequenceEqual(fixture.LocalContents()), Is.True);
        await fixture.Volume.RemoveReplicaAsync("node-d");
    }

    [Test]
    public async Task A_primary_without_a_valid_lease_starts_and_completes_nothing()
    {
        await using var fixture = await ReplicationFixture.StartAsync();
        fixture.Lease.Valid = false;
        var log = new CompletionLog();
        Assert.That(await log.Run(1, (c, k) => fixture.Volume.StartWrite(0, Pattern(4096, 1), false, c, k)), Is.EqualTo(StorageStatus.PathUnavailable));
        Assert.That(fixture.Volume.Read(0, new byte[Bs]), Is.EqualTo(StorageStatus.PathUnavailable));
        Assert.That(fixture.LocalContents().Take(4096), Is.All.Zero, "nothing applied");
    }

    [Test]
    public async Task A_higher_epoch_fences_the_old_primary_and_an_old_epoch_is_refused()
    {
        await using var fixture = await ReplicationFixture.StartAsync(epoch: 7);
        var log = new CompletionLog();
        Assert.That(await log.Run(1, (c, k) => fixture.Volume.StartWrite(0, Pattern(4096, 1), false, c, k)), Is.EqualTo(StorageStatus.Success));

        // A new primary takes node-b over with epoch 8: the old primary's link there is torn down.
        await using var newPrimaryLink = await fixture.NodeB.LinkAsync(epoch: 8);
        var write = await log.Run(2, (c, k) => fixture.Volume.StartWrite(4096, Pattern(4096, 2), false, c, k));
        Assert.That(fixture.Volume.Replicas.Single(r => r.Node == "node-b").Mode, Is.EqualTo(ReplicaMode.OutOfSync));
        var onB = new byte[4096];
        fixture.NodeB.Copy.Read(4096, onB);
        Assert.That(onB, Is.All.Zero, "node-b took nothing from the fenced primary");
        Assert.That(write, Is.EqualTo(StorageStatus.Success), "the old primary still has its lease in this test: node-c and its own copy have it");

        await Assert.ThrowsAsync<ReplicaFencedException>(async () => await fixture.NodeB.LinkAsync(epoch: 7));
    }

    [Test]
    public async Task Pause_waits_for_changes_in_flight_and_holds_new_ones_until_resume()
    {
        await using var fixture = await ReplicationFixture.StartAsync();
        var log = new CompletionLog();
        var first = log.Run(1, (c, k) => fixture.Volume.StartWrite(0, Pattern(256 * 1024, 1), false, c, k));
        await fixture.Volume.PauseAsync().WaitAsync(Bound);
        Assert.That(await first, Is.EqualTo(StorageStatus.Success), "paused only once the write in flight completed");

        var held = log.Run(2, (c, k) => fixture.Volume.StartWrite(1 << 20, Pattern(4096, 2), false, c, k));
        await Task.Delay(200);
        Assert.That(held.IsCompleted, Is.False);
        Assert.That(fixture.LocalContents().AsSpan(1 << 20, 4096).ToArray(), Is.All.Zero, "held, not applied");

        fixture.Volume.Resume();
        Assert.That(await held, Is.EqualTo(StorageStatus.Success));
        Assert.That(fixture.NodeC.Contents().AsSpan().SequenceEqual(fixture.LocalContents()), Is.True);
    }

    [Test]
    public async Task The_replica_side_remembers_what_changed_since_its_last_flush()
    {
        await using var fixture = await ReplicationFixture.StartAsync();
        var log = new CompletionLog();
        Assert.That(await log.Run(1, (c, k) => fixture.Volume.StartWrite(0, Pattern(4096, 1), false, c, k)), Is.EqualTo(StorageStatus.Success));
        Assert.That(await log.Run(2, (c, k) => fixture.Volume.StartFlush(c, k)), Is.EqualTo(StorageStatus.Success));
        Assert.That(await log.Run(3, (c, k) => fixture.Volume.StartWrite(5L << 20, Pattern(4096, 3), true, c, k)), Is.EqualTo(StorageStatus.Success));
        Assert.That(await log.Run(4, (c, k) => fixture.Volume.StartDeallocate(9L << 20, 8192, c, k)), Is.EqualTo(StorageStatus.Success));

        foreach (var node in new[] { fixture.NodeB, fixture.NodeC })
        {
            Assert.That(node.Tracked.UnflushedRegions().Marked(), Is.EqualTo(new long[] { 5, 9 }), node.Name);
        }
    }
}
