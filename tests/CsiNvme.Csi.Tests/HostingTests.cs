using System.Net;
using Csi.V1;
using CsiNvme.Csi.Hosting;
using CsiNvme.Csi.Node;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests;

/// <summary>The driver host: command line, per-call logging and metrics, the keyed lock.</summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class HostingTests
{
    [Test]
    public async Task Every_call_is_logged_and_counted_per_method_and_status()
    {
        var lines = new List<string>();
        await using var harness = await CsiHarness.StartAsync(configureDriver: options =>
        {
            options.MetricsListen = new IPEndPoint(IPAddress.Loopback, 0);
            options.ConfigureLogging = logging => logging.AddProvider(new ListLoggerProvider(lines));
        });
        await harness.Controller.CreateVolumeAsync(Caps.Create("pvc-logged", requiredBytes: 1 << 20));
        await CsiHarness.CodeOf(() => harness.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = "pvc-missing" }).ResponseAsync);
        var secret = new DeleteVolumeRequest { VolumeId = "pvc-logged" };
        secret.Secrets.Add("password", "hunter2");
        await harness.Controller.DeleteVolumeAsync(secret);

        using var http = new HttpClient();
        var metrics = await http.GetStringAsync($"http://{harness.Driver.MetricsEndpoint}/metrics");
        // /metrics is only on its own listener; the CSI endpoint serves only gRPC.
        var grpcOnMetrics = await http.GetAsync($"http://{harness.Driver.MetricsEndpoint}/csi.v1.Identity/Probe");
        string[] logged;
        lock (lines)
        {
            logged = [.. lines];
        }

        Assert.Multiple(() =>
        {
            Assert.That(logged, Has.Some.Match(@"CreateVolume volume=pvc-logged -> OK in [0-9.]+ ms"));
            Assert.That(logged, Has.Some.Match(@"ControllerGetVolume volume=pvc-missing -> NotFound in [0-9.]+ ms: volume pvc-missing not found"));
            Assert.That(logged, Has.Some.Match(@"DeleteVolume volume=pvc-logged -> OK"));
            Assert.That(logged, Has.None.Contain("hunter2"));
            Assert.That(metrics, Does.Contain("csinvme_csi_calls_total{method=\"CreateVolume\",code=\"OK\"} 1"));
            Assert.That(metrics, Does.Contain("csinvme_csi_calls_total{method=\"ControllerGetVolume\",code=\"NotFound\"} 1"));
            Assert.That(metrics, Does.Contain("csinvme_csi_call_errors_total{method=\"ControllerGetVolume\"} 1"));
            Assert.That(metrics, Does.Contain("csinvme_csi_call_duration_seconds_count{method=\"DeleteVolume\"} 1"));
            Assert.That((int)grpcOnMetrics.StatusCode, Is.EqualTo(404));
        });
    }

    [Test]
    public void Subjects_are_read_from_the_id_field_of_each_request()
    {
        Assert.Multiple(() =>
        {
            Assert.That(CallInterceptor.SubjectOf(new CreateVolumeRequest { Name = "pvc-1" }), Is.EqualTo("pvc-1"));
            Assert.That(CallInterceptor.SubjectOf(new CreateSnapshotRequest { SourceVolumeId = "pvc-2", Name = "s" }), Is.EqualTo("pvc-2"));
            Assert.That(CallInterceptor.SubjectOf(new DeleteSnapshotRequest { SnapshotId = "snap" }), Is.EqualTo("snap"));
            Assert.That(CallInterceptor.SubjectOf(new NodeStageVolumeRequest { VolumeId = "pvc-3" }), Is.EqualTo("pvc-3"));
            Assert.That(CallInterceptor.SubjectOf(new ProbeRequest()), Is.EqualTo("-"));
            Assert.That(CallInterceptor.MethodName("/csi.v1.Controller/CreateVolume"), Is.EqualTo("CreateVolume"));
        });
    }

    [Test]
    public async Task The_keyed_lock_serializes_one_key_and_lets_others_run()
    {
        var locks = new KeyedAsyncLock();
        var first = await locks.AcquireAsync("a", CancellationToken.None);
        var sameKey = locks.AcquireAsync("a", CancellationToken.None).AsTask();
        var otherKey = locks.AcquireAsync("b", CancellationToken.None).AsTask();
        Assert.That(await Task.WhenAny(otherKey, Task.Delay(5000)), Is.SameAs(otherKey));
        otherKey.Result.Dispose();
        await Task.Delay(50);
        Assert.That(sameKey.IsCompleted, Is.False, "a second holder of the same key waits");

        using var cancelled = new CancellationTokenSource();
        var waiting = locks.AcquireAsync("a", cancelled.Token).AsTask();
        await cancelled.CancelAsync();
        Assert.That(async () => await waiting, Throws.InstanceOf<OperationCanceledException>());

        first.Dispose();
        (await sameKey).Dispose();
        Assert.That(locks.ActiveKeys, Is.Zero, "entries go away with their last holder");
    }

    [Test]
    public void The_command_line_gives_driver_options()
    {
        var result = CsiCommandLine.Parse([
            "--mode", "controller", "--endpoint", "unix:///tmp/x/csi.sock", "--server", "127.0.0.1:9500", "--node-id", "worker-1",
            "--metrics-listen", "127.0.0.1:9808", "--log-level", "debug", "--topology", "topology.kubernetes.io/zone=z1", "--topology", "rack=r2",
            "--host-nqn", "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001", "--max-volumes-per-node", "64",
        ]);
        Assert.That(result.Errors, Is.Empty);
        var options = result.Options!;
        Assert.Multiple(() =>
        {
            Assert.That(options.Mode, Is.EqualTo(DriverMode.Controller));
            Assert.That(options.Endpoint, Is.EqualTo("unix:///tmp/x/csi.sock"));
            Assert.That(options.Server, Is.EqualTo("127.0.0.1:9500"));
            Assert.That(options.NodeId, Is.EqualTo("worker-1"));
            Assert.That(options.MetricsListen, Is.EqualTo(new IPEndPoint(IPAddress.Loopback, 9808)));
            Assert.That(options.LogLevel, Is.EqualTo(LogLevel.Debug));
            Assert.That(options.Topology, Is.EquivalentTo(new Dictionary<string, string> { ["topology.kubernetes.io/zone"] = "z1", ["rack"] = "r2" }));
            Assert.That(options.HostNqn, Is.EqualTo("nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001"));
            Assert.That(options.MaxVolumesPerNode, Is.EqualTo(64));
        });
    }

    [Test]
    public void The_command_line_defaults_to_all_modes_on_the_kubernetes_socket()
    {
        var options = CsiCommandLine.Parse(["--server", "10.0.0.1:9500", "--node-id", "n"]).Options!;
        Assert.Multiple(() =>
        {
            Assert.That(options.Mode, Is.EqualTo(DriverMode.All));
            Assert.That(options.Endpoint, Is.EqualTo("unix:///csi/csi.sock"));
            Assert.That(options.MetricsListen, Is.Null);
            Assert.That(options.LogLevel, Is.EqualTo(LogLevel.Information));
            Assert.That(options.MaxVolumesPerNode, Is.EqualTo(256));
        });
    }

    [Test]
    public void The_command_line_gives_the_node_connection_defaults()
    {
        var result = CsiCommandLine.Parse([
            "--mode=node", "--node-id=n", "--ctrl-loss-tmo=-1", "--reconnect-delay", "2", "--fast-io-fail-tmo=-1", "--keep-alive-tmo=30",
            "--nr-io-queues=4", "--header-digest=true", "--data-digest", "TRUE", "--disable-sq-flow=false",
            "--multipath-ctrl-loss-tmo=90", "--multipath-fast-io-fail-tmo=20", "--path-keeper-period=7",
        ]);
        Assert.That(result.Errors, Is.Empty);
        var single = new FabricsConnectSettings
        {
            CtrlLossTmo = -1, ReconnectDelay = 2, FastIoFailTmo = -1, KeepAliveTmo = 30, NrIoQueues = 4,
            HeaderDigest = true, DataDigest = true, DisableSqFlow = false,
        };
        Assert.Multiple(() =>
        {
            Assert.That(result.Options!.NodeConnectDefaults.SinglePath, Is.EqualTo(single));
            // The multipath flags set the timeouts of replicated volumes; the rest is shared, and a multipath flag left out
            // keeps its own default, not the single-path flag's.
            Assert.That(result.Options.NodeConnectDefaults.Multipath, Is.EqualTo(single with
            {
                CtrlLossTmo = 90, ReconnectDelay = FabricsConnectSettings.DefaultMultipathReconnectDelay, FastIoFailTmo = 20,
            }));
            Assert.That(result.Options.PathKeeperPeriod, Is.EqualTo(TimeSpan.FromSeconds(7)));
            Assert.That(NodeOptions.FromDriverOptions(result.Options).ConnectDefaults, Is.EqualTo(result.Options.NodeConnectDefaults));
            Assert.That(NodeOptions.FromDriverOptions(result.Options).PathKeeperPeriod, Is.EqualTo(TimeSpan.FromSeconds(7)));
            var plain = CsiCommandLine.Parse(["--mode=node", "--node-id=n"]).Options!;
            Assert.That(plain.NodeConnectDefaults, Is.EqualTo(FabricsConnectDefaults.Default));
            Assert.That(plain.PathKeeperPeriod, Is.EqualTo(TimeSpan.FromSeconds(15)));
            Assert.That(CsiCommandLine.Parse(["--mode=node", "--node-id=n", "--path-keeper-period=0"]).Errors.Single(), Does.Contain("--path-keeper-period"));
        });
    }

    [TestCase("--mode", "both", "--server", "a:1", "--node-id", "n")]
    [TestCase("--mode", "controller")]
    [TestCase("--mode", "node")]
    [TestCase("--mode", "all", "--server", "a:1")]
    [TestCase("--mode", "controller", "--server", "a:1", "--endpoint", "/csi/csi.sock")]
    [TestCase("--mode", "controller", "--server", "a:1", "--topology", "zone")]
    [TestCase("--mode", "controller", "--server", "a:1", "--metrics-listen", "localhost")]
    [TestCase("--mode", "controller", "--server", "a:1", "--log-level", "loud")]
    [TestCase("--mode", "controller", "--server", "a:1", "--bogus")]
    [TestCase("--mode", "controller", "--server", "10.0.0.1")]
    [TestCase("--mode", "controller", "--server", "not an address:9500")]
    [TestCase("--mode", "controller", "--server", "a:1", "--max-volumes-per-node", "many")]
    [TestCase("--mode", "controller", "--server", "a:1", "--max-volumes-per-node", "-1")]
    [TestCase("--mode", "controller", "--server", "a:1", "--max-volumes-per-node", "1.5")]
    [TestCase("--mode", "node", "--node-id", "n", "--ctrl-loss-tmo=-2")]
    [TestCase("--mode", "node", "--node-id", "n", "--keep-alive-tmo=0")]
    [TestCase("--mode", "node", "--node-id", "n", "--header-digest=yes")]
    [TestCase("--mode", "node", "--node-id", "n", "--nr-io-queues=")]
    public void The_command_line_refuses_bad_arguments(params string[] args)
    {
        var result = CsiCommandLine.Parse(args);
        Assert.Multiple(() =>
        {
            Assert.That(result.Options, Is.Null);
            Assert.That(result.Errors, Is.Not.Empty);
        });
    }

    private sealed class ListLoggerProvider(List<string> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new ListLogger(lines);

        public void Dispose()
        {
        }

        private sealed class ListLogger(List<string> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (lines)
                {
                    lines.Add(formatter(state, exception));
                }
            }
        }
    }
}
