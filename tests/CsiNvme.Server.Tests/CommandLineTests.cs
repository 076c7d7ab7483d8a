using System.Net;
using CsiNvme.Server.Hosting;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

[TestFixture]
public sealed class CommandLineTests
{
    [Test]
    public void NoFlagsGiveTheEmbeddedDefaults()
    {
        var result = ServerCommandLine.Parse([]);

        Assert.That(result.Errors, Is.Empty);
        var options = result.Options!;
        Assert.Multiple(() =>
        {
            Assert.That(options.DataDirectory, Is.EqualTo("./csinvme-data"));
            Assert.That(options.NvmeListen, Is.EqualTo(new[] { new IPEndPoint(IPAddress.Loopback, 4420) }));
            Assert.That(options.ManagementListen, Is.EqualTo(new IPEndPoint(IPAddress.Loopback, 9500)));
            Assert.That(options.MetricsListen, Is.EqualTo(new IPEndPoint(IPAddress.Loopback, 9501)));
            Assert.That(options.Backend, Is.EqualTo(StorageBackend.Thin));
            Assert.That(options.Pools, Is.Empty, "the thin backend then makes its default pool");
            Assert.That(options.PoolReserves, Is.Empty, "every pool then keeps the default reserve");
            Assert.That(options.RecoverMetadata, Is.False);
            Assert.That(options.NvmePollTime, Is.EqualTo(TimeSpan.FromMicroseconds(50)));
            Assert.That(options.NvmeMaxConnections, Is.EqualTo(65536));
            Assert.That(options.NvmeMaxConnectionsPerHost, Is.Null, "derived from the queues granted: 17,664");
            Assert.That(options.ToTargetOptions().EffectiveMaxConnectionsPerHost, Is.EqualTo(17664));
            Assert.That(options.NvmeConnectTimeout, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(options.NvmeMaxThreads, Is.EqualTo(256));
            Assert.That(options.LogLevel, Is.EqualTo(LogLevel.Information));
        });
    }

    [Test]
    public void InsecureAllowsAManagementListenerWithoutTls()
    {
        var result = ServerCommandLine.Parse(["--mgmt-listen", "0.0.0.0:9500", "--insecure"]);

        Assert.That(result.Errors, Is.Empty);
        Assert.That((result.Options!.Insecure, result.Options.ManagementTls), Is.EqualTo((true, (ManagementTlsFiles?)null)));
    }

    [Test]
    public void EveryOptionIsParsed()
    {
        var result = ServerCommandLine.Parse(
        [
            "--data-dir", "/var/lib/csinvme",
            "--nvme-listen", "0.0.0.0:4420",
            "--nvme-listen", "[::1]:4421",
            "--mgmt-listen", "[::]:9600",
            "--tls-cert", "/etc/csinvme/tls/tls.crt",
            "--tls-key", "/etc/csinvme/tls/tls.key",
            "--tls-client-ca", "/etc/csinvme/tls/ca.crt",
            "--metrics-listen", "10.0.0.5:0",
            "--backend", "THIN",
            "--pool", "/srv/fast.img,10GiB",
            "--pool", "/dev/nvme1n1",
            "--pool", "relative/slow.pool,500G",
            "--pool-reserve", "2.5%",
            "--pool-reserve", "fast=10GiB",
            "--pool-reserve", "slow=0",
            "--recover-metadata",
            "--nvme-poll-us", "12.5",
            "--nvme-max-connections", "4096",
            "--nvme-max-connections-per-host", "700",
            "--nvme-connect-timeout", "7.5",
            "--nvme-max-threads", "0",
            "--log-level", "debug",
        ]);

        Assert.That(result.Errors, Is.Empty);
        var options = result.Options!;
        Assert.Multiple(() =>
        {
            Assert.That(options.DataDirectory, Is.EqualTo("/var/lib/csinvme"));
            Assert.That(options.NvmeListen, Is.EqualTo(new[] { new IPEndPoint(IPAddress.Any, 4420), new IPEndPoint(IPAddress.IPv6Loopback, 4421) }));
            Assert.That(options.ManagementListen, Is.EqualTo(new IPEndPoint(IPAddress.IPv6Any, 9600)));
            Assert.That(options.ManagementTls, Is.EqualTo(new ManagementTlsFiles("/etc/csinvme/tls/tls.crt", "/etc/csinvme/tls/tls.key", "/etc/csinvme/tls/ca.crt")));
            Assert.That(options.Insecure, Is.False);
            Assert.That(options.MetricsListen, Is.EqualTo(new IPEndPoint(IPAddress.Parse("10.0.0.5"), 0)));
            Assert.That(options.Backend, Is.EqualTo(StorageBackend.Thin));
            Assert.That(options.Pools, Is.EqualTo(new[]
            {
                new PoolDefinition("/srv/fast.img", 10L << 30),
                new PoolDefinition("/dev/nvme1n1", null),
                new PoolDefinition("relative/slow.pool", 500L << 30),
            }));
            Assert.That(options.PoolReserves, Is.EqualTo(new[]
            {
                new PoolReserve(null, 2.5, null),
                new PoolReserve("fast", null, 10L << 30),
                new PoolReserve("slow", null, 0),
            }));
            Assert.That(options.RecoverMetadata, Is.True);
            Assert.That(options.NvmePollTime, Is.EqualTo(TimeSpan.FromMicroseconds(12.5)));
            Assert.That(options.NvmeMaxConnections, Is.EqualTo(4096));
            Assert.That(options.NvmeMaxConnectionsPerHost, Is.EqualTo(700));
            Assert.That(options.NvmeConnectTimeout, Is.EqualTo(TimeSpan.FromSeconds(7.5)));
            Assert.That(options.NvmeMaxThreads, Is.Zero);
            var target = options.ToTargetOptions();
            Assert.That((target.MaxConnections, target.EffectiveMaxConnectionsPerHost, target.ConnectTimeout, target.MaxConnectionThreads),
                Is.EqualTo((4096, 700, TimeSpan.FromSeconds(7.5), 0)));
            Assert.That(options.LogLevel, Is.EqualTo(LogLevel.Debug));
        });
    }

    [TestCase(new[] { "--nvme-listen", "127.0.0.1:65536" }, "port")]
    [TestCase(new[] { "--nvme-listen", "127.0.0.1:-1" }, "port")]
    [TestCase(new[] { "--nvme-listen", "127.0.0.1:http" }, "port")]
    [TestCase(new[] { "--nvme-listen", "127.0.0.1" }, "ADDR:PORT")]
    [TestCase(new[] { "--nvme-listen", "localhost:4420" }, "not an IP address")]
    [TestCase(new[] { "--nvme-listen", "::1:4420" }, "brackets")]
    [TestCase(new[] { "--nvme-listen", "[127.0.0.1]:4420" }, "not an IPv6 address")]
    [TestCase(new[] { "--mgmt-listen", "1.2.3:80" }, "not an IP address")]
    [TestCase(new[] { "--metrics-listen", ":9501" }, "ADDR:PORT")]
    [TestCase(new[] { "--mgmt-listen", "0.0.0.0:9500" }, "not a loopback address: give --tls-cert, --tls-key and --tls-client-ca")]
    [TestCase(new[] { "--mgmt-listen", "10.1.2.3:9500", "--tls-cert", "c.pem", "--tls-key", "k.pem" }, "go together")]
    [TestCase(new[] { "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem", "--insecure" }, "--insecure contradicts")]
    [TestCase(new[] { "--backend", "ceph" }, "thin, file, memory")]
    [TestCase(new[] { "--pool", "/srv/p.img,12XB" }, "invalid size")]
    [TestCase(new[] { "--pool", "/srv/p.img,0" }, "invalid size")]
    [TestCase(new[] { "--pool", ",1G" }, "path is empty")]
    [TestCase(new[] { "--pool", "/srv/bad name.img" }, "pool name")]
    [TestCase(new[] { "--pool", "/a/p.img,1G", "--pool", "/b/p.pool,1G" }, "both be pool 'p'")]
    [TestCase(new[] { "--backend", "file", "--pool", "/srv/p.img,1G" }, "--pool needs --backend thin")]
    [TestCase(new[] { "--pool-reserve", "101%" }, "0% to 100%")]
    [TestCase(new[] { "--pool-reserve", "-1%" }, "0% to 100%")]
    [TestCase(new[] { "--pool-reserve", "lots" }, "neither a percentage")]
    [TestCase(new[] { "--pool-reserve", "bad name=1G" }, "not a pool name")]
    [TestCase(new[] { "--backend", "file", "--pool-reserve", "1%" }, "--pool-reserve needs --backend thin")]
    [TestCase(new[] { "--backend", "memory", "--recover-metadata" }, "--recover-metadata needs --backend thin")]
    [TestCase(new[] { "--nvme-poll-us", "-1" }, "--nvme-poll-us")]
    [TestCase(new[] { "--nvme-poll-us", "fast" }, "--nvme-poll-us")]
    [TestCase(new[] { "--nvme-max-connections", "0" }, "--nvme-max-connections: '0' is not a whole number of at least 1")]
    [TestCase(new[] { "--nvme-max-connections-per-host", "many" }, "--nvme-max-connections-per-host")]
    [TestCase(new[] { "--nvme-connect-timeout", "0" }, "--nvme-connect-timeout")]
    [TestCase(new[] { "--nvme-max-threads", "-1" }, "--nvme-max-threads")]
    [TestCase(new[] { "--log-level", "loud" }, "trace")]
    [TestCase(new[] { "--data-dir" }, "--data-dir")]
    [TestCase(new[] { "--no-such-flag" }, "--no-such-flag")]
    [TestCase(new[] { "extra-argument" }, "extra-argument")]
    public void BadOptionsAreErrors(string[] args, string expectedMessagePart)
    {
        var result = ServerCommandLine.Parse(args);

        Assert.That(result.Options, Is.Null);
        Assert.That(result.Errors, Is.Not.Empty);
        Assert.That(string.Join("\n", result.Errors), Does.Contain(expectedMessagePart));
    }

    [Test]
    public void MemoryAndFileBackendsCanStillBeChosen()
    {
        Assert.That(ServerCommandLine.Parse(["--backend", "memory"]).Options!.Backend, Is.EqualTo(StorageBackend.Memory));
        Assert.That(ServerCommandLine.Parse(["--backend", "file"]).Options!.Backend, Is.EqualTo(StorageBackend.File));
    }

    [Test]
    public void APoolKeepsItsOwnReserveElseTheGeneralOneElseFivePercent()
    {
        PoolReserve[] reserves = [new(null, 10, null), new("fast", null, 1L << 30), new("fast", 1, null)];
        Assert.That(PoolReserve.For("fast", reserves), Is.EqualTo(reserves[2]), "the last one given for the pool");
        Assert.That(PoolReserve.For("slow", reserves), Is.EqualTo(reserves[0]));
        Assert.That(PoolReserve.For("slow", []), Is.EqualTo(PoolReserve.Default));
        Assert.That(PoolReserve.Default.BytesOf(1000L << 20), Is.EqualTo(50L << 20));
        Assert.That(new PoolReserve(null, null, 8L << 30).BytesOf(1L << 30), Is.EqualTo(1L << 30), "never more than the pool");
        Assert.That(reserves[1].ToString(), Is.EqualTo("fast=1.0 GiB"));
        Assert.That(reserves[0].Amount, Is.EqualTo("10%"));
    }

    [Test]
    public void HelpIsNeitherOptionsNorErrors()
    {
        var result = ServerCommandLine.Parse(["--help"]);
        Assert.That(result.HelpRequested, Is.True);
    }

    [TestCase("127.0.0.1:4420", "127.0.0.1", 4420)]
    [TestCase("0.0.0.0:0", "0.0.0.0", 0)]
    [TestCase("[::1]:4420", "::1", 4420)]
    [TestCase("[fe80::1]:65535", "fe80::1", 65535)]
    public void EndpointsParse(string text, string address, int port)
    {
        Assert.That(ServerCommandLine.TryParseEndpoint(text, out var endpoint, out var error), Is.True, error);
        Assert.That(endpoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse(address), port)));
        Assert.That(endpoint!.ToString(), Is.EqualTo(text), "the same form is printed back");
    }
}
