using System.Collections.Concurrent;
using Csi.V1;
using CsiNvme.Csi.Authentication;
using CsiNvme.Protocol.Authentication;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using Mgmt = CsiNvme.Api.V1;

namespace CsiNvme.Csi.Tests;

/// <summary>
/// DH-HMAC-CHAP through CSI secrets (the StorageClass's controller-publish Secret): ControllerPublishVolume requires
/// the node's host NQN to authenticate on the real server, rotation by publishing again, unpublish clearing it, and
/// the secrets in no response, no volume or publish context and no log line of the driver or the server.
/// </summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class ControllerDhchapTests
{
    private readonly ConcurrentQueue<string> _logLines = new();
    private CsiHarness _harness = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _harness = await CsiHarness.StartAsync(
        configureServer: o =>
        {
            o.LogLevel = LogLevel.Trace;
            o.ConfigureLogging = logging => logging.AddProvider(new CapturingLoggerProvider(_logLines));
        },
        configureDriver: o =>
        {
            o.LogLevel = LogLevel.Trace;
            o.ConfigureLogging = logging => logging.AddProvider(new CapturingLoggerProvider(_logLines));
        });

    [OneTimeTearDown]
    public async Task StopAsync() => await _harness.DisposeAsync();

    private ControllerClient Controller => _harness.Controller;

    private static ControllerPublishVolumeRequest Publish(string volume, string node, Dictionary<string, string> secrets)
    {
        var request = new ControllerPublishVolumeRequest { VolumeId = volume, NodeId = Caps.Node(node), VolumeCapability = Caps.Block() };
        request.Secrets.Add(secrets);
        return request;
    }

    private async Task<Mgmt.Volume> OnServer(string name) => await _harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });

    [Test]
    public async Task Publish_with_secrets_requires_authentication_of_the_node_rotates_and_unpublish_clears_it_and_no_secret_leaks()
    {
        var name = Caps.UniqueName();
        var host = DhchapSecret.Generate(DhchapHash.Sha384).Format();
        var ctrl = DhchapSecret.Generate(DhchapHash.Sha384).Format();
        var rotated = DhchapSecret.Generate(DhchapHash.Sha256).Format();
        var secrets = new Dictionary<string, string>
        {
            [DhchapCsiSecrets.HostSecretKey] = host,
            [DhchapCsiSecrets.CtrlSecretKey] = ctrl,
            [DhchapCsiSecrets.HashKey] = "sha384",
            [DhchapCsiSecrets.DhGroupKey] = "ffdhe3072",
        };
        var create = Caps.Create(name);
        create.Secrets.Add(secrets);
        var created = await Controller.CreateVolumeAsync(create);

        var published = await Controller.ControllerPublishVolumeAsync(Publish(name, "a", secrets));
        var afterPublish = await OnServer(name);
        var again = await Controller.ControllerPublishVolumeAsync(Publish(name, "a", secrets));
        var listed = await _harness.Management.ListVolumesAsync(new Mgmt.ListVolumesRequest());
        var csiListed = await Controller.ListVolumesAsync(new ListVolumesRequest());

        // Rotation: the Secret changed and the CO publishes again (a new pod on the node, say).
        await Controller.ControllerPublishVolumeAsync(Publish(name, "a", new Dictionary<string, string> { [DhchapCsiSecrets.HostSecretKey] = rotated }));
        var afterRotation = await OnServer(name);

        await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = name, NodeId = Caps.Node("a") });
        var afterUnpublish = await OnServer(name);

        var seen = string.Join("\n", new IMessage[] { created, published, again, afterPublish, listed, csiListed, afterRotation, afterUnpublish }
            .Select(m => m.ToString()).Concat(_logLines));
        Assert.Multiple(() =>
        {
            Assert.That(afterPublish.AllowedHosts, Is.EqualTo(new[] { Caps.Node("a") }));
            Assert.That(afterPublish.Authentication.Single().HostNqn, Is.EqualTo(Caps.Node("a")));
            Assert.That(afterPublish.Authentication.Single().Hash, Is.EqualTo("sha384"));
            Assert.That(afterPublish.Authentication.Single().DhGroup, Is.EqualTo("ffdhe3072"));
            Assert.That(afterPublish.Authentication.Single().Bidirectional, Is.True);
            Assert.That(again.PublishContext, Is.EquivalentTo(published.PublishContext), "publishing again with the same Secret is idempotent");
            Assert.That(afterRotation.Authentication.Single().Bidirectional, Is.False, "the rotated Secret replaced the secrets");
            Assert.That(afterRotation.Authentication.Single().Hash, Is.EqualTo("sha256"), "the server's default hash");
            Assert.That(afterUnpublish.AllowedHosts, Is.Empty);
            Assert.That(afterUnpublish.Authentication, Is.Empty, "an unpublished node keeps no secrets on the volume");
            Assert.That(_logLines, Has.Some.Contain("requires DH-HMAC-CHAP of node"), "the log says what happened");
            foreach (var secret in new[] { host, ctrl, rotated })
            {
                Assert.That(seen, Does.Not.Contain(secret[10..40]), "no secret in a response, a context or a log line");
            }
        });
    }

    [Test]
    public async Task Publish_refuses_malformed_secrets_with_INVALID_ARGUMENT_without_quoting_them_and_changes_nothing()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name));
        const string Mangled = "DHHC-1:00:bm90LWEta2V5LWF0LWFsbC0xMjM0NTY3ODkw:";
        var valid = DhchapSecret.Generate(DhchapHash.Sha256).Format();
        var cases = new[]
        {
            new Dictionary<string, string> { [DhchapCsiSecrets.HostSecretKey] = Mangled },
            new Dictionary<string, string> { [DhchapCsiSecrets.CtrlSecretKey] = valid },
            new Dictionary<string, string> { [DhchapCsiSecrets.HostSecretKey] = valid, [DhchapCsiSecrets.CtrlSecretKey] = valid },
            new Dictionary<string, string> { [DhchapCsiSecrets.HostSecretKey] = valid, [DhchapCsiSecrets.HashKey] = "md5" },
            new Dictionary<string, string> { [DhchapCsiSecrets.HostSecretKey] = valid, [DhchapCsiSecrets.DhGroupKey] = "ffdhe1024" },
        };

        foreach (var secrets in cases)
        {
            var failure = await CsiHarness.FailureOf(() => Controller.ControllerPublishVolumeAsync(Publish(name, "a", secrets)).ResponseAsync);
            Assert.Multiple(() =>
            {
                Assert.That(failure.StatusCode, Is.EqualTo(StatusCode.InvalidArgument), string.Join(",", secrets.Keys));
                Assert.That(failure.Status.Detail, Does.Contain("dhchap").And.Not.Contain("bm90LWEta2V5").And.Not.Contain(valid[10..40]));
            });
        }

        var volume = await OnServer(name);
        Assert.Multiple(() =>
        {
            Assert.That(volume.AllowedHosts, Is.Empty);
            Assert.That(volume.Authentication, Is.Empty);
        });
    }

    [Test]
    public async Task Publish_without_secrets_allows_the_node_on_its_nqn_alone()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name));
        await Controller.ControllerPublishVolumeAsync(Publish(name, "a", new Dictionary<string, string>()));
        var volume = await OnServer(name);
        Assert.Multiple(() =>
        {
            Assert.That(volume.AllowedHosts, Is.EqualTo(new[] { Caps.Node("a") }));
            Assert.That(volume.Authentication, Is.Empty);
        });
    }

    /// <summary>Keeps every log line at every level, formatted as a logger would write it.</summary>
    private sealed class CapturingLoggerProvider(ConcurrentQueue<string> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new CapturingLogger(categoryName, lines);

        public void Dispose()
        {
        }

        private sealed class CapturingLogger(string category, ConcurrentQueue<string> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                lines.Enqueue($"[{logLevel}] {category}: {formatter(state, exception)} {exception}");
        }
    }
}
