using System.Text.RegularExpressions;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>
/// Proves the guest harness itself: the image boots, scripts' exit codes and files get through,
/// runaway guests are killed, and the guest's NVMe/TCP host stack works against the kernel's
/// own nvmet-tcp target (inside the same guest), so failures against our server are ours.
/// </summary>
[TestFixture]
[Category("Guest")]
public sealed partial class GuestHarnessTests
{
    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [Test]
    public async Task Script_exit_code_output_and_files_reach_the_host()
    {
        using var dir = new TempDirectory();
        var hostFile = dir.Combine("payload.bin");
        var payload = new byte[100_003];
        new Random(7).NextBytes(payload);
        await File.WriteAllBytesAsync(hostFile, payload);
        var expectedMd5 = Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(payload));

        var result = await LinuxGuest.RunAsync(
            """
            echo "MD5=$(md5sum /opt/data/payload.bin | cut -d' ' -f1)"
            echo "NOTE=$(cat /etc/note.txt)"
            echo "KERNEL=$(uname -r)"
            echo "NVME=$(nvme version | head -n1)"
            echo "FIO=$(fio --version)"
            exit 3
            """,
            new GuestOptions
            {
                Timeout = TimeSpan.FromMinutes(2),
                Files = new Dictionary<string, string> { ["/opt/data/payload.bin"] = hostFile },
                TextFiles = new Dictionary<string, string> { ["/etc/note.txt"] = "hello guest" },
            });

        TestContext.Out.WriteLine($"boot {result.BootTime?.TotalSeconds:F1}s, total {result.Elapsed.TotalSeconds:F1}s, kernel {result.Value("KERNEL")}");
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(3), result.Describe());
            Assert.That(result.TimedOut, Is.False, result.Describe());
            Assert.That(result.Value("MD5"), Is.EqualTo(expectedMd5), result.Describe());
            Assert.That(result.Value("NOTE"), Is.EqualTo("hello guest"), result.Describe());
            Assert.That(result.Value("NVME"), Does.StartWith("nvme version"), result.Describe());
            Assert.That(result.Value("FIO"), Does.StartWith("fio-"), result.Describe());
        });
    }

    [Test]
    public async Task A_guest_that_never_finishes_is_killed_at_the_timeout()
    {
        // The timeout counts from the script's start, not from QEMU's: however long the boot takes on a busy machine,
        // the script gets its full time and is then killed.
        var scriptTime = TimeSpan.FromSeconds(5);
        var result = await LinuxGuest.RunAsync(
            "echo SLEEPING=1; sleep 3600",
            new GuestOptions { Timeout = scriptTime });

        Assert.Multiple(() =>
        {
            Assert.That(result.TimedOut, Is.True, result.Describe());
            Assert.That(result.ExitCode, Is.EqualTo(-1), result.Describe());
            Assert.That(result.Value("SLEEPING"), Is.EqualTo("1"), result.Describe());
            Assert.That(result.BootTime, Is.Not.Null, result.Describe());
            Assert.That(result.Elapsed - result.BootTime!.Value, Is.GreaterThanOrEqualTo(scriptTime), result.Describe());
        });
    }

    [Test]
    public async Task Kernel_nvmet_tcp_target_passes_discover_connect_and_fio_verify()
    {
        var host = NvmeHostIdentity.Create();
        const string nqn = "nqn.2014-08.io.csinvme:reference";
        var script = $$"""
            set -x
            NQN={{nqn}}
            HOST="{{host.CliArgs}}"
            # Reference target: the kernel's nvmet with a loop device on a tmpfs file.
            truncate -s 96M /tmp/backing.img
            LOOP=$(losetup -f)
            losetup "$LOOP" /tmp/backing.img
            cd /sys/kernel/config/nvmet
            mkdir subsystems/$NQN
            echo 1 > subsystems/$NQN/attr_allow_any_host
            mkdir subsystems/$NQN/namespaces/1
            echo -n "$LOOP" > subsystems/$NQN/namespaces/1/device_path
            echo 1 > subsystems/$NQN/namespaces/1/enable
            mkdir ports/1
            echo ipv4 > ports/1/addr_adrfam
            echo tcp > ports/1/addr_trtype
            echo 127.0.0.1 > ports/1/addr_traddr
            echo 4420 > ports/1/addr_trsvcid
            ln -s /sys/kernel/config/nvmet/subsystems/$NQN ports/1/subsystems/$NQN
            cd /tmp

            nvme discover -t tcp -a 127.0.0.1 -s 4420 $HOST | tee /tmp/discover.txt
            grep -q "subnqn:.*$NQN" /tmp/discover.txt
            T0=$(cut -d' ' -f1 /proc/uptime)
            nvme connect -t tcp -a 127.0.0.1 -s 4420 -n $NQN $HOST
            for i in $(seq 1 100); do [ -b /dev/nvme0n1 ] && break; sleep 0.1; done
            T1=$(cut -d' ' -f1 /proc/uptime)
            echo "CONNECT_SECONDS=$(echo "$T1 - $T0" | bc)"
            nvme list
            [ "$(cat /sys/class/nvme/nvme0/subsysnqn)" = "$NQN" ]
            fio --name=verify --filename=/dev/nvme0n1 --ioengine=libaio --direct=1 --iodepth=8 \
                --rw=randwrite --bs=4k --size=32M --verify=crc32c --do_verify=1 --randrepeat=0 | tee /tmp/fio4k.txt
            fio --name=seq --filename=/dev/nvme0n1 --ioengine=libaio --direct=1 --iodepth=4 \
                --rw=write --bs=1M --size=64M | tee /tmp/fio1m.txt
            echo "FIO4K=$(grep -m1 -o 'WRITE: bw=[^ ]*' /tmp/fio4k.txt)"
            echo "FIO1M=$(grep -m1 -o 'WRITE: bw=[^ ]*' /tmp/fio1m.txt)"
            nvme disconnect -n $NQN
            [ ! -e /dev/nvme0n1 ]
            echo REFERENCE=ok
            """;

        var result = await LinuxGuest.RunAsync(script, new GuestOptions { Timeout = TimeSpan.FromMinutes(6) });

        TestContext.Out.WriteLine(
            $"boot {result.BootTime?.TotalSeconds:F1}s, total {result.Elapsed.TotalSeconds:F1}s, " +
            $"connect {result.Value("CONNECT_SECONDS")}s, 4k randwrite+verify {result.Value("FIO4K")}, 1M write {result.Value("FIO1M")}");
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(0), result.Describe());
            Assert.That(result.Value("REFERENCE"), Is.EqualTo("ok"), result.Describe());
            Assert.That(result.Output, Does.Match(VerifyErrorFree()), result.Describe());
        });
    }

    // fio prints "err= 0" on its per-job summary line when the job (and its verify pass) succeeded.
    [GeneratedRegex(@"verify: \(groupid=0, jobs=1\): err= 0")]
    private static partial Regex VerifyErrorFree();
}
