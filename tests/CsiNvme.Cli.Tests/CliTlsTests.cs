using System.Net;
using CsiNvme.Server;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cli.Tests;

/// <summary>csinvme against a storage server whose management API requires mutual TLS, with certificates made by the test.</summary>
public sealed class CliTlsTests
{
    private TempDirectory _directory = null!;
    private TestCertificates _certificates = null!;
    private StorageServer _server = null!;

    [SetUp]
    public async Task SetUp()
    {
        _directory = new TempDirectory("csinvme-cli-tls");
        _certificates = new TestCertificates(_directory.Combine("tls"));
        var serverPair = _certificates.Issue("node:server");
        _server = await StorageServer.StartAsync(new StorageServerOptions
        {
            DataDirectory = _directory.Combine("data"),
            NvmeListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            ManagementListen = new IPEndPoint(IPAddress.Loopback, 0),
            MetricsListen = new IPEndPoint(IPAddress.Loopback, 0),
            Backend = StorageBackend.Memory,
            ManagementTls = new ManagementTlsFiles(serverPair.CertificateFile, serverPair.KeyFile, _certificates.CaFile),
            ConfigureLogging = logging => logging.ClearProviders(),
        });
    }

    [TearDown]
    public async Task TearDown()
    {
        await _server.DisposeAsync();
        _directory.Dispose();
    }

    private Task<CliRun> Csinvme(string? role, params string[] args)
    {
        List<string> tls = ["--server", _server.ManagementEndpoint.ToString(), "--tls-ca", _certificates.CaFile];
        if (role is not null)
        {
            var pair = _certificates.Issue(role);
            tls.AddRange(["--tls-cert", pair.CertificateFile, "--tls-key", pair.KeyFile]);
        }

        return CliRun.RunAsync([.. args, .. tls]);
    }

    [Test]
    public async Task Without_a_client_certificate_it_says_the_server_requires_one()
    {
        var run = await Csinvme(null, "host", "allow", "victim", "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-0000000000ff");

        Assert.That(run.ExitCode, Is.EqualTo(1), run.ToString());
        Assert.That(run.Stderr, Does.Contain("requires a client certificate: give --tls-cert and --tls-key"));
    }

    [Test]
    public async Task A_role_that_may_not_make_the_call_is_told_which_role_and_call()
    {
        Assert.That((await Csinvme("admin:alice", "volume", "create", "db", "--size", "1MiB")).ExitCode, Is.Zero);

        var list = await Csinvme("read-only:bob", "volume", "list");
        var delete = await Csinvme("read-only:bob", "volume", "delete", "db");

        Assert.That(list.ExitCode, Is.Zero, list.ToString());
        Assert.That(list.Stdout, Does.Contain("db"));
        Assert.That(delete.ExitCode, Is.EqualTo(1), delete.ToString());
        Assert.That(delete.Stderr, Does.Contain("permission denied: role read-only may not call DeleteVolume"));
        Assert.That((await Csinvme("admin:alice", "volume", "delete", "db")).ExitCode, Is.Zero);
    }

    [Test]
    public async Task Without_tls_it_suggests_giving_the_ca()
    {
        var run = await CliRun.RunAsync("volume", "list", "--server", _server.ManagementEndpoint.ToString());

        Assert.That(run.ExitCode, Is.EqualTo(3), run.ToString());
        Assert.That(run.Stderr, Does.Contain("--tls-ca"));
    }

    [Test]
    [NonParallelizable]
    public async Task The_endpoint_and_certificates_come_from_the_config_file_and_the_environment()
    {
        var admin = _certificates.Issue("admin:config");
        var config = _directory.Combine("config.json");
        File.WriteAllText(config, $$"""
            {"server": "{{_server.ManagementEndpoint}}", "tlsCa": "{{Path.GetRelativePath(_directory.Path, _certificates.CaFile)}}",
             "tlsCert": "{{admin.CertificateFile}}", "tlsKey": "{{admin.KeyFile}}"}
            """);
        var reader = _certificates.Issue("read-only:env");
        var saved = new[] { "CSINVME_CONFIG", "CSINVME_TLS_CERT", "CSINVME_TLS_KEY" }.ToDictionary(v => v, Environment.GetEnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable("CSINVME_CONFIG", config);
            var created = await CliRun.RunAsync("volume", "create", "from-config", "--size", "1MiB");
            Assert.That(created.ExitCode, Is.Zero, created.ToString());

            // The environment wins over the file.
            Environment.SetEnvironmentVariable("CSINVME_TLS_CERT", reader.CertificateFile);
            Environment.SetEnvironmentVariable("CSINVME_TLS_KEY", reader.KeyFile);
            var refused = await CliRun.RunAsync("volume", "delete", "from-config");
            Assert.That(refused.Stderr, Does.Contain("role read-only may not call DeleteVolume"), refused.ToString());
        }
        finally
        {
            foreach (var (name, value) in saved)
            {
                Environment.SetEnvironmentVariable(name, value);
            }
        }
    }
}
