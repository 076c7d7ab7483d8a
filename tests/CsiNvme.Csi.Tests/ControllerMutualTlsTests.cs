using Csi.V1;
using CsiNvme.Api.Security;
using CsiNvme.Server;
using CsiNvme.TestSupport;
using Grpc.Core;
using NUnit.Framework;
using Mgmt = CsiNvme.Api.V1;

namespace CsiNvme.Csi.Tests;

/// <summary>
/// The controller against a storage server that requires mutual TLS: with its csi-controller certificate the whole
/// volume life works; with a certificate of a role that may not change volumes the server's refusal reaches the CO.
/// </summary>
[TestFixture]
[CancelAfter(120_000)]
public sealed class ControllerMutualTlsTests
{
    private static async Task<(CsiHarness Harness, TestCertificates Certificates, TempDirectory Directory)> StartAsync(string controllerRole)
    {
        var directory = new TempDirectory("csi-tls");
        var certificates = new TestCertificates(directory.Combine("tls"));
        var server = certificates.Issue("node:storage-0");
        var controller = certificates.Issue(controllerRole);
        var harness = await CsiHarness.StartAsync(
            configureServer: options => options.ManagementTls = new ManagementTlsFiles(server.CertificateFile, server.KeyFile, certificates.CaFile),
            configureDriver: options =>
            {
                options.ServerTlsCa = certificates.CaFile;
                options.ServerTlsCertificate = controller.CertificateFile;
                options.ServerTlsKey = controller.KeyFile;
            });
        return (harness, certificates, directory);
    }

    [Test]
    public async Task With_its_csi_controller_certificate_the_controller_runs_the_whole_volume_life()
    {
        var (harness, certificates, directory) = await StartAsync("csi-controller:kube-system");
        await using var _ = harness;
        using var __ = directory;
        var controller = harness.Controller;
        var name = Caps.UniqueName();

        Assert.That((await harness.Identity.ProbeAsync(new ProbeRequest())).Ready, Is.True);
        await controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 16 << 20));
        await controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = name, NodeId = Caps.Node("a"), VolumeCapability = Caps.Block() });
        var expanded = await controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = name, CapacityRange = new CapacityRange { RequiredBytes = 32 << 20 } });
        var snapshot = (await controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = name, Name = Caps.UniqueName("snapshot") })).Snapshot;
        var snapshots = await controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = name });
        var volumes = await controller.ListVolumesAsync(new ListVolumesRequest());
        var capacity = await controller.GetCapacityAsync(new GetCapacityRequest());

        // What the server holds, read with an admin certificate.
        var admin = certificates.Issue("admin");
        using var channel = ManagementClientTls.CreateChannel(
            harness.StorageServer!.ManagementEndpoint.ToString(), new ManagementClientTls(certificates.CaFile, admin.CertificateFile, admin.KeyFile));
        var onServer = await new Mgmt.VolumeService.VolumeServiceClient(channel).GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        Assert.Multiple(() =>
        {
            Assert.That(onServer.AllowedHosts, Is.EqualTo(new[] { Caps.Node("a") }));
            Assert.That(expanded.CapacityBytes, Is.EqualTo(32 << 20));
            Assert.That(snapshots.Entries.Select(e => e.Snapshot.SnapshotId), Does.Contain(snapshot.SnapshotId));
            Assert.That(volumes.Entries.Select(e => e.Volume.VolumeId), Does.Contain(name));
            Assert.That(capacity.AvailableCapacity, Is.GreaterThan(0));
        });

        await controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = name, NodeId = Caps.Node("a") });
        await controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = snapshot.SnapshotId });
        await controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = name });
        var gone = await CsiHarness.CodeOf(() => new Mgmt.VolumeService.VolumeServiceClient(channel).GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name }).ResponseAsync);
        Assert.That(gone, Is.EqualTo(StatusCode.NotFound));
    }

    [Test]
    public async Task With_a_read_only_certificate_creating_a_volume_is_permission_denied()
    {
        var (harness, _, directory) = await StartAsync("read-only:wrong-secret");
        await using var _ = harness;
        using var __ = directory;

        var e = await CsiHarness.FailureOf(() => harness.Controller.CreateVolumeAsync(Caps.Create(Caps.UniqueName())).ResponseAsync);

        Assert.That(e.StatusCode, Is.EqualTo(StatusCode.PermissionDenied), e.ToString());
        Assert.That(e.Status.Detail, Does.Contain("role read-only may not call CreateVolume"));
    }
}
