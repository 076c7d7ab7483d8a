using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>
/// Snapshots, clones and online growth seen from the unmodified Linux NVMe/TCP host, on the default (thin)
/// backend. The guest asks the test for each management step over a small TCP control channel, so the steps
/// happen exactly between its own writes: pattern, snapshot, overwrite, clone, read the clone; then grow a
/// mounted ext4 volume and resize2fs it without reconnecting.
/// </summary>
[TestFixture]
[Category("Guest")]
public sealed class SnapshotEndToEndTests
{
    private const ulong VolumeSize = 64UL << 20;
    private const ulong GrownSize = 128UL << 20;
    private const string SnapshotName = "e2e-snap";
    private const string CloneName = "e2e-clone";

    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [Test]
    public async Task A_clone_of_a_snapshot_reads_the_pattern_from_before_the_overwrite_and_a_mounted_volume_grows_online()
    {
        await using var server = await ServerUnderTest.StartAsync();
        var host = NvmeHostIdentity.Create();
        var volume = await server.CreateVolumeAsync("e2e-src", VolumeSize, allowAnyHost: false, host);
        Assert.That(volume.Backend, Is.EqualTo("thin"), "thin is the default backend");

        var steps = new List<string>();
        await using var control = GuestControl.Start(async command =>
        {
            lock (steps)
            {
                steps.Add(command);
            }

            switch (command)
            {
                case "snapshot":
                    await server.Server.Volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = volume.Name, Name = SnapshotName });
                    return "ok";
                case "clone":
                    var clone = new CreateVolumeRequest { Name = CloneName, SourceSnapshot = SnapshotName };
                    clone.AllowedHosts.Add(host.Nqn);
                    return (await server.Server.Volumes.CreateVolumeAsync(clone)).SubsystemNqn;
                case "grow":
                    var grown = await server.Server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = volume.Name, SizeBytes = GrownSize });
                    return grown.SizeBytes.ToString(System.Globalization.CultureInfo.InvariantCulture);
                default:
                    return "error: unknown command " + command;
            }
        });

        var result = await LinuxGuest.RunAsync(
            Script(volume, server.NvmePort, control.Port, host),
            new GuestOptions { Timeout = TimeSpan.FromMinutes(4) });
        TestContext.Out.WriteLine(
            $"guest: boot {result.BootTime?.TotalSeconds:F1}s total {result.Elapsed.TotalSeconds:F1}s; " +
            $"size seen after {result.Value("AEN_WAIT_TENTHS")} tenths of a second; steps: {string.Join(", ", steps)}");

        Assert.That(result.ExitCode, Is.EqualTo(0), server.Describe(result));
        Assert.Multiple(() =>
        {
            Assert.That(steps, Is.EqualTo(new[] { "snapshot", "clone", "grow" }), server.Describe(result));
            Assert.That(result.Value("CLONE_CHECK"), Is.EqualTo("ok"), server.Describe(result));
            Assert.That(result.Value("AEN_SEEN"), Is.EqualTo("yes"), "the host saw the new size without a manual rescan\n" + server.Describe(result));
            Assert.That(result.Value("GROWN_BYTES"), Is.EqualTo(GrownSize.ToString(System.Globalization.CultureInfo.InvariantCulture)), server.Describe(result));
            Assert.That(result.Value("RESIZE_CHECK"), Is.EqualTo("ok"), server.Describe(result));
        });

        // The snapshot stays what it was; the source volume kept its identity through the resize.
        var snapshot = await server.Server.Volumes.GetSnapshotAsync(new GetSnapshotRequest { Name = SnapshotName });
        Assert.That(snapshot.SizeBytes, Is.EqualTo(VolumeSize));
        var after = await server.Server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = volume.Name });
        Assert.That(after.SizeBytes, Is.EqualTo(GrownSize));
        Assert.That(after.SubsystemNqn, Is.EqualTo(volume.SubsystemNqn));
    }

    private static string Script(Volume volume, int nvmePort, int controlPort, NvmeHostIdentity host) =>
        GuestShell.Prelude + $$"""
        NQN={{volume.SubsystemNqn}}
        PORT={{nvmePort}}
        HOST="{{host.CliArgs}}"
        # ctl COMMAND: asks the test to do a management step and prints its one-line answer.
        ctl() {
            echo "$1" | nc -w 10 $ADDR {{controlPort}}
        }

        nvme connect -t tcp -a $ADDR -s $PORT -n $NQN $HOST
        DEV=$(ns_dev $NQN)
        CTRL=$(ctrl_dev $NQN)

        # 1. A pattern, durable on the target (conv=fsync ends with a Flush) before the snapshot.
        dd if=/dev/urandom of=/tmp/a bs=1M count=8
        A_MD5=$(md5sum < /tmp/a | cut -d' ' -f1)
        dd if=/tmp/a of=$DEV bs=1M seek=4 conv=fsync
        [ "$(ctl snapshot)" = ok ]

        # 2. Overwrite it on the source.
        dd if=/dev/urandom of=/tmp/b bs=1M count=8
        B_MD5=$(md5sum < /tmp/b | cut -d' ' -f1)
        dd if=/tmp/b of=$DEV bs=1M seek=4 conv=fsync
        drop_caches
        [ "$(md5_of_range $DEV 4 8)" = "$B_MD5" ]

        # 3. Clone the snapshot, connect the clone: it holds the pattern from before the overwrite.
        CLONE_NQN=$(ctl clone)
        case "$CLONE_NQN" in nqn.*) ;; *) echo "clone failed: $CLONE_NQN"; exit 1 ;; esac
        nvme connect -t tcp -a $ADDR -s $PORT -n $CLONE_NQN $HOST
        CDEV=$(ns_dev $CLONE_NQN)
        [ "$(blockdev --getsize64 $CDEV)" = "{{VolumeSize}}" ]
        [ "$(md5_of_range $CDEV 4 8)" = "$A_MD5" ]
        [ "$(md5_of_range $DEV 4 8)" = "$B_MD5" ]
        echo CLONE_CHECK=ok
        nvme disconnect -n $CLONE_NQN

        # 4. ext4 on the source, mounted while the volume grows; the host learns the size from the
        #    namespace-attribute-changed AEN, with no reconnect and no manual rescan.
        mkfs.ext4 -F -q $DEV
        mkdir -p /mnt/vol
        mount -t ext4 $DEV /mnt/vol
        dd if=/dev/urandom of=/mnt/vol/before.bin bs=1M count=4
        (cd /mnt/vol && md5sum before.bin > /tmp/sums)
        OLD_KB=$(df -k /mnt/vol | awk 'NR==2 {print $2}')
        [ "$(blockdev --getsize64 $DEV)" = "{{VolumeSize}}" ]
        [ "$(ctl grow)" = "{{GrownSize}}" ]
        i=0
        while [ "$(blockdev --getsize64 $DEV)" != "{{GrownSize}}" ] && [ $i -lt 150 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        echo "AEN_WAIT_TENTHS=$i"
        if [ "$(blockdev --getsize64 $DEV)" = "{{GrownSize}}" ]; then
            echo AEN_SEEN=yes
        else
            echo AEN_SEEN=no
            # Carry on with a manual rescan so the rest of the checks still report.
            nvme ns-rescan $CTRL
            sleep 1
        fi
        echo "GROWN_BYTES=$(blockdev --getsize64 $DEV)"
        section nvmelist nvme list
        resize2fs $DEV
        NEW_KB=$(df -k /mnt/vol | awk 'NR==2 {print $2}')
        echo "FS_KB=$OLD_KB->$NEW_KB"
        [ "$NEW_KB" -gt $((OLD_KB + 50000)) ]
        # More than the old file system could ever hold.
        dd if=/dev/zero of=/mnt/vol/after.bin bs=1M count=72 conv=fsync
        (cd /mnt/vol && md5sum -c /tmp/sums)
        umount /mnt/vol
        e2fsck -fn $DEV
        echo RESIZE_CHECK=ok

        nvme disconnect -n $NQN
        no_nvme_devices
        """;
}
