using System.Text;
using CsiNvme.Api.V1;
using CsiNvme.Protocol.Tls;
using CsiNvme.TestSupport;
using Grpc.Core;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>
/// SetHostTlsPsk / ClearHostTlsPsk / SetTlsRequired: keys are validated, never returned, stored sealed, survive a
/// restart together with the requirement, and reach the volume's subsystem.
/// </summary>
[TestFixture]
public sealed class TlsApiTests
{
    private const string Host = "nqn.2024-01.com.example:tls-host";

    [Test]
    public async Task Psks_and_the_requirement_are_applied_described_without_keys_and_survive_a_restart_sealed()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        var psk = TlsPsk.Generate(TlsPskHash.Sha384).Format();
        string nqn;
        await using (var server = await InProcessServer.StartAsync(dir.Path))
        {
            nqn = (await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "vol", SizeBytes = 1 << 20, AllowedHosts = { Host } })).SubsystemNqn;
            var set = await server.Volumes.SetHostTlsPskAsync(new SetHostTlsPskRequest { Name = "vol", HostNqn = Host, Psk = psk });
            Assert.That(set.TlsHosts, Is.EqualTo(new[] { Host }));
            Assert.That(set.TlsRequired, Is.False);
            var required = await server.Volumes.SetTlsRequiredAsync(new SetTlsRequiredRequest { Name = "vol", TlsRequired = true });
            Assert.That(required.TlsRequired, Is.True);
            foreach (var view in new[] { set, required, await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "vol" }) })
            {
                Assert.That(view.ToString(), Does.Not.Contain(psk[20..40]).And.Not.Contain("NVMeTLSkey"));
            }

            var subsystem = server.Server.Target.FindSubsystem(nqn)!;
            Assert.That(subsystem.FindHostTlsPsk(Host), Is.EqualTo(TlsPsk.Parse(psk)));
            Assert.That(subsystem.TlsRequired, Is.True);
        }

        var stored = string.Concat(new[] { "", "-wal" }
            .Select(suffix => Path.Combine(dir.Path, StorageServer.MetadataFileName + suffix))
            .Where(File.Exists)
            .Select(path => Encoding.ASCII.GetString(File.ReadAllBytes(path))));
        Assert.That(stored, Does.Not.Contain(psk[20..40]), "the metadata store holds the key sealed, not in clear");

        await using (var again = await InProcessServer.StartAsync(dir.Path))
        {
            var subsystem = again.Server.Target.FindSubsystem(nqn)!;
            Assert.That(subsystem.FindHostTlsPsk(Host), Is.EqualTo(TlsPsk.Parse(psk)), "the key opens again after a restart");
            Assert.That(subsystem.TlsRequired, Is.True, "and the requirement holds");

            var cleared = await again.Volumes.ClearHostTlsPskAsync(new HostAccessRequest { Name = "vol", HostNqn = Host });
            Assert.That(cleared.TlsHosts, Is.Empty);
            Assert.That(subsystem.FindHostTlsPsk(Host), Is.Null);
            var plain = await again.Volumes.SetTlsRequiredAsync(new SetTlsRequiredRequest { Name = "vol", TlsRequired = false });
            Assert.That(plain.TlsRequired, Is.False);
            Assert.That(subsystem.TlsRequired, Is.False);
        }
    }

    [TestCase("not-a-key")]
    [TestCase("NVMeTLSkey-1:01:AAAA:")]
    [TestCase("DHHC-1:00:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:")]
    public async Task Malformed_keys_are_invalid_arguments_and_the_message_does_not_quote_them(string psk)
    {
        using var dir = new TempDirectory("csinvme-server-test");
        await using var server = await InProcessServer.StartAsync(dir.Path);
        await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "vol", SizeBytes = 1 << 20, AllowedHosts = { Host } });

        RpcException? error = null;
        try
        {
            await server.Volumes.SetHostTlsPskAsync(new SetHostTlsPskRequest { Name = "vol", HostNqn = Host, Psk = psk });
        }
        catch (RpcException e)
        {
            error = e;
        }

        Assert.That(error, Is.Not.Null, "the call succeeded");

        Assert.That(error!.StatusCode, Is.EqualTo(StatusCode.InvalidArgument));
        Assert.That(error.Status.Detail, Does.Not.Contain("VRLbtnN9"));
        Assert.That((await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "vol" })).TlsHosts, Is.Empty);
    }
}
