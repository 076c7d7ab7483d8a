using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using CsiNvme.Csi.Hosting;
using CsiNvme.Csi.Node;
using CsiNvme.TestSupport;
using k8s.Models;
using NUnit.Framework;
using YamlDotNet.RepresentationModel;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// charts/csinvme through the real helm: `helm lint --strict` with its default values and with every file of
/// ci/, the default rendering object for object the manifests of deploy/, the values its schema refuses, and
/// upgrades that change the node's connection settings without touching a StorageClass. What the rendered objects
/// must be is checked in <see cref="RenderedManifestTests"/> for every one of those value sets.
/// </summary>
[TestFixture]
public sealed partial class ChartTests
{
    /// <summary>Every csi.nvme value changed from its default, as `helm upgrade --reuse-values --set ...` would.</summary>
    private static readonly string[] _changedConnection =
    [
        "--set", "csi.nvme.ctrlLossTmo=-1", "--set", "csi.nvme.reconnectDelay=2", "--set", "csi.nvme.fastIoFailTmo=-1",
        "--set", "csi.nvme.keepAliveTmo=30", "--set", "csi.nvme.nrIoQueues=4", "--set", "csi.nvme.headerDigest=true",
        "--set", "csi.nvme.dataDigest=true", "--set", "csi.nvme.disableSqFlow=false",
        "--set", "csi.nvme.multipath.ctrlLossTmo=120", "--set", "csi.nvme.multipath.reconnectDelay=3", "--set", "csi.nvme.multipath.fastIoFailTmo=30",
        "--set", "csi.node.pathKeeperPeriod=10",
    ];

    private static string Chart => Helm.Chart;

    private static JsonNode Values() => YamlJson.Parse(File.ReadAllText(Path.Combine(Chart, "values.yaml")))!;

    private static IEnumerable<TestCaseData> ValueSets() => ChartValues.All.Select(v => new TestCaseData(v).SetArgDisplayNames(v.Name));

    [Test]
    public void Every_file_in_ci_is_a_value_set_of_the_tests()
    {
        // CI lints and renders each of them; a values file elsewhere would be skipped silently.
        Assert.That(ChartValues.All.Count, Is.EqualTo(1 + Directory.GetFiles(Path.Combine(Chart, "ci")).Length));
        Assert.That(ChartValues.All.Count, Is.GreaterThanOrEqualTo(4));
    }

    [TestCaseSource(nameof(ValueSets))]
    public void Lint_strict_passes(ChartValues values)
    {
        var (exitCode, output, errors) = Helm.Run("lint", ["--strict", "--namespace", Helm.Namespace, .. values.Arguments]);
        Assert.Multiple(() =>
        {
            Assert.That(exitCode, Is.Zero, output + errors);
            Assert.That(output, Does.Contain("1 chart(s) linted, 0 chart(s) failed"));
            Assert.That(output, Does.Not.Contain("[WARNING]").And.Not.Contain("[ERROR]"));
        });
    }

    [Test]
    public void The_resizer_calls_ControllerModifyVolume_where_the_API_server_serves_VolumeAttributesClass()
    {
        static bool Gate(params string[] arguments) => Helm.Template(arguments).Contains("--feature-gates=VolumeAttributesClass=true", StringComparison.Ordinal);
        Assert.Multiple(() =>
        {
            Assert.That(Gate(), Is.False, "helm template's default API versions have no VolumeAttributesClass");
            Assert.That(Gate("--api-versions", "storage.k8s.io/v1/VolumeAttributesClass"), Is.True, "Kubernetes 1.34+");
            Assert.That(Gate("--api-versions", "storage.k8s.io/v1beta1/VolumeAttributesClass"), Is.True, "the beta API enabled");
            Assert.That(Gate("--set", "csi.controller.volumeAttributesClass=true"), Is.True);
            Assert.That(Gate("--set", "csi.controller.volumeAttributesClass=false", "--api-versions", "storage.k8s.io/v1/VolumeAttributesClass"), Is.False);
        });
    }

    [Test]
    public void Default_rendering_is_the_manifests_of_deploy()
    {
        // Helm installs into a namespace that exists (or --create-namespace); deploy/ creates it.
        var deploy = Objects(Kustomize.Render("deploy")).Where(o => !o.Key.StartsWith("Namespace/", StringComparison.Ordinal)).ToDictionary();
        // The management API's certificates are made at install (Helm's genCA), different each time: deploy/ leaves
        // their Secrets to deploy/tls/make-certs.sh.
        var chart = Objects(Helm.Template()).Where(o => !IsMadeAtInstall(o.Key)).ToDictionary();
        Assert.That(Objects(Helm.Template()).Keys.Where(k => k.StartsWith("Secret/", StringComparison.Ordinal)).Order(),
            Is.EqualTo(new[] { "Secret/csinvme-admin-tls", "Secret/csinvme-controller-tls", "Secret/csinvme-server-tls" }));
        AssertSameObjects(chart, deploy);
    }

    [Test]
    public void Monitoring_rendering_is_the_manifests_of_deploy_monitoring()
    {
        var deploy = Objects(Kustomize.Render("deploy/monitoring"));
        var chart = Objects(Helm.Template("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true",
            "--show-only", "templates/servicemonitor.yaml", "--show-only", "templates/grafana-dashboard.yaml"));
        // The dashboard is compared as JSON: the chart's block scalar drops the file's final newline.
        foreach (var objects in new[] { deploy, chart })
        {
            var data = objects["ConfigMap/csinvme-dashboard"]!["data"]!.AsObject();
            data["csinvme.json"] = JsonNode.Parse(data["csinvme.json"]!.GetValue<string>());
        }

        AssertSameObjects(chart, deploy);
    }

    [TestCase("csi:\n  controller:\n    replicas: two\n", "at '/csi/controller/replicas'")]
    [TestCase("csi:\n  controller:\n    replicas: 0\n", "at '/csi/controller/replicas'")]
    [TestCase("csi:\n  controller:\n    topolgy: true\n", "additional properties 'topolgy'")]
    [TestCase("csi:\n  controller:\n    volumeAttributesClass: maybe\n", "at '/csi/controller/volumeAttributesClass'")]
    [TestCase("csi:\n  nvme:\n    ctrlLossTmo: \"600\"\n", "at '/csi/nvme/ctrlLossTmo'")]
    [TestCase("csi:\n  nvme:\n    ctrlLossTmo: -2\n", "at '/csi/nvme/ctrlLossTmo'")]
    [TestCase("csi:\n  nvme:\n    headerDigest: \"yes\"\n", "at '/csi/nvme/headerDigest'")]
    [TestCase("csi:\n  nvme:\n    keepAliveTmo: 0\n", "at '/csi/nvme/keepAliveTmo'")]
    [TestCase("csi:\n  sidecars:\n    provisioner:\n      image: registry.k8s.io/sig-storage/csi-provisioner:latest\n", "at '/csi/sidecars/provisioner/image'")]
    [TestCase("csi:\n  sidecars:\n    attacher:\n      image: registry.k8s.io/sig-storage/csi-attacher\n", "at '/csi/sidecars/attacher/image'")]
    [TestCase("csi:\n  sidecars:\n    timeout: 60\n", "at '/csi/sidecars/timeout'")]
    [TestCase("csi:\n  node:\n    kubeletDir: var/lib/kubelet\n", "at '/csi/node/kubeletDir'")]
    [TestCase("csi:\n  node:\n    healthPort: 70000\n", "at '/csi/node/healthPort'")]
    [TestCase("image:\n  pullPolicy: Sometimes\n", "at '/image/pullPolicy'")]
    [TestCase("image:\n  tag: latest\n", "at '/image/tag'")]
    [TestCase("replicas: 0\n", "at '/replicas'")]
    [TestCase("replicas: 3\n", "at '/etcd/enabled': value must be true")]
    [TestCase("etcd:\n  enabled: true\n  endpoints: [http://etcd:2379]\n", "at '/etcd/endpoints': maxItems")]
    [TestCase("etcd:\n  enabled: true\n  replicas: 2\n", "at '/etcd/replicas'")]
    [TestCase("etcd:\n  endpoints: [etcd:2379]\n", "at '/etcd/endpoints/0'")]
    [TestCase("etcd:\n  endpoints: [\"http://a:2379,http://b:2379\"]\n", "at '/etcd/endpoints/0'")]
    [TestCase("etcd:\n  enabled: true\n  image: registry.k8s.io/etcd\n", "at '/etcd/image'")]
    [TestCase("etcd:\n  enabled: true\n  initialClusterState: join\n", "at '/etcd/initialClusterState'")]
    [TestCase("etcd:\n  enabled: true\nserver:\n  backend: memory\n", "at '/server/backend'")]
    [TestCase("etcd:\n  enabled: true\nstorage:\n  type: emptyDir\n", "at '/storage/type'")]
    [TestCase("etcd:\n  endpoints: [http://etcd:2379]\nstorage:\n  type: hostPath\n", "at '/storage/type': value must be 'persistentVolumeClaim'")]
    [TestCase("etcd:\n  enabled: true\nserver:\n  nvmeAddress: 10.0.0.5\n", "at '/server/nvmeAddress'")]
    [TestCase("cluster:\n  antiAffinity:\n    type: soft\n", "at '/cluster/antiAffinity/type'")]
    [TestCase("cluster:\n  leaseTtlSeconds: 1\n", "at '/cluster/leaseTtlSeconds'")]
    [TestCase("cluster:\n  rebuildRate: 200MB\n", "at '/cluster/rebuildRate'")]
    [TestCase("cluster:\n  drainTimeoutSeconds: 0\n", "at '/cluster/drainTimeoutSeconds'")]
    [TestCase("storageClasses:\n  block:\n    parameters:\n      replicas: 4\n", "at '/storageClasses/block/parameters/replicas'")]
    [TestCase("storageClasses:\n  block:\n    volumeBindingMode: Later\n", "at '/storageClasses/block/volumeBindingMode'")]
    [TestCase("storageClasses:\n  ext4:\n    enabled: 1\n", "at '/storageClasses/ext4/enabled'")]
    [TestCase("volumeSnapshotClass:\n  deletionPolicy: Keep\n", "at '/volumeSnapshotClass/deletionPolicy'")]
    [TestCase("metrics:\n  serviceMonitor:\n    enabled: \"true\"\n", "at '/metrics/serviceMonitor/enabled'")]
    [TestCase("metrics:\n  grafanaDashboard:\n    labels:\n      grafana_dashboard: 1\n", "at '/metrics/grafanaDashboard/labels/grafana_dashboard'")]
    [TestCase("server:\n  backend: disk\n", "at '/server/backend'")]
    [TestCase("server:\n  nvmePollMicroseconds: -1\n", "at '/server/nvmePollMicroseconds'")]
    [TestCase("server:\n  nvmePollMicroseconds: fast\n", "at '/server/nvmePollMicroseconds'")]
    [TestCase("server:\n  nvmeAddress: node-1\n", "at '/server/nvmeAddress'")]
    [TestCase("server:\n  pools:\n    - name: Fast\n      size: 10Gi\n", "at '/server/pools/0/name'")]
    [TestCase("server:\n  pools:\n    - name: fast\n      size: 10GB\n", "at '/server/pools/0/size'")]
    [TestCase("server:\n  pools:\n    - name: fast\n", "missing property 'size'")]
    [TestCase("tolerations:\n  - operator: Sometimes\n", "at '/tolerations/0/operator'")]
    [TestCase("server:\n  listenAddress: 1.2.3\n", "at '/server/listenAddress'")]
    [TestCase("server:\n  extraArgs: --advertise-address\n", "at '/server/extraArgs'")]
    [TestCase("storageClasses:\n  block:\n    parameters:\n      ctrlLosTmo: -1\n", "additional properties 'ctrlLosTmo'")]
    [TestCase("storageClasses:\n  block:\n    parameters:\n      blockSize: 1024\n", "at '/storageClasses/block/parameters/blockSize'")]
    [TestCase("storageClasses:\n  ext4:\n    parameters:\n      pool: \"a b\"\n", "at '/storageClasses/ext4/parameters/pool'")]
    [TestCase("storageClasses:\n  ext4:\n    parameters:\n      headerDigest: \"on\"\n", "at '/storageClasses/ext4/parameters/headerDigest'")]
    public void Wrong_values_are_rejected(string overrides, string expected)
    {
        using var temp = new TempDirectory("chart-values");
        var file = temp.Combine("values.yaml");
        File.WriteAllText(file, overrides);
        var (exitCode, _, errors) = Helm.Run("template", ["--namespace", Helm.Namespace, "--values", file]);
        Assert.Multiple(() =>
        {
            Assert.That(exitCode, Is.Not.Zero);
            Assert.That(errors, Does.Contain(expected));
        });
    }

    [TestCaseSource(nameof(ValueSets))]
    public void Changing_the_node_connection_settings_changes_the_node_daemonset_and_no_storage_class(ChartValues values)
    {
        // `helm upgrade --reuse-values --set csi.nvme.ctrlLossTmo=-1` once failed: those values were StorageClass
        // parameters, which Kubernetes refuses to update. Now the upgrade may change one object, the node plugin's
        // DaemonSet (a rolling update); every StorageClass must stay byte for byte what it was.
        var before = Helm.Documents(Helm.Template(values.Arguments));
        var after = Helm.Documents(Helm.Template([.. values.Arguments, .. _changedConnection]));
        var changed = before.Keys.Where(k => !IsMadeAtInstall(k) && (!after.TryGetValue(k, out var document) || document != before[k])).ToList();
        var classes = before.Keys.Where(k => k.StartsWith("StorageClass/", StringComparison.Ordinal)).ToList();
        Assert.That(after.Keys, Is.EquivalentTo(before.Keys));
        Assert.That(classes, Is.Not.Empty);
        Assert.That(changed, Has.Count.EqualTo(1).And.All.StartsWith("DaemonSet/"), "objects the upgrade changes");
        Assert.That(classes.Where(k => before[k] != after[k]), Is.Empty);

        var node = Manifests.Load(after[changed.Single()]).OfKind<V1DaemonSet>().Single().Spec.Template.Spec;
        var parsed = CsiCommandLine.Parse(RenderedManifestTests.ProgramArgs(node, RenderedManifestTests.DriverContainer(node), "csi"));
        Assert.That(parsed.Errors, Is.Empty);
        var single = new FabricsConnectSettings
        {
            CtrlLossTmo = -1, ReconnectDelay = 2, FastIoFailTmo = -1, KeepAliveTmo = 30, NrIoQueues = 4,
            HeaderDigest = true, DataDigest = true, DisableSqFlow = false,
        };
        Assert.That(parsed.Options!.NodeConnectDefaults, Is.EqualTo(new FabricsConnectDefaults(
            single, single with { CtrlLossTmo = 120, ReconnectDelay = 3, FastIoFailTmo = 30 })));
        Assert.That(parsed.Options.PathKeeperPeriod, Is.EqualTo(TimeSpan.FromSeconds(10)));
    }

    [TestCase("replicas: 2\netcd:\n  enabled: true\nstorageClasses:\n  block:\n    parameters:\n      replicas: 3\n", "storageClasses.block.parameters.replicas is 3, but the chart runs 2 storage nodes")]
    [TestCase("storageClasses:\n  ext4:\n    parameters:\n      replicas: 2\n", "storageClasses.ext4.parameters.replicas is 2, but the chart runs 1 storage node")]
    [TestCase("etcd:\n  enabled: true\nhostNetwork: true\n", "etcd.networkPolicy.allowFrom")]
    [TestCase("fullnameOverride: a-release-name-long-enough-to-break-pod-labels\n", "longer than 52 characters")]
    public void Values_that_only_the_templates_can_compare_are_refused_with_the_reason(string overrides, string expected)
    {
        using var temp = new TempDirectory("chart-values");
        var file = temp.Combine("values.yaml");
        File.WriteAllText(file, overrides);
        var (exitCode, _, errors) = Helm.Run("template", ["--namespace", Helm.Namespace, "--values", file]);
        Assert.Multiple(() =>
        {
            Assert.That(exitCode, Is.Not.Zero);
            Assert.That(errors, Does.Contain(expected));
        });
    }

    [TestCase(new string[0], null, null)]
    [TestCase(new[] { "--set", "etcd.enabled=true" }, null, null)]
    [TestCase(new[] { "--set", "etcd.enabled=true", "--set", "replicas=2" }, null, null)]
    [TestCase(new[] { "--set", "etcd.enabled=true", "--set", "replicas=3" }, "3", "3")]
    [TestCase(new[] { "--set", "etcd.endpoints[0]=http://etcd:2379", "--set", "replicas=5" }, "3", "3")]
    [TestCase(new[] { "--set", "etcd.enabled=true", "--set", "replicas=3", "--set", "storageClasses.block.parameters.replicas=1" }, "1", "3")]
    [TestCase(new[] { "--set", "etcd.enabled=true", "--set", "replicas=2", "--set", "storageClasses.ext4.parameters.replicas=2" }, null, "2")]
    public void Storage_classes_get_three_replicas_on_three_or_more_storage_nodes_unless_they_set_it(string[] arguments, string? block, string? ext4)
    {
        var classes = Manifests.Load(Helm.Template(arguments)).OfKind<V1StorageClass>().ToDictionary(c => c.Metadata.Name);
        Assert.Multiple(() =>
        {
            Assert.That(Replicas(classes["csinvme-block"]), Is.EqualTo(block));
            Assert.That(Replicas(classes["csinvme-ext4"]), Is.EqualTo(ext4));
        });

        static string? Replicas(V1StorageClass c) => c.Parameters is { } p && p.TryGetValue(ClusterContract.ReplicasParameter, out var r) ? r : null;
    }

    [TestCase("1", "2", false)]
    [TestCase("3", "5", false)]
    [TestCase("2", "3", true)]
    public void Growing_a_cluster_changes_its_storage_classes_only_across_three_nodes(string from, string to, bool classesChange)
    {
        // A class's parameters cannot change (the upgrade would fail): growing changes the StatefulSet's replicas,
        // and the classes only where the default replica count changes, which docs/install.md says how to handle.
        string[] cluster = ["--set", "etcd.enabled=true"];
        var before = Helm.Documents(Helm.Template([.. cluster, "--set", "replicas=" + from]));
        var after = Helm.Documents(Helm.Template([.. cluster, "--set", "replicas=" + to]));
        var changed = before.Keys.Where(k => !IsMadeAtInstall(k) && after[k] != before[k]).Order(StringComparer.Ordinal).ToList();
        Assert.That(after.Keys, Is.EquivalentTo(before.Keys));
        Assert.That(changed, classesChange
            ? Is.EqualTo(new[] { "StatefulSet/csinvme-server", "StorageClass/csinvme-block", "StorageClass/csinvme-ext4" })
            : Is.EqualTo(new[] { "StatefulSet/csinvme-server" }));

        // Classes that set replicas themselves stay as they are across the threshold.
        string[] pinned = [.. cluster, "--set", "storageClasses.block.parameters.replicas=2", "--set", "storageClasses.ext4.parameters.replicas=2"];
        var pinnedBefore = Helm.Documents(Helm.Template([.. pinned, "--set", "replicas=" + (from == "1" ? "2" : from)]));
        var pinnedAfter = Helm.Documents(Helm.Template([.. pinned, "--set", "replicas=" + to]));
        Assert.That(pinnedBefore.Keys.Where(k => k.StartsWith("StorageClass/", StringComparison.Ordinal) && pinnedAfter[k] != pinnedBefore[k]), Is.Empty);
    }

    [Test]
    public void The_cluster_flags_and_parameters_of_the_chart_are_known_to_the_programs()
    {
        // The chart renders the names of the cluster's contract; until the programs parse them, the packaging tests
        // strip them (ClusterContract). A server that knows some of its cluster flags but not all means a name changed.
        var known = ClusterContract.ServerFlags.Except(ClusterContract.ServerFlagsPending).ToList();
        Assert.That(known.Count == 0 || ClusterContract.ServerFlagsPending.Count == 0, Is.True,
            $"csinvme-server parses {string.Join(", ", known)} but not {string.Join(", ", ClusterContract.ServerFlagsPending)}: the chart passes the contract's names");
        var pending = ClusterContract.ServerFlagsPending.Concat(ClusterContract.ControllerParsesReplicas ? [] : [$"StorageClass parameter {ClusterContract.ReplicasParameter}"]).ToList();
        if (pending.Count > 0)
        {
            Assert.Ignore($"not parsed by the programs yet, so the chart tests strip them: {string.Join(", ", pending)}");
        }
    }

    [Test]
    public void Storage_class_parameters_are_what_the_class_sets_and_nothing_else()
    {
        var rendered = Manifests.Load(Helm.Template(
            "--set", "storageClasses.block.parameters.pool=fast", "--set", "storageClasses.block.parameters.ctrlLossTmo=-1",
            "--set-json", "storageClasses.ext4.parameters={\"blockSize\":4096,\"headerDigest\":true,\"keepAliveTmo\":1000}"))
            .OfKind<V1StorageClass>().ToDictionary(c => c.Metadata.Name);
        var defaults = Manifests.Load(Helm.Template()).OfKind<V1StorageClass>().ToDictionary(c => c.Metadata.Name);
        Assert.Multiple(() =>
        {
            Assert.That(defaults["csinvme-block"].Parameters, Is.Null.Or.Empty);
            Assert.That(defaults["csinvme-ext4"].Parameters, Is.EquivalentTo(new Dictionary<string, string> { ["csi.storage.k8s.io/fstype"] = "ext4" }));
            Assert.That(rendered["csinvme-block"].Parameters, Is.EquivalentTo(new Dictionary<string, string> { ["pool"] = "fast", ["ctrlLossTmo"] = "-1" }));
            Assert.That(rendered["csinvme-ext4"].Parameters, Is.EquivalentTo(new Dictionary<string, string>
            {
                ["csi.storage.k8s.io/fstype"] = "ext4", ["blockSize"] = "4096", ["headerDigest"] = "true", ["keepAliveTmo"] = "1000",
            }));
        });
    }

    [Test]
    public void The_install_notes_and_guide_say_how_to_allow_the_privileged_node_plugin()
    {
        const string label = "pod-security.kubernetes.io/enforce=privileged";
        Assert.Multiple(() =>
        {
            Assert.That(File.ReadAllText(Path.Combine(Chart, "templates", "NOTES.txt")), Does.Contain(label));
            Assert.That(File.ReadAllText(Path.Combine(RepoPaths.Root, "docs", "install.md")), Does.Contain(label));
        });
    }

    [Test]
    public void Every_values_path_a_template_reads_exists_in_values_yaml()
    {
        var values = Values();
        var missing = new List<string>();
        var schema = JsonNode.Parse(File.ReadAllText(Path.Combine(Chart, "values.schema.json")))!;
        foreach (var file in TemplateFiles())
        {
            foreach (Match match in ValuesReference().Matches(File.ReadAllText(file)))
            {
                var path = match.Groups["path"].Value;
                JsonNode? node = values;
                var found = true;
                foreach (var part in path.Split('.'))
                {
                    if (node is JsonObject o && o.TryGetPropertyValue(part, out var child))
                    {
                        node = child;
                    }
                    else
                    {
                        found = false;
                        break;
                    }
                }

                // A key the schema declares but values.yaml leaves out (global, set by a parent chart).
                var declared = schema["properties"]?[path.Split('.')[0]] is not null && path.Split('.')[0] == "global";
                if (!found && !declared)
                {
                    missing.Add($"{Path.GetFileName(file)}: .Values.{path}");
                }
            }
        }

        Assert.That(missing.Distinct(), Is.Empty);
    }

    [Test]
    public void Every_value_in_values_yaml_is_read_by_a_template()
    {
        var text = string.Join("\n", TemplateFiles().Select(File.ReadAllText));
        var references = ValuesReference().Matches(text).Select(m => m.Groups["path"].Value).ToHashSet(StringComparer.Ordinal);
        var unused = new List<string>();
        Walk(Values(), "");
        Assert.That(unused, Is.Empty, "values nothing reads are settings that do nothing");

        void Walk(JsonNode? node, string path)
        {
            // A value is read when a template names it, or names a map that holds it (toYaml, with, range).
            if (path.Length > 0 && references.Any(r => path == r || path.StartsWith(r + ".", StringComparison.Ordinal)))
            {
                return;
            }

            if (node is JsonObject o && o.Count > 0)
            {
                foreach (var (key, child) in o)
                {
                    Walk(child, path.Length == 0 ? key : path + "." + key);
                }
            }
            else
            {
                unused.Add(path);
            }
        }
    }

    [Test]
    public void Dashboard_in_the_chart_is_grafana_json_with_unique_panel_ids()
    {
        var dashboard = JsonNode.Parse(File.ReadAllText(Path.Combine(Chart, "dashboards", "csinvme.json")))!;
        var ids = dashboard["panels"]!.AsArray().Select(p => p!["id"]!.GetValue<int>()).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(dashboard["uid"]!.GetValue<string>(), Is.EqualTo("csinvme"));
            Assert.That(ids, Is.Unique.And.Not.Empty);
            Assert.That(
                dashboard["panels"]!.AsArray().Where(p => p!["type"]!.GetValue<string>() != "row").SelectMany(p => p!["targets"]!.AsArray()),
                Has.All.Matches<JsonNode?>(t => t!["expr"]!.GetValue<string>().Contains("csinvme_", StringComparison.Ordinal)));
        });
    }

    /// <summary>
    /// The objects of a rendering keyed "Kind/name", as JSON trees, without the labels only Helm sets (helm.sh/chart,
    /// app.kubernetes.io/managed-by).
    /// </summary>
    /// <summary>
    /// The management API's certificate Secrets: `helm template` makes new ones on every rendering, while an upgrade
    /// keeps the installed ones (lookup), so renderings never compare them.
    /// </summary>
    private static bool IsMadeAtInstall(string key) => key.StartsWith("Secret/", StringComparison.Ordinal) && key.EndsWith("-tls", StringComparison.Ordinal);

    private static Dictionary<string, JsonNode> Objects(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        var objects = new Dictionary<string, JsonNode>(StringComparer.Ordinal);
        foreach (var document in stream.Documents)
        {
            var node = YamlJson.Convert(document.RootNode)!;
            DropHelmLabels(node);
            objects.Add($"{node["kind"]}/{node["metadata"]!["name"]}", node);
        }

        return objects;
    }

    private static void DropHelmLabels(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                if (o["labels"] is JsonObject labels)
                {
                    labels.Remove("helm.sh/chart");
                    labels.Remove("app.kubernetes.io/managed-by");
                }

                foreach (var (_, child) in o.ToList())
                {
                    DropHelmLabels(child);
                }

                break;
            case JsonArray a:
                foreach (var child in a)
                {
                    DropHelmLabels(child);
                }

                break;
        }
    }

    private static void AssertSameObjects(Dictionary<string, JsonNode> chart, Dictionary<string, JsonNode> deploy)
    {
        var differences = chart.Keys.Union(deploy.Keys).Order(StringComparer.Ordinal)
            .Where(k => !chart.TryGetValue(k, out var c) || !deploy.TryGetValue(k, out var d) || !JsonNode.DeepEquals(c, d))
            .Select(k => $"{k}\n  chart:  {chart.GetValueOrDefault(k)?.ToJsonString() ?? "(none)"}\n  deploy: {deploy.GetValueOrDefault(k)?.ToJsonString() ?? "(none)"}")
            .ToList();
        Assert.That(chart, Is.Not.Empty);
        Assert.That(differences, Is.Empty, "deploy/ must be the chart's default rendering");
    }

    private static IEnumerable<string> TemplateFiles() =>
        Directory.GetFiles(Path.Combine(Chart, "templates")).Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".tpl", StringComparison.Ordinal) || f.EndsWith(".txt", StringComparison.Ordinal));

    [GeneratedRegex(@"\$?\.Values\.(?<path>[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*)")]
    private static partial Regex ValuesReference();
}
