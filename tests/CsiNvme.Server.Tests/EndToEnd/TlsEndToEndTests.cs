using System.Net;
using CsiNvme.Protocol.Tls;
using CsiNvme.Storage;
using CsiNvme.Target;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>
/// NVMe/TCP TLS with the real Linux host: Debian 13's 6.12 kernel, tlshd (ktls-utils) doing the handshake for it and
/// Debian 13's nvme-cli putting the PSK into the .nvme keyring (the trixie guest image). The target runs in this
/// process on 127.0.0.1, which the guest reaches as 10.0.2.2.
/// </summary>
[TestFixture]
[Category("Guest")]
public sealed class TlsEndToEndTests
{
    private const string SubsystemNqn = "nqn.2026-11.io.csinvme:tls-volume";

    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync(GuestImage.Trixie);

    [Test]
    public async Task Linux_connects_with_tls_and_its_psk_runs_fio_verify_and_is_refused_in_plaintext_or_with_a_wrong_psk()
    {
        var host = NvmeHostIdentity.Create();
        var psk = TlsPsk.Generate();
        var wrong = TlsPsk.Generate();
        var options = new NvmeTargetOptions();
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, 0));
        using var logs = LoggerFactory.Create(b => b.AddProvider(new TestContextLoggerProvider()));
        await using var target = new NvmeTarget(options, logs);
        var subsystem = target.AddSubsystem(new Subsystem(SubsystemNqn, "csinvme-tls", allowAnyHost: false, [host.Nqn]));
        subsystem.AddNamespace(new TargetNamespace(1, new MemoryBlockVolume(64L << 20, 512), Guid.NewGuid()));
        subsystem.SetHostTlsPsk(host.Nqn, psk);
        subsystem.SetTlsRequired(true);
        var port = target.Start()[0].Port;

        var script = GuestShell.Prelude + $$"""
            PORT={{port}}
            # tlshd links the .nvme keyring (where nvme-cli puts the PSK) into its session keyring to read the key the
            # kernel names in its handshake request.
            printf '[debug]\nloglevel=7\ntls=0\nnl=0\n[authenticate]\nkeyrings=.nvme\n' > /etc/tlshd.conf
            tlshd -s -c /etc/tlshd.conf &
            sleep 1
            connect() {
                timeout 90 nvme-tls connect -t tcp -a $ADDR -s $PORT -n {{SubsystemNqn}} {{host.CliArgs}} "$@"
            }
            section discovery nvme-tls discover -t tcp -a $ADDR -s $PORT {{host.CliArgs}} || true

            if connect; then echo PLAINTEXT=connected; exit 1; fi
            echo PLAINTEXT=refused
            no_nvme_devices

            if connect --tls --tls-key={{wrong.Format()}}; then echo WRONG_PSK=connected; exit 1; fi
            echo WRONG_PSK=refused
            no_nvme_devices

            section keys cat /proc/keys || true
            connect --tls --tls-key={{psk.Format()}}
            DEV=$(ns_dev {{SubsystemNqn}})
            section tls cat /sys/class/nvme/nvme0/tls_key /sys/class/nvme/nvme0/tls_configured_key 2>/dev/null || true
            fio --name=verify --filename=$DEV --rw=randwrite --bs=4k --size=32M --ioengine=libaio --iodepth=16 --direct=1 \
                --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 --output-format=terse > /tmp/fio.out
            echo FIO=ok
            nvme-tls disconnect -n {{SubsystemNqn}}
            echo TLS=ok
            """;

        var result = await LinuxGuest.RunAsync(script, new GuestOptions
        {
            Image = GuestImage.Trixie,
            Timeout = TimeSpan.FromMinutes(6),
            OutputLine = TestContext.Progress.WriteLine,
        });

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(0), result.Output);
            Assert.That(result.Value("PLAINTEXT"), Is.EqualTo("refused"), result.Output);
            Assert.That(result.Value("WRONG_PSK"), Is.EqualTo("refused"), result.Output);
            Assert.That(result.Value("FIO"), Is.EqualTo("ok"), result.Output);
            Assert.That(result.Value("TLS"), Is.EqualTo("ok"), result.Output);
        });
    }
}
