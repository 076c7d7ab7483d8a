using System.Collections.Concurrent;
using System.Net;
using CsiNvme.Api.Security;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>
/// The management API under mutual TLS, as an attacker and as each role would use it: a real server on 127.0.0.1,
/// certificates from a CA made for the test.
/// </summary>
public sealed class ManagementTlsTests
{
    private const string Host = "nqn.2014-08.org.nvmexpress:uuid:0f8fa1a4-5b7e-4c3e-9d51-4c52a3f5e001";
    private const string Attacker = "nqn.2014-08.org.nvmexpress:uuid:0f8fa1a4-5b7e-4c3e-9d51-4c52a3f5e0ff";

    private TempDirectory _directory = null!;
    private TestCertificates _certificates = null!;
    private StorageServer _server = null!;
    private CapturingLoggerProvider _log = null!;
    private readonly List<GrpcChannel> _channels = [];

    [SetUp]
    public async Task StartServer()
    {
        _directory = new TempDirectory();
        _certificates = new TestCertificates(_directory.Combine("tls"));
        var server = _certificates.Issue("node:server-1");
        _log = new CapturingLoggerProvider();
        var options = InProcessServer.Options(_directory.Combine("data"));
        options.LogLevel = LogLevel.Information;
        options.ConfigureLogging = logging => logging.AddProvider(_log);
        options.ManagementTls = new ManagementTlsFiles(server.CertificateFile, server.KeyFile, _certificates.CaFile);
        _server = await StorageServer.StartAsync(options);
    }

    [TearDown]
    public async Task StopServer()
    {
        foreach (var channel in _channels)
        {
            channel.Dispose();
        }

        await _server.DisposeAsync();
        _log.Dispose();
        _directory.Dispose();
    }

    private VolumeService.VolumeServiceClient VolumesAs(string? commonName, TestCertificates? issuer = null) => new(ChannelAs(commonName, issuer));

    private GrpcChannel ChannelAs(string? commonName, TestCertificates? issuer = null)
    {
        var pair = commonName is null ? null : (issuer ?? _certificates).Issue(commonName);
        var channel = ManagementClientTls.CreateChannel(
            _server.ManagementEndpoint.ToString(),
            new ManagementClientTls(_certificates.CaFile, pair?.CertificateFile, pair?.KeyFile));
        _channels.Add(channel);
        return channel;
    }

    private static async Task<RpcException> Refused(Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await call());
        return e!;
    }

    [Test]
    public async Task Without_a_client_certificate_every_call_is_unauthenticated()
    {
        var anonymous = VolumesAs(null);

        var allow = await Refused(async () => await anonymous.AllowHostAsync(new HostAccessRequest { Name = "any", HostNqn = Attacker }));
        var list = await Refused(async () => await anonymous.ListVolumesAsync(new ListVolumesRequest()));

        Assert.That((allow.StatusCode, list.StatusCode), Is.EqualTo((StatusCode.Unauthenticated, StatusCode.Unauthenticated)));
        Assert.That(allow.Status.Detail, Does.Contain("requires a client certificate"));
        Assert.That(_log.Lines, Has.Some.Contains("Management call AllowHost").And.Contains("(no certificate)").And.Contains("refused"));
    }

    [Test]
    public async Task A_certificate_from_another_ca_does_not_get_through_the_handshake()
    {
        var stranger = new TestCertificates(_directory.Combine("other-ca"), "another CA");
        var forged = VolumesAs("admin", stranger);

        var e = await Refused(async () => await forged.ListVolumesAsync(new ListVolumesRequest()));

        // Under TLS 1.3 the client finishes its side of the handshake before the server checks the client's
        // certificate, so the server's refusal reaches the client either as a failed TLS handshake (Unavailable) or,
        // when the client already sent its HTTP/2 preface, as an HTTP/2 connection that never came up (Internal).
        // Either way no call got through, which is what is asserted.
        Assert.That(e.StatusCode, Is.AnyOf(StatusCode.Unavailable, StatusCode.Internal), e.ToString());
        Assert.That(e.Status.Detail, Does.Contain("SSL connection could not be established").Or.Contain("HTTP/2 connection could not be established"), e.ToString());
        Assert.That(_log.Lines, Has.Some.Contains("client certificate CN=admin is not signed by the client CA"));
    }

    [Test]
    public async Task A_client_without_tls_gets_no_answer()
    {
        using var plain = GrpcChannel.ForAddress($"http://{_server.ManagementEndpoint}");
        var client = new VolumeService.VolumeServiceClient(plain);

        var e = await Refused(async () => await client.ListVolumesAsync(new ListVolumesRequest(), deadline: DateTime.UtcNow.AddSeconds(20)));

        Assert.That(e.StatusCode, Is.Not.EqualTo(StatusCode.OK));
        Assert.That(_server.Catalog, Is.Not.Null);
    }

    [Test]
    public async Task Read_only_lists_and_gets_but_changes_nothing()
    {
        await VolumesAs("admin").CreateVolumeAsync(new CreateVolumeRequest { Name = "db", SizeBytes = 1 << 20 });
        var reader = VolumesAs("read-only:auditor");
        var channel = ChannelAs("read-only:auditor");

        Assert.That((await reader.ListVolumesAsync(new ListVolumesRequest())).Volumes.Select(v => v.Name), Is.EqualTo(new[] { "db" }));
        Assert.That((await reader.GetVolumeAsync(new GetVolumeRequest { Name = "db" })).Name, Is.EqualTo("db"));
        Assert.That((await new ServerService.ServerServiceClient(channel).GetServerInfoAsync(new GetServerInfoRequest())).VolumeCount, Is.EqualTo(1));
        Assert.That((await new NodeService.NodeServiceClient(channel).ListNodesAsync(new ListNodesRequest())).Nodes, Has.Count.EqualTo(1));

        var delete = await Refused(async () => await reader.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "db" }));
        var allow = await Refused(async () => await reader.AllowHostAsync(new HostAccessRequest { Name = "db", HostNqn = Attacker }));

        Assert.That((delete.StatusCode, delete.Status.Detail), Is.EqualTo((StatusCode.PermissionDenied, "role read-only may not call DeleteVolume")));
        Assert.That(allow.StatusCode, Is.EqualTo(StatusCode.PermissionDenied));
        Assert.That((await reader.GetVolumeAsync(new GetVolumeRequest { Name = "db" })).AllowedHosts, Is.Empty);
        Assert.That(_log.Lines, Has.Some.Contains("Management call ListVolumes").And.Contains("CN=read-only:auditor as read-only"));
    }

    [Test]
    public async Task The_csi_controller_makes_its_calls_and_no_others()
    {
        var controller = VolumesAs("csi-controller:kube-system");
        var channel = ChannelAs("csi-controller:kube-system");

        var created = await controller.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-1", SizeBytes = 1 << 20 });
        await controller.AllowHostAsync(new HostAccessRequest { Name = "pvc-1", HostNqn = Host });
        await controller.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "pvc-1", SizeBytes = 2 << 20 });
        // ControllerModifyVolume's call (a VolumeAttributesClass's replicas): one, all a single server holds.
        await controller.SetReplicaCountAsync(new SetReplicaCountRequest { Name = "pvc-1", Replicas = 1 });
        await controller.ListVolumesAsync(new ListVolumesRequest());
        await new ServerService.ServerServiceClient(channel).ListPoolsAsync(new ListPoolsRequest());
        await new NodeService.NodeServiceClient(channel).ListNodesAsync(new ListNodesRequest());
        await controller.DenyHostAsync(new HostAccessRequest { Name = "pvc-1", HostNqn = Host });

        var anyHost = await Refused(async () => await controller.SetAllowAnyHostAsync(new SetAllowAnyHostRequest { Name = "pvc-1", AllowAnyHost = true }));
        var drain = await Refused(async () => await new NodeService.NodeServiceClient(channel).DrainNodeAsync(new NodeRequest { Name = "x" }));
        var verify = await Refused(async () => await controller.VerifyVolumeAsync(new VerifyVolumeRequest { Name = created.Name }));
        Assert.That(
            new[] { anyHost.Status.Detail, drain.Status.Detail, verify.Status.Detail },
            Is.EqualTo(new[]
            {
                "role csi-controller may not call SetAllowAnyHost",
                "role csi-controller may not call DrainNode",
                "role csi-controller may not call VerifyVolume",
            }));

        await controller.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "pvc-1" });
        Assert.That((await controller.ListVolumesAsync(new ListVolumesRequest())).Volumes, Is.Empty);
    }

    [Test]
    public async Task Admin_may_do_everything_and_the_node_role_only_node_calls()
    {
        var admin = VolumesAs("admin:alice");
        await admin.CreateVolumeAsync(new CreateVolumeRequest { Name = "shared", SizeBytes = 1 << 20 });
        var open = await admin.SetAllowAnyHostAsync(new SetAllowAnyHostRequest { Name = "shared", AllowAnyHost = true });
        Assert.That(open.AllowAnyHost, Is.True);

        var node = ChannelAs("node:server-2");
        Assert.That((await new ServerService.ServerServiceClient(node).GetServerInfoAsync(new GetServerInfoRequest())).Version, Is.Not.Empty);
        var list = await Refused(async () => await new VolumeService.VolumeServiceClient(node).ListVolumesAsync(new ListVolumesRequest()));
        Assert.That(list.Status.Detail, Is.EqualTo("role node may not call ListVolumes"));
    }

    [Test]
    public async Task A_certificate_without_a_role_is_denied()
    {
        var nobody = VolumesAs("alice");

        var e = await Refused(async () => await nobody.ListVolumesAsync(new ListVolumesRequest()));

        Assert.That(e.StatusCode, Is.EqualTo(StatusCode.PermissionDenied));
        Assert.That(e.Status.Detail, Does.Contain("CN=alice carries no role"));
    }
}

/// <summary>A non-loopback management listener needs TLS or --insecure.</summary>
public sealed class ManagementListenPolicyTests
{
    [Test]
    public async Task A_non_loopback_management_listener_without_tls_refuses_to_start()
    {
        using var directory = new TempDirectory();
        var options = InProcessServer.Options(directory.Path, StorageBackend.Memory);
        options.ManagementListen = new IPEndPoint(IPAddress.Any, 0);

        var e = await Assert.ThrowsAsync<ArgumentException>(async () => await StorageServer.StartAsync(options));

        Assert.That(e!.Message, Does.Contain("is not a loopback address").And.Contain("--insecure"));
    }

    [Test]
    public async Task With_insecure_it_starts_without_tls()
    {
        using var directory = new TempDirectory();
        var options = InProcessServer.Options(directory.Path, StorageBackend.Memory);
        options.ManagementListen = new IPEndPoint(IPAddress.Any, 0);
        options.Insecure = true;

        await using var server = await StorageServer.StartAsync(options);
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{server.ManagementEndpoint.Port}");

        var info = await new ServerService.ServerServiceClient(channel).GetServerInfoAsync(new GetServerInfoRequest());
        Assert.That(info.VolumeCount, Is.Zero);
    }
}

/// <summary>Keeps every log line, for tests that check what the server logged.</summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyCollection<string> Lines => _lines.ToArray();

    public ILogger CreateLogger(string categoryName) => new Logger(_lines);

    public void Dispose()
    {
    }

    private sealed class Logger(ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                lines.Enqueue(formatter(state, exception));
            }
        }
    }
}
