using System.Text.RegularExpressions;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>The server as a separate process: the ready line, exit codes and signal handling.</summary>
[TestFixture]
public sealed partial class ServerProcessTests
{
    [Test]
    public async Task PrintsOneReadyLineServesAndExitsZeroOnSigterm()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        await using var server = await ServerProcess.StartAsync(dir.Path);

        var volume = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "proc", SizeBytes = 4096 });
        Assert.That(volume.ListenAddresses, Is.EqualTo(server.NvmeEndpoints.Select(e => e.ToString())));

        var exitCode = await server.StopAsync();
        Assert.That(exitCode, Is.Zero, server.OutputTail());

        var stdout = server.Output.Split('\n').Where(l => l.StartsWith("CSINVME-READY", StringComparison.Ordinal)).ToArray();
        Assert.That(stdout, Has.Length.EqualTo(1), server.OutputTail());
        Assert.That(stdout[0], Does.Match(ReadyLine()));
        Assert.That(File.Exists(Path.Combine(dir.Path, "metadata.db")), Is.True);
    }

    [TestCase("--backend", "ceph")]
    [TestCase("--nvme-listen", "127.0.0.1:99999")]
    [TestCase("--bogus", "x")]
    public async Task BadOptionsExitWithCodeTwoAndAClearMessage(string option, string value)
    {
        var result = await ProcessRunner.RunAsync("dotnet", [RepoPaths.ServerDll, option, value], TimeSpan.FromSeconds(60));

        Assert.That(result.ExitCode, Is.EqualTo(2), result.Output);
        Assert.That(result.Output, Does.Contain("csinvme-server:").And.Contain(option == "--bogus" ? "--bogus" : value));
        Assert.That(result.Output, Does.Not.Contain("CSINVME-READY"));
    }

    [GeneratedRegex(@"^CSINVME-READY nvme=127\.0\.0\.1:[1-9][0-9]* mgmt=127\.0\.0\.1:[1-9][0-9]* metrics=127\.0\.0\.1:[1-9][0-9]*$")]
    private static partial Regex ReadyLine();
}
