using System.Collections.Concurrent;
using System.Net;
using CsiNvme.Host;
using CsiNvme.Target;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace CsiNvme.Replication.Tests;

/// <summary>A lease a test can take away.</summary>
internal sealed class TestLease : ILeaseGuard
{
    public volatile bool Valid = true;

    public bool IsValid => Valid;
}

/// <summary>Records out-of-sync marks, optionally slowly or failing, with when each became durable.</summary>
internal sealed class RecordingStateSink : IReplicaStateSink
{
    public readonly ConcurrentQueue<(string Node, DateTime DurableAt)> Marks = new();

    public TimeSpan Delay { get; set; }

    public bool Fail { get; set; }

    public async Task MarkOutOfSyncAsync(string node, string reason, CancellationToken cancellationToken)
    {
        await Task.Delay(Delay, cancellationToken);
        if (Fail)
        {
            throw new IOException("metadata store unreachable");
        }

        Marks.Enqueue((node, DateTime.UtcNow));
    }
}

/// <summary>
/// A storage node holding a replica: a real NVMe/TCP target on 127.0.0.1 whose replica subsystem (epoch fenced) exports
/// an in-memory copy through <see cref="ReplicaSideVolume"/>; it can be stopped and started again on the same copy.
/// </summary>
internal sealed class ReplicaNode : IAsyncDisposable
{
    public const string PrimaryHostNqn = "nqn.2026-11.io.csinvme:storage-node:test:primary";

    private NvmeTarget? _target;

    public ReplicaNode(string name, long size, int blockSize)
    {
        Name = name;
        Copy = new MemoryBlockVolume(size, blockSize);
        Tracked = new ReplicaSideVolume(Copy);
    }

    public string Name { get; }

    public MemoryBlockVolume Copy { get; }

    public ReplicaSideVolume Tracked { get; }

    public EpochFence Fence { get; } = new();

    public Subsystem? Subsystem { get; private set; }

    public IPEndPoint Endpoint { get; private set; } = null!;

    public static string Nqn => "nqn.2026-11.io.csinvme:replica:test-volume";

    public void Start(int port = 0)
    {
        var options = new NvmeTargetOptions();
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, port));
        _target = new NvmeTarget(options, NullLoggerFactory.Instance);
        Subsystem = _target.AddSubsystem(new Subsystem(Nqn, "sn-" + Name, allowAnyHost: false, [PrimaryHostNqn]) { Fence = Fence });
        Subsystem.AddNamespace(new TargetNamespace(1, Tracked, Guid.Parse("5b0c1f4e-8d52-4a5a-9f0e-0a1b2c3d4e5f")));
        Endpoint = _target.Start()[0];
    }

    public async Task StopAsync()
    {
        if (_target is not null)
        {
            await _target.DisposeAsync();
            _target = null;
        }
    }

    public Task<ReplicaLink> LinkAsync(long epoch) =>
        ReplicaLink.ConnectAsync(Name, Endpoint, Nqn, epoch, LinkOptions(), NullLoggerFactory.Instance);

    public static NvmeTcpHostOptions LinkOptions() => new()
    {
        HostNqn = PrimaryHostNqn,
        HostId = Guid.Parse("0f8e2b5c-4a7e-4a3b-9e41-0c6a4d2b9e10"),
        Reconnect = false,
        IoQueueCount = 1,
        IoQueueSize = 256,
        KeepAliveTimeout = TimeSpan.FromSeconds(5),
        ConnectTimeout = TimeSpan.FromSeconds(10),
    };

    public byte[] Contents()
    {
        var bytes = new byte[Copy.SizeBytes];
        Copy.Read(0, bytes);
        return bytes;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        Copy.Dispose();
    }
}

/// <summary>A primary with its replicated volume over two replica nodes.</summary>
internal sealed class ReplicationFixture : IAsyncDisposable
{
    public const int BlockSize = 512;
    public const long Size = 32L << 20;

    private ReplicationFixture(ReplicationOptions options)
    {
        Local = new MemoryBlockVolume(Size, BlockSize);
        Volume = new ReplicatedVolume(Local, Lease, Sink, options, NullLogger<ReplicatedVolume>.Instance);
        NodeB = new ReplicaNode("node-b", Size, BlockSize);
        NodeC = new ReplicaNode("node-c", Size, BlockSize);
    }

    public MemoryBlockVolume Local { get; }

    public TestLease Lease { get; } = new();

    public RecordingStateSink Sink { get; } = new();

    public ReplicatedVolume Volume { get; }

    public ReplicaNode NodeB { get; }

    public ReplicaNode NodeC { get; }

    public static async Task<ReplicationFixture> StartAsync(long epoch = 1, ReplicationOptions? options = null)
    {
        var fixture = new ReplicationFixture(options ?? new ReplicationOptions());
        foreach (var node in new[] { fixture.NodeB, fixture.NodeC })
        {
            node.Start();
            fixture.Volume.AddReplica(node.Name, ReplicaMode.InSync, await node.LinkAsync(epoch));
        }

        return fixture;
    }

    public byte[] LocalContents()
    {
        var bytes = new byte[Size];
        Local.Read(0, bytes);
        return bytes;
    }

    public async ValueTask DisposeAsync()
    {
        await Volume.CloseAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Volume.Dispose();
        await NodeB.DisposeAsync();
        await NodeC.DisposeAsync();
        Local.Dispose();
    }
}

/// <summary>Collects asynchronous completions for tests.</summary>
internal sealed class CompletionLog : IStorageCompletion
{
    private readonly ConcurrentDictionary<ulong, TaskCompletionSource<StorageStatus>> _pending = new();

    public Task<StorageStatus> Expect(ulong cookie) =>
        _pending.GetOrAdd(cookie, _ => new TaskCompletionSource<StorageStatus>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    public void OnCompleted(ulong cookie, StorageStatus status) =>
        _pending.GetOrAdd(cookie, _ => new TaskCompletionSource<StorageStatus>(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult(status);

    /// <summary>Starts an operation and returns its outcome, whether it completed at once or later.</summary>
    public async Task<StorageStatus> Run(ulong cookie, Func<IStorageCompletion, ulong, StorageStatus> start)
    {
        var task = Expect(cookie);
        var status = start(this, cookie);
        return status == StorageStatus.Pending ? await task.WaitAsync(TimeSpan.FromSeconds(60)) : status;
    }
}
