using System.Diagnostics;
using System.Net;
using CsiNvme.Api.V1;
using CsiNvme.Server.Metrics;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;
using Grpc.Core;
using Grpc.Net.Client;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

[TestFixture]
public sealed class MetricsTests
{
    private TempDirectory _dir = null!;
    private InProcessServer _server = null!;
    private HttpClient _http = null!;

    [SetUp]
    public async Task SetUp()
    {
        _dir = new TempDirectory("csinvme-server-test");
        _server = await InProcessServer.StartAsync(_dir.Path);
        _http = new HttpClient();
    }

    [TearDown]
    public async Task TearDown()
    {
        _http.Dispose();
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    [Test]
    public async Task ScrapeShowsPerVolumeIoAndServerMetrics()
    {
        var volume = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "m1", SizeBytes = 1 << 20 });
        var metrics = _server.Server.Target.FindSubsystem(volume.SubsystemNqn)!.Namespaces[0].Metrics!;
        // Two reads completed in one batch (one call, the same latency each), then a failed write.
        metrics.Record(IoKind.Read, commands: 2, failed: 0, bytes: 12288, Stopwatch.Frequency / 1000);
        metrics.Record(IoKind.Write, commands: 1, failed: 1, bytes: 0, Stopwatch.Frequency / 100);

        var text = await ScrapeAsync();

        Assert.Multiple(() =>
        {
            Assert.That(text, Does.Contain("csinvme_volume_io_operations_total{volume=\"m1\",op=\"read\"} 2"));
            Assert.That(text, Does.Contain("csinvme_volume_io_bytes_total{volume=\"m1\",op=\"read\"} 12288"));
            Assert.That(text, Does.Contain("csinvme_volume_io_operations_total{volume=\"m1\",op=\"write\"} 1"));
            Assert.That(text, Does.Contain("csinvme_volume_io_errors_total{volume=\"m1\",op=\"write\"} 1"));
            Assert.That(text, Does.Contain("csinvme_volume_io_bytes_total{volume=\"m1\",op=\"write\"} 0"), "failed writes move no bytes");
            Assert.That(text, Does.Contain("csinvme_volume_io_latency_seconds_count{volume=\"m1\",op=\"read\"} 2"));
            Assert.That(text, Does.Contain("csinvme_volume_io_latency_seconds_sum{volume=\"m1\",op=\"read\"} 0.002"));
            Assert.That(text, Does.Contain("csinvme_volume_io_latency_seconds_bucket{volume=\"m1\",op=\"read\",le=\"1e-05\"} 0"));
            Assert.That(text, Does.Contain("csinvme_volume_io_latency_seconds_bucket{volume=\"m1\",op=\"flush\",le=\"+Inf\"} 0"));
            Assert.That(text, Does.Contain("csinvme_volume_size_bytes{volume=\"m1\"} 1048576"));
            Assert.That(text, Does.Contain("csinvme_volumes 1"));
            Assert.That(text, Does.Contain("csinvme_nvme_connections 0"));
        });
    }

    [Test]
    public async Task ResizeUpdatesAndDeleteRemovesTheVolumeSeries()
    {
        await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "m2", SizeBytes = 4096 });
        await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "m3", SizeBytes = 4096 });
        await _server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "m2", SizeBytes = 8192 });
        Assert.That(await ScrapeAsync(), Does.Contain("csinvme_volume_size_bytes{volume=\"m2\"} 8192").And.Contain("csinvme_volumes 2"));

        await _server.Volumes.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "m2" });

        var text = await ScrapeAsync();
        Assert.That(text, Does.Not.Contain("volume=\"m2\""));
        Assert.That(text, Does.Contain("volume=\"m3\""));
        Assert.That(text, Does.Contain("csinvme_volumes 1"));
    }

    [Test]
    public async Task MetricsAreOnlyOnTheMetricsPortAndGrpcOnlyOnTheManagementPort()
    {
        using var otherPath = await _http.GetAsync($"http://{_server.Server.MetricsEndpoint}/csinvme.v1.ServerService/GetServerInfo");
        Assert.That(otherPath.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));

        using var h2c = new HttpRequestMessage(HttpMethod.Get, $"http://{_server.Server.ManagementEndpoint}/metrics")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var onManagement = await _http.SendAsync(h2c);
        Assert.That(onManagement.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));

        using var channel = GrpcChannel.ForAddress($"http://{_server.Server.MetricsEndpoint}");
        var client = new ServerService.ServerServiceClient(channel);
        await Assert.ThrowsAsync<RpcException>(async () => await client.GetServerInfoAsync(new GetServerInfoRequest()));
    }

    [Test]
    public async Task ConnectionGaugeCountsLiveNvmeTcpConnections()
    {
        using (var client = new System.Net.Sockets.TcpClient())
        {
            await client.ConnectAsync(_server.Server.NvmeEndpoints[0]);
            await WaitForAsync(() => _server.Server.Metrics.ConnectionCount == 1);
            Assert.That(await ScrapeAsync(), Does.Contain("csinvme_nvme_connections 1"));
            var info = await _server.Info.GetServerInfoAsync(new GetServerInfoRequest());
            Assert.That(info.ConnectionCount, Is.EqualTo(1));
        }

        await WaitForAsync(() => _server.Server.Metrics.ConnectionCount == 0);
        Assert.That(await ScrapeAsync(), Does.Contain("csinvme_nvme_connections 0"));
    }

    [Test]
    public void ConnectionGaugeFollowsTheTargetObserver()
    {
        var metrics = new ServerMetrics();
        ITargetObserver observer = metrics;
        observer.ConnectionOpened();
        observer.ConnectionOpened();
        observer.ConnectionClosed();
        Assert.That(metrics.ConnectionCount, Is.EqualTo(1));
    }

    [Test]
    public void RecordAllocatesNothing()
    {
        var metrics = new ServerMetrics().ForVolume("alloc", 4096);
        var kinds = Enum.GetValues<IoKind>();
        for (var i = 0; i < 1000; i++)
        {
            metrics.Record(kinds[i % kinds.Length], 1 + (i % 4), i % 7 == 0 ? 1 : 0, 4096, 1234);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100_000; i++)
        {
            metrics.Record(kinds[i % kinds.Length], 1 + (i % 4), i % 7 == 0 ? 1 : 0, 4096, 1234 + i);
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(allocated, Is.Zero);
    }

    [Test]
    public void UnknownIoKindsAreIgnored()
    {
        var metrics = new ServerMetrics().ForVolume("odd", 4096);
        Assert.DoesNotThrow(() => metrics.Record((IoKind)99, 1, 0, 1, 1));
        Assert.DoesNotThrow(() => metrics.Record((IoKind)(-1), 1, 0, 1, 1));
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        for (var i = 0; i < 100 && !condition(); i++)
        {
            await Task.Delay(50);
        }

        Assert.That(condition(), Is.True, "condition not reached within 5 s");
    }

    private async Task<string> ScrapeAsync()
    {
        using var response = await _http.GetAsync($"http://{_server.Server.MetricsEndpoint}/metrics");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        return await response.Content.ReadAsStringAsync();
    }
}
