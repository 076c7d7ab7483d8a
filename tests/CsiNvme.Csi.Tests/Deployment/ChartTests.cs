using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// charts/csinvme checked without Helm: its values against its schema, the values paths its templates
/// read, and its templates against the plain manifests of deploy/, line by line, so the two cannot drift.
/// </summary>
[TestFixture]
public sealed partial class ChartTests
{
    private static string Chart => Path.Combine(RepoPaths.Root, "charts", "csinvme");

    /// <summary>Template ↔ the deploy/ file holding its default rendering, with the values that rendering uses.</summary>
    private static readonly (string Template, string Manifest, string? Overrides)[] _pairs =
    [
        ("statefulset.yaml", "deploy/statefulset.yaml", null),
        ("service.yaml", "deploy/service.yaml", null),
        ("csidriver.yaml", "deploy/csidriver.yaml", null),
        ("controller.yaml", "deploy/controller.yaml", null),
        ("controller-rbac.yaml", "deploy/controller-rbac.yaml", null),
        ("node.yaml", "deploy/node.yaml", null),
        ("node-rbac.yaml", "deploy/node-rbac.yaml", null),
        ("metrics-services.yaml", "deploy/metrics-services.yaml", null),
        ("storageclasses.yaml", "deploy/storageclasses.yaml", null),
        ("volumesnapshotclass.yaml", "deploy/volumesnapshotclass.yaml", null),
        ("servicemonitor.yaml", "deploy/monitoring/servicemonitor.yaml", "metrics:\n  serviceMonitor:\n    enabled: true\n"),
    ];

    /// <summary>What the chart's named templates render for release "csinvme" in csinvme-system with default values.</summary>
    private static readonly Dictionary<string, string> _includes = new(StringComparer.Ordinal)
    {
        ["csinvme.fullname"] = "csinvme",
        ["csinvme.server.fullname"] = "csinvme-server",
        ["csinvme.controller.fullname"] = "csinvme-controller",
        ["csinvme.node.fullname"] = "csinvme-node",
        ["csinvme.image"] = "csinvme:0.1.0",
        ["csinvme.serverAddress"] = "csinvme-server.csinvme-system.svc:9500",
        ["csinvme.nvmeListen"] = "$(POD_IP):4420",
    };

    private static JsonNode Values() => YamlJson.Parse(File.ReadAllText(Path.Combine(Chart, "values.yaml")))!;

    private static JsonSchemaValidator Schema() =>
        new(JsonNode.Parse(File.ReadAllText(Path.Combine(Chart, "values.schema.json")))!.AsObject());

    [Test]
    public void Default_values_satisfy_the_schema()
    {
        Assert.That(Schema().Validate(Values()), Is.Empty);
    }

    [TestCaseSource(nameof(CiValueFiles))]
    public void Ci_values_files_merged_over_the_defaults_satisfy_the_schema(string file)
    {
        var merged = YamlJson.Merge(Values(), YamlJson.Parse(File.ReadAllText(file)));
        Assert.That(Schema().Validate(merged), Is.Empty);
    }

    private static IEnumerable<TestCaseData> CiValueFiles() =>
        Directory.GetFiles(Path.Combine(Chart, "ci"), "*.yaml").Order(StringComparer.Ordinal)
            .Select(f => new TestCaseData(f).SetArgDisplayNames(Path.GetFileName(f)));

    [TestCase("csi:\n  controller:\n    replicas: two\n", "$.csi.controller.replicas")]
    [TestCase("csi:\n  controller:\n    replicas: 0\n", "$.csi.controller.replicas")]
    [TestCase("csi:\n  controller:\n    topolgy: true\n", "unknown key 'topolgy'")]
    [TestCase("csi:\n  nvme:\n    ctrlLossTmo: \"600\"\n", "$.csi.nvme.ctrlLossTmo")]
    [TestCase("csi:\n  nvme:\n    ctrlLossTmo: -2\n", "$.csi.nvme.ctrlLossTmo")]
    [TestCase("csi:\n  nvme:\n    headerDigest: \"yes\"\n", "$.csi.nvme.headerDigest")]
    [TestCase("csi:\n  nvme:\n    keepAliveTmo: 0\n", "$.csi.nvme.keepAliveTmo")]
    [TestCase("csi:\n  sidecars:\n    provisioner:\n      image: registry.k8s.io/sig-storage/csi-provisioner:latest\n", "$.csi.sidecars.provisioner.image")]
    [TestCase("csi:\n  sidecars:\n    attacher:\n      image: registry.k8s.io/sig-storage/csi-attacher\n", "$.csi.sidecars.attacher.image")]
    [TestCase("csi:\n  sidecars:\n    timeout: 60\n", "$.csi.sidecars.timeout")]
    [TestCase("csi:\n  node:\n    kubeletDir: var/lib/kubelet\n", "$.csi.node.kubeletDir")]
    [TestCase("csi:\n  node:\n    healthPort: 70000\n", "$.csi.node.healthPort")]
    [TestCase("image:\n  pullPolicy: Sometimes\n", "$.image.pullPolicy")]
    [TestCase("image:\n  tag: latest\n", "$.image.tag")]
    [TestCase("replicas: 3\n", "$.replicas")]
    [TestCase("storageClasses:\n  block:\n    volumeBindingMode: Later\n", "$.storageClasses.block.volumeBindingMode")]
    [TestCase("storageClasses:\n  ext4:\n    enabled: 1\n", "$.storageClasses.ext4.enabled")]
    [TestCase("volumeSnapshotClass:\n  deletionPolicy: Keep\n", "$.volumeSnapshotClass.deletionPolicy")]
    [TestCase("metrics:\n  serviceMonitor:\n    enabled: \"true\"\n", "$.metrics.serviceMonitor.enabled")]
    [TestCase("metrics:\n  grafanaDashboard:\n    labels:\n      grafana_dashboard: 1\n", "$.metrics.grafanaDashboard.labels.grafana_dashboard")]
    [TestCase("server:\n  backend: disk\n", "$.server.backend")]
    [TestCase("server:\n  nvmePollMicroseconds: -1\n", "$.server.nvmePollMicroseconds")]
    [TestCase("server:\n  nvmePollMicroseconds: fast\n", "$.server.nvmePollMicroseconds")]
    [TestCase("server:\n  nvmeAddress: node-1\n", "$.server.nvmeAddress")]
    [TestCase("server:\n  pools:\n    - name: Fast\n      size: 10Gi\n", "$.server.pools[0].name")]
    [TestCase("server:\n  pools:\n    - name: fast\n      size: 10GB\n", "$.server.pools[0].size")]
    [TestCase("server:\n  pools:\n    - name: fast\n", "missing required key 'size'")]
    [TestCase("tolerations:\n  - operator: Sometimes\n", "$.tolerations[0].operator")]
    public void Wrong_values_are_rejected(string overrides, string expected)
    {
        var errors = Schema().Validate(YamlJson.Merge(Values(), YamlJson.Parse(overrides)));
        Assert.That(errors, Has.Some.Contains(expected), string.Join("\n", errors));
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

    [TestCaseSource(nameof(Pairs))]
    public void Template_and_deploy_manifest_render_the_same_lines(string template, string manifest, string? overrides)
    {
        var values = overrides is null ? Values() : YamlJson.Merge(Values(), YamlJson.Parse(overrides));
        var templateLines = new TemplateLines(values, _includes).Read(File.ReadAllText(Path.Combine(Chart, "templates", template)));
        var manifestLines = TemplateLines.NormaliseManifest(File.ReadAllText(Path.Combine(RepoPaths.Root, manifest)))
            .Where(l => !IsLabelLine(l))
            .ToList();

        // Both directions: what the template always renders is in the manifest, and nothing in the manifest
        // (labels aside, which come from the chart's label helpers) lacks a template line that renders it.
        var notInManifest = templateLines
            .Where(t => t.Unconditional && !manifestLines.Any(m => t.Pattern.IsMatch(m)))
            .Select(t => $"{template}:{t.Number}: {t.Source}");
        var notInTemplate = manifestLines
            .Where(m => !templateLines.Any(t => t.Pattern.IsMatch(m)))
            .Select(m => $"{manifest}: {m}");
        Assert.That(notInManifest.Concat(notInTemplate), Is.Empty);
    }

    private static IEnumerable<TestCaseData> Pairs() =>
        _pairs.Select(p => new TestCaseData(p.Template, p.Manifest, p.Overrides).SetArgDisplayNames(p.Template));

    [Test]
    public void Every_template_has_its_default_rendering_in_deploy()
    {
        var paired = _pairs.Select(p => p.Template).Append("grafana-dashboard.yaml").ToHashSet(StringComparer.Ordinal);
        var templates = Directory.GetFiles(Path.Combine(Chart, "templates"), "*.yaml").Select(Path.GetFileName);
        Assert.That(templates, Is.SubsetOf(paired), "a template without a deploy/ counterpart would let the two drift");
    }

    [Test]
    public void Templates_produce_the_kinds_deploy_contains()
    {
        var templateKinds = TemplateFiles()
            .SelectMany(f => TopLevelKind().Matches(File.ReadAllText(f)).Select(m => m.Groups["kind"].Value))
            .ToHashSet(StringComparer.Ordinal);
        var deployKinds = Manifests.Load(Kustomize.Render("deploy")).Concat(Manifests.Load(Kustomize.Render("deploy/monitoring")))
            .Select(o => o.Kind)
            .Where(k => k != "Namespace") // Helm installs into an existing namespace (--create-namespace).
            .ToHashSet(StringComparer.Ordinal);
        Assert.That(templateKinds, Is.EquivalentTo(deployKinds));
    }

    [Test]
    public void Literal_driver_name_and_socket_paths_in_the_templates_match_the_driver()
    {
        var node = File.ReadAllText(Path.Combine(Chart, "templates", "node.yaml"));
        var controller = File.ReadAllText(Path.Combine(Chart, "templates", "controller.yaml"));
        var socket = CsiDriverOptions.DefaultEndpoint["unix://".Length..];
        Assert.Multiple(() =>
        {
            Assert.That(File.ReadAllText(Path.Combine(Chart, "templates", "csidriver.yaml")), Does.Contain($"name: {CsiDriverOptions.DriverName}\n"));
            Assert.That(node, Does.Contain($"/plugins/{CsiDriverOptions.DriverName}/csi.sock"));
            Assert.That(node, Does.Contain($"/plugins/{CsiDriverOptions.DriverName}\n"));
            foreach (var text in new[] { node, controller })
            {
                Assert.That(text, Does.Contain($"--endpoint={CsiDriverOptions.DefaultEndpoint}"));
                Assert.That(Regex.Matches(text, "--csi-address=(.*)").Select(m => m.Groups[1].Value), Is.Not.Empty.And.All.EqualTo(socket));
                Assert.That(text, Does.Contain($"mountPath: {Path.GetDirectoryName(socket)}\n"));
            }

            Assert.That(File.ReadAllText(Path.Combine(Chart, "templates", "storageclasses.yaml")), Does.Contain($"provisioner: {CsiDriverOptions.DriverName}"));
            Assert.That(File.ReadAllText(Path.Combine(Chart, "templates", "volumesnapshotclass.yaml")), Does.Contain($"driver: {CsiDriverOptions.DriverName}"));
        });
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

    private static IEnumerable<string> TemplateFiles() =>
        Directory.GetFiles(Path.Combine(Chart, "templates")).Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".tpl", StringComparison.Ordinal) || f.EndsWith(".txt", StringComparison.Ordinal));

    private static bool IsLabelLine(string line) =>
        line.StartsWith("app.kubernetes.io/", StringComparison.Ordinal) || line.StartsWith("helm.sh/", StringComparison.Ordinal);

    [GeneratedRegex(@"\$?\.Values\.(?<path>[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*)")]
    private static partial Regex ValuesReference();

    [GeneratedRegex(@"^kind: (?<kind>\w+)", RegexOptions.Multiline)]
    private static partial Regex TopLevelKind();
}
