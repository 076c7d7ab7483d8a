using System.Net;
using System.Text;
using CsiNvme.Api.Security;
using CsiNvme.Server;
using CsiNvme.Server.Hosting;
using CsiNvme.TestSupport;
using Grpc.Core;
using k8s.Models;
using Microsoft.Extensions.Logging;
using NUnit.Framework;
using Mgmt = CsiNvme.Api.V1;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// The chart's security settings (docs/security.md): the certificates Helm makes work with a real storage server, each
/// pod mounts the one of its role, the NetworkPolicy admits who it says, and the pods run with the privileges the
/// table documents.
/// </summary>
[TestFixture]
public sealed class ChartSecurityTests
{
    private static IReadOnlyList<k8s.IKubernetesObject<V1ObjectMeta>> Render(params string[] arguments) => Manifests.Load(Helm.Template(arguments));

    private static string Pem(V1Secret secret, string key) => Encoding.ASCII.GetString(secret.Data[key]);

    [Test]
    public async Task The_certificates_helm_makes_let_each_role_make_its_calls_on_a_real_server()
    {
        var secrets = Render().OfKind<V1Secret>().ToDictionary(s => s.Metadata.Name);
        Assert.That(secrets.Keys, Is.EquivalentTo(new[] { "csinvme-server-tls", "csinvme-controller-tls", "csinvme-admin-tls" }));
        Assert.That(secrets.Values.Select(s => Pem(s, "ca.crt")).Distinct().Count(), Is.EqualTo(1), "one CA signs them all");

        using var directory = new TempDirectory("chart-tls");
        PemPair Write(string name)
        {
            var pair = new PemPair(directory.Combine(name + ".crt"), directory.Combine(name + ".key"));
            File.WriteAllText(pair.CertificateFile, Pem(secrets[$"csinvme-{name}-tls"], "tls.crt"));
            File.WriteAllText(pair.KeyFile, Pem(secrets[$"csinvme-{name}-tls"], "tls.key"));
            return pair;
        }

        var caFile = directory.Combine("ca.crt");
        File.WriteAllText(caFile, Pem(secrets["csinvme-server-tls"], "ca.crt"));
        var (server, controller, admin) = (Write("server"), Write("controller"), Write("admin"));
        await using var storage = await StorageServer.StartAsync(new StorageServerOptions
        {
            DataDirectory = directory.Combine("data"),
            Backend = StorageBackend.Memory,
            NvmeListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            ManagementListen = new IPEndPoint(IPAddress.Loopback, 0),
            MetricsListen = new IPEndPoint(IPAddress.Loopback, 0),
            ManagementTls = new ManagementTlsFiles(server.CertificateFile, server.KeyFile, caFile),
            ConfigureLogging = logging => logging.ClearProviders(),
        });

        Mgmt.VolumeService.VolumeServiceClient As(PemPair pair) =>
            new(ManagementClientTls.CreateChannel(storage.ManagementEndpoint.ToString(), new ManagementClientTls(caFile, pair.CertificateFile, pair.KeyFile)));

        await As(controller).CreateVolumeAsync(new Mgmt.CreateVolumeRequest { Name = "pvc-1", SizeBytes = 1 << 20 });
        var denied = await Assert.ThrowsAsync<RpcException>(async () => await As(controller).SetAllowAnyHostAsync(new Mgmt.SetAllowAnyHostRequest { Name = "pvc-1", AllowAnyHost = true }));
        Assert.That(denied!.Status.Detail, Is.EqualTo("role csi-controller may not call SetAllowAnyHost"));
        Assert.That((await As(admin).SetAllowAnyHostAsync(new Mgmt.SetAllowAnyHostRequest { Name = "pvc-1", AllowAnyHost = true })).AllowAnyHost, Is.True);
        var nodeRole = await Assert.ThrowsAsync<RpcException>(async () => await As(server).DeleteVolumeAsync(new Mgmt.DeleteVolumeRequest { Name = "pvc-1" }));
        Assert.That(nodeRole!.StatusCode, Is.EqualTo(StatusCode.PermissionDenied));
    }

    [Test]
    public void Each_pod_mounts_the_certificate_of_its_role_and_the_server_and_controller_flags_name_it()
    {
        var objects = Render();
        var server = objects.OfKind<V1StatefulSet>().Single().Spec.Template.Spec;
        var controller = objects.OfKind<V1Deployment>().Single().Spec.Template.Spec;
        var node = objects.OfKind<V1DaemonSet>().Single().Spec.Template.Spec;
        string SecretOf(V1PodSpec pod, string volume) => pod.Volumes.Single(v => v.Name == volume).Secret.SecretName;

        Assert.Multiple(() =>
        {
            Assert.That(SecretOf(server, "tls"), Is.EqualTo("csinvme-server-tls"));
            Assert.That(SecretOf(server, "admin-tls"), Is.EqualTo("csinvme-admin-tls"));
            Assert.That(SecretOf(controller, "tls"), Is.EqualTo("csinvme-controller-tls"));
            Assert.That(node.Volumes.Where(v => v.Secret is not null), Is.Empty, "the node plugin never calls the management API");
            var parsed = ServerCommandLine.Parse(server.Containers[0].Args.Skip(1).Select(a => a.Replace("$(POD_IP)", "10.0.0.1")).ToArray());
            Assert.That(parsed.Errors, Is.Empty);
            Assert.That(parsed.Options!.ManagementTls, Is.EqualTo(new ManagementTlsFiles("/etc/csinvme/tls/tls.crt", "/etc/csinvme/tls/tls.key", "/etc/csinvme/tls/ca.crt")));
            Assert.That(controller.Containers[0].Args, Does.Contain("--server-tls-cert=/etc/csinvme/tls/tls.crt"));
        });
    }

    [Test]
    public void Without_tls_the_server_is_told_insecure_and_on_loopback_it_needs_nothing()
    {
        var insecure = Render("--set", "tls.enabled=false");
        var loopback = Render("--set", "server.listenAddress=127.0.0.1");
        Assert.Multiple(() =>
        {
            Assert.That(insecure.OfKind<V1StatefulSet>().Single().Spec.Template.Spec.Containers[0].Args, Does.Contain("--insecure").And.Not.Contain("--tls-cert"));
            Assert.That(insecure.OfKind<V1Secret>(), Is.Empty);
            Assert.That(loopback.OfKind<V1StatefulSet>().Single().Spec.Template.Spec.Containers[0].Args, Does.Not.Contain("--insecure").And.Not.Contain("--tls-cert"));
        });
    }

    [Test]
    public void Cert_manager_issues_one_certificate_per_role_from_one_ca_issuer()
    {
        var objects = Render("--set", "tls.source=cert-manager");
        var certificates = objects.Custom("Certificate").ToDictionary(c => c.Metadata.Name);
        Assert.Multiple(() =>
        {
            Assert.That(objects.OfKind<V1Secret>(), Is.Empty);
            Assert.That(certificates.Keys, Is.EquivalentTo(new[] { "csinvme-ca", "csinvme-server-tls", "csinvme-controller-tls", "csinvme-admin-tls" }));
            Assert.That(certificates["csinvme-server-tls"].Spec.At("commonName"), Is.EqualTo("node"));
            Assert.That(certificates["csinvme-controller-tls"].Spec.At("commonName"), Is.EqualTo("csi-controller"));
            Assert.That(certificates["csinvme-admin-tls"].Spec.At("commonName"), Is.EqualTo("admin"));
            Assert.That(certificates.Values.Where(c => c.Metadata.Name != "csinvme-ca").Select(c => c.Spec.At("issuerRef", "name")), Is.All.EqualTo("csinvme-ca"));
            Assert.That(objects.Custom("Issuer").Select(i => i.Metadata.Name), Is.EquivalentTo(new[] { "csinvme-selfsigned", "csinvme-ca" }));
        });
    }

    [Test]
    public void The_network_policy_admits_the_controller_and_storage_pods_to_management_and_the_nodes_to_nvme()
    {
        var policy = Render("--set", "networkPolicy.nodeCidrs={10.0.0.0/24}").OfKind<V1NetworkPolicy>().Single(p => p.Metadata.Name == "csinvme-server");
        var management = policy.Spec.Ingress.Single(r => r.Ports.Single().Port.Value == "9500");
        var nvme = policy.Spec.Ingress.Single(r => r.Ports.Single().Port.Value == "4420");
        Assert.Multiple(() =>
        {
            Assert.That(management.FromProperty.Select(p => p.PodSelector.MatchLabels["app.kubernetes.io/component"]), Is.EquivalentTo(new[] { "csi-controller", "storage-server" }));
            Assert.That(nvme.FromProperty.Select(p => p.IpBlock?.Cidr ?? p.PodSelector.MatchLabels["app.kubernetes.io/component"]), Is.EquivalentTo(new[] { "storage-server", "10.0.0.0/24" }));
            Assert.That(Render("--set", "hostNetwork=true").OfKind<V1NetworkPolicy>().Where(p => p.Metadata.Name == "csinvme-server"), Is.Empty);
            Assert.That(Render("--set", "networkPolicy.enabled=false").OfKind<V1NetworkPolicy>().Where(p => p.Metadata.Name == "csinvme-server"), Is.Empty);
        });
    }

    [Test]
    public void The_storage_server_runs_unprivileged_and_the_node_plugin_as_privileged_root()
    {
        var objects = Render();
        var server = objects.OfKind<V1StatefulSet>().Single().Spec.Template.Spec;
        var node = objects.OfKind<V1DaemonSet>().Single().Spec.Template.Spec;
        var container = server.Containers.Single().SecurityContext;
        Assert.Multiple(() =>
        {
            Assert.That((server.SecurityContext.RunAsNonRoot, server.SecurityContext.RunAsUser, server.SecurityContext.FsGroup), Is.EqualTo((true, 65532L, 65532L)));
            Assert.That(server.SecurityContext.SeccompProfile.Type, Is.EqualTo("RuntimeDefault"));
            Assert.That((container.ReadOnlyRootFilesystem, container.AllowPrivilegeEscalation), Is.EqualTo((true, false)));
            Assert.That(container.Capabilities.Drop, Is.EqualTo(new[] { "ALL" }));
            Assert.That(server.InitContainers, Is.Null.Or.Empty, "a claim is owned through fsGroup");
            var driver = node.Containers.Single(c => c.Name == "csi-driver").SecurityContext;
            Assert.That((driver.Privileged, driver.RunAsUser), Is.EqualTo((true, 0L)));

            var hostPath = Render("--set", "storage.type=hostPath").OfKind<V1StatefulSet>().Single().Spec.Template.Spec.InitContainers.Single();
            Assert.That(hostPath.Command, Is.EqualTo(new[] { "chown", "65532:65532", "/var/lib/csinvme" }));
            Assert.That(hostPath.SecurityContext.Capabilities.Add, Is.EqualTo(new[] { "CHOWN", "FOWNER" }));
        });
    }
}
