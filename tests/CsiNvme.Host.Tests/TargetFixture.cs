using System.Net;
using CsiNvme.Storage;
using CsiNvme.Target;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace CsiNvme.Host.Tests;

/// <summary>
/// Our NVMe/TCP target in-process on 127.0.0.1 with a free port: one subsystem with namespace 1 on an in-memory volume
/// that only <see cref="Host"/> may use, plus a host with that identity.
/// </summary>
internal sealed class TargetFixture : IAsyncDisposable
{
    public const string SubsystemNqn = "nqn.2024-01.io.csinvme:host-tests";
    public const int BlockSize = 512;
    public const long VolumeSize = 64L << 20;

    private TargetFixture(NvmeTarget target)
    {
        Target = target;
    }

    public NvmeTarget Target { get; }

    public IPEndPoint Endpoint { get; private set; } = null!;

    public Subsystem Subsystem { get; private set; } = null!;

    public MemoryBlockVolume Volume { get; private set; } = null!;

    public NvmeHostIdentity Host { get; } = NvmeHostIdentity.Create();

    /// <summary>Hosts made by <see cref="HostOptions"/> give their I/O queues dedicated threads (the default) or use the thread pool.</summary>
    public bool DedicatedQueueThreads { get; private set; } = true;

    public static TargetFixture Start(Action<NvmeTargetOptions>? configure = null, bool dedicatedQueueThreads = true)
    {
        var options = new NvmeTargetOptions();
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, 0));
        configure?.Invoke(options);
        var fixture = new TargetFixture(new NvmeTarget(options, NullLoggerFactory.Instance)) { DedicatedQueueThreads = dedicatedQueueThreads };
        fixture.Subsystem = fixture.Target.AddSubsystem(new Subsystem(SubsystemNqn, "csinvme-host-sn", allowAnyHost: false, [fixture.Host.Nqn]));
        fixture.Volume = new MemoryBlockVolume(VolumeSize, BlockSize);
        fixture.Subsystem.AddNamespace(new TargetNamespace(1, fixture.Volume, Guid.NewGuid()));
        fixture.Endpoint = fixture.Target.Start()[0];
        return fixture;
    }

    public NvmeTcpHostOptions HostOptions(Action<NvmeTcpHostOptions>? configure = null)
    {
        var options = new NvmeTcpHostOptions
        {
            HostNqn = Host.Nqn,
            HostId = Host.Id,
            ReconnectDelay = TimeSpan.FromMilliseconds(50),
            MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
            ConnectTimeout = TimeSpan.FromSeconds(10),
            DedicatedQueueThreads = DedicatedQueueThreads,
        };
        configure?.Invoke(options);
        return options;
    }

    public Task<NvmeController> ConnectAsync(Action<NvmeTcpHostOptions>? configure = null, IPEndPoint? via = null) =>
        new NvmeTcpHost(HostOptions(configure)).ConnectAsync(via ?? Endpoint, SubsystemNqn);

    public async ValueTask DisposeAsync()
    {
        await Target.DisposeAsync();
        Volume.Dispose();
    }
}
