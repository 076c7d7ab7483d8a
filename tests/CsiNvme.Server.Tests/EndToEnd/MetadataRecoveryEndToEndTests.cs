using System.Globalization;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>
/// A VM disk written by the Linux NVMe/TCP host, then the data directory lost under the pools (the mis-mount of the
/// issue): the server refuses to start rather than freeing the disk, and --recover-metadata gives the same host the
/// same subsystem with the same data, while a host that was never allowed stays out.
/// </summary>
[TestFixture]
[Category("Guest")]
public sealed class MetadataRecoveryEndToEndTests
{
    private const ulong VolumeSize = 64UL << 20;

    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [Test]
    public async Task A_disk_survives_a_lost_data_directory_and_comes_back_to_the_same_host_with_recover_metadata()
    {
        using var dir = new TempDirectory("csinvme-e2e-recovery");
        Directory.CreateDirectory(dir.Combine("pools"));
        string[] pools = ["--pool", dir.Combine("pools", "vm.img") + ",512MiB"];
        var host = NvmeHostIdentity.Create();
        var stranger = NvmeHostIdentity.Create();
        var server = await ServerProcess.StartAsync(Directory.CreateDirectory(dir.Combine("data")).FullName, pools);
        try
        {
            var create = new CreateVolumeRequest { Name = "vm-disk", SizeBytes = VolumeSize, Labels = { ["kubevirt.io/vm"] = "web-1" } };
            create.AllowedHosts.Add(host.Nqn);
            var volume = await server.Volumes.CreateVolumeAsync(create);
            string? refusal = null;
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
                        await server.Volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "vm-disk", Name = "vm-disk-before" });
                        return "ok";
                    case "lose-metadata":
                        // The data directory is gone (another, empty one is mounted); the pools are where they were.
                        var stopped = await server.StopAsync();
                        await server.DisposeAsync();
                        var empty = Directory.CreateDirectory(dir.Combine("other-data")).FullName;
                        var refused = await ProcessRunner.RunAsync(
                            "dotnet",
                            [RepoPaths.ServerDll, "--data-dir", empty, "--nvme-listen", "127.0.0.1:0", "--mgmt-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", .. pools],
                            TimeSpan.FromSeconds(120));
                        refusal = $"exit {refused.ExitCode} after a stop with {stopped}:\n{refused.Output}";
                        server = await ServerProcess.StartAsync(empty, [.. pools, "--recover-metadata"]);
                        return server.NvmeEndpoint.Port.ToString(CultureInfo.InvariantCulture);
                    case "clone":
                        var clone = new CreateVolumeRequest { Name = "vm-disk-copy", SourceSnapshot = "vm-disk-before" };
                        clone.AllowedHosts.Add(host.Nqn);
                        return (await server.Volumes.CreateVolumeAsync(clone)).SubsystemNqn;
                    default:
                        return "error: unknown command " + command;
                }
            });

            var result = await LinuxGuest.RunAsync(Script(volume, server.NvmeEndpoint.Port, control.Port, host, stranger), new GuestOptions { Timeout = TimeSpan.FromMinutes(5) });
            var describe = $"{result.Describe()}\n----- refused start -----\n{refusal}\n----- server output (tail) -----\n{server.OutputTail()}";
            TestContext.Out.WriteLine($"guest: boot {result.BootTime?.TotalSeconds:F1}s total {result.Elapsed.TotalSeconds:F1}s; steps: {string.Join(", ", steps)}");
            TestContext.Out.WriteLine(refusal);

            Assert.That(result.ExitCode, Is.EqualTo(0), describe);
            Assert.Multiple(() =>
            {
                Assert.That(steps, Is.EqualTo(new[] { "snapshot", "lose-metadata", "clone" }), describe);
                Assert.That(refusal, Does.StartWith("exit 1 after a stop with 0").And.Contain("volume vm-disk (id").And.Contain("snapshot vm-disk-before (id"), describe);
                Assert.That(refusal, Does.Contain("--recover-metadata"), describe);
                Assert.That(result.Value("SAME_DATA"), Is.EqualTo("ok"), describe);
                Assert.That(result.Value("STRANGER"), Is.EqualTo("refused"), describe);
                Assert.That(result.Value("CLONE_DATA"), Is.EqualTo("ok"), describe);
            });

            var recovered = await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "vm-disk" });
            Assert.That((recovered.Id, recovered.SubsystemNqn, recovered.Nguid), Is.EqualTo((volume.Id, volume.SubsystemNqn, volume.Nguid)));
            Assert.That(recovered.AllowedHosts, Is.EqualTo(new[] { host.Nqn }));
            Assert.That(recovered.Labels["kubevirt.io/vm"], Is.EqualTo("web-1"));
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    private static string Script(Volume volume, int nvmePort, int controlPort, NvmeHostIdentity host, NvmeHostIdentity stranger) =>
        GuestShell.Prelude + $$"""
        NQN={{volume.SubsystemNqn}}
        ctl() {
            # The restart step runs three server starts: give it time.
            echo "$1" | nc -w 120 $ADDR {{controlPort}}
        }

        nvme connect -t tcp -a $ADDR -s {{nvmePort}} -n $NQN {{host.CliArgs}}
        DEV=$(ns_dev $NQN)
        dd if=/dev/urandom of=/tmp/a bs=1M count=8
        A_MD5=$(md5sum < /tmp/a | cut -d' ' -f1)
        dd if=/tmp/a of=$DEV bs=1M seek=4 conv=fsync
        [ "$(ctl snapshot)" = ok ]
        dd if=/dev/urandom of=/tmp/b bs=1M count=8
        B_MD5=$(md5sum < /tmp/b | cut -d' ' -f1)
        dd if=/tmp/b of=$DEV bs=1M seek=4 conv=fsync
        nvme disconnect -n $NQN
        no_nvme_devices

        PORT=$(ctl lose-metadata)
        case "$PORT" in [0-9]*) ;; *) echo "restart failed: $PORT"; exit 1 ;; esac

        if timeout 60 nvme connect -t tcp -a $ADDR -s $PORT -n $NQN {{stranger.CliArgs}}; then
            echo STRANGER=admitted
            exit 1
        fi
        echo STRANGER=refused
        nvme connect -t tcp -a $ADDR -s $PORT -n $NQN {{host.CliArgs}}
        DEV=$(ns_dev $NQN)
        [ "$(blockdev --getsize64 $DEV)" = "{{VolumeSize}}" ]
        drop_caches
        [ "$(md5_of_range $DEV 4 8)" = "$B_MD5" ]
        echo SAME_DATA=ok

        CLONE_NQN=$(ctl clone)
        case "$CLONE_NQN" in nqn.*) ;; *) echo "clone failed: $CLONE_NQN"; exit 1 ;; esac
        nvme connect -t tcp -a $ADDR -s $PORT -n $CLONE_NQN {{host.CliArgs}}
        CDEV=$(ns_dev $CLONE_NQN)
        [ "$(md5_of_range $CDEV 4 8)" = "$A_MD5" ]
        echo CLONE_DATA=ok

        nvme disconnect-all
        no_nvme_devices
        """;
}
