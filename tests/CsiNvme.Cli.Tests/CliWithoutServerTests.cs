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
    [TestCase("volume", "create", "v", "--size", "1G", "--replicas", "4")]
    [TestCase("volume", "create", "v", "--size", "1G", "--replicas", "0")]
    [TestCase("volume", "create", "v", "--size", "1G", "--replicas", "two")]
    [TestCase("volume", "create", "v", "--size", "1G", "--block-size", "big")]
    [TestCase("volume", "verify")]
    [TestCase("volume", "verify", "v", "--region-size", "12XB")]
    [TestCase("volume", "verify", "v", "--region-size", "8GiB")]
    [TestCase("volume", "verify", "v", "--timeout", "0s")]
    [TestCase("node")]
    [TestCase("node", "drain")]
    [TestCase("node", "drain", "a", "b")]
    [TestCase("node", "drain", "n", "--timeout", "5m")]
    [TestCase("node", "drain", "n", "--wait", "--timeout", "soon")]
    [TestCase("node", "drain", "n", "--wait", "--timeout", "5x")]
    [TestCase("node", "undrain")]
    [TestCase("node", "list", "extra")]
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
        Assert.That(run.Stdout, Does.Contain("volume").And.Contain("snapshot").And.Contain("pool").And.Contain("host").And.Contain("node").And.Contain("server").And.Contain("--server"));
    }

    [Test]
    public async Task DrainHelpNamesTheTimeoutExitCode()
    {
        CliRun run = await CliRun.RunAsync("node", "drain", "--help");
        Assert.That(run.ExitCode, Is.Zero, run.ToString());
        Assert.That(run.Stdout, Does.Contain("--wait").And.Contain("--timeout").And.Contain("exit code 5"));
    }

    [TestCase("300s", 300.0)]
    [TestCase("5m", 300.0)]
    [TestCase("1h30m", 5400.0)]
    [TestCase("1m30s", 90.0)]
    [TestCase("90", 90.0)]
    [TestCase("2.5s", 2.5)]
    [TestCase("500ms", 0.5)]
    [TestCase(" 10s ", 10.0)]
    public void DurationsParse(string text, double seconds)
    {
        Assert.That(DurationOption.TryParse(text, out TimeSpan duration), Is.True);
        Assert.That(duration.TotalSeconds, Is.EqualTo(seconds).Within(1e-9));
    }

    [TestCase("")]
    [TestCase("s")]
    [TestCase("-5s")]
    [TestCase("5 s")]
    [TestCase("5d")]
    [TestCase("5m3")]
    [TestCase("1..2s")]
    [TestCase("99999999h")]
    public void NonDurationsDoNotParse(string text)
    {
        Assert.That(DurationOption.TryParse(text, out _), Is.False, text);
    }
}
