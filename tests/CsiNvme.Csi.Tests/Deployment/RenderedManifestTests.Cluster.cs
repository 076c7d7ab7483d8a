using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using k8s.Models;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// The storage cluster as each rendering has it (or, for a single server, does not): storage nodes named after their
/// pods and joined to etcd, one per machine, the chart's etcd members consistent with --initial-cluster and with
/// the storage nodes' endpoints, disruption budgets, the drain and undrain hooks of a rolling upgrade, and the
/// StorageClasses' default replica count. The values a rendering was made with say what to expect.
/// </summary>
public sealed partial class RenderedManifestTests
{
    private const string StorageNodeName = "^[A-Za-z0-9._-]{1,63}$";

    /// <summary>The values of the rendering; deploy/ is the chart's default rendering.</summary>
    private JsonNode Values => (rendering.Values ?? ChartValues.Defaults).Values;

    private bool IsCluster => Values["etcd"]!["enabled"]!.GetValue<bool>() || Values["etcd"]!["endpoints"]!.AsArray().Count > 0;

    private V1Container ServerContainer => Server.Spec.Template.Spec.Containers.Single();

    [Test]
    public void Storage_nodes_of_a_cluster_are_named_after_their_pods_and_advertise_their_pod_ip()
    {
        var container = ServerContainer;
        if (!IsCluster)
        {
            Assert.Multiple(() =>
            {
                Assert.That(Server.Spec.Replicas, Is.EqualTo(1));
                Assert.That(ClusterContract.ServerFlags.Where(f => Flag(container, f[2..]) is not null), Is.Empty, "a single server has no cluster flags");
            });
            return;
        }

        var nodes = Enumerable.Range(0, Server.Spec.Replicas!.Value).Select(i => $"{Server.Metadata.Name}-{i}").ToList();
        Assert.Multiple(() =>
        {
            Assert.That(Server.Spec.Replicas, Is.EqualTo(Values["replicas"]!.GetValue<int>()));
            // The kubelet expands $(POD_NAME) from the pod's own name: node-0, node-1, ... of the StatefulSet, the same
            // after every restart and distinct by construction.
            Assert.That(Flag(container, "node-name"), Is.EqualTo("$(POD_NAME)"));
            Assert.That(container.Env.Single(e => e.Name == "POD_NAME").ValueFrom.FieldRef.FieldPath, Is.EqualTo("metadata.name"));
            Assert.That(nodes.Select(n => Flag(WithArgs(container, ExpandedArgs(container, n)), "node-name")), Is.EqualTo(nodes).And.Unique);
            Assert.That(nodes, Has.All.Matches(StorageNodeName));
            Assert.That(Flag(container, "advertise-address"), Is.EqualTo("$(POD_IP)"));
            Assert.That(container.Env.Single(e => e.Name == "POD_IP").ValueFrom.FieldRef.FieldPath, Is.EqualTo("status.podIP"));
            Assert.That(EtcdEndpoints(container), Is.Not.Empty.And.All.Matches(@"^https?://[^,/\s]+:\d+$"));
            if (Values["etcd"]!["endpoints"]!.AsArray().Count > 0)
            {
                Assert.That(EtcdEndpoints(container), Is.EqualTo(Values["etcd"]!["endpoints"]!.AsArray().Select(e => e!.GetValue<string>())));
            }

            // Nodes do not wait for each other, but an update replaces one at a time.
            Assert.That(Server.Spec.PodManagementPolicy, Is.EqualTo("Parallel"));
            Assert.That(Server.Spec.UpdateStrategy.Type, Is.EqualTo("RollingUpdate"));
            Assert.That(Server.Spec.UpdateStrategy.RollingUpdate?.Partition ?? 0, Is.Zero);
            // A DNS name per node: the StatefulSet's service is headless and selects every storage pod.
            var headless = Objects.OfKind<V1Service>().Single(s => s.Metadata.Name == Server.Spec.ServiceName);
            Assert.That(headless.Spec.ClusterIP, Is.EqualTo("None"));
            Assert.That(Selects(headless.Spec.Selector, Server.Spec.Template.Metadata.Labels), Is.True);
            // The CSI controller's Service reaches every storage pod: any node answers for the cluster.
            Assert.That(Selects(ServerService.Spec.Selector, Server.Spec.Template.Metadata.Labels), Is.True);
            Assert.That(ServerService.Spec.Selector.Keys, Does.Not.Contain("statefulset.kubernetes.io/pod-name"));
        });
    }

    [Test]
    public void Storage_nodes_of_a_cluster_keep_off_each_others_machines()
    {
        var anti = Server.Spec.Template.Spec.Affinity?.PodAntiAffinity;
        if (!IsCluster)
        {
            Assert.That(anti, Is.Null, "a single server needs no anti-affinity");
            return;
        }

        var type = Values["cluster"]!["antiAffinity"]!["type"]!.GetValue<string>();
        var key = Values["cluster"]!["antiAffinity"]!["topologyKey"]!.GetValue<string>();
        var terms = type == "required"
            ? anti?.RequiredDuringSchedulingIgnoredDuringExecution ?? []
            : (anti?.PreferredDuringSchedulingIgnoredDuringExecution ?? []).Select(p => p.PodAffinityTerm).ToList();
        Assert.That(terms.Where(t => t.TopologyKey == key && KeepsApartFromItself(t, Server.Spec.Template.Metadata.Labels)), Has.Exactly(1).Items,
            $"a {type} anti-affinity term over {key} that matches the storage pods themselves");
        Assert.That(terms.Where(t => KeepsApartFromItself(t, Server.Spec.Template.Metadata.Labels)).Select(t => Pods.Count(p => Selects(t.LabelSelector.MatchLabels, p.Labels))), Has.All.EqualTo(1),
            "the term selects the storage pods and nothing else");
        if (Etcd is { } etcd)
        {
            var etcdType = Values["etcd"]!["antiAffinity"]!.GetValue<string>();
            var etcdAnti = etcd.Spec.Template.Spec.Affinity.PodAntiAffinity;
            var etcdTerms = etcdType == "required"
                ? etcdAnti.RequiredDuringSchedulingIgnoredDuringExecution
                : etcdAnti.PreferredDuringSchedulingIgnoredDuringExecution.Select(p => p.PodAffinityTerm).ToList();
            Assert.That(etcdTerms.Where(t => t.TopologyKey == "kubernetes.io/hostname" && KeepsApartFromItself(t, etcd.Spec.Template.Metadata.Labels)), Has.Exactly(1).Items);
        }

        static bool KeepsApartFromItself(V1PodAffinityTerm term, IDictionary<string, string> labels) =>
            term.LabelSelector?.MatchLabels is { Count: > 0 } selector && Selects(selector, labels);
    }

    [Test]
    public void Etcd_members_agree_with_the_initial_cluster_and_with_the_storage_nodes_endpoints()
    {
        var etcd = Etcd;
        if (!Values["etcd"]!["enabled"]!.GetValue<bool>())
        {
            Assert.That(etcd, Is.Null);
            return;
        }

        Assert.That(etcd, Is.Not.Null);
        var container = etcd!.Spec.Template.Spec.Containers.Single();
        var service = Objects.OfKind<V1Service>().Single(s => s.Metadata.Name == etcd.Spec.ServiceName);
        var ns = etcd.Metadata.NamespaceProperty;
        int client = Port(container, "client"), peer = Port(container, "peer");
        var members = Enumerable.Range(0, etcd.Spec.Replicas!.Value).Select(i => $"{etcd.Metadata.Name}-{i}").ToList();
        var initialCluster = Flag(container, "initial-cluster")!.Split(',').Select(m => m.Split('=', 2)).ToDictionary(m => m[0], m => m[1]);
        Assert.Multiple(() =>
        {
            Assert.That(etcd.Spec.Replicas, Is.EqualTo(Values["etcd"]!["replicas"]!.GetValue<int>()).And.AnyOf(1, 3));
            Assert.That(initialCluster.Keys, Is.EqualTo(members), "--initial-cluster names every member by its pod's name");
            foreach (var member in members)
            {
                var args = WithArgs(container, ExpandedArgs(container, member));
                var host = $"{member}.{service.Metadata.Name}.{ns}.svc";
                Assert.That(Flag(args, "name"), Is.EqualTo(member));
                Assert.That(Flag(args, "initial-advertise-peer-urls"), Is.EqualTo($"http://{host}:{peer}").And.EqualTo(initialCluster[member]), member);
                Assert.That(Flag(args, "advertise-client-urls"), Is.EqualTo($"http://{host}:{client}"), member);
            }

            Assert.That(Flag(container, "initial-cluster-state"), Is.EqualTo(Values["etcd"]!["initialClusterState"]!.GetValue<string>()));
            Assert.That(Flag(container, "initial-cluster-token"), Does.Contain(ns).And.Contain(etcd.Metadata.Name), "a token of this release's etcd alone");
            Assert.That(Flag(container, "data-dir"), Does.StartWith(container.VolumeMounts.Single(m => m.Name == "data").MountPath + "/"));
            Assert.That(etcd.Spec.VolumeClaimTemplates.Select(c => c.Metadata.Name), Is.EqualTo(new[] { "data" }));
            // Members find each other by name before any is ready.
            Assert.That(etcd.Spec.PodManagementPolicy, Is.EqualTo("Parallel"));
            Assert.That(service.Spec.ClusterIP, Is.EqualTo("None"));
            Assert.That(service.Spec.PublishNotReadyAddresses, Is.True);
            Assert.That(Selects(service.Spec.Selector, etcd.Spec.Template.Metadata.Labels), Is.True);
            // The client port stays inside the cluster: no host port, no node port, no load balancer.
            Assert.That(etcd.Spec.Template.Spec.HostNetwork ?? false, Is.False);
            Assert.That(container.Ports.Select(p => p.HostPort ?? 0), Has.All.Zero);
            Assert.That(Objects.OfKind<V1Service>().Where(s => Selects(s.Spec.Selector, etcd.Spec.Template.Metadata.Labels)).Select(s => s.Spec.Type ?? "ClusterIP"), Has.All.EqualTo("ClusterIP"));
            foreach (var probe in new[] { container.StartupProbe, container.ReadinessProbe, container.LivenessProbe })
            {
                Assert.That(probe?.HttpGet?.Path, Does.StartWith("/health"));
                Assert.That(probe?.HttpGet?.Port.Value, Is.EqualTo("metrics"));
            }

            Assert.That(container.Resources?.Requests, Is.Not.Null.And.Not.Empty);
            // The storage nodes know every member by the URL it advertises.
            Assert.That(EtcdEndpoints(ServerContainer), Is.EqualTo(members.Select(m => $"http://{m}.{service.Metadata.Name}.{ns}.svc:{client}")));
        });
    }

    [Test]
    public void Disruption_budgets_stop_one_storage_node_and_one_etcd_member_at_a_time()
    {
        var budgets = Objects.OfKind<V1PodDisruptionBudget>().ToList();
        if (!IsCluster)
        {
            Assert.That(budgets, Is.Empty);
            return;
        }

        var workloads = new List<V1StatefulSet> { Server };
        if (Etcd is { } etcd)
        {
            workloads.Add(etcd);
        }

        Assert.Multiple(() =>
        {
            Assert.That(budgets, Has.Count.EqualTo(workloads.Count));
            foreach (var workload in workloads)
            {
                var budget = budgets.Where(b => Selects(b.Spec.Selector.MatchLabels, workload.Spec.Template.Metadata.Labels)).ToList();
                Assert.That(budget, Has.Count.EqualTo(1), workload.Metadata.Name);
                Assert.That(budget.Single().Spec.MaxUnavailable?.Value, Is.EqualTo("1"), workload.Metadata.Name);
                Assert.That(Pods.Count(p => Selects(budget.Single().Spec.Selector.MatchLabels, p.Labels)), Is.EqualTo(1), "the budget selects one workload's pods");
            }
        });
    }

    [Test]
    public void Rolling_upgrade_drains_a_storage_node_before_its_pod_stops_and_undrains_it_after_it_starts()
    {
        var spec = Server.Spec.Template.Spec;
        var container = ServerContainer;
        var shutdown = Values["terminationGracePeriodSeconds"]!.GetValue<int>();
        if (!IsCluster || !Values["cluster"]!["drainOnStop"]!.GetValue<bool>())
        {
            Assert.That(container.Lifecycle, Is.Null);
            Assert.That(spec.TerminationGracePeriodSeconds, Is.EqualTo(shutdown));
            return;
        }

        var preStop = Script(container.Lifecycle?.PreStop);
        var postStart = Script(container.Lifecycle?.PostStart);
        var drainTimeout = Values["cluster"]!["drainTimeoutSeconds"]!.GetValue<int>();
        var drain = DrainCommand().Match(preStop);
        var undrain = UndrainCommand().Match(postStart);
        var dataDirectory = Flag(container, "data-dir")!;
        Assert.Multiple(() =>
        {
            Assert.That(drain.Success, Is.True, preStop);
            Assert.That(undrain.Success, Is.True, postStart);
            // The CLI asks this pod's own management listener: its port is the server's --mgmt-listen port.
            var management = Port(container, "grpc");
            Assert.That(drain.Groups["server"].Value, Does.EndWith($":{management}"));
            Assert.That(undrain.Groups["server"].Value, Is.EqualTo(drain.Groups["server"].Value));
            Assert.That(container.Env.Select(e => e.Name), Does.Contain("POD_NAME"));
            // The drain ends before the kubelet's SIGTERM would cut it short, and leaves the server its shutdown time.
            Assert.That(int.Parse(drain.Groups["timeout"].Value, System.Globalization.CultureInfo.InvariantCulture), Is.EqualTo(drainTimeout));
            Assert.That(spec.TerminationGracePeriodSeconds, Is.EqualTo(drainTimeout + 15 + shutdown));
            // postStart undrains only a node its own preStop drained: the marker is on the data volume, which
            // outlives the container.
            var marker = Marker().Match(preStop).Groups["path"].Value;
            Assert.That(marker, Does.StartWith(dataDirectory + "/"));
            Assert.That(postStart, Does.Contain($"[ -e {marker} ] || exit 0").And.Contain($"rm -f {marker}"));
            Assert.That(preStop.IndexOf($"touch {marker}", StringComparison.Ordinal), Is.GreaterThanOrEqualTo(0).And.LessThan(drain.Index), "the marker is written before the drain starts");
            Assert.That(postStart, Does.Contain($"+ {Values["cluster"]!["undrainTimeoutSeconds"]!.GetValue<int>()} ))"), "the undrain loop has its bound");
            Assert.That(container.VolumeMounts.Select(m => m.MountPath), Does.Contain(dataDirectory));
            foreach (var script in new[] { preStop, postStart })
            {
                var (exitCode, _, errors) = RequiredTool.Run("/bin/sh", ["-n", "-c", script]);
                Assert.That(exitCode, Is.Zero, $"sh -n: {errors}\n{script}");
            }
        });

        static string Script(V1LifecycleHandler? handler)
        {
            var command = handler?.Exec?.Command;
            Assert.That(command, Is.Not.Null.And.Count.EqualTo(3));
            Assert.That(command!.Take(2), Is.EqualTo(new[] { "sh", "-c" }));
            return command[2];
        }
    }

    [Test]
    public void Storage_classes_default_to_three_replicas_from_three_storage_nodes_on()
    {
        var nodes = IsCluster ? Server.Spec.Replicas!.Value : 1;
        var classes = Values["storageClasses"]!.AsObject();
        Assert.Multiple(() =>
        {
            foreach (var storageClass in Objects.OfKind<V1StorageClass>())
            {
                var values = classes.Select(c => c.Value!).Single(c => c["name"]!.GetValue<string>() == storageClass.Metadata.Name);
                var set = values["parameters"]?["replicas"];
                string? expected = set is not null ? set.ToString() : IsCluster && nodes >= 3 ? "3" : null;
                var actual = storageClass.Parameters?.TryGetValue(ClusterContract.ReplicasParameter, out var r) == true ? r : null;
                Assert.That(actual, Is.EqualTo(expected), storageClass.Metadata.Name);
                if (actual is not null)
                {
                    Assert.That(int.Parse(actual, System.Globalization.CultureInfo.InvariantCulture), Is.InRange(1, Math.Min(3, nodes)), storageClass.Metadata.Name);
                }
            }
        });
    }

    private static string[] EtcdEndpoints(V1Container serverContainer) => (Flag(serverContainer, "etcd-endpoints") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries);

    private static V1Container WithArgs(V1Container c, IList<string> args) => new() { Name = c.Name, Image = c.Image, Args = args };

    [GeneratedRegex(@"csinvme --server (?<server>\S+) node drain ""\$POD_NAME"" --wait --timeout (?<timeout>\d+)s")]
    private static partial Regex DrainCommand();

    [GeneratedRegex(@"csinvme --server (?<server>\S+) node undrain ""\$POD_NAME""")]
    private static partial Regex UndrainCommand();

    [GeneratedRegex(@"touch (?<path>/\S+)")]
    private static partial Regex Marker();
}
