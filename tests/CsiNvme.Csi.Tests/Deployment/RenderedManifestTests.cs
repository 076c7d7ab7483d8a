using System.Net;
using System.Text.RegularExpressions;
using CsiNvme.Csi.Controller;
using CsiNvme.Csi.Hosting;
using CsiNvme.Csi.Node;
using CsiNvme.Server.Hosting;
using k8s;
using k8s.Models;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// One way the driver's objects are rendered: deploy/ through kustomize, or the chart through helm with a set of
/// values (<see cref="Values"/>; null for deploy/, which is the chart's default rendering).
/// </summary>
public sealed record Rendering(string Name, Func<string> Render, ChartValues? Values = null)
{
    public static IEnumerable<Rendering> All =>
    [
        new("deploy (kustomize)", () => Kustomize.Render("deploy")),
        .. ChartValues.All.Select(v => new Rendering("chart, " + v.Name, () => Helm.Template(v.Arguments), v)),
    ];

    public override string ToString() => Name;
}

/// <summary>
/// The driver's objects as deploy/ and the chart (with its default values and with every file of
/// charts/csinvme/ci) render them, loaded strictly with the client library's models (an unknown field fails),
/// then checked for the wiring that breaks a CSI driver silently: socket paths, the driver name, RBAC, mount
/// propagation, probe ports, image tags, arguments the programs parse, where the server keeps its data.
/// </summary>
[TestFixtureSource(nameof(Renderings))]
public sealed partial class RenderedManifestTests(Rendering rendering)
{
    private const string Namespace = "csinvme-system";
    private const string KubeletDir = "/var/lib/kubelet";

    /// <summary>
    /// What each sidecar calls on the API server, from the sidecars' own RBAC files: (apiGroup, resource,
    /// verbs, namespaced). Namespaced rules may come from a Role in the controller's namespace.
    /// </summary>
    private static readonly Dictionary<string, (string Group, string Resource, string[] Verbs, bool Namespaced)[]> _sidecarNeeds = new()
    {
        ["csi-provisioner"] =
        [
            ("", "persistentvolumes", ["get", "list", "watch", "create", "delete"], false),
            ("", "persistentvolumeclaims", ["get", "list", "watch", "update"], false),
            ("storage.k8s.io", "storageclasses", ["get", "list", "watch"], false),
            ("", "events", ["list", "watch", "create", "update", "patch"], false),
            ("snapshot.storage.k8s.io", "volumesnapshots", ["get", "list"], false),
            ("snapshot.storage.k8s.io", "volumesnapshotcontents", ["get", "list"], false),
            ("storage.k8s.io", "csinodes", ["get", "list", "watch"], false),
            ("", "nodes", ["get", "list", "watch"], false),
            ("storage.k8s.io", "volumeattachments", ["get", "list", "watch"], false),
            ("coordination.k8s.io", "leases", ["get", "watch", "list", "delete", "update", "create"], true),
        ],
        ["csi-attacher"] =
        [
            ("", "persistentvolumes", ["get", "list", "watch", "update", "patch"], false),
            ("", "nodes", ["get", "list", "watch"], false),
            ("storage.k8s.io", "csinodes", ["get", "list", "watch"], false),
            ("storage.k8s.io", "volumeattachments", ["get", "list", "watch", "update", "patch"], false),
            ("storage.k8s.io", "volumeattachments/status", ["patch"], false),
            ("coordination.k8s.io", "leases", ["get", "watch", "list", "delete", "update", "create"], true),
        ],
        ["csi-resizer"] =
        [
            ("", "persistentvolumes", ["get", "list", "watch", "patch"], false),
            ("", "persistentvolumeclaims", ["get", "list", "watch"], false),
            ("", "persistentvolumeclaims/status", ["patch"], false),
            ("", "events", ["list", "watch", "create", "update", "patch"], false),
            ("coordination.k8s.io", "leases", ["get", "watch", "list", "delete", "update", "create"], true),
        ],
        ["csi-snapshotter"] =
        [
            ("", "events", ["list", "watch", "create", "update", "patch"], false),
            ("snapshot.storage.k8s.io", "volumesnapshotclasses", ["get", "list", "watch"], false),
            ("snapshot.storage.k8s.io", "volumesnapshotcontents", ["create", "get", "list", "watch", "update", "patch"], false),
            ("snapshot.storage.k8s.io", "volumesnapshotcontents/status", ["update", "patch"], false),
            ("coordination.k8s.io", "leases", ["get", "watch", "list", "delete", "update", "create"], true),
        ],
        // The driver's node service reads its Node's topology labels.
        ["csinvme-node"] = [("", "nodes", ["get"], false)],
        ["livenessprobe"] = [],
        ["csi-node-driver-registrar"] = [],
    };

    private IReadOnlyList<IKubernetesObject<V1ObjectMeta>>? _objects;

    public static IEnumerable<TestFixtureData> Renderings() => Rendering.All.Select(r => new TestFixtureData(r).SetArgDisplayNames(r.Name));

    private IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Objects => _objects ??= Manifests.Load(rendering.Render());

    private V1Deployment Controller => Objects.OfKind<V1Deployment>().Single();

    private V1DaemonSet Node => Objects.OfKind<V1DaemonSet>().Single();

    /// <summary>The storage server's StatefulSet (a cluster's storage nodes); etcd's, when the chart deploys it, is <see cref="Etcd"/>.</summary>
    private V1StatefulSet Server => Objects.OfKind<V1StatefulSet>().Single(s => s.Metadata.Labels["app.kubernetes.io/component"] == "storage-server");

    private V1StatefulSet? Etcd => Objects.OfKind<V1StatefulSet>().SingleOrDefault(s => s.Metadata.Labels["app.kubernetes.io/component"] == "etcd");

    /// <summary>The storage server's Service: the one with a cluster IP selecting the server's pods (a cluster also has a headless one).</summary>
    private V1Service ServerService => Objects.OfKind<V1Service>()
        .Single(s => s.Spec.ClusterIP != "None" && Selects(s.Spec.Selector, Server.Spec.Template.Metadata.Labels));

    private IEnumerable<(string Name, V1PodSpec Spec, IDictionary<string, string> Labels)> Pods =>
    [
        ("controller", Controller.Spec.Template.Spec, Controller.Spec.Template.Metadata.Labels),
        ("node", Node.Spec.Template.Spec, Node.Spec.Template.Metadata.Labels),
        ("server", Server.Spec.Template.Spec, Server.Spec.Template.Metadata.Labels),
        .. Etcd is { } etcd ? [("etcd", etcd.Spec.Template.Spec, etcd.Spec.Template.Metadata.Labels)] : Array.Empty<(string, V1PodSpec, IDictionary<string, string>)>(),
    ];

    [Test]
    public void Every_object_loads_with_the_client_models_and_has_a_name()
    {
        Assert.That(Objects, Is.Not.Empty);
        Assert.That(Objects.Select(o => o.Metadata?.Name), Has.All.Not.Null.And.All.Not.Empty);
        Assert.That(Objects.Select(o => $"{o.Kind}/{o.Metadata.Name}"), Is.Unique);
    }

    [Test]
    public void Namespaced_objects_of_the_driver_are_in_its_namespace()
    {
        var namespaced = Objects.Where(o => o.Kind is not ("Namespace" or "CSIDriver" or "StorageClass" or "VolumeSnapshotClass" or "ClusterRole" or "ClusterRoleBinding"))
            // The DH-HMAC-CHAP class's Secret may live elsewhere: the Role to read it is where the Secret is.
            .Where(o => !o.Metadata.Name.EndsWith("-dhchap-secret", StringComparison.Ordinal));
        Assert.That(namespaced.Select(o => $"{o.Kind}/{o.Metadata.Name}={o.Metadata.NamespaceProperty}"), Has.All.EndsWith("=" + Namespace));
    }

    [Test]
    public void Driver_name_is_the_same_everywhere()
    {
        var name = CsiDriverOptions.DriverName;
        var driver = Objects.OfKind<V1CSIDriver>().Single();
        var registrar = Container(Node.Spec.Template.Spec, "csi-node-driver-registrar");
        Assert.Multiple(() =>
        {
            Assert.That(driver.Metadata.Name, Is.EqualTo(name));
            Assert.That(driver.Spec.AttachRequired, Is.True);
            Assert.That(driver.Spec.PodInfoOnMount, Is.False);
            Assert.That(driver.Spec.VolumeLifecycleModes, Is.EqualTo(new[] { "Persistent" }));
            Assert.That(driver.Spec.FsGroupPolicy, Is.EqualTo("File"));
            Assert.That(Objects.OfKind<V1StorageClass>().Select(s => s.Provisioner), Is.Not.Empty.And.All.EqualTo(name));
            Assert.That(Objects.OfKind<VolumeSnapshotClass>().Select(s => s.Driver), Is.Not.Empty.And.All.EqualTo(name));
            Assert.That(Flag(registrar, "kubelet-registration-path"), Is.EqualTo($"{KubeletDir}/plugins/{name}/csi.sock"));
            Assert.That(HostPathMountedAt(Node.Spec.Template.Spec, DriverContainer(Node.Spec.Template.Spec), "/csi"), Is.EqualTo($"{KubeletDir}/plugins/{name}"));
        });
    }

    [TestCase("controller")]
    [TestCase("node")]
    public void Sidecars_talk_to_the_socket_the_driver_serves(string pod)
    {
        var spec = pod == "controller" ? Controller.Spec.Template.Spec : Node.Spec.Template.Spec;
        var driver = DriverContainer(spec);
        var endpoint = Flag(driver, "endpoint")!;
        Assert.That(endpoint, Does.StartWith("unix://"));
        var socket = endpoint["unix://".Length..];
        var socketDir = Path.GetDirectoryName(socket)!;
        var driverVolume = VolumeMountedAt(driver, socketDir);
        Assert.That(driverVolume, Is.Not.Null, $"the driver has no volume at {socketDir}");

        var sidecars = spec.Containers.Where(c => c != driver).ToList();
        Assert.That(sidecars, Is.Not.Empty);
        Assert.Multiple(() =>
        {
            foreach (var sidecar in sidecars)
            {
                Assert.That(Flag(sidecar, "csi-address"), Is.EqualTo(socket), sidecar.Name);
                Assert.That(VolumeMountedAt(sidecar, socketDir), Is.EqualTo(driverVolume), $"{sidecar.Name} must share the driver's socket directory");
            }

            if (pod == "node")
            {
                // The kubelet dials the socket on the host: the registration path is the host side of the same file.
                var registrar = Container(spec, "csi-node-driver-registrar");
                Assert.That(Flag(registrar, "kubelet-registration-path"), Is.EqualTo(HostPathMountedAt(spec, driver, socketDir) + "/" + Path.GetFileName(socket)));
                Assert.That(HostPathMountedAt(spec, registrar, "/registration"), Is.EqualTo($"{KubeletDir}/plugins_registry"));
            }
        });
    }

    [Test]
    public void Driver_and_server_arguments_parse_with_their_own_command_lines()
    {
        var controllerArgs = ProgramArgs(Controller.Spec.Template.Spec, DriverContainer(Controller.Spec.Template.Spec), "csi");
        var nodeArgs = ProgramArgs(Node.Spec.Template.Spec, DriverContainer(Node.Spec.Template.Spec), "csi");
        var serverContainer = Server.Spec.Template.Spec.Containers.Single();
        var serverArgs = ClusterContract.WithoutPendingServerFlags(ProgramArgs(Server.Spec.Template.Spec, serverContainer, "server"));

        var controller = CsiCommandLine.Parse(controllerArgs);
        var node = CsiCommandLine.Parse(nodeArgs);
        var server = ServerCommandLine.Parse(serverArgs);
        var service = ServerService;
        Assert.Multiple(() =>
        {
            Assert.That(controller.Errors, Is.Empty);
            Assert.That(node.Errors, Is.Empty);
            Assert.That(server.Errors, Is.Empty);
        });
        Assert.Multiple(() =>
        {
            Assert.That(controller.Options!.Mode, Is.EqualTo(DriverMode.Controller));
            // The controller reaches the management API through the server's Service.
            var grpcPort = service.Spec.Ports.Single(p => p.Name == "grpc").Port;
            Assert.That(controller.Options.Server, Is.EqualTo($"{service.Metadata.Name}.{service.Metadata.NamespaceProperty}.svc:{grpcPort}"));
            Assert.That(node.Options!.Mode, Is.EqualTo(DriverMode.Node));
            Assert.That(node.Options.NodeId, Is.EqualTo("node-a"), "--node-id comes from spec.nodeName");
            Assert.That(server.Options!.NvmeListen.Select(e => e.Port), Is.EqualTo(new[] { Port(serverContainer, "nvme") }));
            Assert.That(server.Options.NvmeListen.Single().Address, Is.EqualTo(IPAddress.Parse("10.1.2.3")), "NVMe/TCP listens on the pod IP, the address nodes are given");
            Assert.That(server.Options.ManagementListen.Port, Is.EqualTo(Port(serverContainer, "grpc")));
            Assert.That(server.Options.MetricsListen.Port, Is.EqualTo(Port(serverContainer, "metrics")));
            Assert.That(service.Spec.Ports.Single(p => p.Name == "grpc").TargetPort.Value, Is.EqualTo("grpc"));
        });
    }

    [TestCaseSource(nameof(SidecarsWithNeeds))]
    public void Rbac_grants_each_sidecar_what_it_calls(string sidecar)
    {
        var (pod, serviceAccount) = sidecar == "csinvme-node"
            ? (Node.Spec.Template.Spec, Node.Spec.Template.Spec.ServiceAccountName)
            : (Controller.Spec.Template.Spec, Controller.Spec.Template.Spec.ServiceAccountName);
        if (sidecar != "csinvme-node")
        {
            Assert.That(pod.Containers.Select(ImageName), Does.Contain(sidecar), "the sidecar runs in the controller pod");
        }

        Assert.That(Objects.OfKind<V1ServiceAccount>().Select(a => a.Metadata.Name), Does.Contain(serviceAccount));
        var clusterRules = ClusterRulesOf(serviceAccount).ToList();
        var namespaceRules = RoleRulesOf(serviceAccount).ToList();
        var missing = new List<string>();
        foreach (var (group, resource, verbs, namespaced) in _sidecarNeeds[sidecar])
        {
            foreach (var verb in verbs)
            {
                var rules = namespaced ? clusterRules.Concat(namespaceRules) : clusterRules;
                if (!rules.Any(r => Covers(r, group, resource, verb)))
                {
                    missing.Add($"{verb} {resource}.{group}");
                }
            }
        }

        Assert.That(missing, Is.Empty);
    }

    private static IEnumerable<TestCaseData> SidecarsWithNeeds() =>
        _sidecarNeeds.Where(n => n.Value.Length > 0).Select(n => new TestCaseData(n.Key).SetArgDisplayNames(n.Key));

    [Test]
    public void Every_sidecar_in_the_pods_is_in_the_rbac_table()
    {
        var images = Controller.Spec.Template.Spec.Containers.Concat(Node.Spec.Template.Spec.Containers)
            .Where(c => !c.Image.StartsWith("csinvme:", StringComparison.Ordinal)).Select(ImageName).Distinct();
        Assert.That(images, Is.SubsetOf(_sidecarNeeds.Keys));
    }

    [Test]
    public void Rbac_is_least_privilege()
    {
        var rules = Objects.OfKind<V1ClusterRole>().SelectMany(r => r.Rules).Concat(Objects.OfKind<V1Role>().SelectMany(r => r.Rules)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(rules.SelectMany(r => r.Verbs.Concat(r.Resources).Concat(r.ApiGroups)), Has.None.EqualTo("*"));
            // Secrets: only the DH-HMAC-CHAP class's one Secret, by name, read-only (the external-attacher's
            // controller-publish-secret).
            foreach (var rule in rules.Where(r => r.Resources.Contains("secrets")))
            {
                Assert.That(rule.Verbs, Is.EqualTo(new[] { "get" }), "secrets: get only");
                Assert.That(rule.ResourceNames, Has.Count.EqualTo(1), "secrets: one Secret by name");
                Assert.That(rule.Resources, Is.EqualTo(new[] { "secrets" }));
            }

            Assert.That(Objects.OfKind<V1ClusterRole>().SelectMany(r => r.Rules).SelectMany(r => r.Resources), Has.None.EqualTo("secrets"), "no cluster-wide secrets");
            // Leases only in the driver's namespace, where the sidecars elect their leaders.
            Assert.That(Objects.OfKind<V1ClusterRole>().SelectMany(r => r.Rules).SelectMany(r => r.Resources), Has.None.EqualTo("leases"));
            foreach (var container in Controller.Spec.Template.Spec.Containers.Where(c => Flag(c, "leader-election") == "true"))
            {
                Assert.That(Flag(container, "leader-election-namespace"), Is.EqualTo(Namespace), container.Name);
            }

            var bindings = Objects.OfKind<V1ClusterRoleBinding>().Select(b => b.RoleRef.Name)
                .Concat(Objects.OfKind<V1RoleBinding>().Select(b => b.RoleRef.Name));
            Assert.That(bindings, Is.SubsetOf(Objects.OfKind<V1ClusterRole>().Select(r => r.Metadata.Name).Concat(Objects.OfKind<V1Role>().Select(r => r.Metadata.Name))));
        });
    }

    [Test]
    public void Node_plugin_mounts_the_kubelet_directory_with_bidirectional_propagation()
    {
        var spec = Node.Spec.Template.Spec;
        var driver = DriverContainer(spec);
        var kubelet = driver.VolumeMounts.Single(m => m.MountPath == KubeletDir);
        Assert.Multiple(() =>
        {
            Assert.That(kubelet.MountPropagation, Is.EqualTo("Bidirectional"));
            Assert.That(spec.Volumes.Single(v => v.Name == kubelet.Name).HostPath?.Path, Is.EqualTo(KubeletDir));
            // Bidirectional propagation is only allowed for privileged containers.
            Assert.That(driver.SecurityContext?.Privileged, Is.True);
            Assert.That(spec.HostNetwork, Is.True);
            Assert.That(HostPathMountedAt(spec, driver, "/dev"), Is.EqualTo("/dev"));
            Assert.That(HostPathMountedAt(spec, driver, "/sys"), Is.EqualTo("/sys"));
            Assert.That(driver.Env.Single(e => e.Name == "NODE_NAME").ValueFrom.FieldRef.FieldPath, Is.EqualTo("spec.nodeName"));
            var others = Pods.SelectMany(p => p.Spec.Containers.Concat(p.Spec.InitContainers ?? []))
                .Where(c => c != driver)
                .SelectMany(c => c.VolumeMounts ?? [])
                .Select(m => m.MountPropagation);
            Assert.That(others, Has.None.EqualTo("Bidirectional"));
        });
    }

    [Test]
    public void Probes_and_declared_ports_point_at_ports_a_container_serves()
    {
        var problems = new List<string>();
        foreach (var (name, spec, _) in Pods)
        {
            var served = ServedPorts(spec);
            var declared = spec.Containers.SelectMany(c => c.Ports ?? []).ToList();
            foreach (var port in declared)
            {
                if (!served.Contains(port.ContainerPort))
                {
                    problems.Add($"{name}: port {port.Name} {port.ContainerPort} is declared but nothing listens on it");
                }
            }

            if (spec.HostNetwork == true && declared.Select(p => p.ContainerPort).Distinct().Count() != declared.Count)
            {
                problems.Add($"{name}: two ports share a number on the node's network");
            }

            foreach (var container in spec.Containers)
            {
                foreach (var probe in new[] { container.LivenessProbe, container.ReadinessProbe, container.StartupProbe }.Where(p => p is not null))
                {
                    var target = probe!.HttpGet?.Port ?? probe.TcpSocket?.Port;
                    if (target is null)
                    {
                        problems.Add($"{name}/{container.Name}: probe is neither httpGet nor tcpSocket");
                        continue;
                    }

                    var number = int.TryParse(target.Value, out var n) ? n : declared.SingleOrDefault(p => p.Name == target.Value)?.ContainerPort;
                    if (number is null)
                    {
                        problems.Add($"{name}/{container.Name}: probe port '{target.Value}' is not a declared port of the pod");
                    }
                    else if (!served.Contains(number.Value))
                    {
                        problems.Add($"{name}/{container.Name}: probe port {number} is not served");
                    }
                }
            }
        }

        foreach (var service in Objects.OfKind<V1Service>())
        {
            var pod = Pods.Where(p => Selects(service.Spec.Selector, p.Labels)).ToList();
            if (pod.Count != 1)
            {
                problems.Add($"Service {service.Metadata.Name} selects {pod.Count} workloads");
                continue;
            }

            foreach (var port in service.Spec.Ports)
            {
                if (!pod[0].Spec.Containers.SelectMany(c => c.Ports ?? []).Any(p => p.Name == port.TargetPort.Value || p.ContainerPort.ToString() == port.TargetPort.Value))
                {
                    problems.Add($"Service {service.Metadata.Name} port {port.Name} targets '{port.TargetPort.Value}', which the pod does not declare");
                }
            }
        }

        Assert.That(problems, Is.Empty);
    }

    [Test]
    public void Server_keeps_its_data_directory_and_its_pools_on_its_volumes()
    {
        var spec = Server.Spec.Template.Spec;
        var container = spec.Containers.Single();
        var options = ServerCommandLine.Parse(ClusterContract.WithoutPendingServerFlags(ProgramArgs(spec, container, "server"))).Options!;
        var volumes = (spec.Volumes ?? []).Select(v => v.Name).Concat((Server.Spec.VolumeClaimTemplates ?? []).Select(c => c.Metadata.Name)).ToHashSet(StringComparer.Ordinal);
        var mounts = container.VolumeMounts.ToDictionary(m => m.MountPath, m => m.Name, StringComparer.Ordinal);
        Assert.Multiple(() =>
        {
            // Absolute: the server's own default is relative to the working directory.
            Assert.That(Path.IsPathRooted(options.DataDirectory), Is.True, options.DataDirectory);
            // The metadata store and the default pool (DATA_DIR/pools/default.pool) are on the data volume.
            Assert.That(mounts.GetValueOrDefault(options.DataDirectory), Is.EqualTo("data"), "the data directory must be the data volume's mount point");
            Assert.That(volumes, Does.Contain("data"));
            foreach (var pool in options.Pools)
            {
                // A pool file on the container's own file system would be gone with the container.
                Assert.That(mounts.TryGetValue(Path.GetDirectoryName(pool.Path)!, out var volume), Is.True, $"pool {pool.Path} is not on a mounted volume");
                Assert.That(volumes, Does.Contain(volume), pool.Path);
                Assert.That(volume, Is.Not.EqualTo("data"), $"pool {pool.Path} has a volume of its own");
            }
        });
    }

    [Test]
    public void Server_is_ready_while_its_readyz_says_so_and_live_while_its_management_port_accepts()
    {
        // The NVMe/TCP port accepting a TCP connection says nothing about the listener taking hosts: /readyz does.
        var container = Server.Spec.Template.Spec.Containers.Single();
        Assert.Multiple(() =>
        {
            Assert.That(container.ReadinessProbe?.HttpGet?.Path, Is.EqualTo("/readyz"));
            Assert.That(container.ReadinessProbe?.HttpGet?.Port.Value, Is.EqualTo("metrics"));
            Assert.That(container.LivenessProbe?.TcpSocket?.Port.Value, Is.EqualTo("grpc"));
        });
    }

    [Test]
    public void Node_plugin_is_given_every_connection_default_as_a_flag()
    {
        // Settings every volume shares live here, where changing them is a rolling update; in a StorageClass they
        // could never change again.
        var node = CsiCommandLine.Parse(ProgramArgs(Node.Spec.Template.Spec, DriverContainer(Node.Spec.Template.Spec), "csi"));
        var driver = DriverContainer(Node.Spec.Template.Spec);
        Assert.Multiple(() =>
        {
            Assert.That(node.Errors, Is.Empty);
            Assert.That(FabricsConnectSettings.Parameters.Concat(FabricsConnectSettings.MultipathParameters)
                .Where(p => Flag(driver, p.Flag[2..]) is null).Select(p => p.Flag), Is.Empty);
            Assert.That(node.Options!.NodeConnectDefaults, Is.EqualTo(FabricsConnectDefaults.Default), "the chart's defaults are the documented ones");
            Assert.That(node.Options.PathKeeperPeriod, Is.EqualTo(NodeOptions.DefaultPathKeeperPeriod));
        });
    }

    [Test]
    public void Storage_class_parameters_are_accepted_by_the_controller_and_name_pools_the_server_has()
    {
        var spec = Server.Spec.Template.Spec;
        var server = ServerCommandLine.Parse(ClusterContract.WithoutPendingServerFlags(ProgramArgs(spec, spec.Containers.Single(), "server"))).Options!;
        var pools = server.Pools.Count == 0
            ? [CsiNvme.Volumes.Backends.ThinVolumeBackend.DefaultPoolName]
            : server.Pools.Select(p => CsiNvme.Volumes.Backends.ThinVolumeBackend.PoolNameOf(p.Path)).ToArray();
        var classes = Objects.OfKind<V1StorageClass>().ToList();
        Assert.That(classes, Is.Not.Empty);
        Assert.Multiple(() =>
        {
            foreach (var storageClass in classes)
            {
                var parameters = VolumeParameters.Parse(ClusterContract.WithoutPendingParameters(storageClass.Parameters), out var error);
                Assert.That(error, Is.Null, storageClass.Metadata.Name);
                if (parameters.Pool.Length > 0)
                {
                    Assert.That(pools, Does.Contain(parameters.Pool), storageClass.Metadata.Name);
                }
            }
        });
    }

    [Test]
    public void Images_are_pinned()
    {
        var images = Objects.SelectMany(PodSpecs).SelectMany(s => s.Containers.Concat(s.InitContainers ?? [])).Select(c => c.Image).ToList();
        Assert.That(images, Is.Not.Empty);
        Assert.That(images, Has.All.Matches(PinnedImage()).And.None.EndsWith(":latest"));
    }

    internal static IEnumerable<V1PodSpec> PodSpecs(IKubernetesObject<V1ObjectMeta> o) => o switch
    {
        V1Deployment d => [d.Spec.Template.Spec],
        V1DaemonSet d => [d.Spec.Template.Spec],
        V1StatefulSet s => [s.Spec.Template.Spec],
        V1Pod p => [p.Spec],
        _ => [],
    };

    /// <summary>The csinvme container that runs the CSI driver (first argument "csi").</summary>
    internal static V1Container DriverContainer(V1PodSpec spec) =>
        spec.Containers.Single(c => c.Image.StartsWith("csinvme:", StringComparison.Ordinal) && c.Args?.FirstOrDefault() == "csi");

    internal static V1Container Container(V1PodSpec spec, string image) => spec.Containers.Single(c => ImageName(c) == image);

    /// <summary>"registry.k8s.io/sig-storage/csi-attacher:v4.10.0" → "csi-attacher"; the driver is "csinvme-&lt;mode&gt;".</summary>
    internal static string ImageName(V1Container c) =>
        c.Image.StartsWith("csinvme:", StringComparison.Ordinal) ? "csinvme-" + (Flag(c, "mode") ?? c.Args?.FirstOrDefault()) : c.Image.Split('/')[^1].Split(':')[0];

    internal static string? Flag(V1Container c, string name)
    {
        var args = c.Args ?? [];
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i].StartsWith($"--{name}=", StringComparison.Ordinal))
            {
                return args[i][(name.Length + 3)..];
            }

            if (args[i] == $"--{name}" && i + 1 < args.Count)
            {
                return args[i + 1];
            }
        }

        return null;
    }

    internal static string? VolumeMountedAt(V1Container c, string path) => c.VolumeMounts?.SingleOrDefault(m => m.MountPath == path)?.Name;

    internal static string? HostPathMountedAt(V1PodSpec spec, V1Container c, string path)
    {
        var volume = VolumeMountedAt(c, path);
        return spec.Volumes.SingleOrDefault(v => v.Name == volume)?.HostPath?.Path;
    }

    internal static int Port(V1Container c, string name) => c.Ports.Single(p => p.Name == name).ContainerPort;

    /// <summary>
    /// The program's arguments after the entrypoint's program word, with $(VAR) expanded as the kubelet does for a pod
    /// named <paramref name="podName"/> on node "node-a" with IP 10.1.2.3.
    /// </summary>
    internal static string[] ProgramArgs(V1PodSpec spec, V1Container c, string program, string podName = "pod-0")
    {
        Assert.That(c.Args[0], Is.EqualTo(program));
        return ExpandedArgs(c, podName).Skip(1).ToArray();
    }

    /// <summary>The container's arguments with $(VAR) expanded as the kubelet does (see <see cref="ProgramArgs"/>).</summary>
    internal static string[] ExpandedArgs(V1Container c, string podName)
    {
        var sample = new Dictionary<string, string>
        {
            ["spec.nodeName"] = "node-a",
            ["status.podIP"] = "10.1.2.3",
            ["metadata.name"] = podName,
        };
        var env = (c.Env ?? []).ToDictionary(e => e.Name, e => e.Value ?? sample[e.ValueFrom.FieldRef.FieldPath]);
        return c.Args.Select(a => VariableReference().Replace(a, m => env.TryGetValue(m.Groups[1].Value, out var v) ? v : m.Value)).ToArray();
    }

    /// <summary>Ports some container of the pod listens on, read from the programs' own flags.</summary>
    internal static HashSet<int> ServedPorts(V1PodSpec spec)
    {
        var served = new HashSet<int>();
        foreach (var c in spec.Containers)
        {
            foreach (var flag in new[] { "health-port", "http-endpoint", "metrics-listen", "nvme-listen", "mgmt-listen" })
            {
                if (Flag(c, flag) is { } value && int.TryParse(value[(value.LastIndexOf(':') + 1)..], out var port))
                {
                    served.Add(port);
                }
            }

            // etcd listens on URLs, several per flag.
            foreach (var flag in new[] { "listen-client-urls", "listen-peer-urls", "listen-metrics-urls" })
            {
                foreach (var url in (Flag(c, flag) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
                {
                    served.Add(new Uri(url).Port);
                }
            }
        }

        return served;
    }

    private IEnumerable<V1PolicyRule> ClusterRulesOf(string serviceAccount) =>
        Objects.OfKind<V1ClusterRoleBinding>()
            .Where(b => b.Subjects.Any(s => s.Kind == "ServiceAccount" && s.Name == serviceAccount && s.NamespaceProperty == Namespace))
            .SelectMany(b => Objects.OfKind<V1ClusterRole>().Where(r => r.Metadata.Name == b.RoleRef.Name && b.RoleRef.Kind == "ClusterRole"))
            .SelectMany(r => r.Rules);

    private IEnumerable<V1PolicyRule> RoleRulesOf(string serviceAccount) =>
        Objects.OfKind<V1RoleBinding>()
            .Where(b => b.Metadata.NamespaceProperty == Namespace && b.Subjects.Any(s => s.Kind == "ServiceAccount" && s.Name == serviceAccount && s.NamespaceProperty == Namespace))
            .SelectMany(b => Objects.OfKind<V1Role>().Where(r => r.Metadata.Name == b.RoleRef.Name && r.Metadata.NamespaceProperty == Namespace && b.RoleRef.Kind == "Role"))
            .SelectMany(r => r.Rules);

    /// <summary>Whether a Service's (or a selector's) labels all appear on a pod's.</summary>
    internal static bool Selects(IDictionary<string, string> selector, IDictionary<string, string> labels) =>
        selector.All(l => labels.TryGetValue(l.Key, out var v) && v == l.Value);

    private static bool Covers(V1PolicyRule rule, string group, string resource, string verb) =>
        (rule.ApiGroups ?? []).Contains(group) && (rule.Resources ?? []).Contains(resource) && rule.Verbs.Contains(verb);

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9._/]*[a-z0-9])?:[A-Za-z0-9_][A-Za-z0-9_.-]*$")]
    internal static partial Regex PinnedImage();

    [GeneratedRegex(@"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")]
    private static partial Regex VariableReference();
}
