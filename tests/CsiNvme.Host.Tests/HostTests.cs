using System.Diagnostics;
using CsiNvme.Protocol.Identify;
using CsiNvme.Protocol.Logs;
using CsiNvme.Target;

namespace CsiNvme.Host.Tests;

/// <summary>
/// The host library against our own target, in-process, over loopback: with I/O queues on dedicated polling threads
/// (the default) and on the thread pool.
/// </summary>
[TestFixture(true)]
[TestFixture(false)]
public sealed class HostTests(bool dedicatedQueueThreads)
{
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(20);

    private TargetFixture Start(Action<NvmeTargetOptions>? configure = null) => TargetFixture.Start(configure, dedicatedQueueThreads);

    [Test]
    public async Task ConnectsIdentifiesAndListsTheNamespace()
    {
        await using var target = Start();
        await using var controller = await target.ConnectAsync(o => o.IoQueueCount = 2);

        Assert.Multiple(() =>
        {
            Assert.That(controller.State, Is.EqualTo(ControllerState.Live));
            Assert.That(controller.Identify.SubsystemNqn, Is.EqualTo(TargetFixture.SubsystemNqn));
            Assert.That(controller.Identify.ControllerType, Is.EqualTo(ControllerType.Io));
            Assert.That(controller.Version, Is.GreaterThanOrEqualTo(0x00010300u));
            Assert.That(controller.Capabilities & 0xFFFF, Is.GreaterThan(0ul), "CAP.MQES");
            Assert.That(controller.IoQueues, Has.Count.EqualTo(2));
            Assert.That(controller.IoQueues.All(q => q.IsConnected), Is.True);
            Assert.That(controller.Namespaces, Has.Count.EqualTo(1));
        });
        var ns = controller.Namespaces[0];
        Assert.Multiple(() =>
        {
            Assert.That(ns.NamespaceId, Is.EqualTo(1u));
            Assert.That(ns.BlockSize, Is.EqualTo(TargetFixture.BlockSize));
            Assert.That(ns.SizeBytes, Is.EqualTo(TargetFixture.VolumeSize));
            Assert.That(ns.Descriptors.Select(d => d.Type), Does.Contain(NamespaceIdType.Nguid));
            Assert.That(target.Subsystem.ControllerCount, Is.EqualTo(1));
        });
    }

    [TestCase(1)]
    [TestCase(8)]
    [TestCase(64)]
    public async Task WritesAndReadsBackAtQueueDepth(int depth)
    {
        await using var target = Start();
        await using var controller = await target.ConnectAsync(o => o.IoQueueSize = 128);
        var queue = controller.IoQueues[0];
        var ns = controller.Namespaces[0];
        const int ioSize = 4096;
        var rounds = 4;
        var random = new Random(depth);
        var written = new byte[depth * rounds][];
        for (var round = 0; round < rounds; round++)
        {
            var writes = new List<Task<NvmeCompletion>>();
            for (var i = 0; i < depth; i++)
            {
                var index = round * depth + i;
                written[index] = new byte[ioSize];
                random.NextBytes(written[index]);
                writes.Add(queue.WriteAsync(ns, (ulong)(index * ioSize / ns.BlockSize), written[index]).AsTask());
            }

            foreach (var completion in await Task.WhenAll(writes))
            {
                Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success));
            }
        }

        var buffers = written.Select(_ => new byte[ioSize]).ToArray();
        for (var round = 0; round < rounds; round++)
        {
            var reads = Enumerable.Range(round * depth, depth)
                .Select(index => queue.ReadAsync(ns, (ulong)(index * ioSize / ns.BlockSize), buffers[index]).AsTask())
                .ToList();
            foreach (var completion in await Task.WhenAll(reads))
            {
                Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success));
            }
        }

        for (var index = 0; index < written.Length; index++)
        {
            Assert.That(buffers[index], Is.EqualTo(written[index]), $"block group {index}");
            var onTarget = new byte[ioSize];
            target.Volume.Read(index * ioSize, onTarget);
            Assert.That(onTarget, Is.EqualTo(written[index]), $"the target's volume at {index}");
        }
    }

    [Test]
    public async Task WritesLargerThanInCapsuleDataGoByR2TInSeveralH2CDataPdus()
    {
        await using var target = Start(o => o.InCapsuleDataSize = 4096);
        await using var controller = await target.ConnectAsync(o => o.MaxH2CDataChunk = 8192);
        var queue = controller.IoQueues[0];
        var ns = controller.Namespaces[0];
        Assert.That(queue.InCapsuleDataLimit, Is.EqualTo(4096), "IOCCSZ lowers the in-capsule size");

        var sizes = new[] { 4096, 4608, 65536, 256 * 1024 };
        ulong lba = 0;
        var random = new Random(5);
        var pending = new List<(ulong Lba, byte[] Data, Task<NvmeCompletion> Write)>();
        foreach (var size in sizes)
        {
            var data = new byte[size];
            random.NextBytes(data);
            pending.Add((lba, data, queue.WriteAsync(ns, lba, data).AsTask()));
            lba += (ulong)(size / ns.BlockSize);
        }

        foreach (var (writeLba, data, write) in pending)
        {
            Assert.That((await write).Status, Is.EqualTo(NvmeStatus.Success));
            var back = new byte[data.Length];
            Assert.That((await queue.ReadAsync(ns, writeLba, back)).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(back, Is.EqualTo(data), $"{data.Length} bytes at LBA {writeLba}");
        }
    }

    [TestCase(true, false)]
    [TestCase(false, true)]
    [TestCase(true, true)]
    public async Task DigestsProtectCommandsAndData(bool headerDigest, bool dataDigest)
    {
        await using var target = Start();
        await using var controller = await target.ConnectAsync(o =>
        {
            o.HeaderDigest = headerDigest;
            o.DataDigest = dataDigest;
        });
        var queue = controller.IoQueues[0];
        var ns = controller.Namespaces[0];
        var random = new Random(11);
        foreach (var size in new[] { 512, 8192, 128 * 1024 })
        {
            var data = new byte[size];
            random.NextBytes(data);
            Assert.That((await queue.WriteAsync(ns, 64, data)).Status, Is.EqualTo(NvmeStatus.Success));
            var back = new byte[size];
            Assert.That((await queue.ReadAsync(ns, 64, back)).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(back, Is.EqualTo(data));
        }
    }

    [Test]
    public async Task FlushWriteZeroesAndDeallocate()
    {
        await using var target = Start();
        await using var controller = await target.ConnectAsync();
        var queue = controller.IoQueues[0];
        var ns = controller.Namespaces[0];
        var data = Enumerable.Repeat((byte)0xA5, 16 * 1024).ToArray();
        Assert.That((await queue.WriteAsync(ns, 0, data, forceUnitAccess: true)).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That((await queue.FlushAsync(ns)).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That((await queue.WriteZeroesAsync(ns, 0, 8)).Status, Is.EqualTo(NvmeStatus.Success));
        var ranges = new byte[16];
        IoQueue.WriteRange(ranges, 16, 8);
        Assert.That((await queue.DatasetManagementAsync(ns, ranges)).Status, Is.EqualTo(NvmeStatus.Success));

        var back = new byte[data.Length];
        Assert.That((await queue.ReadAsync(ns, 0, back)).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.Multiple(() =>
        {
            Assert.That(back.AsSpan(0, 8 * 512).ContainsAnyExcept((byte)0), Is.False, "write zeroes");
            Assert.That(back.AsSpan(8 * 512, 8 * 512).ContainsAnyExcept((byte)0xA5), Is.False, "untouched");
            Assert.That(back.AsSpan(16 * 512, 8 * 512).ContainsAnyExcept((byte)0), Is.False, "deallocated");
        });

        var outOfRange = await queue.ReadAsync(ns, ns.SizeBlocks, new byte[512]);
        Assert.That(outOfRange.Status, Is.EqualTo(NvmeStatus.LbaOutOfRange), "errors come back as status values");
    }

    [Test]
    public async Task ReadsTheDiscoveryLog()
    {
        await using var target = Start();
        var host = new NvmeTcpHost(target.HostOptions());
        var log = await host.DiscoverAsync(target.Endpoint);

        var entry = log.Entries.Single(e => e.SubsystemNqn == TargetFixture.SubsystemNqn);
        Assert.Multiple(() =>
        {
            Assert.That(log.Generation, Is.EqualTo(target.Target.DiscoveryGeneration));
            Assert.That(entry.TransportType, Is.EqualTo(TransportType.Tcp));
            Assert.That(entry.SubsystemType, Is.EqualTo(DiscoverySubsystemType.NvmSubsystem));
            Assert.That(entry.ServiceId, Is.EqualTo(target.Endpoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            Assert.That(entry.TransportAddress, Is.EqualTo("127.0.0.1"));
        });
    }

    [Test]
    public async Task DiscoveryLogWithManyEntriesIsReadByOffset()
    {
        await using var target = Start();
        for (var i = 0; i < 9; i++)
        {
            target.Target.AddSubsystem(new CsiNvme.Target.Subsystems.Subsystem($"nqn.2024-01.io.csinvme:extra-{i}", $"sn-{i}", allowAnyHost: true));
        }

        var log = await new NvmeTcpHost(target.HostOptions()).DiscoverAsync(target.Endpoint);
        Assert.That(log.Entries.Select(e => e.SubsystemNqn), Is.SupersetOf(Enumerable.Range(0, 9).Select(i => $"nqn.2024-01.io.csinvme:extra-{i}")));
        Assert.That(log.Entries.Count, Is.GreaterThanOrEqualTo(10), "more than 4 KiB of records");
    }

    [Test]
    public async Task KeepAliveKeepsAnIdleControllerPastKato()
    {
        await using var target = Start();
        await using var controller = await target.ConnectAsync(o => o.KeepAliveTimeout = TimeSpan.FromSeconds(1));
        await Task.Delay(TimeSpan.FromSeconds(3));

        Assert.Multiple(() =>
        {
            Assert.That(controller.State, Is.EqualTo(ControllerState.Live));
            Assert.That(controller.ReconnectCount, Is.Zero, "never lost the association");
            Assert.That(controller.KeepAlivesSent, Is.GreaterThanOrEqualTo(4), "one Keep Alive every KATO/2");
            Assert.That(target.Subsystem.ControllerCount, Is.EqualTo(1));
        });
        var back = new byte[512];
        Assert.That((await controller.IoQueues[0].ReadAsync(controller.Namespaces[0], 0, back)).Status, Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task ReconnectsAfterTheTargetDropsTheController()
    {
        await using var target = Start();
        await using var controller = await target.ConnectAsync(o => o.IoQueueCount = 2);
        var ns = controller.Namespaces[0];
        var data = Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray();
        Assert.That((await controller.IoQueues[1].WriteAsync(ns, 8, data)).Status, Is.EqualTo(NvmeStatus.Success));
        var firstId = controller.ControllerId;

        target.Subsystem.DisconnectAll();
        await WaitUntil(() => controller.ReconnectCount == 1 && controller.State == ControllerState.Live);

        Assert.That(controller.IoQueues.All(q => q.IsConnected), Is.True);
        Assert.That(controller.ControllerId, Is.Not.EqualTo(firstId), "a new dynamic controller");
        var back = new byte[4096];
        Assert.That((await controller.IoQueues[1].ReadAsync(ns, 8, back)).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(back, Is.EqualTo(data));
    }

    [Test]
    public async Task OutstandingCommandsFailWithAPathErrorWhenTheConnectionDrops()
    {
        await using var target = Start();
        await using var proxy = new TcpFaultProxy(target.Endpoint);
        await using var controller = await target.ConnectAsync(o => o.KeepAliveTimeout = TimeSpan.Zero, proxy.Endpoint);
        var queue = controller.IoQueues[0];
        var ns = controller.Namespaces[0];

        proxy.Frozen = true;
        var reads = Enumerable.Range(0, 8).Select(i => queue.ReadAsync(ns, (ulong)i * 8, new byte[4096]).AsTask()).ToArray();
        await Task.Delay(200);
        Assert.That(reads.Any(r => r.IsCompleted), Is.False, "stuck behind the frozen path");

        proxy.CutAll();
        var all = Task.WhenAll(reads);
        Assert.That(await Task.WhenAny(all, Task.Delay(Bounded)), Is.SameAs(all), "completed instead of hanging");
        foreach (var read in reads)
        {
            Assert.That(read.Result.Status, Is.EqualTo(NvmeCompletion.HostPathError));
            Assert.That(read.Result.Status.ToStatusField() >> 1, Is.EqualTo(0x370), "SCT 3, SC 70h as Linux reports it");
        }

        proxy.Frozen = false;
        await WaitUntil(() => controller.State == ControllerState.Live && controller.ReconnectCount == 1);
        Assert.That((await queue.ReadAsync(ns, 0, new byte[4096])).Status, Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task CommandsWhileReconnectingFailAtOnceWithAPathError()
    {
        await using var target = Start();
        await using var proxy = new TcpFaultProxy(target.Endpoint);
        await using var controller = await target.ConnectAsync(o => o.ReconnectDelay = TimeSpan.FromSeconds(2), proxy.Endpoint);
        proxy.CutAll();
        await WaitUntil(() => controller.State == ControllerState.Reconnecting);

        var completion = await controller.IoQueues[0].ReadAsync(controller.Namespaces[0], 0, new byte[512]);
        Assert.That(completion.IsPathError, Is.True);
    }

    [Test]
    public async Task AsyncEventReportsANamespaceChange()
    {
        await using var target = Start();
        await using var controller = await target.ConnectAsync();
        var received = new TaskCompletionSource<AsyncEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        controller.AsyncEventReceived += (_, e) => received.TrySetResult(e);
        await Task.Delay(100);

        target.Volume.Resize(TargetFixture.VolumeSize * 2);
        target.Subsystem.NotifyNamespaceChanged(1);

        Assert.That(await Task.WhenAny(received.Task, Task.Delay(Bounded)), Is.SameAs(received.Task), "event within the bound");
        var asyncEvent = await received.Task;
        Assert.Multiple(() =>
        {
            Assert.That(asyncEvent.IsNamespaceChange, Is.True);
            Assert.That(asyncEvent.LogPage, Is.EqualTo((byte)0x04));
            Assert.That(asyncEvent.ChangedNamespaces, Is.EqualTo(new[] { 1u }));
            Assert.That(controller.Namespaces[0].SizeBytes, Is.EqualTo(TargetFixture.VolumeSize * 2), "the host re-identified the namespace");
        });
    }

    [Test]
    public async Task RejectedHostGetsTheConnectStatus()
    {
        await using var target = Start();
        var host = new NvmeTcpHost(target.HostOptions(o => o.HostNqn = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001"));
        var error = await Assert.ThrowsAsync<NvmeCommandException>(() => host.ConnectAsync(target.Endpoint, TargetFixture.SubsystemNqn));
        Assert.That(error!.Status, Is.EqualTo(NvmeStatus.ConnectInvalidHost));
    }

    internal static async Task WaitUntil(Func<bool> condition)
    {
        var elapsed = Stopwatch.StartNew();
        while (!condition())
        {
            if (elapsed.Elapsed > Bounded)
            {
                Assert.Fail("condition not reached in time");
            }

            await Task.Delay(20);
        }
    }
}
