using System.Net;
using System.Net.Sockets;
using System.Text;
using CsiNvme.Protocol.Logs;
using CsiNvme.TestSupport;

namespace CsiNvme.Host.Tests;

/// <summary>
/// Our host against an implementation we did not write: the Linux kernel's nvmet-tcp target inside the test guest,
/// reached through a QEMU port forward. The guest script sets the target up through configfs, announces it, and
/// waits until the host writes a stop marker onto the namespace.
/// </summary>
[TestFixture]
[Category("Guest")]
public sealed class KernelTargetTests
{
    private const string Nqn = "nqn.2014-08.io.csinvme:kernel-target";
    private const string StopMarker = "CSINVME-HOST-DONE";
    private const int StopBlock = 100_000;

    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [Test]
    public async Task HostDiscoversConnectsIdentifiesAndVerifiesIoAgainstKernelNvmet()
    {
        var host = NvmeHostIdentity.Create();
        var hostPort = FreePort();
        var script = $$"""
            set -x
            truncate -s 64M /tmp/backing.img
            LOOP=$(losetup -f)
            losetup "$LOOP" /tmp/backing.img
            cd /sys/kernel/config/nvmet
            mkdir hosts/{{host.Nqn}}
            mkdir subsystems/{{Nqn}}
            echo 0 > subsystems/{{Nqn}}/attr_allow_any_host
            ln -s /sys/kernel/config/nvmet/hosts/{{host.Nqn}} subsystems/{{Nqn}}/allowed_hosts/{{host.Nqn}}
            mkdir subsystems/{{Nqn}}/namespaces/1
            echo -n "$LOOP" > subsystems/{{Nqn}}/namespaces/1/device_path
            echo 1 > subsystems/{{Nqn}}/namespaces/1/enable
            mkdir ports/1
            echo ipv4 > ports/1/addr_adrfam
            echo tcp > ports/1/addr_trtype
            echo 10.0.2.15 > ports/1/addr_traddr
            echo 4420 > ports/1/addr_trsvcid
            ln -s /sys/kernel/config/nvmet/subsystems/{{Nqn}} ports/1/subsystems/{{Nqn}}
            echo NVMET-READY=1
            set +x
            # Bounded wait for the host's stop marker on the namespace.
            for i in $(seq 1 1200); do
                if dd if=/tmp/backing.img bs=512 skip={{StopBlock}} count=1 2>/dev/null | grep -q {{StopMarker}}; then
                    echo STOP-SEEN=1
                    break
                fi
                sleep 0.2
            done
            echo "NVMET-CONTROLLERS=$(ls /sys/kernel/config/nvmet/subsystems/{{Nqn}}/ 2>/dev/null | wc -l)"
            dmesg | grep -i nvmet | tail -n 20
            """;

        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var guest = LinuxGuest.RunAsync(script, new GuestOptions
        {
            Timeout = TimeSpan.FromMinutes(6),
            HostForwards = new Dictionary<int, int> { [hostPort] = 4420 },
            OutputLine = line =>
            {
                if (line.Contains("NVMET-READY=1", StringComparison.Ordinal))
                {
                    ready.TrySetResult();
                }
            },
        });
        var readyOrDone = await Task.WhenAny(ready.Task, guest, Task.Delay(TimeSpan.FromMinutes(5)));
        Assert.That(readyOrDone, Is.SameAs(ready.Task), guest.IsCompleted ? (await guest).Describe() : "guest target not ready in time");

        var endpoint = new IPEndPoint(IPAddress.Loopback, hostPort);
        try
        {
            var options = new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id, IoQueueCount = 2, KeepAliveTimeout = TimeSpan.FromSeconds(5) };
            var log = await new NvmeTcpHost(options).DiscoverAsync(endpoint);
            Assert.That(log.Entries.Select(e => e.SubsystemNqn), Does.Contain(Nqn), "the kernel's discovery log lists the subsystem");
            Assert.That(log.Entries.First(e => e.SubsystemNqn == Nqn).TransportType, Is.EqualTo(TransportType.Tcp));

            await using (var controller = await new NvmeTcpHost(options).ConnectAsync(endpoint, Nqn))
            {
                Assert.Multiple(() =>
                {
                    Assert.That(controller.Identify.SubsystemNqn, Is.EqualTo(Nqn));
                    Assert.That(controller.Identify.ModelNumber, Is.EqualTo("Linux"), "nvmet's model number");
                    Assert.That(controller.IoQueues, Has.Count.EqualTo(2));
                    Assert.That(controller.Namespaces, Has.Count.EqualTo(1));
                });
                var ns = controller.Namespaces[0];
                Assert.That(ns.SizeBytes, Is.EqualTo(64L << 20));
                TestContext.Out.WriteLine($"kernel target: VS {controller.Version:X8}, MDTS {controller.Identify.MaxDataTransferSizeExponent}, IOCCSZ {controller.Identify.IoQueueCommandCapsuleSize}, in-capsule {controller.IoQueues[0].InCapsuleDataLimit}, {ns}");

                // Small in-capsule writes and large R2T writes at several queue depths, read back and compared.
                await WriteAndVerifyAsync(controller.IoQueues[0], ns, ioSize: 4096, depth: 16, firstLba: 0);
                await WriteAndVerifyAsync(controller.IoQueues[1], ns, ioSize: 128 * 1024, depth: 4, firstLba: 8192);
                Assert.That((await controller.IoQueues[0].FlushAsync(ns)).Status, Is.EqualTo(NvmeStatus.Success));
            }

            // Digests against the kernel's CRC32C.
            options.HeaderDigest = true;
            options.DataDigest = true;
            options.IoQueueCount = 1;
            await using (var digested = await new NvmeTcpHost(options).ConnectAsync(endpoint, Nqn))
            {
                var ns = digested.Namespaces[0];
                await WriteAndVerifyAsync(digested.IoQueues[0], ns, ioSize: 64 * 1024, depth: 4, firstLba: 20000);
                var marker = new byte[512];
                Encoding.ASCII.GetBytes(StopMarker, marker);
                Assert.That((await digested.IoQueues[0].WriteAsync(ns, StopBlock, marker, forceUnitAccess: true)).Status, Is.EqualTo(NvmeStatus.Success));
            }
        }
        finally
        {
            var result = await guest;
            TestContext.Out.WriteLine($"guest: boot {result.BootTime?.TotalSeconds:F1}s, total {result.Elapsed.TotalSeconds:F1}s");
            Assert.That(result.Value("STOP-SEEN"), Is.EqualTo("1"), result.Describe());
        }
    }

    private static async Task WriteAndVerifyAsync(IoQueue queue, NvmeNamespace ns, int ioSize, int depth, ulong firstLba)
    {
        var random = new Random(ioSize + depth);
        var data = Enumerable.Range(0, depth).Select(_ =>
        {
            var buffer = new byte[ioSize];
            random.NextBytes(buffer);
            return buffer;
        }).ToArray();
        var blocks = (ulong)(ioSize / ns.BlockSize);
        var writes = await Task.WhenAll(data.Select((d, i) => queue.WriteAsync(ns, firstLba + (ulong)i * blocks, d).AsTask()));
        Assert.That(writes.Select(w => w.Status), Is.All.EqualTo(NvmeStatus.Success), $"{ioSize}-byte writes at QD {depth}");

        var back = data.Select(_ => new byte[ioSize]).ToArray();
        var reads = await Task.WhenAll(back.Select((b, i) => queue.ReadAsync(ns, firstLba + (ulong)i * blocks, b).AsTask()));
        Assert.That(reads.Select(r => r.Status), Is.All.EqualTo(NvmeStatus.Success), $"{ioSize}-byte reads at QD {depth}");
        for (var i = 0; i < depth; i++)
        {
            Assert.That(back[i], Is.EqualTo(data[i]), $"{ioSize}-byte I/O {i}");
        }
    }

    private static int FreePort()
    {
        using var probe = new Socket(System.Net.Sockets.AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }
}
