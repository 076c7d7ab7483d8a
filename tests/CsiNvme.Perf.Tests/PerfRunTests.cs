using System.Net;
using CsiNvme.Storage;
using CsiNvme.Target;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace CsiNvme.Perf.Tests;

/// <summary>
/// The perf tool runs for about two seconds against an in-process target and reports sane numbers. These check that the
/// tool works, not how fast anything is: benchmarks are run by tools/perf/run.sh.
/// </summary>
[NonParallelizable]
public sealed class PerfRunTests
{
    private const string Nqn = "nqn.2024-01.io.csinvme:perf-tests";

    [TestCase("randread", 4096, 8)]
    [TestCase("randwrite", 4096, 4)]
    [TestCase("read", 128 * 1024, 2)]
    public async Task NvmeRunReportsSaneNumbers(string pattern, int ioSize, int depth)
    {
        await using var target = await StartTargetAsync();
        var result = await NvmePerfRunner.RunAsync(Options(target, pattern, ioSize, depth));

        TestContext.Out.WriteLine(result.ToText());
        AssertSane(result, ioSize);
        Assert.That(result.Mode, Is.EqualTo("nvme"));
        Assert.That(result.TotalDepth, Is.EqualTo(depth));
        if (pattern == "randwrite")
        {
            Assert.That(result.Reads, Is.Zero);
        }
        else
        {
            Assert.That(result.Writes, Is.Zero);
        }
    }

    [Test]
    public async Task VerifyModeChecksEveryBlockReadAcrossQueuesAndConnections()
    {
        await using var target = await StartTargetAsync();
        var options = Options(target, "randrw", 8192, 4) with { Verify = true, Queues = 2, Connections = 2, RegionBytes = 4 << 20 };
        var result = await NvmePerfRunner.RunAsync(options);

        TestContext.Out.WriteLine(result.ToText());
        AssertSane(result, 8192);
        Assert.Multiple(() =>
        {
            Assert.That(result.TotalDepth, Is.EqualTo(16));
            Assert.That(result.VerifyFailures, Is.Zero, result.FirstVerifyFailure);
            Assert.That(result.VerifiedBlocks, Is.GreaterThan(0));
            Assert.That(result.Reads, Is.GreaterThan(0));
            Assert.That(result.Writes, Is.GreaterThan(0));
        });
    }

    [Test]
    public async Task VerifiedReadsWithSqFlowControlDisabled()
    {
        await using var target = await StartTargetAsync();
        var options = Options(target, "randrw", 4096, 8) with { Verify = true, DisableSqFlowControl = true, RegionBytes = 4 << 20 };
        var result = await NvmePerfRunner.RunAsync(options);

        TestContext.Out.WriteLine(result.ToText());
        AssertSane(result, 4096);
        Assert.Multiple(() =>
        {
            Assert.That(result.SqFlowControlDisabled, Is.True);
            Assert.That(result.ToText(), Does.Contain("SQ flow control off"));
            Assert.That(PerfResult.FromJson(result.ToJson()).SqFlowControlDisabled, Is.True);
            Assert.That(result.VerifyFailures, Is.Zero, result.FirstVerifyFailure);
            Assert.That(result.VerifiedBlocks, Is.GreaterThan(0));
            Assert.That(result.Reads, Is.GreaterThan(0));
        });
    }

    [Test]
    public async Task VerifyModeCatchesDataTheTargetCorrupted()
    {
        await using var target = await StartTargetAsync();
        // Written blocks, then one flipped bit behind the host's back.
        var write = Options(target, "write", 4096, 1) with { Verify = true, RegionBytes = 64 * 1024, Duration = TimeSpan.FromMilliseconds(300) };
        await NvmePerfRunner.RunAsync(write);
        var block = new byte[512];
        target.Volume.Read(4096, block);
        block[100] ^= 0x10;
        target.Volume.Write(4096, block, forceUnitAccess: false);

        var read = await NvmePerfRunner.RunAsync(write with { Pattern = IoPattern.Read });
        Assert.That(read.VerifyFailures, Is.GreaterThan(0));
        Assert.That(read.FirstVerifyFailure, Does.Contain("byte 4096"));
    }

    [TestCase("randread")]
    [TestCase("randwrite")]
    public async Task TcpBaselineReportsSaneNumbers(string pattern)
    {
        await using var server = await LimitServer.StartAsync();
        var result = await TcpBaseline.RunAsync(new PerfOptions
        {
            Target = server.Endpoint,
            Pattern = PerfOptions.ParsePattern(pattern),
            QueueDepth = 8,
            IoSize = 4096,
            Duration = TimeSpan.FromSeconds(1.5),
            Ramp = TimeSpan.FromMilliseconds(200),
        });

        TestContext.Out.WriteLine(result.ToText());
        AssertSane(result, 4096);
        Assert.That(result.Mode, Is.EqualTo("tcp-baseline"));
    }

    [Test]
    public async Task TcpBaselineServerReadsAndWritesItsMemoryAtTheRequestedOffsets()
    {
        await using var server = await LimitServer.StartAsync(TimeSpan.Zero, 4L << 20);
        var endpoint = server.Endpoint;
        using (var socket = new System.Net.Sockets.Socket(endpoint.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            socket.Connect(endpoint);
            socket.ReceiveTimeout = 10_000;
            var first = Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray();
            var second = Enumerable.Range(0, 4096).Select(i => (byte)(255 - i)).ToArray();
            Exchange(socket, write: true, tag: 1, offset: 8192, first);
            Exchange(socket, write: true, tag: 2, offset: 12288, second);
            Assert.Multiple(() =>
            {
                Assert.That(Exchange(socket, write: false, tag: 3, offset: 8192, null), Is.EqualTo(first));
                Assert.That(Exchange(socket, write: false, tag: 4, offset: 12288, null), Is.EqualTo(second));
                // An offset past the end is folded into the memory rather than failing.
                Assert.That(Exchange(socket, write: false, tag: 5, offset: 1L << 40, null), Has.Length.EqualTo(4096));
            });
        }
    }

    /// <summary>One request of the limit protocol (72-byte header, data for writes) and its answer's data.</summary>
    private static byte[] Exchange(System.Net.Sockets.Socket socket, bool write, ushort tag, long offset, byte[]? data)
    {
        var request = new byte[TcpBaseline.RequestHeader + (write ? data!.Length : 0)];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(request, 0x4C425343);
        request[4] = write ? (byte)2 : (byte)1;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(request.AsSpan(6), tag);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(request.AsSpan(8), 4096);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(12), (ulong)offset);
        data?.CopyTo(request, TcpBaseline.RequestHeader);
        socket.Send(request);
        var response = new byte[TcpBaseline.ResponseHeader + (write ? 0 : 4096)];
        for (var got = 0; got < response.Length;)
        {
            var n = socket.Receive(response, got, response.Length - got, System.Net.Sockets.SocketFlags.None);
            got += n > 0 ? n : throw new EndOfStreamException();
        }

        Assert.That(System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(response.AsSpan(6)), Is.EqualTo(tag));
        return response[TcpBaseline.ResponseHeader..];
    }

    [TestCase("randread", 8)]
    [TestCase("randwrite", 4)]
    public async Task ComparisonAlternatesTheLoadsInWindowsAndReportsTheirRatios(string pattern, int depth)
    {
        await using var target = await StartTargetAsync();
        await using var limit = await LimitServer.StartAsync();

        var options = Options(target, pattern, 4096, depth) with { Duration = TimeSpan.FromSeconds(1.2), Ramp = TimeSpan.FromMilliseconds(200) };
        var result = await PerfComparison.RunAsync(options, limit.Endpoint, windows: 4).WaitAsync(TimeSpan.FromSeconds(60));

        TestContext.Out.WriteLine(result.ToText());
        AssertSane(result.Nvme, 4096);
        AssertSane(result.Limit, 4096);
        Assert.Multiple(() =>
        {
            Assert.That(result.Nvme.Mode, Is.EqualTo("nvme"));
            Assert.That(result.Limit.Mode, Is.EqualTo("tcp-baseline"));
            Assert.That(result.Nvme.Seconds, Is.EqualTo(1.2).Within(0.2), "each side is measured for --time over all windows");
            Assert.That(result.Limit.Seconds, Is.EqualTo(1.2).Within(0.2));
            Assert.That(result.Windows, Has.Count.EqualTo(4));
            foreach (var window in result.Windows)
            {
                Assert.That(window.NvmeIops, Is.GreaterThan(0));
                Assert.That(window.LimitIops, Is.GreaterThan(0));
                Assert.That(window.Ratio, Is.EqualTo(window.NvmeIops / window.LimitIops).Within(0.5).Percent);
            }

            Assert.That(result.LowerQuartileRatio, Is.LessThanOrEqualTo(result.MedianRatio));
            Assert.That(result.MedianRatio, Is.LessThanOrEqualTo(result.UpperQuartileRatio));
            Assert.That(result.RatioOfTotals, Is.EqualTo(result.Nvme.Iops / result.Limit.Iops).Within(0.5).Percent);
            Assert.That(ComparisonResult.FromJson(result.ToJson()).Windows, Is.EqualTo(result.Windows));
        });
    }

    [Test]
    public async Task ComparisonFailsCleanlyWhenTheLimitServerIsNotThere()
    {
        await using var target = await StartTargetAsync();
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var closedPort = (IPEndPoint)listener.LocalEndPoint!;
        listener.Close();

        var options = Options(target, "randread", 4096, 4) with { Duration = TimeSpan.FromSeconds(1), Ramp = TimeSpan.Zero };
        Assert.That(
            async () => await PerfComparison.RunAsync(options, closedPort, windows: 2).WaitAsync(TimeSpan.FromSeconds(60)),
            Throws.InstanceOf<System.Net.Sockets.SocketException>());

        // The NVMe side was torn down: the target takes a new run as usual.
        AssertSane(await NvmePerfRunner.RunAsync(Options(target, "randread", 4096, 4)), 4096);
    }

    [Test]
    public async Task ComparisonFailsWhenTheLimitServerGoesAwayMidway()
    {
        await using var target = await StartTargetAsync();
        await using var limit = await LimitServer.StartAsync();

        var options = Options(target, "randread", 4096, 4) with { Duration = TimeSpan.FromSeconds(4), Ramp = TimeSpan.FromMilliseconds(100) };
        var comparison = PerfComparison.RunAsync(options, limit.Endpoint, windows: 20);
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        await limit.DisposeAsync();

        Assert.That(
            async () => await comparison.WaitAsync(TimeSpan.FromSeconds(60)),
            Throws.InstanceOf<IOException>().Or.InstanceOf<System.Net.Sockets.SocketException>());
        AssertSane(await NvmePerfRunner.RunAsync(Options(target, "randread", 4096, 4)), 4096);
    }

    [Test]
    public async Task ComparisonFailsWhenTheTargetGoesAwayMidway()
    {
        var target = await StartTargetAsync();
        await using var limit = await LimitServer.StartAsync();

        var options = Options(target, "randwrite", 4096, 4) with { Duration = TimeSpan.FromSeconds(4), Ramp = TimeSpan.FromMilliseconds(100) };
        var comparison = PerfComparison.RunAsync(options, limit.Endpoint, windows: 20);
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        await target.DisposeAsync();

        Assert.That(async () => await comparison.WaitAsync(TimeSpan.FromSeconds(60)), Throws.Exception.Not.InstanceOf<TimeoutException>());
    }

    [TestCase(0, 1.0)]
    [TestCase(40, 1.0)]
    public void ComparisonRefusesWindowsItCannotMeasure(int windows, double seconds)
    {
        var options = new PerfOptions { Target = new IPEndPoint(IPAddress.Loopback, 1), SubsystemNqn = Nqn, Duration = TimeSpan.FromSeconds(seconds) };
        Assert.That(
            async () => await PerfComparison.RunAsync(options, new IPEndPoint(IPAddress.Loopback, 2), windows),
            Throws.ArgumentException);
    }

    [Test]
    public void QuantilesInterpolateBetweenNeighbours()
    {
        Assert.Multiple(() =>
        {
            Assert.That(ComparisonResult.Quantile([], 0.5), Is.Zero);
            Assert.That(ComparisonResult.Quantile([0.9], 0.25), Is.EqualTo(0.9));
            Assert.That(ComparisonResult.Quantile([1, 2, 3, 4], 0.5), Is.EqualTo(2.5));
            Assert.That(ComparisonResult.Quantile([1, 2, 3, 4], 0.25), Is.EqualTo(1.75));
            Assert.That(ComparisonResult.Quantile([1, 2, 3, 4, 5], 0.75), Is.EqualTo(4));
        });
    }

    [Test]
    public void JsonRoundTrips()
    {
        var result = new PerfResult
        {
            Mode = "nvme",
            Target = "127.0.0.1:4420",
            Pattern = "randread",
            IoSize = 4096,
            Iops = 12345.6,
            Latency = new LatencySummary(1, 2, 3, 4, 5, 6),
        };
        var json = result.ToJson();
        Assert.That(json, Does.Contain("\"iops\": 12345.6"));
        Assert.That(json, Does.Contain("\"p99Us\": 4"));
        Assert.That(PerfResult.FromJson(json), Is.EqualTo(result with { Latency = PerfResult.FromJson(json).Latency }));
        Assert.That(PerfResult.FromJson(json).Latency, Is.EqualTo(result.Latency));
    }

    private static void AssertSane(PerfResult result, int ioSize)
    {
        Assert.Multiple(() =>
        {
            Assert.That(result.Errors, Is.Zero, result.FirstError);
            Assert.That(result.Ios, Is.GreaterThan(100));
            Assert.That(result.Seconds, Is.InRange(0.5, 10));
            Assert.That(result.Iops, Is.EqualTo(result.Ios / result.Seconds).Within(1).Percent);
            Assert.That(result.MiBps, Is.EqualTo(result.Iops * ioSize / (1 << 20)).Within(1).Percent);
            Assert.That(result.Latency.MinUs, Is.GreaterThan(0));
            Assert.That(result.Latency.MinUs, Is.LessThanOrEqualTo(result.Latency.P50Us));
            Assert.That(result.Latency.P50Us, Is.LessThanOrEqualTo(result.Latency.P99Us));
            Assert.That(result.Latency.P99Us, Is.LessThanOrEqualTo(result.Latency.P999Us));
            Assert.That(result.Latency.P999Us, Is.LessThanOrEqualTo(result.Latency.MaxUs));
            Assert.That(result.Latency.AvgUs, Is.InRange(result.Latency.MinUs, result.Latency.MaxUs));
            // Little's law: outstanding I/Os = IOPS × mean latency, within a generous margin for start/stop effects.
            var littles = result.Iops * result.Latency.AvgUs / 1e6;
            Assert.That(littles, Is.InRange(result.TotalDepth * 0.5, result.TotalDepth * 1.5), "Little's law");
        });
    }

    private static PerfOptions Options(InProcessTarget target, string pattern, int ioSize, int depth) => new()
    {
        Target = target.Endpoint,
        SubsystemNqn = Nqn,
        HostNqn = target.Host.Nqn,
        HostId = target.Host.Id,
        Pattern = PerfOptions.ParsePattern(pattern),
        IoSize = ioSize,
        QueueDepth = depth,
        Duration = TimeSpan.FromSeconds(1.5),
        Ramp = TimeSpan.FromMilliseconds(300),
    };

    private static Task<InProcessTarget> StartTargetAsync()
    {
        var options = new NvmeTargetOptions();
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, 0));
        var target = new NvmeTarget(options, NullLoggerFactory.Instance);
        var host = NvmeHostIdentity.Create();
        var subsystem = target.AddSubsystem(new Subsystem(Nqn, "csinvme-perf-sn", allowAnyHost: false, [host.Nqn]));
        var volume = new MemoryBlockVolume(256L << 20, 512);
        subsystem.AddNamespace(new TargetNamespace(1, volume, Guid.NewGuid()));
        var endpoint = target.Start()[0];
        return Task.FromResult(new InProcessTarget(target, volume, endpoint, host));
    }

    /// <summary>A TCP limit server on a loopback port of its own, stopped (its connections closed) on dispose.</summary>
    private sealed class LimitServer : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private Task _serving = Task.CompletedTask;

        public IPEndPoint Endpoint { get; private set; } = null!;

        public static async Task<LimitServer> StartAsync(TimeSpan? pollTime = null, long storageBytes = 16L << 20)
        {
            var server = new LimitServer();
            var bound = new TaskCompletionSource<IPEndPoint>(TaskCreationOptions.RunContinuationsAsynchronously);
            server._serving = TcpBaseline.ServeAsync(
                new IPEndPoint(IPAddress.Loopback, 0), bound.SetResult, server._stop.Token, pollTime ?? TimeSpan.FromMicroseconds(50), storageBytes);
            server.Endpoint = await bound.Task.WaitAsync(TimeSpan.FromSeconds(10));
            return server;
        }

        public async ValueTask DisposeAsync()
        {
            if (!_stop.IsCancellationRequested)
            {
                _stop.Cancel();
                await _serving;
            }

            _stop.Dispose();
        }
    }

    private sealed record InProcessTarget(NvmeTarget Target, MemoryBlockVolume Volume, IPEndPoint Endpoint, NvmeHostIdentity Host) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Target.DisposeAsync();
            Volume.Dispose();
        }
    }
}
