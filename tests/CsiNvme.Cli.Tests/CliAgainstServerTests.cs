using System.Net;
using System.Text.Json;
using CsiNvme.Server;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cli.Tests;

/// <summary>Runs csinvme in-process against a real storage server (memory backend) on loopback ports.</summary>
public sealed class CliAgainstServerTests
{
    private const string HostA = "nqn.2014-08.org.nvmexpress:uuid:6d1f4a52-1d5b-4a7e-9a55-0b6d7c1e0a01";
    private const string HostB = "nqn.2014-08.org.nvmexpress:uuid:6d1f4a52-1d5b-4a7e-9a55-0b6d7c1e0a02";

    private TempDirectory _dataDirectory = null!;
    private StorageServer _server = null!;

    [SetUp]
    public async Task SetUp()
    {
        _dataDirectory = new TempDirectory("csinvme-cli");
        _server = await StorageServer.StartAsync(new StorageServerOptions
        {
            DataDirectory = _dataDirectory.Path,
            NvmeListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            ManagementListen = new IPEndPoint(IPAddress.Loopback, 0),
            MetricsListen = new IPEndPoint(IPAddress.Loopback, 0),
            Backend = StorageBackend.Memory,
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

    [Test]
    public async Task CreateListGetResizeDeleteInTables()
    {
        CliRun created = await Csinvme("volume", "create", "data-1", "--size", "1GiB", "--allow-host", HostA);
        Assert.That(created.ExitCode, Is.Zero, created.ToString());
        Assert.That(created.Stdout, Does.Contain("data-1").And.Contain("1.0 GiB (1073741824 bytes)").And.Contain(HostA));
        Assert.That(created.Stderr, Is.Empty);

        Assert.That((await Csinvme("volume", "create", "data-2", "--size", "512MiB", "--allow-any-host")).ExitCode, Is.Zero);

        CliRun list = await Csinvme("volume", "list");
        Assert.That(list.ExitCode, Is.Zero, list.ToString());
        string[] lines = list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(3), list.ToString());
        Assert.That(lines[0], Does.Match(@"^NAME\s+SIZE\s+BLOCK\s+REPLICAS\s+HOSTS\s+NQN$"));
        Assert.That(lines[1], Does.Match(@"^data-1\s+1\.0 GiB\s+512\s+1\s+" + HostA.Replace(".", @"\.") + @"\s+nqn\."));
        Assert.That(lines[2], Does.Match(@"^data-2\s+512\.0 MiB\s+512\s+1\s+any\s+nqn\."));
        // Columns line up: every row's NQN starts where the header's does.
        int nqnColumn = lines[0].IndexOf("NQN", StringComparison.Ordinal);
        Assert.That(lines[1].IndexOf("nqn.2026", StringComparison.Ordinal), Is.EqualTo(nqnColumn));
        Assert.That(lines[2].IndexOf("nqn.2026", StringComparison.Ordinal), Is.EqualTo(nqnColumn));

        CliRun get = await Csinvme("volume", "get", "data-1");
        Assert.That(get.ExitCode, Is.Zero, get.ToString());
        Assert.That(get.Stdout, Does.Contain("Subsystem NQN:").And.Contain("NGUID:").And.Contain("Listening on:").And.Contain("127.0.0.1:"));

        CliRun resized = await Csinvme("volume", "resize", "data-1", "--size", "2G");
        Assert.That(resized.ExitCode, Is.Zero, resized.ToString());
        Assert.That(resized.Stdout, Does.Contain("2.0 GiB (2147483648 bytes)"));

        CliRun deleted = await Csinvme("volume", "delete", "data-1");
        Assert.That(deleted.ExitCode, Is.Zero, deleted.ToString());
        Assert.That(deleted.Stdout, Is.EqualTo("Deleted volume data-1." + Environment.NewLine));

        CliRun after = await Csinvme("volume", "list");
        Assert.That(after.Stdout, Does.Not.Contain("data-1").And.Contain("data-2"));
        Assert.That((await Csinvme("volume", "delete", "data-2")).ExitCode, Is.Zero);
        Assert.That((await Csinvme("volume", "list")).Stdout.Trim(), Is.EqualTo("No volumes."));
    }

    [Test]
    public async Task CreateListGetResizeDeleteInJson()
    {
        CliRun created = await Csinvme("--json", "volume", "create", "db", "--size", "1GiB", "--block-size", "4096", "--allow-host", HostA, "--allow-host", HostB);
        Assert.That(created.ExitCode, Is.Zero, created.ToString());
        using (JsonDocument doc = JsonDocument.Parse(created.Stdout))
        {
            JsonElement v = doc.RootElement;
            Assert.That(v.GetProperty("name").GetString(), Is.EqualTo("db"));
            Assert.That(v.GetProperty("sizeBytes").GetInt64(), Is.EqualTo(1L << 30));
            Assert.That(v.GetProperty("size").GetString(), Is.EqualTo("1.0 GiB"));
            Assert.That(v.GetProperty("blockSize").GetInt32(), Is.EqualTo(4096));
            Assert.That(v.GetProperty("subsystemNqn").GetString(), Does.StartWith("nqn.2026-11.io.csinvme:volume:"));
            Assert.That(v.GetProperty("nguid").GetString(), Does.Match("^[0-9a-f]{32}$"));
            Assert.That(Guid.TryParse(v.GetProperty("uuid").GetString(), out _), Is.True);
            Assert.That(v.GetProperty("allowAnyHost").GetBoolean(), Is.False);
            Assert.That(v.GetProperty("allowedHosts").EnumerateArray().Select(e => e.GetString()), Is.EqualTo(new[] { HostA, HostB }));
            string expectedListen = _server.NvmeEndpoints[0].ToString();
            Assert.That(v.GetProperty("listenAddresses").EnumerateArray().Select(e => e.GetString()), Does.Contain(expectedListen));
        }

        CliRun list = await Csinvme("volume", "list", "--json");
        Assert.That(list.ExitCode, Is.Zero, list.ToString());
        using (JsonDocument doc = JsonDocument.Parse(list.Stdout))
        {
            Assert.That(doc.RootElement.GetArrayLength(), Is.EqualTo(1));
            Assert.That(doc.RootElement[0].GetProperty("name").GetString(), Is.EqualTo("db"));
        }

        CliRun resized = await Csinvme("volume", "resize", "db", "--size", "3GiB", "--json");
        using (JsonDocument doc = JsonDocument.Parse(resized.Stdout))
        {
            Assert.That(doc.RootElement.GetProperty("sizeBytes").GetInt64(), Is.EqualTo(3L << 30));
        }

        CliRun get = await Csinvme("volume", "get", "db", "--json");
        using (JsonDocument doc = JsonDocument.Parse(get.Stdout))
        {
            Assert.That(doc.RootElement.GetProperty("sizeBytes").GetInt64(), Is.EqualTo(3L << 30));
        }

        CliRun deleted = await Csinvme("volume", "delete", "db", "--json");
        using (JsonDocument doc = JsonDocument.Parse(deleted.Stdout))
        {
            Assert.That(doc.RootElement.GetProperty("deleted").GetString(), Is.EqualTo("db"));
        }

        Assert.That((await Csinvme("volume", "list", "--json")).Stdout.Trim(), Is.EqualTo("[]"));
    }

    [Test]
    public async Task HostAllowAndDeny()
    {
        Assert.That((await Csinvme("volume", "create", "shared", "--size", "64MiB")).ExitCode, Is.Zero);

        CliRun allowed = await Csinvme("host", "allow", "shared", HostA, "--json");
        Assert.That(allowed.ExitCode, Is.Zero, allowed.ToString());
        Assert.That(AllowedHosts(allowed), Is.EqualTo(new[] { HostA }));

        Assert.That(AllowedHosts(await Csinvme("host", "allow", "shared", HostB, "--json")), Is.EqualTo(new[] { HostA, HostB }));

        CliRun denied = await Csinvme("host", "deny", "shared", HostA);
        Assert.That(denied.ExitCode, Is.Zero, denied.ToString());
        Assert.That(denied.Stdout, Does.Contain(HostB).And.Not.Contain(HostA));

        Assert.That(AllowedHosts(await Csinvme("volume", "get", "shared", "--json")), Is.EqualTo(new[] { HostB }));

        CliRun badNqn = await Csinvme("host", "allow", "shared", "not an nqn");
        Assert.That(badNqn.ExitCode, Is.EqualTo(1), badNqn.ToString());
        Assert.That(badNqn.Stderr, Does.Contain("invalid argument"));
    }

    [Test]
    public async Task AMissingVolumeIsAServerRefusal()
    {
        foreach (string[] args in new[]
        {
            new[] { "volume", "get", "nope" },
            ["volume", "delete", "nope"],
            ["volume", "resize", "nope", "--size", "1G"],
            ["host", "allow", "nope", HostA],
        })
        {
            CliRun run = await Csinvme(args);
            Assert.That(run.ExitCode, Is.EqualTo(1), run.ToString());
            Assert.That(run.Stderr, Does.Contain("nope").And.Contain("not found"), run.ToString());
            Assert.That(run.Stdout, Is.Empty);
        }
    }

    [Test]
    public async Task ADuplicateNameAndAShrinkAreServerRefusals()
    {
        Assert.That((await Csinvme("volume", "create", "v", "--size", "1G")).ExitCode, Is.Zero);

        CliRun again = await Csinvme("volume", "create", "v", "--size", "1G");
        Assert.That(again.ExitCode, Is.EqualTo(1), again.ToString());
        Assert.That(again.Stderr, Does.Contain("already exists"));

        CliRun shrink = await Csinvme("volume", "resize", "v", "--size", "1M");
        Assert.That(shrink.ExitCode, Is.EqualTo(1), shrink.ToString());
    }

    [Test]
    public async Task ABadSizeSaysWhatIsWrong()
    {
        CliRun run = await Csinvme("volume", "create", "v", "--size", "12XB");
        Assert.That(run.Stderr, Does.Contain("--size").And.Contain("12XB"));
        Assert.That((await Csinvme("volume", "list")).Stdout.Trim(), Is.EqualTo("No volumes."), "nothing was created");
    }

    [Test]
    public async Task TheMemoryBackendRefusesSnapshotsAndHasNoPools()
    {
        Assert.That((await Csinvme("volume", "create", "v", "--size", "1M")).ExitCode, Is.Zero);

        CliRun snapshot = await Csinvme("snapshot", "create", "v", "v-snap");
        Assert.That(snapshot.ExitCode, Is.EqualTo(1), snapshot.ToString());
        Assert.That(snapshot.Stderr, Does.Contain("thin backend").And.Contain("memory"));

        CliRun clone = await Csinvme("volume", "create", "c", "--from-volume", "v");
        Assert.That(clone.ExitCode, Is.EqualTo(1), clone.ToString());

        Assert.That((await Csinvme("pool", "list")).Stdout.Trim(), Is.EqualTo("No pools (only the thin backend has pools)."));
        Assert.That((await Csinvme("pool", "list", "--json")).Stdout.Trim(), Is.EqualTo("[]"));
        Assert.That((await Csinvme("snapshot", "list")).Stdout.Trim(), Is.EqualTo("No snapshots."));
    }

    [Test]
    public async Task ServerInfoShowsTheListeners()
    {
        CliRun info = await Csinvme("server", "info");
        Assert.That(info.ExitCode, Is.Zero, info.ToString());
        Assert.That(info.Stdout, Does.Contain(_server.NvmeEndpoints[0].ToString()).And.Contain(_server.ManagementEndpoint.ToString()));

        CliRun json = await Csinvme("server", "info", "--json");
        using JsonDocument doc = JsonDocument.Parse(json.Stdout);
        Assert.That(doc.RootElement.GetProperty("managementAddress").GetString(), Is.EqualTo(_server.ManagementEndpoint.ToString()));
        Assert.That(doc.RootElement.GetProperty("volumeCount").GetUInt32(), Is.Zero);
    }

    private static string?[] AllowedHosts(CliRun run)
    {
        Assert.That(run.ExitCode, Is.Zero, run.ToString());
        using JsonDocument doc = JsonDocument.Parse(run.Stdout);
        return doc.RootElement.GetProperty("allowedHosts").EnumerateArray().Select(e => e.GetString()).ToArray();
    }

    [Test]
    public async Task LabelsGivenAtCreateAreShownByGetAndInJson()
    {
        CliRun created = await Csinvme("volume", "create", "labelled", "--size", "1MiB", "--label", "team=storage", "--label", "csi/fsType=ext4", "--label", "note=a=b");
        Assert.That(created.ExitCode, Is.Zero, created.ToString());
        Assert.That(created.Stdout, Does.Contain("Labels:").And.Contain("csi/fsType=ext4, note=a=b, team=storage"));

        CliRun json = await Csinvme("volume", "get", "labelled", "--json");
        Assert.That(json.ExitCode, Is.Zero, json.ToString());
        using JsonDocument doc = JsonDocument.Parse(json.Stdout);
        JsonElement labels = doc.RootElement.GetProperty("labels");
        Assert.That(
            labels.EnumerateObject().Select(p => $"{p.Name}={p.Value.GetString()}"),
            Is.EqualTo(new[] { "csi/fsType=ext4", "note=a=b", "team=storage" }));

        Assert.That((await Csinvme("volume", "create", "plain", "--size", "1MiB")).ExitCode, Is.Zero);
        CliRun plain = await Csinvme("volume", "get", "plain", "--json");
        using JsonDocument plainDoc = JsonDocument.Parse(plain.Stdout);
        Assert.That(plainDoc.RootElement.GetProperty("labels").EnumerateObject(), Is.Empty);
        Assert.That((await Csinvme("volume", "get", "plain")).Stdout, Does.Match(@"Labels:\s+-"));
    }

    [Test]
    public async Task ThirtyThreeLabelsAreAUsageError()
    {
        string[] labels = [.. Enumerable.Range(0, 33).SelectMany(i => new[] { "--label", $"k{i}=v" })];
        CliRun run = await Csinvme(["volume", "create", "many", "--size", "1MiB", .. labels]);
        Assert.That(run.ExitCode, Is.EqualTo(2), run.ToString());
        Assert.That(run.Stderr, Does.Contain("at most 32"));
        Assert.That((await Csinvme("volume", "list")).Stdout.Trim(), Is.EqualTo("No volumes."));
    }

    [Test]
    public async Task ASingleServerIsOneNodeNamedLocal()
    {
        Assert.That((await Csinvme("volume", "create", "v", "--size", "1MiB")).ExitCode, Is.Zero);

        CliRun list = await Csinvme("node", "list");
        Assert.That(list.ExitCode, Is.Zero, list.ToString());
        string[] lines = list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(2), list.ToString());
        Assert.That(lines[0], Does.Match(@"^NAME\s+STATE\s+ADMIN\s+POOLS\s+FREE\s+VOLUMES\s+PRIMARIES\s+DRAIN$"));
        Assert.That(lines[1], Does.Match(@"^local\s+up\s+active\s+-\s+0 B\s+1\s+1\s+-$"), "the memory backend has no pools");

        CliRun json = await Csinvme("node", "list", "--json");
        Assert.That(json.ExitCode, Is.Zero, json.ToString());
        using JsonDocument doc = JsonDocument.Parse(json.Stdout);
        Assert.That(doc.RootElement.GetArrayLength(), Is.EqualTo(1));
        JsonElement node = doc.RootElement[0];
        Assert.That(node.GetProperty("name").GetString(), Is.EqualTo("local"));
        Assert.That(node.GetProperty("state").GetString(), Is.EqualTo("up"));
        Assert.That(node.GetProperty("adminState").GetString(), Is.EqualTo("active"));
        Assert.That(node.GetProperty("drained").GetBoolean(), Is.False);
        Assert.That(node.GetProperty("volumeCount").GetInt32(), Is.EqualTo(1));
        Assert.That(node.GetProperty("primaryCount").GetInt32(), Is.EqualTo(1));
        Assert.That(node.GetProperty("managementAddress").GetString(), Is.EqualTo(_server.ManagementEndpoint.ToString()));
    }

    [Test]
    public async Task ASingleServerCannotBeDrainedAndUndrainIsAlwaysFine()
    {
        // The chart's preStop hook runs exactly this command line.
        CliRun drain = await CliRun.RunAsync("--server", _server.ManagementEndpoint.ToString(), "node", "drain", "local", "--wait", "--timeout", "300s");
        Assert.That(drain.ExitCode, Is.EqualTo(1), drain.ToString());
        Assert.That(drain.Stderr, Does.Contain("a single storage server cannot be drained").And.Contain("not allowed in the current state"));
        Assert.That(drain.Stdout, Is.Empty);

        // And its postStart hook this one, on a node that is not draining.
        for (int i = 0; i < 2; i++)
        {
            CliRun undrain = await CliRun.RunAsync("--server", _server.ManagementEndpoint.ToString(), "node", "undrain", "local");
            Assert.That(undrain.ExitCode, Is.Zero, undrain.ToString());
            Assert.That(undrain.Stdout, Does.StartWith("Node local is active (up, "));
        }

        CliRun unknown = await Csinvme("node", "undrain", "node-z");
        Assert.That(unknown.ExitCode, Is.EqualTo(1), unknown.ToString());
        Assert.That(unknown.Stderr, Does.Contain("node-z").And.Contain("not found"));
    }

    [Test]
    public async Task ASingleServerKeepsOneCopyAndVerifiesAsIdentical()
    {
        CliRun refused = await Csinvme("volume", "create", "v", "--size", "1MiB", "--replicas", "3");
        Assert.That(refused.ExitCode, Is.EqualTo(1), refused.ToString());
        Assert.That(refused.Stderr, Does.Contain("not allowed in the current state"));

        CliRun created = await Csinvme("volume", "create", "v", "--size", "1MiB", "--replicas", "1");
        Assert.That(created.ExitCode, Is.Zero, created.ToString());
        Assert.That(created.Stdout, Does.Match(@"Replicas:\s+1\r?\n").And.Match(@"Primary:\s+-"));
        Assert.That(created.Stdout, Does.Not.Contain("STATE"), "a single server lists no replicas");

        CliRun json = await Csinvme("volume", "get", "v", "--json");
        using (JsonDocument doc = JsonDocument.Parse(json.Stdout))
        {
            Assert.That(doc.RootElement.GetProperty("replicaCount").GetInt32(), Is.EqualTo(1));
            Assert.That(doc.RootElement.GetProperty("replicas").GetArrayLength(), Is.Zero);
            Assert.That(doc.RootElement.GetProperty("primary").ValueKind, Is.EqualTo(JsonValueKind.Null));
        }

        CliRun verify = await Csinvme("volume", "verify", "v");
        Assert.That(verify.ExitCode, Is.Zero, verify.ToString());
        Assert.That(verify.Stdout, Does.Match(@"Result:\s+identical"));

        CliRun verifyJson = await Csinvme("volume", "verify", "v", "--json");
        Assert.That(verifyJson.ExitCode, Is.Zero, verifyJson.ToString());
        using (JsonDocument doc = JsonDocument.Parse(verifyJson.Stdout))
        {
            Assert.That(doc.RootElement.GetProperty("volume").GetString(), Is.EqualTo("v"));
            Assert.That(doc.RootElement.GetProperty("identical").GetBoolean(), Is.True);
            Assert.That(doc.RootElement.GetProperty("mismatches").GetArrayLength(), Is.Zero);
        }

        CliRun missing = await Csinvme("volume", "verify", "nope");
        Assert.That(missing.ExitCode, Is.EqualTo(1), missing.ToString());
        Assert.That(missing.Stderr, Does.Contain("not found"));
    }
}
