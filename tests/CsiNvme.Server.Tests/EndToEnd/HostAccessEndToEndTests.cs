using System.Diagnostics;
using System.Security.Cryptography;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>
/// Host access control and sharing, seen from real Linux hosts: refused hosts get a quick
/// Connect error, and several controllers — two hosts at once, one of them with two host NQNs —
/// see each other's writes on the same volume.
/// </summary>
[TestFixture]
[Category("Guest")]
public sealed class HostAccessEndToEndTests
{
    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [Test]
    public async Task Only_allowed_hosts_connect_and_a_refused_connect_fails_fast()
    {
        await using var server = await ServerUnderTest.StartAsync();
        var allowed = NvmeHostIdentity.Create();
        var stranger = NvmeHostIdentity.Create();
        var closed = await server.CreateVolumeAsync("closed", 32UL << 20, allowAnyHost: false, allowed);
        var granted = await server.CreateVolumeAsync("granted", 32UL << 20, allowAnyHost: false);
        granted = await server.Server.Volumes.AllowHostAsync(new HostAccessRequest { Name = "granted", HostNqn = stranger.Nqn });
        var open = await server.CreateVolumeAsync("open", 32UL << 20, allowAnyHost: true);
        Assert.That(granted.AllowedHosts, Is.EquivalentTo(new[] { stranger.Nqn }));

        var script = GuestShell.Prelude + $$"""
            PORT={{server.NvmePort}}
            connect() {
                # connect NQN HOSTARGS: bounded, so a target that never answers cannot hang the guest
                timeout 60 nvme connect -t tcp -a $ADDR -s $PORT -n "$1" $2
            }
            T0=$(cut -d' ' -f1 /proc/uptime)
            if connect {{closed.SubsystemNqn}} "{{stranger.CliArgs}}"; then
                echo "REFUSED=no"
                exit 1
            fi
            T1=$(cut -d' ' -f1 /proc/uptime)
            echo "REFUSED=yes"
            echo "REFUSED_SECONDS=$(echo "$T1 - $T0" | bc)"
            no_nvme_devices

            connect {{granted.SubsystemNqn}} "{{stranger.CliArgs}}"
            DEV=$(ns_dev {{granted.SubsystemNqn}})
            dd if=$DEV of=/dev/null bs=1M count=4
            echo GRANTED=ok

            connect {{open.SubsystemNqn}} "{{stranger.CliArgs}}"
            DEV=$(ns_dev {{open.SubsystemNqn}})
            dd if=$DEV of=/dev/null bs=1M count=4
            echo OPEN=ok

            connect {{closed.SubsystemNqn}} "{{allowed.CliArgs}}"
            DEV=$(ns_dev {{closed.SubsystemNqn}})
            dd if=/dev/urandom of=$DEV bs=1M count=4 conv=fsync
            echo ALLOWED=ok

            nvme disconnect-all
            no_nvme_devices
            echo ACCESS=ok
            """;

        var result = await LinuxGuest.RunAsync(script, new GuestOptions { Timeout = TimeSpan.FromMinutes(4) });

        TestContext.Out.WriteLine($"refused connect took {result.Value("REFUSED_SECONDS")}s; guest total {result.Elapsed.TotalSeconds:F1}s");
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(0), server.Describe(result));
            Assert.That(result.Value("REFUSED"), Is.EqualTo("yes"), server.Describe(result));
            Assert.That(double.Parse(result.RequireValue("REFUSED_SECONDS"), System.Globalization.CultureInfo.InvariantCulture),
                Is.LessThan(15.0), "a refused Connect must fail promptly, not by timeout\n" + server.Describe(result));
            Assert.That(result.Value("ACCESS"), Is.EqualTo("ok"), server.Describe(result));
        });
    }

    [Test]
    public async Task Two_hosts_and_three_controllers_see_each_others_writes()
    {
        await using var server = await ServerUnderTest.StartAsync();
        using var files = new TempDirectory();
        var hostA1 = NvmeHostIdentity.Create();
        var hostA2 = NvmeHostIdentity.Create();
        var hostB = NvmeHostIdentity.Create();
        var volume = await server.CreateVolumeAsync("shared", 64UL << 20, allowAnyHost: false, hostA1, hostA2, hostB);

        // Each host writes its own 16 MiB region and then waits until the other's region reads back.
        var dataA = files.Combine("a.bin");
        var dataB = files.Combine("b.bin");
        await File.WriteAllBytesAsync(dataA, RandomNumberGenerator.GetBytes(16 << 20));
        await File.WriteAllBytesAsync(dataB, RandomNumberGenerator.GetBytes(16 << 20));
        var guestFiles = new Dictionary<string, string> { ["/opt/a.bin"] = dataA, ["/opt/b.bin"] = dataB };

        const string waitForRegion = """
            wait_for_region() {
                # wait_for_region DEV OFFSET_MIB FILE: until the device holds FILE at that offset
                want=$(md5sum < "$3" | cut -d' ' -f1)
                i=0
                while [ $i -lt 180 ]; do
                    drop_caches
                    [ "$(md5_of_range "$1" "$2" 16)" = "$want" ] && return 0
                    sleep 1
                    i=$((i + 1))
                done
                echo "region at $2 MiB of $1 never matched $3" >&2
                return 1
            }

            """;
        var connect = $"nvme connect -t tcp -a $ADDR -s {server.NvmePort} -n {volume.SubsystemNqn}";

        // Host A runs without native multipath so each of its two controllers has its own block
        // device, and reads through both; it has two CPUs, so each controller has two I/O queues.
        var scriptA = GuestShell.Prelude + waitForRegion + $$"""
            {{connect}} {{hostA1.CliArgs}}
            # nvme-cli 2.3 refuses a second controller to the same port as "already connected" even
            # with -D and another host NQN, so the second one is made through the kernel interface.
            echo "nqn={{volume.SubsystemNqn}},transport=tcp,traddr=$ADDR,trsvcid={{server.NvmePort}},{{hostA2.FabricsOptions}}" > /dev/nvme-fabrics
            C1=$(ctrl_dev {{volume.SubsystemNqn}} {{hostA1.Nqn}})
            C2=$(ctrl_dev {{volume.SubsystemNqn}} {{hostA2.Nqn}})
            echo "CNTLID_1=$(cat /sys/class/nvme/${C1#/dev/}/cntlid)"
            echo "CNTLID_2=$(cat /sys/class/nvme/${C2#/dev/}/cntlid)"
            echo "IO_QUEUES=$(($(cat /sys/class/nvme/${C1#/dev/}/queue_count) - 1))"
            for i in $(seq 1 100); do ls -d /sys/class/nvme/${C2#/dev/}/${C2#/dev/}n* >/dev/null 2>&1 && break; sleep 0.1; done
            D1=/dev/$(basename $(ls -d /sys/class/nvme/${C1#/dev/}/${C1#/dev/}n* | head -n1))
            D2=/dev/$(basename $(ls -d /sys/class/nvme/${C2#/dev/}/${C2#/dev/}n* | head -n1))
            [ "$D1" != "$D2" ]
            dd if=/opt/a.bin of=$D1 bs=1M seek=0 conv=fsync
            wait_for_region $D1 16 /opt/b.bin
            wait_for_region $D2 16 /opt/b.bin
            wait_for_region $D2 0 /opt/a.bin
            echo PEER=seen
            # Keep the controllers until host B has seen our data too.
            sleep 5
            nvme disconnect -n {{volume.SubsystemNqn}}
            no_nvme_devices
            echo HOST_A=ok
            """;
        var scriptB = GuestShell.Prelude + waitForRegion + $$"""
            {{connect}} {{hostB.CliArgs}}
            DEV=$(ns_dev {{volume.SubsystemNqn}})
            echo "CNTLID=$(cat /sys/class/nvme/$(basename $(ctrl_dev {{volume.SubsystemNqn}}))/cntlid)"
            dd if=/opt/b.bin of=$DEV bs=1M seek=16 conv=fsync
            wait_for_region $DEV 0 /opt/a.bin
            echo PEER=seen
            sleep 5
            nvme disconnect -n {{volume.SubsystemNqn}}
            no_nvme_devices
            echo HOST_B=ok
            """;

        using var stopPolling = new CancellationTokenSource();
        var seenHosts = PollConnectedHostsAsync(server.Server, volume.Name, stopPolling.Token);
        var guestA = LinuxGuest.RunAsync(scriptA, new GuestOptions
        {
            Timeout = TimeSpan.FromMinutes(6), Cpus = 2, Files = guestFiles, KernelArgs = ["nvme_core.multipath=N"],
        });
        var guestB = LinuxGuest.RunAsync(scriptB, new GuestOptions { Timeout = TimeSpan.FromMinutes(6), Files = guestFiles });
        var results = await Task.WhenAll(guestA, guestB);
        await stopPolling.CancelAsync();
        var connectedHosts = await seenHosts;

        var (a, b) = (results[0], results[1]);
        TestContext.Out.WriteLine($"host A: {a.Elapsed.TotalSeconds:F1}s, cntlids {a.Value("CNTLID_1")}/{a.Value("CNTLID_2")}, " +
                                  $"I/O queues {a.Value("IO_QUEUES")}; host B: {b.Elapsed.TotalSeconds:F1}s, cntlid {b.Value("CNTLID")}");
        Assert.Multiple(() =>
        {
            Assert.That(a.ExitCode, Is.EqualTo(0), "host A\n" + server.Describe(a));
            Assert.That(b.ExitCode, Is.EqualTo(0), "host B\n" + server.Describe(b));
            Assert.That(a.Value("IO_QUEUES"), Is.EqualTo("2"), "host A with 2 CPUs asks for 2 I/O queues\n" + a.Describe());
            var cntlids = new[] { a.Value("CNTLID_1"), a.Value("CNTLID_2"), b.Value("CNTLID") };
            Assert.That(cntlids, Is.Unique, "controller IDs within one subsystem");
            Assert.That(connectedHosts, Is.SupersetOf(new[] { hostA1.Nqn, hostA2.Nqn, hostB.Nqn }),
                "GetVolume.connected_hosts while the guests were connected");
        });
    }

    // Samples the management API while guests run; returns every host NQN reported as connected.
    private static async Task<HashSet<string>> PollConnectedHostsAsync(ServerProcess server, string volume, CancellationToken stop)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var watch = Stopwatch.StartNew();
        while (!stop.IsCancellationRequested && watch.Elapsed < TimeSpan.FromMinutes(10))
        {
            try
            {
                var v = await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = volume }, cancellationToken: stop);
                seen.UnionWith(v.ConnectedHosts);
                await Task.Delay(500, stop);
            }
            catch (Exception e) when (e is OperationCanceledException || (e is Grpc.Core.RpcException r && r.StatusCode == Grpc.Core.StatusCode.Cancelled))
            {
                break;
            }
        }

        return seen;
    }
}
