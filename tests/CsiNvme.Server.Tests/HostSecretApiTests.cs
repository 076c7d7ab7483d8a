using System.Text;
using CsiNvme.Api.V1;
using CsiNvme.Protocol.Authentication;
using CsiNvme.TestSupport;
using Grpc.Core;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>
/// SetHostSecret / ClearHostSecret: secrets are validated, never returned, stored sealed (the metadata file never holds
/// them), survive a restart, and a server with another key locks the host out instead of letting it in on its NQN.
/// </summary>
[TestFixture]
public sealed class HostSecretApiTests
{
    private const string Host = "nqn.2024-01.com.example:dhchap-host";

    [Test]
    public async Task SecretsAreRequiredAppliedAndNeverReturned()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        await using var server = await InProcessServer.StartAsync(dir.Path);
        var volume = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "vol", SizeBytes = 1 << 20, AllowedHosts = { Host } });
        var secret = DhchapSecret.Generate(DhchapHash.Sha256).Format();
        var ctrlSecret = DhchapSecret.Generate(null, 64).Format();

        var set = await server.Volumes.SetHostSecretAsync(new SetHostSecretRequest
        {
            Name = "vol", HostNqn = Host, Secret = secret, CtrlSecret = ctrlSecret, Hash = "sha512", DhGroup = "ffdhe3072",
        });

        Assert.That(set.Authentication, Has.Count.EqualTo(1));
        var entry = set.Authentication[0];
        Assert.That((entry.HostNqn, entry.Hash, entry.DhGroup, entry.Bidirectional, entry.Problem), Is.EqualTo((Host, "sha512", "ffdhe3072", true, "")));
        foreach (var view in new[] { set, await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "vol" }), (await server.Volumes.ListVolumesAsync(new ListVolumesRequest())).Volumes[0] })
        {
            Assert.That(view.ToString(), Does.Not.Contain(secret[10..30]).And.Not.Contain(ctrlSecret[10..30]).And.Not.Contain("DHHC-1"));
        }

        var credentials = server.Server.Target.FindSubsystem(volume.SubsystemNqn)!.FindHostCredentials(Host)!;
        Assert.That(credentials.HostSecret, Is.EqualTo(DhchapSecret.Parse(secret)));
        Assert.That(credentials.ControllerSecret, Is.EqualTo(DhchapSecret.Parse(ctrlSecret)));
        Assert.That((credentials.Hash, credentials.DhGroup), Is.EqualTo((DhchapHash.Sha512, DhchapDhGroup.Ffdhe3072)));

        var cleared = await server.Volumes.ClearHostSecretAsync(new HostAccessRequest { Name = "vol", HostNqn = Host });
        Assert.That(cleared.Authentication, Is.Empty);
        Assert.That(server.Server.Target.FindSubsystem(volume.SubsystemNqn)!.FindHostCredentials(Host), Is.Null);
    }

    [TestCase("not-a-secret", "", "", "")]
    [TestCase("DHHC-1:01:AAAA:", "", "", "")]
    [TestCase("GOOD", "GOOD", "", "")]
    [TestCase("GOOD", "", "md5", "")]
    [TestCase("GOOD", "", "", "ffdhe1024")]
    public async Task MalformedSecretsAreInvalidArgumentsAndTheMessageDoesNotQuoteThem(string secret, string ctrl, string hash, string group)
    {
        using var dir = new TempDirectory("csinvme-server-test");
        await using var server = await InProcessServer.StartAsync(dir.Path);
        await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "vol", SizeBytes = 1 << 20, AllowedHosts = { Host } });
        var good = DhchapSecret.Generate(DhchapHash.Sha256).Format();
        var request = new SetHostSecretRequest
        {
            Name = "vol", HostNqn = Host, Secret = secret == "GOOD" ? good : secret, CtrlSecret = ctrl == "GOOD" ? good : ctrl, Hash = hash, DhGroup = group,
        };

        var error = await AsyncError(async () => await server.Volumes.SetHostSecretAsync(request));

        Assert.That(error.StatusCode, Is.EqualTo(StatusCode.InvalidArgument));
        Assert.That(error.Status.Detail, Does.Not.Contain(good[10..30]));
        Assert.That((await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "vol" })).Authentication, Is.Empty);
    }

    [Test]
    public async Task SecretsAreSealedAtRestSurviveARestartAndAnotherKeyLocksTheHostOut()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        var secret = DhchapSecret.Generate(DhchapHash.Sha384).Format();
        string nqn;
        await using (var first = await InProcessServer.StartAsync(dir.Path))
        {
            nqn = (await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "vol", SizeBytes = 1 << 20, AllowedHosts = { Host } })).SubsystemNqn;
            await first.Volumes.SetHostSecretAsync(new SetHostSecretRequest { Name = "vol", HostNqn = Host, Secret = secret });
        }

        // The database and, when it was not checkpointed into it, its write-ahead log.
        var stored = string.Concat(new[] { "", "-wal" }
            .Select(suffix => Path.Combine(dir.Path, StorageServer.MetadataFileName + suffix))
            .Where(File.Exists)
            .Select(path => Encoding.ASCII.GetString(File.ReadAllBytes(path))));
        Assert.That(stored, Does.Not.Contain(secret[10..40]), "the metadata store holds the secret sealed, not in clear");
        Assert.That(stored, Does.Contain("sealed:v1:"));

        await using (var second = await InProcessServer.StartAsync(dir.Path))
        {
            var credentials = second.Server.Target.FindSubsystem(nqn)!.FindHostCredentials(Host)!;
            Assert.That(credentials.HostSecret, Is.EqualTo(DhchapSecret.Parse(secret)), "the secret opens again after a restart");
        }

        File.Delete(Path.Combine(dir.Path, StorageServer.SecretKeyFileName));
        await using var third = await InProcessServer.StartAsync(dir.Path);
        var locked = third.Server.Target.FindSubsystem(nqn)!.FindHostCredentials(Host)!;
        Assert.That(locked.HostSecret, Is.Null, "another key cannot open it");
        Assert.That(locked.UnavailableReason, Does.Contain("sealed with key"));
        var view = await third.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "vol" });
        Assert.That(view.Authentication[0].Problem, Does.Contain("same --secret-key-file"));
    }

    private static async Task<RpcException> AsyncError(Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (RpcException e)
        {
            return e;
        }

        Assert.Fail("the call succeeded");
        return null!;
    }
}
