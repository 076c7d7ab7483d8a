using Csi.V1;
using CsiNvme.Csi.Node;
using CsiNvme.TestSupport;
using Grpc.Core;
using NUnit.Framework;
using static CsiNvme.Csi.Tests.EndToEnd.CsiWalk;

namespace CsiNvme.Csi.Tests.EndToEnd;

/// <summary>
/// The node service inside a Linux guest, next to a real kernel, driven over CSI from the test; the
/// controller and the storage server run on the host.
/// </summary>
[TestFixture]
[Category("Guest")]
[NonParallelizable]
public sealed class NodeEndToEndTests
{
    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [OneTimeTearDown]
    public void RemovePublishedBinary() => GuestCsiBinary.Cleanup();

    [Test]
    public async Task Node_service_in_a_guest_reports_its_identity_and_capabilities()
    {
        await using var guest = await GuestNode.StartAsync("guest-info", TimeSpan.FromMinutes(6));
        TestContext.Out.WriteLine($"publish {GuestCsiBinary.PublishTime.TotalSeconds:F1}s, guest agent up after {guest.BootTime.TotalSeconds:F1}s, node service after {guest.StartupTime.TotalSeconds:F1}s");

        var info = await guest.Node.NodeGetInfoAsync(new NodeGetInfoRequest());
        var capabilities = await guest.Node.NodeGetCapabilitiesAsync(new NodeGetCapabilitiesRequest());
        var kernel = await guest.ShellAsync("uname -r; ls /dev/nvme-fabrics");
        await guest.StopAsync();

        Assert.Multiple(() =>
        {
            Assert.That(info.NodeId, Is.EqualTo("nqn.2026-11.io.csinvme:node:guest-info"));
            Assert.That(info.MaxVolumesPerNode, Is.EqualTo(256));
            Assert.That(info.AccessibleTopology.Segments[NodeOptions.TopologyNodeKey], Is.EqualTo("guest-info"));
            Assert.That(capabilities.Capabilities.Select(c => c.Rpc.Type), Is.EquivalentTo(new[]
            {
                NodeServiceCapability.Types.RPC.Types.Type.StageUnstageVolume,
                NodeServiceCapability.Types.RPC.Types.Type.GetVolumeStats,
                NodeServiceCapability.Types.RPC.Types.Type.ExpandVolume,
                NodeServiceCapability.Types.RPC.Types.Type.VolumeCondition,
                NodeServiceCapability.Types.RPC.Types.Type.SingleNodeMultiWriter,
            }));
            Assert.That(kernel, Does.Contain("/dev/nvme-fabrics"), guest.Describe());
        });
    }

    [Test]
    public async Task Block_and_ext4_volumes_go_through_stage_publish_io_expand_stats_and_leave_nothing_behind()
    {
        await using var csi = await CsiHarness.StartAsync();
        var controller = csi.Controller;
        await using var guest = await GuestNode.StartAsync("guest-a", TimeSpan.FromMinutes(12));
        var times = new Timings();
        try
        {
            var nodeId = (await guest.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
            Assert.That(await guest.ShellAsync(LeftoversCommand), Does.Contain(NothingLeft), "guest not clean at start");

            // ---- Block volume ----
            var blockCapability = Block();
            var block = (await controller.CreateVolumeAsync(Create("e2e-block", 64 * MiB, blockCapability))).Volume;
            var blockPublish = await controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
            {
                VolumeId = block.VolumeId, NodeId = nodeId, VolumeCapability = blockCapability, VolumeContext = { block.VolumeContext },
            });
            const string blockStaging = "/csi-e2e/staging/e2e-block";
            const string blockTarget = "/csi-e2e/pods/pod-1/volumeDevices/e2e-block";
            await guest.ShellAsync($"mkdir -p {blockStaging} /csi-e2e/pods/pod-1/volumeDevices");
            var stageBlock = new NodeStageVolumeRequest
            {
                VolumeId = block.VolumeId,
                PublishContext = { ForGuest(blockPublish.PublishContext) },
                StagingTargetPath = blockStaging,
                VolumeCapability = blockCapability,
                VolumeContext = { block.VolumeContext },
            };
            await times.Time("stage(block)", async () => await guest.Node.NodeStageVolumeAsync(stageBlock));
            await times.Time("stage(block, again)", async () => await guest.Node.NodeStageVolumeAsync(stageBlock));
            var publishBlock = new NodePublishVolumeRequest
            {
                VolumeId = block.VolumeId,
                PublishContext = { ForGuest(blockPublish.PublishContext) },
                StagingTargetPath = blockStaging,
                TargetPath = blockTarget,
                VolumeCapability = blockCapability,
                VolumeContext = { block.VolumeContext },
            };
            // Without udev (or with a node deleted by hand) the driver makes the device node from sysfs itself.
            var removed = await guest.ShellAsync("d=$(ls /sys/block | grep -E '^nvme[0-9]+n[0-9]+$'); rm /dev/$d; test ! -e /dev/$d; echo REMOVED=$d");
            await times.Time("publish(block)", async () => await guest.Node.NodePublishVolumeAsync(publishBlock));
            var recreated = await guest.ShellAsync($"test -b /dev/{Value(removed, "REMOVED")} && echo RECREATED=yes");
            Assert.That(Value(recreated, "RECREATED"), Is.EqualTo("yes"), recreated);
            await times.Time("publish(block, again)", async () => await guest.Node.NodePublishVolumeAsync(publishBlock));

            // Published differently at the same target: refused.
            var readOnlyAgain = publishBlock.Clone();
            readOnlyAgain.Readonly = true;
            Assert.That((await CsiHarness.FailureOf(async () => await guest.Node.NodePublishVolumeAsync(readOnlyAgain))).StatusCode,
                Is.EqualTo(StatusCode.AlreadyExists));

            var blockIo = await guest.ShellAsync($"""
                T={blockTarget}
                test -b $T
                uuid=$(cat /sys/block/nvme*n*/uuid | tr -d '-')
                echo "UUID=$uuid"
                dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
                dd if=/tmp/pattern of=$T bs=1M seek=8 oflag=direct conv=fsync 2>/dev/null
                echo "WROTE=$(md5sum < /tmp/pattern | cut -d' ' -f1)"
                echo "READ=$(dd if=$T bs=1M skip=8 count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
                """);
            Assert.That(Value(blockIo, "UUID"), Is.EqualTo(block.VolumeContext["uuid"].Replace("-", "", StringComparison.Ordinal)), blockIo);
            Assert.That(Value(blockIo, "READ"), Is.EqualTo(Value(blockIo, "WROTE")), blockIo);

            var blockStats = await times.Time("stats(block)", async () => await guest.Node.NodeGetVolumeStatsAsync(
                new NodeGetVolumeStatsRequest { VolumeId = block.VolumeId, VolumePath = blockTarget, StagingTargetPath = blockStaging }));
            Assert.Multiple(() =>
            {
                Assert.That(blockStats.Usage.Single().Total, Is.EqualTo(64 * MiB));
                Assert.That(blockStats.VolumeCondition.Abnormal, Is.False, blockStats.VolumeCondition.Message);
            });

            // A block volume grows without a filesystem step: the node reports the kernel's new size.
            await controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
            {
                VolumeId = block.VolumeId, CapacityRange = new CapacityRange { RequiredBytes = 96 * MiB }, VolumeCapability = blockCapability,
            });
            var blockExpanded = await times.Time("expand(block)", async () => await guest.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest
            {
                VolumeId = block.VolumeId, VolumePath = blockTarget, StagingTargetPath = blockStaging,
                CapacityRange = new CapacityRange { RequiredBytes = 96 * MiB }, VolumeCapability = blockCapability,
            }));
            Assert.That(blockExpanded.CapacityBytes, Is.EqualTo(96 * MiB));
            Assert.That(await guest.ShellAsync($"blockdev --getsize64 {blockTarget}"), Does.Contain((96 * MiB).ToString(System.Globalization.CultureInfo.InvariantCulture)));

            await times.Time("unpublish(block)", async () => await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = block.VolumeId, TargetPath = blockTarget }));
            await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = block.VolumeId, TargetPath = blockTarget });
            await times.Time("unstage(block)", async () => await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = block.VolumeId, StagingTargetPath = blockStaging }));
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = block.VolumeId, StagingTargetPath = blockStaging });
            Assert.That(await guest.ShellAsync(LeftoversCommand + $"\ntest ! -e {blockTarget} && echo TARGET-GONE"),
                Does.Contain(NothingLeft).And.Contain("TARGET-GONE"));
            await controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = block.VolumeId, NodeId = nodeId });
            await controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = block.VolumeId });

            // ---- ext4 volume ----
            var fsCapability = Ext4("noatime");
            var fs = (await controller.CreateVolumeAsync(Create("e2e-ext4", 64 * MiB, fsCapability))).Volume;
            var fsPublish = await controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
            {
                VolumeId = fs.VolumeId, NodeId = nodeId, VolumeCapability = fsCapability, VolumeContext = { fs.VolumeContext },
            });
            const string fsStaging = "/csi-e2e/staging/e2e-ext4";
            const string fsTarget = "/csi-e2e/pods/pod-2/volumes/e2e-ext4";
            const string fsReadOnlyTarget = "/csi-e2e/pods/pod-3/volumes/e2e-ext4";
            await guest.ShellAsync($"mkdir -p {fsStaging} /csi-e2e/pods/pod-2/volumes /csi-e2e/pods/pod-3/volumes");
            var stageFs = new NodeStageVolumeRequest
            {
                VolumeId = fs.VolumeId,
                PublishContext = { ForGuest(fsPublish.PublishContext) },
                StagingTargetPath = fsStaging,
                VolumeCapability = fsCapability,
                VolumeContext = { fs.VolumeContext },
            };
            await times.Time("stage(ext4, mkfs)", async () => await guest.Node.NodeStageVolumeAsync(stageFs));
            await times.Time("stage(ext4, again)", async () => await guest.Node.NodeStageVolumeAsync(stageFs));
            NodePublishVolumeRequest PublishFs(string target, bool readOnly) => new()
            {
                VolumeId = fs.VolumeId,
                PublishContext = { ForGuest(fsPublish.PublishContext) },
                StagingTargetPath = fsStaging,
                TargetPath = target,
                VolumeCapability = fsCapability,
                Readonly = readOnly,
                VolumeContext = { fs.VolumeContext },
            };
            await times.Time("publish(ext4)", async () => await guest.Node.NodePublishVolumeAsync(PublishFs(fsTarget, false)));
            await guest.Node.NodePublishVolumeAsync(PublishFs(fsTarget, false));
            await times.Time("publish(ext4, ro)", async () => await guest.Node.NodePublishVolumeAsync(PublishFs(fsReadOnlyTarget, true)));

            var fsIo = await guest.ShellAsync($"""
                T={fsTarget}
                grep " {fsStaging} " /proc/mounts
                echo "STAGING_FS=$(grep " {fsStaging} " /proc/mounts | cut -d' ' -f3)"
                echo "STAGING_OPTS=$(grep " {fsStaging} " /proc/mounts | cut -d' ' -f4)"
                dd if=/dev/urandom of=$T/file bs=1M count=8 conv=fsync 2>/dev/null
                echo "WROTE=$(md5sum < $T/file | cut -d' ' -f1)"
                echo "RO_READ=$(md5sum < {fsReadOnlyTarget}/file | cut -d' ' -f1)"
                if touch {fsReadOnlyTarget}/denied 2>/dev/null; then echo RO_WRITE=allowed; else echo RO_WRITE=refused; fi
                echo "DF_KB=$(df -k $T | tail -n 1 | tr -s ' ' | cut -d' ' -f2)"
                """);
            Assert.Multiple(() =>
            {
                Assert.That(Value(fsIo, "STAGING_FS"), Is.EqualTo("ext4"), fsIo);
                Assert.That(Value(fsIo, "STAGING_OPTS"), Does.Contain("noatime"), fsIo);
                Assert.That(Value(fsIo, "RO_READ"), Is.EqualTo(Value(fsIo, "WROTE")), fsIo);
                Assert.That(Value(fsIo, "RO_WRITE"), Is.EqualTo("refused"), fsIo);
            });
            var dfBefore = long.Parse(Value(fsIo, "DF_KB"), System.Globalization.CultureInfo.InvariantCulture);

            var fsStats = await times.Time("stats(ext4)", async () => await guest.Node.NodeGetVolumeStatsAsync(
                new NodeGetVolumeStatsRequest { VolumeId = fs.VolumeId, VolumePath = fsTarget, StagingTargetPath = fsStaging }));
            var bytes = fsStats.Usage.Single(u => u.Unit == VolumeUsage.Types.Unit.Bytes);
            var inodes = fsStats.Usage.Single(u => u.Unit == VolumeUsage.Types.Unit.Inodes);
            Assert.Multiple(() =>
            {
                Assert.That(bytes.Total, Is.InRange(48 * MiB, 64 * MiB), fsStats.ToString());
                Assert.That(bytes.Used, Is.GreaterThanOrEqualTo(8 * MiB), fsStats.ToString());
                Assert.That(bytes.Available, Is.GreaterThan(0).And.LessThan(bytes.Total), fsStats.ToString());
                Assert.That(inodes.Total, Is.GreaterThan(1000), fsStats.ToString());
                Assert.That(inodes.Used, Is.GreaterThanOrEqualTo(12), fsStats.ToString());
                Assert.That(fsStats.VolumeCondition.Abnormal, Is.False, fsStats.VolumeCondition.Message);
            });

            var fsExpand = await controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
            {
                VolumeId = fs.VolumeId, CapacityRange = new CapacityRange { RequiredBytes = 128 * MiB }, VolumeCapability = fsCapability,
            });
            Assert.That(fsExpand.NodeExpansionRequired, Is.True);
            var fsExpanded = await times.Time("expand(ext4, online)", async () => await guest.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest
            {
                VolumeId = fs.VolumeId, VolumePath = fsTarget, StagingTargetPath = fsStaging,
                CapacityRange = new CapacityRange { RequiredBytes = 128 * MiB }, VolumeCapability = fsCapability,
            }));
            var afterExpand = await guest.ShellAsync($"""
                echo "DF_KB=$(df -k {fsTarget} | tail -n 1 | tr -s ' ' | cut -d' ' -f2)"
                echo "READ=$(md5sum < {fsTarget}/file | cut -d' ' -f1)"
                """);
            var dfAfter = long.Parse(Value(afterExpand, "DF_KB"), System.Globalization.CultureInfo.InvariantCulture);
            Assert.Multiple(() =>
            {
                Assert.That(fsExpanded.CapacityBytes, Is.EqualTo(128 * MiB));
                Assert.That(dfAfter, Is.GreaterThan(dfBefore + (48 * 1024)), $"df before {dfBefore} KiB, after {dfAfter} KiB");
                Assert.That(Value(afterExpand, "READ"), Is.EqualTo(Value(fsIo, "WROTE")), afterExpand);
            });

            foreach (var target in new[] { fsReadOnlyTarget, fsTarget })
            {
                await times.Time("unpublish(ext4)", async () => await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = fs.VolumeId, TargetPath = target }));
            }

            await times.Time("unstage(ext4)", async () => await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = fs.VolumeId, StagingTargetPath = fsStaging }));
            Assert.That(await guest.ShellAsync(LeftoversCommand), Does.Contain(NothingLeft));

            // Staged again, the volume keeps its filesystem and data: a formatted volume is never reformatted.
            await times.Time("stage(ext4, existing fs)", async () => await guest.Node.NodeStageVolumeAsync(stageFs));
            await guest.Node.NodePublishVolumeAsync(PublishFs(fsTarget, false));
            var reread = await guest.ShellAsync($"echo \"READ=$(md5sum < {fsTarget}/file | cut -d' ' -f1)\"");
            Assert.That(Value(reread, "READ"), Is.EqualTo(Value(fsIo, "WROTE")), reread);
            await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = fs.VolumeId, TargetPath = fsTarget });
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = fs.VolumeId, StagingTargetPath = fsStaging });
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = fs.VolumeId, StagingTargetPath = fsStaging });
            await controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = fs.VolumeId, NodeId = nodeId });
            await controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = fs.VolumeId });

            var final = await guest.ShellAsync(LeftoversCommand + "\nls /var/lib/csinvme-csi/node | wc -l");
            Assert.That(final, Does.Contain(NothingLeft));
            Assert.That(final.Trim().Split('\n').Last().Trim(), Is.EqualTo("0"), "staged-volume records left: " + final);
        }
        catch (Exception e) when (e is not SuccessException)
        {
            await guest.StopAsync();
            TestContext.Out.WriteLine(guest.Describe());
            throw;
        }
        finally
        {
            TestContext.Out.WriteLine($"guest-a: agent up after {guest.BootTime.TotalSeconds:F1}s, node service after {guest.StartupTime.TotalSeconds:F1}s; calls: {times}");
        }

        var result = await guest.StopAsync();
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Describe());
    }

    /// <summary>
    /// The rows of the spec's Node error tables that need a real block device and real mounts (the others are
    /// walked on a fake sysfs, ErrorTables/NodeErrorTable): NodeStageVolume's "Exceeds capabilities" (a volume
    /// holding ext4 staged as xfs, a blank volume staged read-only), NodePublishVolume's "Volume published but is
    /// incompatible" (the same target with another readonly flag), and Probe of a node with the kernel's host.
    /// </summary>
    [Test]
    public async Task Node_error_table_rows_that_need_the_kernel()
    {
        await using var csi = await CsiHarness.StartAsync();
        var controller = csi.Controller;
        await using var guest = await GuestNode.StartAsync("guest-rows", TimeSpan.FromMinutes(10));
        try
        {
            var probe = await guest.Identity.ProbeAsync(new ProbeRequest());
            Assert.That(probe.Ready, Is.True, "Probe: a node with /dev/nvme-fabrics and writable records is ready");
            var nodeId = (await guest.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
            const string staging = "/csi-e2e/staging/rows";
            const string target = "/csi-e2e/pods/rows/volumes/disk";
            await guest.ShellAsync($"mkdir -p {staging} /csi-e2e/pods/rows/volumes");

            async Task<(Volume Volume, ControllerPublishVolumeResponse Published)> CreateAndPublish(string name, VolumeCapability capability)
            {
                var volume = (await controller.CreateVolumeAsync(Create(name, 64 * MiB, capability))).Volume;
                var published = await controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
                {
                    VolumeId = volume.VolumeId, NodeId = nodeId, VolumeCapability = capability, VolumeContext = { volume.VolumeContext },
                });
                return (volume, published);
            }

            NodeStageVolumeRequest Stage((Volume Volume, ControllerPublishVolumeResponse Published) v, VolumeCapability capability) => new()
            {
                VolumeId = v.Volume.VolumeId, PublishContext = { ForGuest(v.Published.PublishContext) }, StagingTargetPath = staging,
                VolumeCapability = capability, VolumeContext = { v.Volume.VolumeContext },
            };

            async Task<StatusCode> CodeOf(Func<Task> call) => (await CsiHarness.FailureOf(call)).StatusCode;

            // ext4, formatted by its first stage and published once.
            var ext4 = Ext4();
            var fs = await CreateAndPublish("rows-ext4", ext4);
            await guest.Node.NodeStageVolumeAsync(Stage(fs, ext4));
            var publish = new NodePublishVolumeRequest
            {
                VolumeId = fs.Volume.VolumeId, PublishContext = { ForGuest(fs.Published.PublishContext) }, StagingTargetPath = staging,
                TargetPath = target, VolumeCapability = ext4, VolumeContext = { fs.Volume.VolumeContext },
            };
            await guest.Node.NodePublishVolumeAsync(publish);
            var readOnlyAtSameTarget = await CodeOf(async () => await guest.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest(publish) { Readonly = true }));
            await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = fs.Volume.VolumeId, TargetPath = target });
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = fs.Volume.VolumeId, StagingTargetPath = staging });

            // Staged again as xfs: the volume holds ext4 and is never reformatted.
            var xfs = new VolumeCapability { Mount = new() { FsType = "xfs" }, AccessMode = ext4.AccessMode.Clone() };
            var ext4AsXfs = await CodeOf(async () => await guest.Node.NodeStageVolumeAsync(Stage(fs, xfs)));
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = fs.Volume.VolumeId, StagingTargetPath = staging });

            // A blank volume staged read-only: there is no filesystem to mount, and making one would write.
            var readOnly = Ext4();
            readOnly.AccessMode.Mode = VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeReaderOnly;
            var blank = await CreateAndPublish("rows-blank", readOnly);
            var blankReadOnly = await CodeOf(async () => await guest.Node.NodeStageVolumeAsync(Stage(blank, readOnly)));
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = blank.Volume.VolumeId, StagingTargetPath = staging });

            Assert.Multiple(() =>
            {
                Assert.That(readOnlyAtSameTarget, Is.EqualTo(StatusCode.AlreadyExists), "NodePublishVolume: Volume published but is incompatible");
                Assert.That(ext4AsXfs, Is.EqualTo(StatusCode.FailedPrecondition), "NodeStageVolume: Exceeds capabilities (holds ext4, asked xfs)");
                Assert.That(blankReadOnly, Is.EqualTo(StatusCode.FailedPrecondition), "NodeStageVolume: Exceeds capabilities (blank, read-only)");
            });
            Assert.That(await guest.ShellAsync(LeftoversCommand), Does.Contain(NothingLeft));
            foreach (var volume in new[] { fs.Volume, blank.Volume })
            {
                await controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = nodeId });
                await controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });
            }
        }
        catch (Exception e) when (e is not SuccessException)
        {
            await guest.StopAsync();
            TestContext.Out.WriteLine(guest.Describe());
            throw;
        }

        var result = await guest.StopAsync();
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Describe());
    }

    [Test]
    public async Task Rwx_block_volume_is_staged_on_two_guests_at_once_and_each_reads_what_the_other_wrote()
    {
        await using var csi = await CsiHarness.StartAsync();
        var controller = csi.Controller;
        var startA = GuestNode.StartAsync("guest-rwx-a", TimeSpan.FromMinutes(10));
        var startB = GuestNode.StartAsync("guest-rwx-b", TimeSpan.FromMinutes(10));
        await using var a = await startA;
        await using var b = await startB;
        var guests = new[] { a, b };
        try
        {
            var capability = Block(VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeMultiWriter);
            var volume = (await controller.CreateVolumeAsync(Create("e2e-rwx", 64 * MiB, capability))).Volume;
            const string staging = "/csi-e2e/staging/e2e-rwx";
            const string target = "/csi-e2e/pods/vm-pod/volumeDevices/disk";
            var nodeIds = new Dictionary<GuestNode, string>();
            foreach (var guest in guests)
            {
                var nodeId = nodeIds[guest] = (await guest.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
                var publish = await controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
                {
                    VolumeId = volume.VolumeId, NodeId = nodeId, VolumeCapability = capability, VolumeContext = { volume.VolumeContext },
                });
                await guest.ShellAsync($"mkdir -p {staging} /csi-e2e/pods/vm-pod/volumeDevices");
                await guest.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest
                {
                    VolumeId = volume.VolumeId, PublishContext = { ForGuest(publish.PublishContext) }, StagingTargetPath = staging,
                    VolumeCapability = capability, VolumeContext = { volume.VolumeContext },
                });
                await guest.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
                {
                    VolumeId = volume.VolumeId, PublishContext = { ForGuest(publish.PublishContext) }, StagingTargetPath = staging,
                    TargetPath = target, VolumeCapability = capability, VolumeContext = { volume.VolumeContext },
                });
            }

            // Both nodes hold the volume now; each writes with O_DIRECT and a flush, the other reads with O_DIRECT
            // (no page cache on either side can hide what the target really stores).
            async Task<(string Wrote, string Read)> WriteThenRead(GuestNode writer, GuestNode reader, int offsetMiB)
            {
                var wrote = await writer.ShellAsync($"""
                    dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
                    dd if=/tmp/pattern of={target} bs=1M seek={offsetMiB} oflag=direct conv=fsync 2>/dev/null
                    echo "SUM=$(md5sum < /tmp/pattern | cut -d' ' -f1)"
                    """);
                var read = await reader.ShellAsync(
                    $"echo \"SUM=$(dd if={target} bs=1M skip={offsetMiB} count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)\"");
                return (Value(wrote, "SUM"), Value(read, "SUM"));
            }

            var aToB = await WriteThenRead(a, b, 0);
            var bToA = await WriteThenRead(b, a, 16);
            // A rewrites B's range: B must see the new data, not its own earlier write.
            var aOverB = await WriteThenRead(a, b, 16);
            Assert.Multiple(() =>
            {
                Assert.That(aToB.Read, Is.EqualTo(aToB.Wrote), "B reads what A wrote");
                Assert.That(bToA.Read, Is.EqualTo(bToA.Wrote), "A reads what B wrote");
                Assert.That(aOverB.Read, Is.EqualTo(aOverB.Wrote), "B reads A's overwrite of its own range");
                Assert.That(aOverB.Wrote, Is.Not.EqualTo(bToA.Wrote));
            });

            foreach (var guest in guests)
            {
                await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = target });
                await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
                await controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = nodeIds[guest] });
                Assert.That(await guest.ShellAsync(LeftoversCommand), Does.Contain(NothingLeft), guest.Name);
            }

            await controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });
        }
        catch (Exception e) when (e is not SuccessException)
        {
            foreach (var guest in guests)
            {
                await guest.StopAsync();
                TestContext.Out.WriteLine(guest.Describe());
            }

            throw;
        }
        finally
        {
            TestContext.Out.WriteLine(string.Join("; ", guests.Select(g => $"{g.Name}: agent up after {g.BootTime.TotalSeconds:F1}s, node service after {g.StartupTime.TotalSeconds:F1}s")));
        }

        foreach (var guest in guests)
        {
            var result = await guest.StopAsync();
            Assert.That(result.ExitCode, Is.EqualTo(0), result.Describe());
        }
    }
}
