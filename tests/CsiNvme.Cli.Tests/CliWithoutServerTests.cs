using System.Net;
using System.Net.Sockets;

namespace CsiNvme.Cli.Tests;

/// <summary>Command lines that must fail (or print help) without a server answering.</summary>
public sealed class CliWithoutServerTests
{
    [TestCase("volume", "create", "v", "--size", "12XB")]
    [TestCase("volume", "create", "v", "--size", "-1G")]
    [TestCase("volume", "create", "v", "--size", "0")]
    [TestCase("volume", "create", "v")]
    [TestCase("volume", "resize", "v", "--size", "lots")]
    [TestCase("volume", "create", "v", "--size", "1G", "--block-size", "1024")]
    [TestCase("volume", "frobnicate")]
    [TestCase("volume")]
    [TestCase("volume", "create", "v", "--from-snapshot", "s", "--from-volume", "w")]
    [TestCase("volume", "create", "v", "--from-snapshot", "s", "--size", "huge")]
    [TestCase("snapshot", "create", "v")]
    [TestCase("snapshot", "delete")]
    [TestCase("snapshot", "list", "a", "b")]
    [TestCase("snapshot")]
    [TestCase("pool", "list", "extra")]
    [TestCase("volume", "create", "v", "--size", "1G", "--label", "novalue")]
    [TestCase("volume", "create", "v", "--size", "1G", "--label", "=v")]
    [TestCase("volume", "create", "v", "--size", "1G", "--label", "bad key=v")]
    [TestCase("volume", "create", "v", "--size", "1G", "--label", "k=1", "--label", "k=2")]
    [TestCase("snapshot", "create", "v", "s", "--label", "k!=v")]
    public async Task BadCommandLinesAreUsageErrors(params string[] args)
    {
        // Port 1 is never a storage server: a usage error must be reported before any connection is tried.
        CliRun run = await CliRun.RunAsync([.. args, "--server", "127.0.0.1:1"]);
        Assert.That(run.ExitCode, Is.EqualTo(2), run.ToString());
        Assert.That(run.Stderr, Does.StartWith("csinvme: "));
        Assert.That(run.Stdout, Is.Empty);
    }

    [Test]
    public async Task AVolumeWithoutSizeNeedsASource()
    {
        CliRun run = await CliRun.RunAsync("volume", "create", "v", "--server", "127.0.0.1:1");
        Assert.That(run.ExitCode, Is.EqualTo(2), run.ToString());
        Assert.That(run.Stderr, Does.Contain("--size is required").And.Contain("--from-snapshot"));
    }

    [Test]
    public async Task AClosedPortIsReportedAsUnreachable()
    {
        // Bind then release a port so that nothing listens on it.
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        string address = $"127.0.0.1:{port}";

        CliRun run = await CliRun.RunAsync("volume", "list", "--server", address);

        Assert.That(run.ExitCode, Is.EqualTo(3), run.ToString());
        Assert.That(run.Stderr, Does.Contain(address).And.Contain("connection refused").And.Contain("server running"));
    }

    [Test]
    public async Task AMalformedServerAddressIsAUsageError()
    {
        CliRun run = await CliRun.RunAsync("volume", "list", "--server", "localhost");
        Assert.That(run.ExitCode, Is.EqualTo(2), run.ToString());
        Assert.That(run.Stderr, Does.Contain("ADDR:PORT"));
    }

    [Test]
    public async Task HelpListsTheCommandGroups()
    {
        CliRun run = await CliRun.RunAsync("--help");
        Assert.That(run.ExitCode, Is.Zero, run.ToString());
        Assert.That(run.Stdout, Does.Contain("volume").And.Contain("snapshot").And.Contain("pool").And.Contain("host").And.Contain("server").And.Contain("--server"));
    }
}
