using System.Net;
using System.Text.Json;
using CsiNvme.Server;
using CsiNvme.Storage;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cli.Tests;

/// <summary>Snapshots, clones and pools through csinvme against a real thin-backend server in a temp directory.</summary>
public sealed class CliSnapshotTests
{
    private const long PoolBytes = 256L << 20;

    private TempDirectory _dataDirectory = null!;
    private StorageServer _server = null!;

    [SetUp]
    public async Task SetUp()
    {
        _dataDirectory = new TempDirectory("csinvme-cli-thin");
        _server = await StorageServer.StartAsync(new StorageServerOptions
        {
            DataDirectory = _dataDirectory.Path,
            NvmeListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            ManagementListen = new IPEndPoint(IPAddress.Loopback, 0),
            MetricsListen = new IPEndPoint(IPAddress.Loopback, 0),
            Pools = [new PoolDefinition(_dataDirectory.Combine("tank.img"), PoolBytes)],
            ConfigureLogging = logging => logging.ClearProviders(),
        });
    }

    [TearDown]
    public async Task TearDown()
    {
        await _server.DisposeAsync();
        _dataDirectory.Dispose();
    }

    private Task<CliRun> Csinvme(params string[] args) =>
        CliRun.RunAsync([.. args, "--server", _server.ManagementEndpoint.ToString()]);

    private async Task<CliRun> Ok(params string[] args)
    {
        CliRun run = await Csinvme(args);
        Assert.That(run.ExitCode, Is.Zero, run.ToString());
        Assert.That(run.Stderr, Is.Empty, run.ToString());
        return run;
    }

    [Test]
    public async Task SnapshotCloneAndDeleteInTables()
    {
        await Ok("volume", "create", "golden", "--size", "64MiB");
        IBlockVolume golden = StorageOf("golden");
        byte[] pattern = Pattern(1, 128 * 1024);
        Assert.That(golden.Write(1 << 20, pattern, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        CliRun created = await Ok("snapshot", "create", "golden", "golden-v1");
        Assert.That(created.Stdout, Does.Contain("golden-v1").And.Contain("Volume:").And.Contain("golden (").And.Contain("64.0 MiB (67108864 bytes)").And.Contain("tank"));

        // The source moves on; the clone shows the snapshot's data.
        Assert.That(golden.Write(1 << 20, Pattern(2, pattern.Length), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
        CliRun clone = await Ok("volume", "create", "vm-1", "--from-snapshot", "golden-v1");
        Assert.That(clone.Stdout, Does.Contain("64.0 MiB (67108864 bytes)").And.Contain("Pool:").And.Contain("tank"));
        Assert.That(Read("vm-1", 1 << 20, pattern.Length), Is.EqualTo(pattern));

        CliRun bigger = await Ok("volume", "create", "vm-2", "--from-volume", "golden", "--size", "128MiB");
        Assert.That(bigger.Stdout, Does.Contain("128.0 MiB (134217728 bytes)"));
        Assert.That(Read("vm-2", 1 << 20, pattern.Length), Is.EqualTo(Pattern(2, pattern.Length)));

        await Ok("snapshot", "create", "vm-2", "vm-2-a");
        CliRun list = await Ok("snapshot", "list");
        string[] lines = list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(3), list.ToString());
        Assert.That(lines[0], Does.Match(@"^NAME\s+VOLUME\s+SIZE\s+POOL\s+CREATED$"));
        Assert.That(lines[1], Does.Match(@"^golden-v1\s+golden\s+64\.0 MiB\s+tank\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$"));
        Assert.That(lines[2], Does.Match(@"^vm-2-a\s+vm-2\s+128\.0 MiB\s+tank\s+"));

        CliRun ofGolden = await Ok("snapshot", "ls", "golden");
        Assert.That(ofGolden.Stdout, Does.Contain("golden-v1").And.Not.Contain("vm-2-a"));
        Assert.That((await Ok("snapshot", "get", "vm-2-a")).Stdout, Does.Contain("vm-2 ("));

        CliRun pools = await Ok("pool", "list");
        string[] poolLines = pools.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(poolLines[0], Does.Match(@"^NAME\s+CAPACITY\s+USED\s+FREE\s+USE%\s+VOLUMES\s+SNAPSHOTS\s+PATH$"));
        Assert.That(poolLines[1], Does.Match(@"^tank\s+255\.9 MiB\s+\S+ \S+\s+\S+ \S+\s+\d+\.\d%\s+3\s+2\s+/.*tank\.img$"));

        Assert.That((await Ok("snapshot", "delete", "golden-v1")).Stdout, Is.EqualTo("Deleted snapshot golden-v1." + Environment.NewLine));
        Assert.That(Read("vm-1", 1 << 20, pattern.Length), Is.EqualTo(pattern), "a clone outlives its snapshot");
        await Ok("snapshot", "rm", "vm-2-a");
        Assert.That((await Ok("snapshot", "list")).Stdout.Trim(), Is.EqualTo("No snapshots."));
    }

    [Test]
    public async Task SnapshotsClonesAndPoolsInJson()
    {
        await Ok("volume", "create", "db", "--size", "32MiB", "--block-size", "4096");
        Assert.That(StorageOf("db").Write(0, Pattern(3, 1 << 20), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        CliRun created = await Ok("--json", "snapshot", "create", "db", "db-nightly", "--label", "schedule=nightly");
        string snapshotId;
        using (JsonDocument doc = JsonDocument.Parse(created.Stdout))
        {
            JsonElement s = doc.RootElement;
            Assert.That(s.GetProperty("name").GetString(), Is.EqualTo("db-nightly"));
            Assert.That(s.GetProperty("sourceVolume").GetString(), Is.EqualTo("db"));
            Assert.That(s.GetProperty("sizeBytes").GetInt64(), Is.EqualTo(32L << 20));
            Assert.That(s.GetProperty("size").GetString(), Is.EqualTo("32.0 MiB"));
            Assert.That(s.GetProperty("blockSize").GetInt32(), Is.EqualTo(4096));
            Assert.That(s.GetProperty("pool").GetString(), Is.EqualTo("tank"));
            Assert.That(s.GetProperty("allocatedBytes").GetInt64(), Is.EqualTo(1L << 20));
            Assert.That(s.GetProperty("labels").GetProperty("schedule").GetString(), Is.EqualTo("nightly"));
            snapshotId = s.GetProperty("id").GetString()!;
            Assert.That(Guid.TryParse(snapshotId, out _), Is.True);
        }

        using (JsonDocument doc = JsonDocument.Parse((await Ok("snapshot", "list", "--json")).Stdout))
        {
            Assert.That(doc.RootElement.GetArrayLength(), Is.EqualTo(1));
            Assert.That(doc.RootElement[0].GetProperty("id").GetString(), Is.EqualTo(snapshotId));
            Assert.That(doc.RootElement[0].GetProperty("labels").GetProperty("schedule").GetString(), Is.EqualTo("nightly"));
        }

        using (JsonDocument doc = JsonDocument.Parse((await Ok("volume", "create", "db-copy", "--from-snapshot", "db-nightly", "--json")).Stdout))
        {
            JsonElement v = doc.RootElement;
            Assert.That(v.GetProperty("sizeBytes").GetInt64(), Is.EqualTo(32L << 20));
            Assert.That(v.GetProperty("blockSize").GetInt32(), Is.EqualTo(4096));
            Assert.That(v.GetProperty("pool").GetString(), Is.EqualTo("tank"));
            Assert.That(v.GetProperty("backend").GetString(), Is.EqualTo("thin"));
            Assert.That(v.GetProperty("allocatedBytes").GetInt64(), Is.Zero, "a fresh clone owns nothing yet");
        }

        using (JsonDocument doc = JsonDocument.Parse((await Ok("pool", "list", "--json")).Stdout))
        {
            JsonElement p = doc.RootElement[0];
            Assert.That(doc.RootElement.GetArrayLength(), Is.EqualTo(1));
            Assert.That(p.GetProperty("name").GetString(), Is.EqualTo("tank"));
            Assert.That(p.GetProperty("path").GetString(), Is.EqualTo(_dataDirectory.Combine("tank.img")));
            Assert.That(p.GetProperty("journalPath").GetString(), Is.EqualTo(_dataDirectory.Combine("tank.img") + ".journal"));
            Assert.That(p.GetProperty("clusterSize").GetInt32(), Is.EqualTo(64 * 1024));
            Assert.That(p.GetProperty("capacityBytes").GetInt64(), Is.EqualTo(PoolBytes - 64 * 1024));
            Assert.That(p.GetProperty("usedBytes").GetInt64(), Is.EqualTo(1L << 20));
            Assert.That(p.GetProperty("freeBytes").GetInt64(), Is.EqualTo(PoolBytes - 64 * 1024 - (1L << 20)));
            Assert.That(p.GetProperty("volumeCount").GetInt32(), Is.EqualTo(2));
            Assert.That(p.GetProperty("snapshotCount").GetInt32(), Is.EqualTo(1));
        }

        using (JsonDocument doc = JsonDocument.Parse((await Ok("snapshot", "delete", "db-nightly", "--json")).Stdout))
        {
            Assert.That(doc.RootElement.GetProperty("deleted").GetString(), Is.EqualTo("db-nightly"));
        }

        Assert.That((await Ok("snapshot", "list", "--json")).Stdout.Trim(), Is.EqualTo("[]"));
    }

    [Test]
    public async Task RefusalsExitWithOne()
    {
        await Ok("volume", "create", "src", "--size", "8MiB");
        await Ok("snapshot", "create", "src", "s");

        foreach ((string[] args, string expected) in new[]
        {
            (new[] { "snapshot", "get", "nope" }, "not found"),
            (["snapshot", "delete", "nope"], "not found"),
            (["snapshot", "create", "nope", "s2"], "not found"),
            (["snapshot", "create", "src", "s"], "already exists"),
            (["volume", "create", "c", "--from-snapshot", "nope"], "not found"),
            (["volume", "create", "c", "--from-volume", "src", "--size", "4MiB"], "at least as large"),
            (["volume", "create", "c", "--from-snapshot", "s", "--pool", "other"], "same pool"),
            (["volume", "create", "c", "--size", "1G", "--pool", "other"], "no pool named other"),
        })
        {
            CliRun run = await Csinvme(args);
            Assert.That(run.ExitCode, Is.EqualTo(1), run.ToString());
            Assert.That(run.Stderr, Does.StartWith("csinvme: ").And.Contain(expected), run.ToString());
            Assert.That(run.Stdout, Is.Empty, run.ToString());
        }

        Assert.That((await Ok("volume", "list", "--json")).Stdout, Does.Not.Contain("\"c\""), "nothing was created");
    }

    private IBlockVolume StorageOf(string volume) =>
        _server.Local.Find(volume).Storage;

    private byte[] Read(string volume, long offset, int length)
    {
        var buffer = new byte[length];
        Assert.That(StorageOf(volume).Read(offset, buffer), Is.EqualTo(StorageStatus.Success));
        return buffer;
    }

    private static byte[] Pattern(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
