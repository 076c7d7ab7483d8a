using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using CsiNvme.Csi.Hosting;
using CsiNvme.Server.Hosting;
using CsiNvme.TestSupport;
using k8s;
using k8s.Models;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// deploy/ rendered with `kubectl kustomize` and loaded strictly with the client library's models, then
/// checked for the wiring that breaks a CSI driver silently: socket paths, the driver name, RBAC, mount
/// propagation, probe ports, image tags, and the references between the examples and the driver's objects.
/// </summary>
[TestFixture]
public sealed partial class DeployManifestTests
{
    private const string Namespace = "csinvme-system";
    private const string KubeletDir = "/var/lib/kubelet";

    private static readonly string[] _folders = ["deploy", "deploy/monitoring", "deploy/examples", "deploy/kubevirt", "deploy/kubevirt/migrate"];

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

    private static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Load(string folder) => Manifests.Load(Kustomize.Render(folder));

    private static readonly Lazy<IReadOnlyList<IKubernetesObject<V1ObjectMeta>>> _base = new(() => Load("deploy"));

    private static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Base => _base.Value;

    private static V1Deployment Controller => Base.OfKind<V1Deployment>().Single(d => d.Metadata.Name == "csinvme-controller");

    private static V1DaemonSet Node => Base.OfKind<V1DaemonSet>().Single(d => d.Metadata.Name == "csinvme-node");

    private static V1StatefulSet Server => Base.OfKind<V1StatefulSet>().Single(d => d.Metadata.Name == "csinvme-server");

    private static IEnumerable<(string Name, V1PodSpec Spec, IDictionary<string, string> Labels)> Pods =>
    [
        ("controller", Controller.Spec.Template.Spec, Controller.Spec.Template.Metadata.Labels),
        ("node", Node.Spec.Template.Spec, Node.Spec.Template.Metadata.Labels),
        ("server", Server.Spec.Template.Spec, Server.Spec.Template.Metadata.Labels),
    ];

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
    public void Namespaced_objects_of_the_driver_are_in_its_namespace()
    {
        var namespaced = Base.Where(o => o.Kind is not ("Namespace" or "CSIDriver" or "StorageClass" or "VolumeSnapshotClass" or "ClusterRole" or "ClusterRoleBinding"));
        Assert.That(namespaced.Select(o => $"{o.Kind}/{o.Metadata.Name}={o.Metadata.NamespaceProperty}"), Has.All.EndsWith("=" + Namespace));
    }

    [Test]
    public void Driver_name_is_the_same_everywhere()
    {
        var name = CsiDriverOptions.DriverName;
        var driver = Base.OfKind<V1CSIDriver>().Single();
        var registrar = Container(Node.Spec.Template.Spec, "csi-node-driver-registrar");
        Assert.Multiple(() =>
        {
            Assert.That(driver.Metadata.Name, Is.EqualTo(name));
            Assert.That(driver.Spec.AttachRequired, Is.True);
            Assert.That(driver.Spec.PodInfoOnMount, Is.False);
            Assert.That(driver.Spec.VolumeLifecycleModes, Is.EqualTo(new[] { "Persistent" }));
            Assert.That(driver.Spec.FsGroupPolicy, Is.EqualTo("File"));
            Assert.That(Base.OfKind<V1StorageClass>().Select(s => s.Provisioner), Is.Not.Empty.And.All.EqualTo(name));
            Assert.That(Base.OfKind<VolumeSnapshotClass>().Select(s => s.Driver), Is.Not.Empty.And.All.EqualTo(name));
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
        var serverArgs = ProgramArgs(Server.Spec.Template.Spec, serverContainer, "server");

        var controller = CsiCommandLine.Parse(controllerArgs);
        var node = CsiCommandLine.Parse(nodeArgs);
        var server = ServerCommandLine.Parse(serverArgs);
        var service = Base.OfKind<V1Service>().Single(s => s.Metadata.Name == "csinvme-server");
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

        Assert.That(Base.OfKind<V1ServiceAccount>().Select(a => a.Metadata.Name), Does.Contain(serviceAccount));
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
        var rules = Base.OfKind<V1ClusterRole>().SelectMany(r => r.Rules).Concat(Base.OfKind<V1Role>().SelectMany(r => r.Rules)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(rules.SelectMany(r => r.Verbs.Concat(r.Resources).Concat(r.ApiGroups)), Has.None.EqualTo("*"));
            Assert.That(rules.SelectMany(r => r.Resources), Has.None.EqualTo("secrets"));
            // Leases only in the driver's namespace, where the sidecars elect their leaders.
            Assert.That(Base.OfKind<V1ClusterRole>().SelectMany(r => r.Rules).SelectMany(r => r.Resources), Has.None.EqualTo("leases"));
            foreach (var container in Controller.Spec.Template.Spec.Containers.Where(c => Flag(c, "leader-election") == "true"))
            {
                Assert.That(Flag(container, "leader-election-namespace"), Is.EqualTo(Namespace), container.Name);
            }

            var bindings = Base.OfKind<V1ClusterRoleBinding>().Select(b => b.RoleRef.Name)
                .Concat(Base.OfKind<V1RoleBinding>().Select(b => b.RoleRef.Name));
            Assert.That(bindings, Is.SubsetOf(Base.OfKind<V1ClusterRole>().Select(r => r.Metadata.Name).Concat(Base.OfKind<V1Role>().Select(r => r.Metadata.Name))));
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

        foreach (var service in Base.OfKind<V1Service>())
        {
            var pod = Pods.Where(p => service.Spec.Selector.All(s => p.Labels.TryGetValue(s.Key, out var v) && v == s.Value)).ToList();
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
    public void Images_are_pinned()
    {
        var images = _folders.SelectMany(Load).SelectMany(PodSpecs).SelectMany(s => s.Containers.Concat(s.InitContainers ?? [])).Select(c => c.Image).ToList();
        Assert.That(images, Is.Not.Empty);
        Assert.That(images, Has.All.Matches(PinnedImage()));
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
            Assert.That(classes["csinvme-block"].Parameters.ContainsKey("csi.storage.k8s.io/fstype"), Is.False);
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
        var exported = new[] { "src/CsiNvme.Server/Metrics/ServerMetrics.cs", "src/CsiNvme.Csi/Hosting/CsiMetrics.cs" }
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

    private static IEnumerable<V1PodSpec> PodSpecs(IKubernetesObject<V1ObjectMeta> o) => o switch
    {
        V1Deployment d => [d.Spec.Template.Spec],
        V1DaemonSet d => [d.Spec.Template.Spec],
        V1StatefulSet s => [s.Spec.Template.Spec],
        V1Pod p => [p.Spec],
        _ => [],
    };

    /// <summary>The csinvme container that runs the CSI driver (first argument "csi").</summary>
    private static V1Container DriverContainer(V1PodSpec spec) =>
        spec.Containers.Single(c => c.Image.StartsWith("csinvme:", StringComparison.Ordinal) && c.Args?.FirstOrDefault() == "csi");

    private static V1Container Container(V1PodSpec spec, string image) => spec.Containers.Single(c => ImageName(c) == image);

    /// <summary>"registry.k8s.io/sig-storage/csi-attacher:v4.10.0" → "csi-attacher"; the driver is "csinvme-&lt;mode&gt;".</summary>
    private static string ImageName(V1Container c) =>
        c.Image.StartsWith("csinvme:", StringComparison.Ordinal) ? "csinvme-" + (Flag(c, "mode") ?? c.Args?.FirstOrDefault()) : c.Image.Split('/')[^1].Split(':')[0];

    private static string? Flag(V1Container c, string name)
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

    private static string? VolumeMountedAt(V1Container c, string path) => c.VolumeMounts?.SingleOrDefault(m => m.MountPath == path)?.Name;

    private static string? HostPathMountedAt(V1PodSpec spec, V1Container c, string path)
    {
        var volume = VolumeMountedAt(c, path);
        return spec.Volumes.SingleOrDefault(v => v.Name == volume)?.HostPath?.Path;
    }

    private static int Port(V1Container c, string name) => c.Ports.Single(p => p.Name == name).ContainerPort;

    /// <summary>The program's arguments after the entrypoint's program word, with $(VAR) expanded as the kubelet does.</summary>
    private static string[] ProgramArgs(V1PodSpec spec, V1Container c, string program)
    {
        Assert.That(c.Args[0], Is.EqualTo(program));
        var sample = new Dictionary<string, string>
        {
            ["spec.nodeName"] = "node-a",
            ["status.podIP"] = "10.1.2.3",
        };
        var env = (c.Env ?? []).ToDictionary(e => e.Name, e => e.Value ?? sample[e.ValueFrom.FieldRef.FieldPath]);
        return c.Args.Skip(1).Select(a => VariableReference().Replace(a, m => env.TryGetValue(m.Groups[1].Value, out var v) ? v : m.Value)).ToArray();
    }

    /// <summary>Ports some container of the pod listens on, read from the programs' own flags.</summary>
    private static HashSet<int> ServedPorts(V1PodSpec spec)
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
        }

        return served;
    }

    private IEnumerable<V1PolicyRule> ClusterRulesOf(string serviceAccount) =>
        Base.OfKind<V1ClusterRoleBinding>()
            .Where(b => b.Subjects.Any(s => s.Kind == "ServiceAccount" && s.Name == serviceAccount && s.NamespaceProperty == Namespace))
            .SelectMany(b => Base.OfKind<V1ClusterRole>().Where(r => r.Metadata.Name == b.RoleRef.Name && b.RoleRef.Kind == "ClusterRole"))
            .SelectMany(r => r.Rules);

    private IEnumerable<V1PolicyRule> RoleRulesOf(string serviceAccount) =>
        Base.OfKind<V1RoleBinding>()
            .Where(b => b.Metadata.NamespaceProperty == Namespace && b.Subjects.Any(s => s.Kind == "ServiceAccount" && s.Name == serviceAccount && s.NamespaceProperty == Namespace))
            .SelectMany(b => Base.OfKind<V1Role>().Where(r => r.Metadata.Name == b.RoleRef.Name && r.Metadata.NamespaceProperty == Namespace && b.RoleRef.Kind == "Role"))
            .SelectMany(r => r.Rules);

    private static bool Covers(V1PolicyRule rule, string group, string resource, string verb) =>
        (rule.ApiGroups ?? []).Contains(group) && (rule.Resources ?? []).Contains(resource) && rule.Verbs.Contains(verb);

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9._/]*[a-z0-9])?:[A-Za-z0-9_][A-Za-z0-9_.-]*$")]
    private static partial Regex PinnedImage();

    [GeneratedRegex(@"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")]
    private static partial Regex VariableReference();

    [GeneratedRegex(@"Create(Counter|Gauge|Histogram|Summary)\(\s*""(?<name>csinvme_[a-z0-9_]+)""")]
    private static partial Regex MetricDefinition();

    [GeneratedRegex(@"\b(?<name>csinvme_[a-z0-9_]+)")]
    private static partial Regex MetricUse();

    [GeneratedRegex("_(bucket|sum|count)$")]
    private static partial Regex HistogramSuffix();
}
