using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using Grpc.Core;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

[TestFixture]
public sealed class LabelTests
{
    private const string Host = "nqn.2024-01.com.example:label-host";

    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-server-labels");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private static Dictionary<string, string> Labels(params (string Key, string Value)[] pairs) =>
        pairs.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

    [Test]
    public async Task LabelsAreReturnedByCreateGetAndListAndSurviveChangesAndARestart()
    {
        var labels = Labels(("csi.accessMode", "SINGLE_NODE_WRITER"), ("csi/fsType", "ext4"), ("Empty_Value", ""), ("k8s.io/pvc", "data-0"));
        await using (var server = await InProcessServer.StartAsync(_dir.Path))
        {
            var created = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "labelled", SizeBytes = 1 << 20, Labels = { labels } });
            await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "plain", SizeBytes = 1 << 20 });
            Assert.That(created.Labels, Is.EquivalentTo(labels));
            Assert.That((await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "labelled" })).Labels, Is.EquivalentTo(labels));
            var listed = (await server.Volumes.ListVolumesAsync(new ListVolumesRequest())).Volumes;
            Assert.That(listed.Select(v => v.Labels.Count), Is.EqualTo(new[] { 4, 0 }), "labelled, plain");

            var allowed = await server.Volumes.AllowHostAsync(new HostAccessRequest { Name = "labelled", HostNqn = Host });
            var resized = await server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "labelled", SizeBytes = 2 << 20 });
            Assert.That(allowed.Labels, Is.EquivalentTo(labels));
            Assert.That(resized.Labels, Is.EquivalentTo(labels));
        }

        await using var restarted = await InProcessServer.StartAsync(_dir.Path);
        var reloaded = await restarted.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "labelled" });
        Assert.That(reloaded.Labels, Is.EquivalentTo(labels));
        Assert.That(reloaded.AllowedHosts, Is.EqualTo(new[] { Host }));
    }

    [Test]
    public async Task ThirtyTwoLabelsOfTheLongestKeysAndValuesAreAccepted()
    {
        await using var server = await InProcessServer.StartAsync(_dir.Path);
        var labels = Enumerable.Range(0, 32).ToDictionary(i => $"{i:D2}" + new string('k', 61), _ => new string('v', 256));
        var created = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "full", SizeBytes = 4096, Labels = { labels } });
        Assert.That(created.Labels, Is.EquivalentTo(labels));
    }

    private static IEnumerable<TestCaseData> BadLabelSets()
    {
        yield return new TestCaseData(Labels(("", "v"))).SetName("EmptyKey");
        yield return new TestCaseData(Labels((new string('k', 64), "v"))).SetName("KeyOf64Characters");
        yield return new TestCaseData(Labels(("white space", "v"))).SetName("KeyWithASpace");
        yield return new TestCaseData(Labels(("key=x", "v"))).SetName("KeyWithEquals");
        yield return new TestCaseData(Labels(("clé", "v"))).SetName("KeyWithNonAscii");
        yield return new TestCaseData(Labels(("k", new string('v', 257)))).SetName("ValueOf257Characters");
        yield return new TestCaseData(Enumerable.Range(0, 33).ToDictionary(i => $"k{i}", _ => "v")).SetName("ThirtyThreeLabels");
    }

    [TestCaseSource(nameof(BadLabelSets))]
    public async Task LabelsBreakingTheRulesAreInvalidArgumentAndCreateNothing(Dictionary<string, string> labels)
    {
        await using var server = await InProcessServer.StartAsync(_dir.Path);
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "bad", SizeBytes = 4096, Labels = { labels } }));
        Assert.That(e!.StatusCode, Is.EqualTo(StatusCode.InvalidArgument), e.Status.Detail);
        Assert.That(e.Status.Detail, Does.Contain("label"));
        Assert.That((await server.Volumes.ListVolumesAsync(new ListVolumesRequest())).Volumes, Is.Empty);
    }

    [Test]
    public async Task SnapshotsKeepTheirOwnLabelsAcrossARestart()
    {
        var labels = Labels(("csi/source", "pvc-1"));
        await using (var server = await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, StorageBackend.Thin)))
        {
            await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "src", SizeBytes = 1 << 20, Labels = { Labels(("of", "volume")) } });
            var snapshot = await server.Volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "src", Name = "snap", Labels = { labels } });
            Assert.That(snapshot.Labels, Is.EquivalentTo(labels));
            var bad = await Assert.ThrowsAsync<RpcException>(async () =>
                await server.Volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "src", Name = "bad", Labels = { { "no spaces", "x" } } }));
            Assert.That(bad!.StatusCode, Is.EqualTo(StatusCode.InvalidArgument));

            // A clone does not inherit the labels of its source: they describe how it was asked for.
            var clone = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "clone", SourceSnapshot = "snap" });
            Assert.That(clone.Labels, Is.Empty);
        }

        await using var restarted = await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, StorageBackend.Thin));
        Assert.That((await restarted.Volumes.GetSnapshotAsync(new GetSnapshotRequest { Name = "snap" })).Labels, Is.EquivalentTo(labels));
        var listed = (await restarted.Volumes.ListSnapshotsAsync(new ListSnapshotsRequest())).Snapshots;
        Assert.That(listed.Single().Labels, Is.EquivalentTo(labels));
    }
}
