using System.Text.Json;
using CsiNvme.Cluster.Tests;

namespace CsiNvme.Cli.Tests;

/// <summary>
/// Runs csinvme in-process against a real cluster: etcd (Debian's etcd-server) and three storage servers in this
/// process, each on its own loopback ports. Every command may go to any node.
/// </summary>
[Category("Cluster")]
public sealed class CliAgainstClusterTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static Task<CliRun> Csinvme(InProcessCluster cluster, string node, params string[] args) =>
        CliRun.RunAsync(["--server", cluster.Node(node).ManagementEndpoint.ToString(), .. args]);

    private static async Task<JsonElement> VolumeJsonAsync(InProcessCluster cluster, string node, string name)
    {
        CliRun get = await Csinvme(cluster, node, "volume", "get", name, "--json");
        Assert.That(get.ExitCode, Is.Zero, get.ToString());
        using JsonDocument doc = JsonDocument.Parse(get.Stdout);
        return doc.RootElement.Clone();
    }

    /// <summary>Asks <c>volume get --json</c> until <paramref name="condition"/> holds (bounded).</summary>
    private static async Task<JsonElement> WaitForVolumeAsync(InProcessCluster cluster, string node, string name, Func<JsonElement, bool> condition, string what)
    {
        JsonElement last = default;
        bool reached = await InProcessCluster.WaitAsync(async () => condition(last = await VolumeJsonAsync(cluster, node, name)), Bound);
        Assert.That(reached, Is.True, $"volume {name} never reached: {what}; last: {last}");
        return last;
    }

    private static JsonElement Replica(JsonElement volume, string node) =>
        volume.GetProperty("replicas").EnumerateArray().Single(r => r.GetProperty("node").GetString() == node);

    [Test]
    public async Task NodeListCreateWithThreeReplicasGetListAndVerify()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);

        CliRun nodes = await Csinvme(cluster, "node-a", "node", "list");
        Assert.That(nodes.ExitCode, Is.Zero, nodes.ToString());
        string[] lines = nodes.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(4), nodes.ToString());
        Assert.That(lines[0], Does.Match(@"^NAME\s+STATE\s+ADMIN\s+POOLS\s+FREE\s+VOLUMES\s+PRIMARIES\s+DRAIN$"));
        for (int i = 0; i < 3; i++)
        {
            Assert.That(lines[i + 1], Does.Match($@"^node-{(char)('a' + i)}\s+up\s+active\s+pool0\s+\d+(\.\d)? MiB\s+0\s+0\s+-$"), nodes.ToString());
        }

        CliRun created = await Csinvme(cluster, "node-b", "volume", "create", "vm-disk", "--size", "32MiB", "--replicas", "3", "--allow-any-host");
        Assert.That(created.ExitCode, Is.Zero, created.ToString());
        Assert.That(created.Stdout, Does.Match(@"Replicas:\s+3 \(3 in sync\)").And.Match(@"Primary:\s+node-[abc] \(epoch 1\)"));
        Assert.That(created.Stdout, Does.Match(@"NODE\s+STATE\s+PRIMARY\s+NODE UP\s+IN SYNC AT EPOCH\s+DIRTY REGIONS\s+REBUILD"));
        Assert.That(created.Stdout, Does.Match(@"\nnode-a\s+in-sync\s+(yes|no)\s+yes\s+1\s+0\s+-"));

        // Another node answers for the whole cluster.
        JsonElement volume = await VolumeJsonAsync(cluster, "node-c", "vm-disk");
        Assert.That(volume.GetProperty("replicaCount").GetInt32(), Is.EqualTo(3));
        Assert.That(volume.GetProperty("epoch").GetInt64(), Is.EqualTo(1));
        JsonElement[] replicas = [.. volume.GetProperty("replicas").EnumerateArray()];
        Assert.That(replicas.Select(r => r.GetProperty("node").GetString()), Is.EquivalentTo(new[] { "node-a", "node-b", "node-c" }));
        Assert.That(replicas.Select(r => r.GetProperty("state").GetString()), Is.All.EqualTo("in-sync"));
        Assert.That(replicas.Select(r => r.GetProperty("nodeUp").GetBoolean()), Is.All.True);
        Assert.That(replicas.Select(r => r.GetProperty("rebuild").ValueKind), Is.All.EqualTo(JsonValueKind.Null));
        JsonElement primary = replicas.Single(r => r.GetProperty("primary").GetBoolean());
        Assert.That(volume.GetProperty("primary").GetString(), Is.EqualTo(primary.GetProperty("node").GetString()));
        Assert.That(volume.GetProperty("listenAddresses").GetArrayLength(), Is.EqualTo(3), "every replica node is a path");

        CliRun list = await Csinvme(cluster, "node-a", "volume", "list");
        Assert.That(list.ExitCode, Is.Zero, list.ToString());
        Assert.That(list.Stdout, Does.Match(@"\nvm-disk\s+32\.0 MiB\s+512\s+3 \(3 in sync\)\s+any\s+nqn\."));

        CliRun listed = await Csinvme(cluster, "node-c", "node", "list", "--json");
        using (JsonDocument doc = JsonDocument.Parse(listed.Stdout))
        {
            JsonElement[] items = [.. doc.RootElement.EnumerateArray()];
            Assert.That(items.Select(n => n.GetProperty("name").GetString()), Is.EqualTo(new[] { "node-a", "node-b", "node-c" }));
            Assert.That(items.Select(n => n.GetProperty("volumeCount").GetInt32()), Is.All.EqualTo(1));
            Assert.That(items.Sum(n => n.GetProperty("primaryCount").GetInt32()), Is.EqualTo(1));
            Assert.That(items.Select(n => n.GetProperty("pools")[0].GetProperty("name").GetString()), Is.All.EqualTo("pool0"));
            Assert.That(items.Select(n => n.GetProperty("freeBytes").GetInt64()), Is.All.Positive);
        }

        CliRun verify = await Csinvme(cluster, "node-a", "volume", "verify", "vm-disk", "--region-size", "4MiB");
        Assert.That(verify.ExitCode, Is.Zero, verify.ToString());
        Assert.That(verify.Stdout, Does.Match(@"Result:\s+identical").And.Match(@"Regions compared:\s+8\r?\n").And.Match(@"Region size:\s+4\.0 MiB"));

        CliRun verifyJson = await Csinvme(cluster, "node-b", "volume", "verify", "vm-disk", "--json");
        Assert.That(verifyJson.ExitCode, Is.Zero, verifyJson.ToString());
        using (JsonDocument doc = JsonDocument.Parse(verifyJson.Stdout))
        {
            Assert.That(doc.RootElement.GetProperty("identical").GetBoolean(), Is.True);
            Assert.That(doc.RootElement.GetProperty("allInSync").GetBoolean(), Is.True);
            Assert.That(doc.RootElement.GetProperty("regionsCompared").GetInt64(), Is.EqualTo(32));
            Assert.That(doc.RootElement.GetProperty("nodes").EnumerateArray().Select(n => n.GetString()), Is.EquivalentTo(new[] { "node-a", "node-b", "node-c" }));
            Assert.That(doc.RootElement.GetProperty("skipped").GetArrayLength(), Is.Zero);
        }
    }

    [Test]
    public async Task DrainWaitsUntilThePrimaryMovedAndUndrainTakesTheNodeBack()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        CliRun created = await Csinvme(cluster, "node-a", "--json", "volume", "create", "vm-disk", "--size", "16MiB", "--replicas", "3");
        Assert.That(created.ExitCode, Is.Zero, created.ToString());
        string primary;
        using (JsonDocument doc = JsonDocument.Parse(created.Stdout))
        {
            primary = doc.RootElement.GetProperty("primary").GetString()!;
        }

        // The chart's preStop hook's command line, asked of the node being drained.
        CliRun drained = await CliRun.RunAsync("--server", cluster.Node(primary).ManagementEndpoint.ToString(), "node", "drain", primary, "--wait", "--timeout", "60s");
        TestContext.Out.WriteLine(drained);
        Assert.That(drained.ExitCode, Is.Zero, drained.ToString());
        Assert.That(drained.Stdout, Does.Contain($"node {primary} up, draining: 1 primary to hand over"), "it waited for the handover");
        Assert.That(drained.Stdout, Does.Contain($"Node {primary} drained after").And.Contain("drained of primaries"));

        // Once it returns, no primary is left on the node.
        string successor = (await VolumeJsonAsync(cluster, "node-a", "vm-disk")).GetProperty("primary").GetString()!;
        Assert.That(successor, Is.Not.EqualTo(primary).And.Not.Empty);
        JsonElement moved = await VolumeJsonAsync(cluster, successor, "vm-disk");
        Assert.That(moved.GetProperty("epoch").GetInt64(), Is.EqualTo(2));
        Assert.That(Replica(moved, primary).GetProperty("primary").GetBoolean(), Is.False);
        Assert.That(Replica(moved, primary).GetProperty("state").GetString(), Is.EqualTo("in-sync"), "a handover is clean");

        CliRun listed = await Csinvme(cluster, successor, "node", "list", "--json");
        using (JsonDocument doc = JsonDocument.Parse(listed.Stdout))
        {
            JsonElement node = doc.RootElement.EnumerateArray().Single(n => n.GetProperty("name").GetString() == primary);
            Assert.That(node.GetProperty("adminState").GetString(), Is.EqualTo("draining"));
            Assert.That(node.GetProperty("drained").GetBoolean(), Is.True);
            Assert.That(node.GetProperty("primaryCount").GetInt32(), Is.Zero);
            Assert.That(node.GetProperty("drainStatus").GetString(), Does.StartWith("drained of primaries"));
        }

        CliRun table = await Csinvme(cluster, successor, "node", "list");
        Assert.That(table.Stdout, Does.Match($@"\n{primary}\s+up\s+draining\s+pool0\s+.+\s+1\s+0\s+drained of primaries"));

        // Draining a drained node again returns at once.
        CliRun again = await Csinvme(cluster, successor, "node", "drain", primary, "--wait");
        Assert.That(again.ExitCode, Is.Zero, again.ToString());

        // A wait that ends before the handover does exits with the timeout's exit code; the drain itself goes on, and a
        // second wait sees it finish. The one node that could take the primary is stopped meanwhile, so the handover
        // cannot beat the wait (it can finish inside the DrainNode call when a node is ready for it).
        string third = new[] { "node-a", "node-b", "node-c" }.Single(n => n != primary && n != successor);
        await cluster.StopNodeAsync(third);
        CliRun impatient = await Csinvme(cluster, successor, "node", "drain", successor, "--wait", "--timeout", "1ms");
        TestContext.Out.WriteLine(impatient);
        Assert.That(impatient.ExitCode, Is.EqualTo(5), impatient.ToString());
        Assert.That(impatient.Stderr, Does.StartWith($"csinvme: node {successor} not drained within 1 ms: 1 primary to hand over.").And.Contain("goes on"));
        Assert.That((await VolumeJsonAsync(cluster, primary, "vm-disk")).GetProperty("primary").GetString(), Is.EqualTo(successor), "held while no node can take it");

        // Back, the third node is rebuilt (it missed nothing but its link) and then takes the primary.
        await cluster.StartNodeAsync(third);
        CliRun patient = await Csinvme(cluster, primary, "node", "drain", successor, "--wait", "--timeout", "1m");
        Assert.That(patient.ExitCode, Is.Zero, patient.ToString());
        Assert.That((await VolumeJsonAsync(cluster, primary, "vm-disk")).GetProperty("primary").GetString(), Is.EqualTo(third), "the one node not draining is primary");

        foreach (string node in new[] { primary, successor, successor })
        {
            CliRun undrained = await CliRun.RunAsync("--server", cluster.Node(node).ManagementEndpoint.ToString(), "node", "undrain", node);
            Assert.That(undrained.ExitCode, Is.Zero, undrained.ToString());
            Assert.That(undrained.Stdout, Does.StartWith($"Node {node} is active (up, 1 volumes, 0 primaries)"));
        }

        CliRun active = await Csinvme(cluster, third, "node", "list", "--json");
        using (JsonDocument doc = JsonDocument.Parse(active.Stdout))
        {
            Assert.That(doc.RootElement.EnumerateArray().Select(n => n.GetProperty("adminState").GetString()), Is.All.EqualTo("active"));
        }

        CliRun verify = await Csinvme(cluster, primary, "volume", "verify", "vm-disk");
        Assert.That(verify.ExitCode, Is.Zero, verify.ToString());

        CliRun unknown = await Csinvme(cluster, third, "node", "drain", "node-z");
        Assert.That(unknown.ExitCode, Is.EqualTo(1), unknown.ToString());
        Assert.That(unknown.Stderr, Does.Contain("node-z").And.Contain("not found"));
    }

    [Test]
    public async Task UpdateChangesTheReplicaCountOfAVolume()
    {
        await using var cluster = await InProcessCluster.StartAsync(2);
        CliRun created = await Csinvme(cluster, "node-a", "volume", "create", "vm-disk", "--size", "16MiB", "--replicas", "1");
        Assert.That(created.ExitCode, Is.Zero, created.ToString());

        CliRun raised = await Csinvme(cluster, "node-b", "volume", "update", "vm-disk", "--replicas", "2");
        Assert.That(raised.ExitCode, Is.Zero, raised.ToString());
        // Usually printed before the primary added the new replica; a fast primary may already have.
        Assert.That(raised.Stdout, Does.Match(@"Replicas:\s+2 \((1 in sync, 1 (to add|out of sync|rebuilding)|2 in sync)\)"), raised.ToString());
        JsonElement two = await WaitForVolumeAsync(cluster, "node-a", "vm-disk",
            v => v.GetProperty("replicas").EnumerateArray().Count(r => r.GetProperty("state").GetString() == "in-sync") == 2, "2 replicas in sync");
        Assert.That(two.GetProperty("replicaCount").GetInt32(), Is.EqualTo(2));

        CliRun tooMany = await Csinvme(cluster, "node-a", "volume", "update", "vm-disk", "--replicas", "3");
        Assert.That(tooMany.ExitCode, Is.EqualTo(1), tooMany.ToString());
        Assert.That(tooMany.Stderr, Does.Contain("3 replicas need 3 active nodes"));
        CliRun invalid = await Csinvme(cluster, "node-a", "volume", "update", "vm-disk", "--replicas", "4");
        Assert.That(invalid.ExitCode, Is.EqualTo(2), invalid.ToString());
        Assert.That(invalid.Stderr, Does.Contain("--replicas must be 1, 2 or 3, not '4'"));
    }

    [Test]
    public async Task VerifyFailsWhileAReplicaIsOutOfSync()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        CliRun created = await Csinvme(cluster, "node-a", "--json", "volume", "create", "vm-disk", "--size", "16MiB", "--replicas", "3");
        Assert.That(created.ExitCode, Is.Zero, created.ToString());
        string primary;
        using (JsonDocument doc = JsonDocument.Parse(created.Stdout))
        {
            primary = doc.RootElement.GetProperty("primary").GetString()!;
        }

        string[] others = [.. new[] { "node-a", "node-b", "node-c" }.Where(n => n != primary)];
        string stopped = others[0];
        await cluster.StopNodeAsync(stopped);

        // Nothing is written: losing its replication link is enough for the primary to record the replica out of sync.
        JsonElement degraded = await WaitForVolumeAsync(
            cluster, others[1], "vm-disk", v => Replica(v, stopped).GetProperty("state").GetString() == "out-of-sync", $"{stopped} out of sync");
        Assert.That(Replica(degraded, stopped).GetProperty("nodeUp").GetBoolean(), Is.False);
        Assert.That(degraded.GetProperty("primary").GetString(), Is.EqualTo(primary), "a replica's loss moves no primary");

        CliRun get = await Csinvme(cluster, others[1], "volume", "get", "vm-disk");
        Assert.That(get.Stdout, Does.Match(@"Replicas:\s+3 \(2 in sync, 1 out of sync\)").And.Match($@"\n{stopped}\s+out-of-sync\s+no\s+no\s"));
        CliRun list = await Csinvme(cluster, others[1], "volume", "list");
        Assert.That(list.Stdout, Does.Contain("3 (2 in sync)"));

        CliRun verify = await Csinvme(cluster, others[1], "volume", "verify", "vm-disk");
        Assert.That(verify.ExitCode, Is.EqualTo(4), verify.ToString());
        Assert.That(verify.Stdout, Does.Match(@"Result:\s+NOT identical: not every replica is in sync").And.Match(@"All in sync:\s+no").And.Contain(stopped));

        CliRun json = await Csinvme(cluster, primary, "volume", "verify", "vm-disk", "--json");
        Assert.That(json.ExitCode, Is.EqualTo(4), json.ToString());
        using JsonDocument verified = JsonDocument.Parse(json.Stdout);
        Assert.That(verified.RootElement.GetProperty("identical").GetBoolean(), Is.False);
        Assert.That(verified.RootElement.GetProperty("allInSync").GetBoolean(), Is.False);
        Assert.That(verified.RootElement.GetProperty("mismatchCount").GetInt64(), Is.Zero, "the copies compared are equal");
        Assert.That(verified.RootElement.GetProperty("nodes").EnumerateArray().Select(n => n.GetString()), Is.EquivalentTo(new[] { primary, others[1] }));
        Assert.That(verified.RootElement.GetProperty("skipped").EnumerateArray().Select(n => n.GetString()), Has.One.StartsWith(stopped));
    }
}
