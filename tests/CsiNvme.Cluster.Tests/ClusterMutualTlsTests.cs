using CsiNvme.Api.Security;
using CsiNvme.Api.V1;
using CsiNvme.Server;
using CsiNvme.TestSupport;
using Grpc.Core;

namespace CsiNvme.Cluster.Tests;

/// <summary>
/// Nodes call each other's agent service on their management listeners; under mutual TLS each presents its node
/// certificate, and a client with any other role cannot make those calls.
/// </summary>
[Category("Cluster")]
public sealed class ClusterMutualTlsTests
{
    [Test]
    public async Task Replicated_volumes_are_made_resized_and_verified_across_nodes_over_mutual_tls()
    {
        await using var cluster = await InProcessCluster.StartAsync(3, mutualTls: true);
        var host = NvmeHostIdentity.Create();

        // node-b places the replicas on the others (PrepareReplica), resizes them (ResizeReplica) and compares them (ChecksumReplica).
        var volume = await cluster.Volumes("node-b").CreateVolumeAsync(new CreateVolumeRequest { Name = "tls-disk", SizeBytes = 32 << 20, Replicas = 3, AllowedHosts = { host.Nqn } });
        Assert.That(volume.Replicas.Select(r => r.State), Is.All.EqualTo("in-sync"));
        var resized = await cluster.Volumes("node-c").ResizeVolumeAsync(new ResizeVolumeRequest { Name = "tls-disk", SizeBytes = 64 << 20 });
        Assert.That(resized.SizeBytes, Is.EqualTo(64UL << 20));
        var verify = await cluster.Volumes("node-a").VerifyVolumeAsync(new VerifyVolumeRequest { Name = "tls-disk" });
        Assert.That(verify.Identical, Is.True);

        // An agent call with a certificate of another role is refused, though the CA signed it.
        var controller = cluster.Certificates!.Issue("csi-controller:test");
        using var channel = ManagementClientTls.CreateChannel(
            cluster.Node("node-a").ManagementEndpoint.ToString(),
            new ManagementClientTls(cluster.Certificates.CaFile, controller.CertificateFile, controller.KeyFile));
        var agent = new CsiNvme.Api.V1.Agent.NodeAgentService.NodeAgentServiceClient(channel);
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await agent.GetVolumeStatusAsync(new CsiNvme.Api.V1.Agent.GetVolumeStatusRequest { VolumeId = Guid.NewGuid().ToString("D") }));
        Assert.That(refused!.StatusCode, Is.EqualTo(StatusCode.PermissionDenied));
        Assert.That(refused.Status.Detail, Is.EqualTo("role csi-controller may not call GetVolumeStatus"));
    }

    [Test]
    public async Task A_cluster_node_needs_a_certificate_with_the_node_role()
    {
        using var directory = new TempDirectory();
        var certificates = new TestCertificates(directory.Combine("tls"));
        var admin = certificates.Issue("admin");
        var options = new StorageServerOptions
        {
            DataDirectory = directory.Combine("data"),
            EtcdEndpoints = ["http://127.0.0.1:1"],
            NodeName = "node-x",
            ManagementListen = new(System.Net.IPAddress.Loopback, 0),
            ManagementTls = new ManagementTlsFiles(admin.CertificateFile, admin.KeyFile, certificates.CaFile),
        };

        var e = await Assert.ThrowsAsync<ArgumentException>(async () => await StorageServer.StartAsync(options));
        Assert.That(e!.Message, Does.Contain("must carry the role node"));
    }
}
