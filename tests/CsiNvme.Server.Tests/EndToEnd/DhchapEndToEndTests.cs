using System.Globalization;
using CsiNvme.Api.V1;
using CsiNvme.Protocol.Authentication;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>
/// DH-HMAC-CHAP with the real Linux host (Debian 13's 6.12 kernel; Debian 12's cloud kernel is built without it):
/// <c>nvme connect --dhchap-secret</c> with and without <c>--dhchap-ctrl-secret</c>, SHA-256 with ffdhe2048 and SHA-512
/// with the null group, fio verify over an authenticated connection, a re-authentication asked for through sysfs, and
/// refusals: a wrong secret, no secret, a wrong controller secret, and a spoofed host NQN that neither connects nor
/// finds the volume in discovery. Connect times with and without authentication are measured in the same guest.
/// </summary>
[TestFixture]
[Category("Guest")]
public sealed class DhchapEndToEndTests
{
    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync(GuestImage.Trixie);

    [Test]
    public async Task Linux_host_authenticates_does_io_reauthenticates_and_is_refused_without_the_secret()
    {
        await using var server = await ServerUnderTest.StartAsync();
        var host = NvmeHostIdentity.Create();
        var spoofer = new NvmeHostIdentity(host.Nqn, Guid.NewGuid());
        var secret = DhchapSecret.Generate(DhchapHash.Sha256).Format();
        var ctrlSecret = DhchapSecret.Generate(DhchapHash.Sha256).Format();
        var sha512Secret = DhchapSecret.Generate(DhchapHash.Sha512).Format();
        var wrong = DhchapSecret.Generate(DhchapHash.Sha256).Format();

        var bidirectional = await server.CreateVolumeAsync("bidir", 256UL << 20, allowAnyHost: false, host);
        await server.Server.Volumes.SetHostSecretAsync(new SetHostSecretRequest
        {
            Name = "bidir", HostNqn = host.Nqn, Secret = secret, CtrlSecret = ctrlSecret, Hash = "sha256", DhGroup = "ffdhe2048",
        });
        var sha512 = await server.CreateVolumeAsync("sha512", 32UL << 20, allowAnyHost: false, host);
        await server.Server.Volumes.SetHostSecretAsync(new SetHostSecretRequest
        {
            Name = "sha512", HostNqn = host.Nqn, Secret = sha512Secret, Hash = "sha512", DhGroup = "null",
        });
        var plain = await server.CreateVolumeAsync("plain", 32UL << 20, allowAnyHost: false, host);

        var script = GuestShell.Prelude + $$"""
            PORT={{server.NvmePort}}
            connect() {
                # connect NQN ARGS...: bounded, so a target that never answers cannot hang the guest
                nqn=$1
                shift
                timeout 60 nvme connect -t tcp -a $ADDR -s $PORT -n "$nqn" "$@"
            }
            now() { cut -d' ' -f1 /proc/uptime; }
            timed_connect() {
                # timed_connect NAME NQN ARGS...: prints NAME_SECONDS, the wall time of the connect
                name=$1
                shift
                t0=$(now)
                connect "$@"
                t1=$(now)
                echo "${name}_SECONDS=$(echo "$t1 - $t0" | bc)"
            }

            # The protected volume is hidden from discovery for a host that proved nothing; the plain one is listed.
            section discovery nvme discover -t tcp -a $ADDR -s $PORT {{host.CliArgs}}
            nvme discover -t tcp -a $ADDR -s $PORT {{spoofer.CliArgs}} > /tmp/spoofed-discovery
            grep -q {{plain.SubsystemNqn}} /tmp/spoofed-discovery
            if grep -q {{bidirectional.SubsystemNqn}} /tmp/spoofed-discovery; then echo SPOOF_DISCOVERY=listed; exit 1; fi
            echo SPOOF_DISCOVERY=hidden

            # Refusals: no secret, a wrong secret, a wrong controller secret, and the spoofed NQN.
            if connect {{bidirectional.SubsystemNqn}} {{host.CliArgs}}; then echo NO_SECRET=connected; exit 1; fi
            no_nvme_devices
            echo NO_SECRET=refused
            if connect {{bidirectional.SubsystemNqn}} {{host.CliArgs}} --dhchap-secret={{wrong}}; then echo WRONG_SECRET=connected; exit 1; fi
            no_nvme_devices
            echo WRONG_SECRET=refused
            if connect {{bidirectional.SubsystemNqn}} {{host.CliArgs}} --dhchap-secret={{secret}} --dhchap-ctrl-secret={{wrong}}; then echo WRONG_CTRL=connected; exit 1; fi
            no_nvme_devices
            echo WRONG_CTRL=refused
            if connect {{bidirectional.SubsystemNqn}} {{spoofer.CliArgs}}; then echo SPOOF_CONNECT=connected; exit 1; fi
            no_nvme_devices
            echo SPOOF_CONNECT=refused

            # Connect times, plain and authenticated (ffdhe2048 and bidirectional), three each, alternating.
            # (round, not i: the prelude's helpers use i.)
            for round in 1 2 3; do
                timed_connect PLAIN_$round {{plain.SubsystemNqn}} {{host.CliArgs}}
                ns_dev {{plain.SubsystemNqn}} > /dev/null
                nvme disconnect -n {{plain.SubsystemNqn}}
                timed_connect AUTH_$round {{bidirectional.SubsystemNqn}} {{host.CliArgs}} --dhchap-secret={{secret}} --dhchap-ctrl-secret={{ctrlSecret}}
                ns_dev {{bidirectional.SubsystemNqn}} > /dev/null
                [ $round = 3 ] || nvme disconnect -n {{bidirectional.SubsystemNqn}}
            done

            # Bidirectional, SHA-256 / ffdhe2048: fio with verification over the authenticated queues.
            DEV=$(ns_dev {{bidirectional.SubsystemNqn}})
            CTRL=$(ctrl_dev {{bidirectional.SubsystemNqn}})
            echo "IO_QUEUES=$(($(cat /sys/class/nvme/${CTRL#/dev/}/queue_count) - 1))"
            fio --name=auth4k --filename=$DEV --ioengine=libaio --direct=1 --iodepth=16 \
                --rw=randwrite --bs=4k --offset=0 --size=32M --verify=crc32c --verify_fatal=1 | tee /tmp/fio.4k
            fio --name=auth1m --filename=$DEV --ioengine=libaio --direct=1 --iodepth=4 \
                --rw=write --bs=1M --offset=32M --size=32M --verify=crc32c --verify_fatal=1 | tee /tmp/fio.1m
            echo FIO=verified

            # Re-authentication of the live controller, asked for through sysfs (admin and every I/O queue).
            BEFORE=$(dmesg | grep -c "qid 0: authenticated with hash" || true)
            echo "{{secret}}" > /sys/class/nvme/${CTRL#/dev/}/dhchap_secret
            i=0
            while [ $i -lt 300 ] && [ "$(dmesg | grep -c "qid 0: authenticated with hash" || true)" -le "$BEFORE" ]; do sleep 0.1; i=$((i + 1)); done
            [ "$(dmesg | grep -c "qid 0: authenticated with hash" || true)" -gt "$BEFORE" ]
            fio --name=after --filename=$DEV --ioengine=libaio --direct=1 --iodepth=8 \
                --rw=randwrite --bs=4k --offset=64M --size=8M --verify=crc32c --verify_fatal=1 > /dev/null
            echo REAUTH=ok

            # SHA-512 with the null DH group, host secret only.
            connect {{sha512.SubsystemNqn}} {{host.CliArgs}} --dhchap-secret={{sha512Secret}}
            DEV2=$(ns_dev {{sha512.SubsystemNqn}})
            dd if=/dev/urandom of=/tmp/block bs=1M count=4
            dd if=/tmp/block of=$DEV2 bs=1M conv=fsync
            drop_caches
            [ "$(md5_of_range $DEV2 0 4)" = "$(md5sum < /tmp/block | cut -d' ' -f1)" ]
            echo SHA512=ok

            section auth_dmesg sh -c 'dmesg | grep -i -E "authenticat|dhchap" | tail -n 30'
            nvme disconnect-all
            echo DHCHAP=ok
            """;

        var result = await LinuxGuest.RunAsync(script, new GuestOptions { Image = GuestImage.Trixie, Cpus = 2, Timeout = TimeSpan.FromMinutes(8) });

        double Seconds(string key) => double.Parse(result.RequireValue(key), CultureInfo.InvariantCulture);
        var plainTimes = Enumerable.Range(1, 3).Select(i => Seconds($"PLAIN_{i}_SECONDS")).ToArray();
        var authTimes = Enumerable.Range(1, 3).Select(i => Seconds($"AUTH_{i}_SECONDS")).ToArray();
        TestContext.Out.WriteLine($"connect seconds, plain: {string.Join(' ', plainTimes)}; DH-HMAC-CHAP sha256/ffdhe2048 bidirectional, "
            + $"{result.Value("IO_QUEUES")} I/O queues: {string.Join(' ', authTimes)}; median ratio {Median(authTimes) / Median(plainTimes):F2}");
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(0), server.Describe(result));
            Assert.That(result.Value("SPOOF_DISCOVERY"), Is.EqualTo("hidden"), server.Describe(result));
            Assert.That(result.Value("FIO"), Is.EqualTo("verified"), server.Describe(result));
            Assert.That(result.Value("REAUTH"), Is.EqualTo("ok"), server.Describe(result));
            Assert.That(result.Value("SHA512"), Is.EqualTo("ok"), server.Describe(result));
            Assert.That(result.Value("DHCHAP"), Is.EqualTo("ok"), server.Describe(result));
        });
        Assert.That(server.Server.OutputTail(), Does.Not.Contain(secret[10..40]).And.Not.Contain(ctrlSecret[10..40]), "no secret in the server's output");
    }

    private static double Median(double[] values) => values.Order().ElementAt(values.Length / 2);
}
