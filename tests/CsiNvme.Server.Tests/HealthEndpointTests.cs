using System.Net;
using System.Net.Sockets;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>
/// GET /readyz and /livez on the metrics listener: the contract the chart's readiness probe relies on (200 "ready",
/// or 503 with a one-line reason when the NVMe/TCP target cannot take new hosts).
/// </summary>
[TestFixture]
public sealed class HealthEndpointTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    private TempDirectory _dir = null!;
    private HttpClient _http = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = new TempDirectory("csinvme-health-test");
        _http = new HttpClient();
    }

    [TearDown]
    public void TearDown()
    {
        _http.Dispose();
        _dir.Dispose();
    }

    private async Task<(HttpStatusCode Status, string Body)> GetAsync(InProcessServer server, string path)
    {
        using var response = await _http.GetAsync($"http://{server.Server.MetricsEndpoint}{path}");
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private async Task<(HttpStatusCode Status, string Body)> WaitForReadyzAsync(InProcessServer server, HttpStatusCode wanted)
    {
        var deadline = DateTime.UtcNow + Generous;
        while (true)
        {
            var answer = await GetAsync(server, "/readyz");
            if (answer.Status == wanted || DateTime.UtcNow > deadline)
            {
                return answer;
            }

            await Task.Delay(20);
        }
    }

    private static StorageServerOptions MemoryServer(string dir) => InProcessServer.Options(dir, StorageBackend.Memory);

    [Test]
    public async Task ReadyzAndLivezAnswerOnTheMetricsPortOnly()
    {
        await using var server = await InProcessServer.StartAsync(MemoryServer(_dir.Path));

        var ready = await GetAsync(server, "/readyz");
        Assert.That(ready.Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(ready.Body, Is.EqualTo("ready"));
        var live = await GetAsync(server, "/livez");
        Assert.That(live.Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(live.Body, Is.EqualTo("alive"));
        Assert.That((await GetAsync(server, "/metrics")).Body, Does.Contain("csinvme_nvme_connections"), "/metrics still works");
        Assert.That((await GetAsync(server, "/readyz/")).Status, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That((await GetAsync(server, "/healthz")).Status, Is.EqualTo(HttpStatusCode.NotFound));

        using var head = await _http.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"http://{server.Server.MetricsEndpoint}/readyz"));
        Assert.That(head.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        using var onManagement = await _http.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"http://{server.Server.ManagementEndpoint}/readyz")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        });
        Assert.That(onManagement.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task ReadyzIs503WhileConnectionThreadsCannotStartAnd200Afterwards()
    {
        var failing = 1;
        var options = MemoryServer(_dir.Path);
        options.ConfigureTarget = target =>
        {
            target.DedicatedConnectionThreads = true;
            target.UnreadyAfterFailure = TimeSpan.FromMilliseconds(500);
            var start = target.StartConnectionThread;
            target.StartConnectionThread = body =>
            {
                if (Volatile.Read(ref failing) != 0)
                {
                    throw new OutOfMemoryException("Thread failed to start.");
                }

                start(body);
            };
        };
        await using var server = await InProcessServer.StartAsync(options);
        Assert.That((await GetAsync(server, "/readyz")).Status, Is.EqualTo(HttpStatusCode.OK));

        // A host connects while no thread can start: it is served on the thread pool, and the probe says why the
        // server is not ready.
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(server.Server.NvmeEndpoints[0]);
            var notReady = await WaitForReadyzAsync(server, HttpStatusCode.ServiceUnavailable);
            Assert.That(notReady.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(notReady.Body, Does.Contain("a connection thread failed to start").And.Contain("Thread failed to start."));
            Assert.That(notReady.Body, Does.Not.Contain("\n"), "one line");
            Assert.That((await server.Info.GetServerInfoAsync(new GetServerInfoRequest())).ConnectionCount, Is.EqualTo(1u));
        }

        Volatile.Write(ref failing, 0);
        var ready = await WaitForReadyzAsync(server, HttpStatusCode.OK);
        Assert.That(ready.Status, Is.EqualTo(HttpStatusCode.OK), ready.Body);
        Assert.That(ready.Body, Is.EqualTo("ready"));
        var deadline = DateTime.UtcNow + Generous;
        while ((await server.Info.GetServerInfoAsync(new GetServerInfoRequest())).ConnectionCount != 0)
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "the connection served on the pool is not counted once closed");
            await Task.Delay(20);
        }
    }

    [Test]
    public async Task ReadyzIs503WhileTheListenerHoldsItsCap()
    {
        var options = MemoryServer(_dir.Path);
        options.NvmeMaxConnections = 2;
        await using var server = await InProcessServer.StartAsync(options);
        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < 2; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                held.Add(socket);
                await socket.ConnectAsync(server.Server.NvmeEndpoints[0]);
            }

            var full = await WaitForReadyzAsync(server, HttpStatusCode.ServiceUnavailable);
            Assert.That(full.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(full.Body, Does.Contain("holds its cap of 2 connections"));
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }

        var ready = await WaitForReadyzAsync(server, HttpStatusCode.OK);
        Assert.That(ready.Status, Is.EqualTo(HttpStatusCode.OK), ready.Body);
    }
}
