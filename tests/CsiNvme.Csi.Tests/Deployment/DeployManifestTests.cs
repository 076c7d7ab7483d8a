using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using CsiNvme.TestSupport;
using k8s;
using k8s.Models;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// What only deploy/ has: its optional folders (monitoring, examples, KubeVirt) rendered with `kubectl kustomize`
/// and loaded strictly, the references between the examples and the driver's objects, the namespace's Pod
/// Security labels. The driver's own objects are checked in <see cref="RenderedManifestTests"/>, for deploy/ and
/// for the chart alike.
/// </summary>
[TestFixture]
public sealed partial class DeployManifestTests
{
    private const string Namespace = "csinvme-system";

    private static readonly string[] _folders = ["deploy", "deploy/monitoring", "deploy/examples", "deploy/kubevirt", "deploy/kubevirt/migrate"];

    private static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Load(string folder) => Manifests.Load(Kustomize.Render(folder));

    private static readonly Lazy<IReadOnlyList<IKubernetesObject<V1ObjectMeta>>> _base = new(() => Load("deploy"));

    private static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Base => _base.Value;

    [TestCaseSource(nameof(Folders))]
    public void Every_object_loads_with_the_client_models_and_no_unknown_field(string folder)
    {
        var objects = Load(folder);
        Assert.That(objects, Is.Not.Empty);
        Assert.That(objects.Select(o => o.Metadata?.Name), Has.All.Not.Null.And.All.Not.Empty);
    }

    private static IEnumerable<TestCaseData> Folders() => _folders.Select(f => new TestCaseData(f).SetArgDisplayNames(f));

    [Test]
    public void Strict_loading_rejects_an_unknown_field()
    {
        // The check above is only worth something if a misspelt field fails.
        var yaml = Kustomize.Render("deploy").Replace("      serviceAccountName: csinvme-controller", "      serviceAcountName: csinvme-controller", StringComparison.Ordinal);
        Assert.That(() => Manifests.Load(yaml), Throws.Exception);
    }

    [Test]
    public void The_namespace_allows_the_privileged_node_plugin()
    {
        // Pod Security "baseline" and "restricted" reject privileged containers, hostPath volumes and
        // Bidirectional mount propagation, all of which the node plugin needs.
        var labels = Base.OfKind<V1Namespace>().Single(n => n.Metadata.Name == Namespace).Metadata.Labels;
        Assert.That(labels["pod-security.kubernetes.io/enforce"], Is.EqualTo("privileged"));
    }

    [Test]
    public void Images_are_pinned()
    {
        var images = _folders.SelectMany(Load).SelectMany(RenderedManifestTests.PodSpecs).SelectMany(s => s.Containers.Concat(s.InitContainers ?? [])).Select(c => c.Image).ToList();
        Assert.That(images, Is.Not.Empty);
        Assert.That(images, Has.All.Matches(RenderedManifestTests.PinnedImage()));
        Assert.That(images, Has.None.EndsWith(":latest"));
        var sidecars = images.Where(i => !i.StartsWith("csinvme:", StringComparison.Ordinal) && !i.StartsWith("busybox:", StringComparison.Ordinal));
        Assert.That(sidecars, Has.All.StartsWith("registry.k8s.io/sig-storage/"));
    }

    [Test]
    public void Examples_use_the_storage_classes_and_snapshot_class_of_the_driver()
    {
        var classes = Base.OfKind<V1StorageClass>().ToDictionary(s => s.Metadata.Name);
        var snapshotClasses = Base.OfKind<VolumeSnapshotClass>().Select(c => c.Metadata.Name).ToList();
        var examples = Load("deploy/examples");
        var claims = examples.OfKind<V1PersistentVolumeClaim>().ToDictionary(c => c.Metadata.Name);
        var snapshot = examples.OfKind<VolumeSnapshot>().Single();
        var restored = claims.Values.Single(c => c.Spec.DataSource is not null);
        var pod = examples.OfKind<V1Pod>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(classes.Keys, Is.EquivalentTo(new[] { "csinvme-block", "csinvme-ext4" }));
            Assert.That(classes.Values.Select(c => c.AllowVolumeExpansion), Has.All.True);
            Assert.That(classes.Values.Select(c => c.VolumeBindingMode), Has.All.EqualTo("Immediate"));
            Assert.That(classes["csinvme-ext4"].Parameters["csi.storage.k8s.io/fstype"], Is.EqualTo("ext4"));
            Assert.That(classes["csinvme-block"].Parameters?.ContainsKey("csi.storage.k8s.io/fstype") ?? false, Is.False);
            Assert.That(claims.Values.Select(c => c.Spec.StorageClassName), Has.All.AnyOf(classes.Keys.ToArray()));
            Assert.That(claims["block-rwx"].Spec.VolumeMode, Is.EqualTo("Block"));
            Assert.That(claims["block-rwx"].Spec.AccessModes, Is.EqualTo(new[] { "ReadWriteMany" }));
            Assert.That(claims["data-ext4"].Spec.AccessModes, Is.EqualTo(new[] { "ReadWriteOnce" }));
            Assert.That(snapshot.Spec.VolumeSnapshotClassName, Is.AnyOf(snapshotClasses.ToArray()));
            Assert.That(claims.Keys, Does.Contain(snapshot.Spec.Source.PersistentVolumeClaimName));
            Assert.That(restored.Spec.DataSource.Kind, Is.EqualTo("VolumeSnapshot"));
            Assert.That(restored.Spec.DataSource.Name, Is.EqualTo(snapshot.Metadata.Name));
            Assert.That(pod.Spec.Volumes.Select(v => v.PersistentVolumeClaim.ClaimName), Is.SubsetOf(claims.Keys));
            Assert.That(examples.Select(o => o.Metadata.NamespaceProperty).Where(n => n is not null), Has.All.EqualTo("csinvme-demo"));
        });
    }

    [Test]
    public void KubeVirt_vm_has_three_live_migratable_csinvme_block_disks_and_runs_fio_on_vdc_and_vdd()
    {
        var objects = Load("deploy/kubevirt");
        var vm = objects.Custom("VirtualMachine").Single();
        var migration = Load("deploy/kubevirt/migrate").Custom("VirtualMachineInstanceMigration").Single();
        var claims = objects.OfKind<V1PersistentVolumeClaim>().ToDictionary(c => c.Metadata.Name);
        var template = vm.Spec.At("template", "spec");
        var disks = template.At("domain", "devices", "disks").Items().ToList();
        var volumes = template.At("volumes").Items().ToDictionary(v => (string)v.At("name")!);
        var dataVolumes = vm.Spec.At("dataVolumeTemplates").Items().ToDictionary(d => (string)d.At("metadata", "name")!);

        // virtio disks are named in the order they are listed.
        var byDevice = disks.Select((d, i) => (Device: "vd" + (char)('a' + i), Disk: d)).ToDictionary(x => x.Device, x => x.Disk);
        var userData = (string)volumes[(string)byDevice["vdb"].At("name")!].At("cloudInitNoCloud", "userData")!;
        Assert.Multiple(() =>
        {
            Assert.That(disks, Has.Count.EqualTo(4));
            Assert.That(template.At("evictionStrategy"), Is.EqualTo("LiveMigrate"));
            Assert.That(template.At("domain", "devices", "interfaces", 0, "masquerade"), Is.Not.Null, "masquerade is the pod network binding that migrates");
            Assert.That(volumes[(string)byDevice["vdb"].At("name")!].At("cloudInitNoCloud"), Is.Not.Null);
            foreach (var device in new[] { "vda", "vdc", "vdd" })
            {
                var volume = volumes[(string)byDevice[device].At("name")!];
                string storageClass, volumeMode;
                IEnumerable<string> accessModes;
                if (volume.At("dataVolume", "name") is string dv)
                {
                    var storage = dataVolumes[dv].At("spec", "storage");
                    storageClass = (string)storage.At("storageClassName")!;
                    volumeMode = (string)storage.At("volumeMode")!;
                    accessModes = storage.At("accessModes").Items().Cast<string>();
                }
                else
                {
                    var claim = claims[(string)volume.At("persistentVolumeClaim", "claimName")!];
                    storageClass = claim.Spec.StorageClassName;
                    volumeMode = claim.Spec.VolumeMode;
                    accessModes = claim.Spec.AccessModes;
                }

                Assert.That(storageClass, Is.EqualTo("csinvme-block"), device);
                Assert.That(volumeMode, Is.EqualTo("Block"), device);
                Assert.That(accessModes, Is.EqualTo(new[] { "ReadWriteMany" }), device);
                Assert.That(byDevice[device].At("cache"), Is.EqualTo("none"), device);
            }

            Assert.That(volumes[(string)byDevice["vda"].At("name")!].At("dataVolume"), Is.Not.Null, "the OS disk is imported by CDI");
            foreach (var device in new[] { "vdc", "vdd" })
            {
                Assert.That(userData, Does.Contain($"filename=/dev/disk/by-id/virtio-{byDevice[device].At("serial")}"), device);
            }

            Assert.That(userData, Does.StartWith("#cloud-config"));
            Assert.That(userData, Does.Contain("fio"));
            Assert.That(migration.Spec.At("vmiName"), Is.EqualTo(vm.Metadata.Name));
            Assert.That(migration.Metadata.NamespaceProperty, Is.EqualTo(vm.Metadata.NamespaceProperty));
        });
    }

    [Test]
    public void Service_monitor_selects_every_metrics_service_and_the_dashboard_is_the_charts()
    {
        var monitoring = Load("deploy/monitoring");
        var monitor = monitoring.Custom("ServiceMonitor").Single();
        var selector = ((IDictionary<object, object?>)monitor.Spec.At("selector", "matchLabels")!).ToDictionary(kv => (string)kv.Key, kv => (string)kv.Value!);
        var endpointPort = (string)monitor.Spec.At("endpoints", 0, "port")!;
        var selected = Base.OfKind<V1Service>().Where(s => selector.All(l => s.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToList();
        var dashboard = monitoring.OfKind<V1ConfigMap>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(selected.Select(s => s.Metadata.Name), Is.EquivalentTo(new[] { "csinvme-server", "csinvme-controller-metrics", "csinvme-node-metrics" }));
            Assert.That(selected.Select(s => s.Spec.Ports.Any(p => p.Name == endpointPort)), Has.All.True);
            Assert.That(monitor.Metadata.NamespaceProperty, Is.EqualTo(Namespace));
            Assert.That(dashboard.Metadata.Labels["grafana_dashboard"], Is.EqualTo("1"));
            Assert.That(
                JsonNode.DeepEquals(JsonNode.Parse(dashboard.Data["csinvme.json"]), JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Root, "charts", "csinvme", "dashboards", "csinvme.json")))),
                Is.True,
                "deploy/monitoring/csinvme.json must be a copy of charts/csinvme/dashboards/csinvme.json");
        });
    }

    [Test]
    public void Queries_in_the_dashboard_and_guides_use_metrics_the_programs_export()
    {
        var exported = new[] { "src/CsiNvme.Server/Metrics/ServerMetrics.cs", "src/CsiNvme.Server/Metrics/ClusterMetrics.cs", "src/CsiNvme.Csi/Hosting/CsiMetrics.cs", "src/CsiNvme.Csi/Node/NodePathMetrics.cs" }
            .SelectMany(f => MetricDefinition().Matches(File.ReadAllText(Path.Combine(RepoPaths.Root, f))).Select(m => m.Groups["name"].Value))
            .ToHashSet(StringComparer.Ordinal);
        Assert.That(exported, Is.Not.Empty);
        var documents = new[] { "charts/csinvme/dashboards/csinvme.json", "deploy/kubevirt/README.md", "docs/kubevirt.md", "docs/install.md" };
        var unknown = new List<string>();
        foreach (var document in documents)
        {
            foreach (Match use in MetricUse().Matches(File.ReadAllText(Path.Combine(RepoPaths.Root, document))))
            {
                var name = use.Groups["name"].Value;
                var series = HistogramSuffix().Replace(name, "");
                if (!exported.Contains(name) && !exported.Contains(series))
                {
                    unknown.Add($"{document}: {name}");
                }
            }
        }

        Assert.That(unknown.Distinct(), Is.Empty);
    }

    [GeneratedRegex(@"Create(Counter|Gauge|Histogram|Summary)\(\s*""(?<name>csinvme_[a-z0-9_]+)""")]
    private static partial Regex MetricDefinition();

    [GeneratedRegex(@"\b(?<name>csinvme_[a-z0-9_]+)")]
    private static partial Regex MetricUse();

    [GeneratedRegex("_(bucket|sum|count)$")]
    private static partial Regex HistogramSuffix();
}
