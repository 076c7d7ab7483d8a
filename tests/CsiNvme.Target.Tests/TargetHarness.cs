using System.Net;
using CsiNvme.Storage;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>
/// A real <see cref="NvmeTarget"/> on 127.0.0.1 with a free port, one subsystem with namespace 1 over an in-memory
/// volume, and a host identity that subsystem allows.
/// </summary>
internal sealed class TargetHarness : IAsyncDisposable
{
    public const string SubsystemNqn = "nqn.2024-01.io.csinvme:test-subsystem";
    public const int BlockSize = 512;
    public const long VolumeSize = 64L << 20;

    private readonly List<IBlockVolume> _volumes = new();

    private TargetHarness(NvmeTarget target, RecordingLoggerFactory logs)
    {
        Target = target;
        Logs = logs;
    }

    public NvmeTarget Target { get; }

    public RecordingLoggerFactory Logs { get; }

    public IPEndPoint Endpoint { get; private set; } = null!;

    public Subsystem Subsystem { get; private set; } = null!;

    public TargetNamespace Namespace { get; private set; } = null!;

    public MemoryBlockVolume Volume { get; private set; } = null!;

    public NvmeHostIdentity Host { get; } = NvmeHostIdentity.Create();

    /// <param name="exportAs">Wraps the in-memory volume before it becomes namespace 1 (e.g. in an asynchronous volume).</param>
    public static TargetHarness Start(Action<NvmeTargetOptions>? configure = null, Func<MemoryBlockVolume, IBlockVolume>? exportAs = null)
    {
        var options = new NvmeTargetOptions();
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, 0));
        // The whole suite runs against either connection model: threads (the default) or, with the run parameter
        // TargetIoModel=async (.ci/run does a second pass), the asynchronous loop on the thread pool.
        options.DedicatedConnectionThreads = TestContext.Parameters.Get("TargetIoModel", "threads") != "async";
        configure?.Invoke(options);
        var logs = new RecordingLoggerFactory();
        var harness = new TargetHarness(new NvmeTarget(options, logs), logs);
        harness.Subsystem = harness.Target.AddSubsystem(new Subsystem(SubsystemNqn, "csinvme-test-sn", allowAnyHost: false, [harness.Host.Nqn]));
        harness.Volume = harness.NewVolume();
        harness.Namespace = new TargetNamespace(1, exportAs is null ? harness.Volume : exportAs(harness.Volume), Guid.NewGuid());
        harness.Subsystem.AddNamespace(harness.Namespace);
        var bound = harness.Target.Start();
        Assert.That(bound, Has.Count.EqualTo(1));
        Assert.That(bound[0].Port, Is.Not.Zero);
        harness.Endpoint = bound[0];
        return harness;
    }

    public MemoryBlockVolume NewVolume(long size = VolumeSize)
    {
        var volume = new MemoryBlockVolume(size, BlockSize);
        _volumes.Add(volume);
        return volume;
    }

    public TestHost Open() => TestHost.Open(Endpoint);

    public TestHost Initialize(bool headerDigest = false, bool dataDigest = false) => TestHost.Initialize(Endpoint, headerDigest, dataDigest);

    /// <summary>A new controller of the test subsystem: IC, admin Connect, CC.EN.</summary>
    public TestHost ConnectAdmin(bool headerDigest = false, bool dataDigest = false, uint keepAliveMs = 0, NvmeHostIdentity? host = null)
    {
        var admin = Initialize(headerDigest, dataDigest);
        host ??= Host;
        var connect = admin.ConnectAdmin(SubsystemNqn, host.Nqn, host.Id, keepAliveMs);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success), "admin Connect");
        admin.Enable();
        return admin;
    }

    /// <summary>An I/O queue of the controller behind <paramref name="admin"/>.</summary>
    public TestHost ConnectIo(TestHost admin, ushort queueId, bool headerDigest = false, bool dataDigest = false, NvmeHostIdentity? host = null)
    {
        var io = Initialize(headerDigest, dataDigest);
        host ??= Host;
        var connect = io.ConnectIo(queueId, admin.ControllerId, SubsystemNqn, host.Nqn, host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success), $"I/O Connect of queue {queueId}");
        Assert.That(connect.Dw0 & 0xFFFF, Is.EqualTo((uint)admin.ControllerId));
        return io;
    }

    /// <summary>Waits (bounded) until the target has dropped connections down to <paramref name="count"/>.</summary>
    public bool WaitForConnectionCount(int count, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (Target.ConnectionCount != count)
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            Thread.Sleep(10);
        }

        return true;
    }

    public async ValueTask DisposeAsync()
    {
        await Target.DisposeAsync();
        foreach (var volume in _volumes)
        {
            volume.Dispose();
        }
    }
}
