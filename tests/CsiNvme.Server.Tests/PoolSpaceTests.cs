using System.Collections.Concurrent;
using CsiNvme.Api.V1;
using CsiNvme.Storage;
using CsiNvme.TestSupport;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>A pool running out of space: logged once per change, and snapshots refused that the pool could not honour.</summary>
[TestFixture]
public sealed class PoolSpaceTests
{
    private const int Cluster = 64 * 1024;
    private const long MiB = 1 << 20;

    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-pool-space");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    /// <summary>Pools of exactly <paramref name="capacities"/> MiB each (one more cluster holds the header).</summary>
    private StorageServerOptions Options(params (string Name, long MiBs)[] capacities)
    {
        var options = InProcessServer.Options(_dir.Combine("data"), StorageBackend.Thin);
        options.Pools = capacities.Select(p => new PoolDefinition(_dir.Combine(p.Name + ".img"), (p.MiBs * MiB) + Cluster)).ToList();
        return options;
    }

    [Test]
    public async Task ASnapshotThePoolCouldNotOverwriteIsRefusedAndEveryOneAllowedCanBeOverwrittenWhole()
    {
        await using var server = await InProcessServer.StartAsync(Options(("tight", 64), ("roomy", 128)));
        var v = server.Volumes;
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "big", SizeBytes = 48 * MiB, Pool = "tight" });
        Fill(server, "big", 0, 40 * MiB, seed: 1);

        // 24 MiB free, 3.2 MiB of it reserve (5% of 64 MiB): overwriting the 40 MiB "big" would then share could fail.
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await v.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "big", Name = "big-snap" }));
        TestContext.Out.WriteLine(refused!.Status.Detail);
        Assert.That(refused.StatusCode, Is.EqualTo(StatusCode.ResourceExhausted));
        Assert.That(refused.Status.Detail, Does.StartWith("snapshot big-snap of volume big refused: pool tight has 24.0 MiB free and keeps 3.2 MiB of it in reserve (--pool-reserve 5%)"));
        Assert.That(refused.Status.Detail, Does.Contain("can need up to 40.0 MiB of new space").And.Contain("more than the 20.8 MiB beyond the reserve"));
        var clone = await Assert.ThrowsAsync<RpcException>(async () => await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "big-copy", SourceVolume = "big" }));
        Assert.That(clone!.StatusCode, Is.EqualTo(StatusCode.ResourceExhausted));
        Assert.That(clone.Status.Detail, Does.StartWith("cloning volume big into volume big-copy refused: pool tight has 24.0 MiB free"));
        Assert.That((await v.ListSnapshotsAsync(new ListSnapshotsRequest())).Snapshots, Is.Empty);
        Assert.That((await v.ListVolumesAsync(new ListVolumesRequest())).Volumes.Select(x => x.Name), Is.EqualTo(new[] { "big" }));

        // In a pool with room, snapshot after snapshot is allowed while the whole volume could be overwritten after it,
        // and then it is: no write of the source ever fails for a snapshot taken.
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "vm", SizeBytes = 20 * MiB, Pool = "roomy" });
        Fill(server, "vm", 0, 20 * MiB, seed: 2);
        var taken = 0;
        while (true)
        {
            var call = v.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "vm", Name = $"vm-{taken}" });
            try
            {
                await call;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.ResourceExhausted)
            {
                Assert.That(e.Status.Detail, Does.Contain("pool roomy has 8.0 MiB free"));
                break;
            }

            taken++;
            Fill(server, "vm", 0, 20 * MiB, seed: 10 + taken);
            Assert.That(taken, Is.LessThanOrEqualTo(5), "128 MiB hold the volume and five full overwrites, with 8 MiB left");
        }

        Assert.That(taken, Is.EqualTo(5));

        // A snapshot that shares nothing new (the volume wrote nothing since the last one) needs no room.
        Fill(server, "big", 40 * MiB, 8 * MiB, seed: 3);
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "empty", SizeBytes = 1 * MiB, Pool = "tight" });
        Assert.That((await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools.Single(p => p.Name == "tight").FreeBytes, Is.EqualTo(16UL * MiB));
        await v.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "empty", Name = "empty-snap" });
    }

    [Test]
    public async Task TheReserveIsConfiguredPerPool()
    {
        var options = Options(("tight", 64), ("other", 64));
        options.PoolReserves = [new PoolReserve("tight", null, 0), new PoolReserve(null, 25, null)];
        await using var server = await InProcessServer.StartAsync(options);
        var pools = (await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools;
        Assert.That(pools.Select(p => (p.Name, p.ReserveBytes)), Is.EqualTo(new[] { ("tight", 0UL), ("other", 16UL * MiB) }));

        // Without a reserve, a snapshot is allowed exactly while the free space covers a whole overwrite.
        await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "half", SizeBytes = 32 * MiB, Pool = "tight" });
        Fill(server, "half", 0, 32 * MiB, seed: 4);
        await server.Volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "half", Name = "half-snap" });

        await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "third", SizeBytes = 32 * MiB, Pool = "other" });
        Fill(server, "third", 0, 28 * MiB, seed: 5);
        var refused = await Assert.ThrowsAsync<RpcException>(async () =>
            await server.Volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "third", Name = "third-snap" }));
        Assert.That(refused!.Status.Detail, Does.Contain("keeps 16.0 MiB of it in reserve (--pool-reserve 25%)"));

        options.PoolReserves = [new PoolReserve("nowhere", 1, null)];
        await server.DisposeAsync();
        var unknown = await Assert.ThrowsAsync<ArgumentException>(async () => await InProcessServer.StartAsync(options));
        Assert.That(unknown!.Message, Does.Contain("--pool-reserve nowhere=1%: there is no pool named nowhere; pools: tight, other"));
    }

    [Test]
    public async Task APoolRunningOutOfSpaceIsLoggedOncePerChangeWithPoolAndVolumeNames()
    {
        var log = new CapturingLoggerProvider();
        var options = Options(("small", 16));
        options.LogLevel = LogLevel.Information;
        options.ConfigureLogging = logging => logging.AddProvider(log);
        await using var server = await InProcessServer.StartAsync(options);
        var v = server.Volumes;
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "hog", SizeBytes = 64 * MiB });
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "other", SizeBytes = 4 * MiB });
        Fill(server, "other", 0, MiB, seed: 6);

        var hog = StorageOf(server, "hog");
        var chunk = new byte[MiB];
        var failed = 0;
        for (var i = 0; i < 64; i++)
        {
            if (hog.Write(i * MiB, chunk, forceUnitAccess: false) == StorageStatus.CapacityExceeded)
            {
                failed++;
            }
        }

        var other = StorageOf(server, "other");
        for (var i = 0; i < 50; i++)
        {
            Assert.That(other.Write(2 * MiB, chunk.AsSpan(0, 4096), forceUnitAccess: false), Is.EqualTo(StorageStatus.CapacityExceeded));
        }

        Assert.That(failed, Is.EqualTo(49), "15 MiB fit beside the 1 MiB of the other volume");
        Assert.That(log.Lines(l => l.Contains("is full")), Is.EqualTo(new[]
        {
            "Warning: Pool small is full: a write to volume hog needed a new cluster and none of its 16777216 bytes is free. " +
            "Writes that need new space fail with Capacity Exceeded until space is freed (delete snapshots or volumes, or trim)",
        }), "one line for 99 failed writes");
        Assert.That((await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools.Single().OutOfSpace, Is.True);
        using var http = new HttpClient();
        Assert.That(await http.GetStringAsync($"http://{server.Server.MetricsEndpoint}/metrics"), Does.Contain("csinvme_pool_out_of_space{pool=\"small\"} 1"));

        await v.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "other" });
        Assert.That(log.Lines(l => l.Contains("has space again")), Is.EqualTo(new[] { "Information: Pool small has space again: 1048576 of 16777216 bytes free" }));
        Assert.That((await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools.Single().OutOfSpace, Is.False);
        Assert.That(await http.GetStringAsync($"http://{server.Server.MetricsEndpoint}/metrics"), Does.Contain("csinvme_pool_out_of_space{pool=\"small\"} 0"));

        // The next time it fills up is the next line.
        for (var i = 15; i < 20; i++)
        {
            hog.Write(i * MiB, chunk, forceUnitAccess: false);
        }

        Assert.That(log.Lines(l => l.Contains("is full")), Has.Count.EqualTo(2));
        Assert.That(log.Lines(l => l.Contains("has space again")), Has.Count.EqualTo(1));
    }

    private static void Fill(InProcessServer server, string volume, long offset, long length, int seed)
    {
        var storage = StorageOf(server, volume);
        var chunk = new byte[MiB];
        new Random(seed).NextBytes(chunk);
        for (var at = offset; at < offset + length; at += MiB)
        {
            Assert.That(storage.Write(at, chunk, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success), $"write of {volume} at {at}");
        }
    }

    private static IBlockVolume StorageOf(InProcessServer server, string name)
    {
        var volume = server.Volumes.GetVolume(new GetVolumeRequest { Name = name });
        return server.Server.Target.FindSubsystem(volume.SubsystemNqn)!.Namespaces[0].Volume;
    }

    /// <summary>Keeps the server's log lines of the pool backend as "Level: message".</summary>
    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IReadOnlyList<string> Lines(Func<string, bool> filter) => _lines.Where(filter).ToArray();

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void Dispose()
        {
        }

        private sealed class Logger(CapturingLoggerProvider owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner._lines.Enqueue($"{logLevel}: {formatter(state, exception)}");
        }
    }
}
