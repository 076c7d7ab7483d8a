using System.Text.Json;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>
/// The unmodified Linux NVMe/TCP host (kernel nvme-tcp + nvme-cli, in a QEMU guest) against our
/// storage server on the host: discovery, connect, identify, fio with verification, ext4, discard,
/// flush, disconnect, and the data surviving a server restart — with and without digests.
/// </summary>
[TestFixture]
[Category("Guest")]
public sealed class KernelHostEndToEndTests
{
    private const ulong VolumeSize = 256UL << 20;

    // Layout of the 256 MiB volume: fio works on the first 192 MiB, ext4 then takes the first
    // 128 MiB, and a raw random pattern lives at 192..208 MiB, outside the file system.
    private const int PatternOffsetMiB = 192;
    private const int PatternLengthMiB = 16;

    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [TestCase(false, TestName = "Kernel host: discover, connect, identify, fio verify, ext4, discard, flush, restart")]
    [TestCase(true, TestName = "Kernel host with header and data digests and SQ flow control disabled: the same checks")]
    public async Task Full_host_workflow_survives_a_server_restart(bool digests)
    {
        // Debug logging makes the target report the digests it negotiated with each connection.
        await using var server = digests ? await ServerUnderTest.StartAsync("--log-level", "debug") : await ServerUnderTest.StartAsync();
        var host = NvmeHostIdentity.Create();
        var volume = await server.CreateVolumeAsync("e2e-main", VolumeSize, allowAnyHost: false, host);
        // The digest run also disables SQ flow control, so reads complete in their data PDU (C2HData SUCCESS), whose
        // data digest the kernel checks before it completes the request.
        var connectOptions = digests ? "-g -G --disable-sqflow" : string.Empty;

        var first = await LinuxGuest.RunAsync(
            FirstBootScript(volume, server.NvmePort, host, connectOptions),
            new GuestOptions { Timeout = TimeSpan.FromMinutes(8) });
        var timing = $"first guest: boot {first.BootTime?.TotalSeconds:F1}s total {first.Elapsed.TotalSeconds:F1}s; " +
                     $"fio 4k {first.Value("FIO_4K")} 128k {first.Value("FIO_128K")} 1M {first.Value("FIO_1M")}";
        TestContext.Out.WriteLine(timing);
        Assert.That(first.ExitCode, Is.EqualTo(0), server.Describe(first));

        if (digests)
        {
            Assert.That(server.Server.Output, Does.Contain("header digest True, data digest True"),
                "the target did not report digests on for the host's connections\n" + server.Server.OutputTail());
            Assert.That(server.Server.Output, Does.Contain("SQ flow control off"),
                "the target did not see SQ flow control disabled on the host's I/O queues\n" + server.Server.OutputTail());
        }

        AssertDiscoveryListsVolume(first.RequireSection("discover"), volume, server.NvmePort);
        AssertIdentifyController(first.RequireSection("idctrl"), volume);
        AssertIdentifyNamespace(first.RequireSection("idns"), first.RequireSection("nsdescs"), volume);
        AssertListShowsDevice(first.RequireSection("list"), first.RequireValue("DEV"), volume);
        Assert.That(first.Value("DEV_BYTES"), Is.EqualTo(VolumeSize.ToString(System.Globalization.CultureInfo.InvariantCulture)), first.Describe());
        var patternMd5 = first.RequireValue("PATTERN_MD5");
        var fileSums = first.RequireSection("filesums");
        Assert.That(fileSums.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(4), first.Describe());

        await server.RestartAsync();
        var reread = await server.Server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = volume.Name });
        Assert.Multiple(() =>
        {
            Assert.That(reread.SubsystemNqn, Is.EqualTo(volume.SubsystemNqn), "subsystem NQN after restart");
            Assert.That(reread.Nguid, Is.EqualTo(volume.Nguid), "NGUID after restart");
            Assert.That(reread.Uuid, Is.EqualTo(volume.Uuid), "UUID after restart");
            Assert.That(reread.AllowedHosts, Is.EquivalentTo(new[] { host.Nqn }), "allowed hosts after restart");
        });

        var second = await LinuxGuest.RunAsync(
            AfterRestartScript(volume, server.NvmePort, host, connectOptions, patternMd5),
            new GuestOptions
            {
                Timeout = TimeSpan.FromMinutes(4),
                TextFiles = new Dictionary<string, string> { ["/etc/expected.md5"] = fileSums + "\n" },
            });
        TestContext.Out.WriteLine($"after restart: boot {second.BootTime?.TotalSeconds:F1}s total {second.Elapsed.TotalSeconds:F1}s");
        Assert.Multiple(() =>
        {
            Assert.That(second.ExitCode, Is.EqualTo(0), server.Describe(second));
            Assert.That(second.Value("RESTART_CHECK"), Is.EqualTo("ok"), server.Describe(second));
        });
    }

    private static string FirstBootScript(Volume volume, int port, NvmeHostIdentity host, string connectOptions) =>
        GuestShell.Prelude + $$"""
        NQN={{volume.SubsystemNqn}}
        PORT={{port}}
        HOST="{{host.CliArgs}}"

        section discover nvme discover -t tcp -a $ADDR -s $PORT $HOST -o json
        nvme connect -t tcp -a $ADDR -s $PORT -n $NQN $HOST {{connectOptions}}
        DEV=$(ns_dev $NQN)
        CTRL=$(ctrl_dev $NQN)
        echo "DEV=$DEV"
        section list nvme list -o json
        section idctrl nvme id-ctrl $CTRL -o json
        section idns nvme id-ns $DEV -o json
        section nsdescs nvme ns-descs $DEV -o json
        echo "DEV_BYTES=$(blockdev --getsize64 $DEV)"
        echo "MAX_IO_KB=$(cat /sys/block/${DEV#/dev/}/queue/max_hw_sectors_kb)"
        echo "IO_QUEUES=$(($(cat /sys/class/nvme/${CTRL#/dev/}/queue_count) - 1))"

        # Random writes, each block carrying a crc32c that fio checks when it reads it back.
        fio --name=rand4k --filename=$DEV --ioengine=libaio --direct=1 --iodepth=16 \
            --rw=randwrite --bs=4k --offset=0 --size=64M --verify=crc32c --verify_fatal=1 | tee /tmp/fio.4k
        fio --name=rand128k --filename=$DEV --ioengine=libaio --direct=1 --iodepth=8 \
            --rw=randwrite --bs=128k --offset=64M --size=64M --verify=crc32c --verify_fatal=1 | tee /tmp/fio.128k
        # 1 MiB writes are far above the in-capsule data size: every one goes through R2T/H2CData.
        fio --name=seq1m --filename=$DEV --ioengine=libaio --direct=1 --iodepth=4 \
            --rw=write --bs=1M --offset=128M --size=64M --verify=crc32c --verify_fatal=1 | tee /tmp/fio.1m
        echo "FIO_4K=$(grep -m1 -o 'WRITE: bw=[^ ]*' /tmp/fio.4k | cut -d= -f2)"
        echo "FIO_128K=$(grep -m1 -o 'WRITE: bw=[^ ]*' /tmp/fio.128k | cut -d= -f2)"
        echo "FIO_1M=$(grep -m1 -o 'WRITE: bw=[^ ]*' /tmp/fio.1m | cut -d= -f2)"

        nvme flush $DEV

        # Deallocate: written blocks must read back as zeros afterwards.
        ZEROS_MD5=$(dd if=/dev/zero bs=1M count=8 2>/dev/null | md5sum | cut -d' ' -f1)
        dd if=/dev/urandom of=$DEV bs=1M seek=8 count=8 conv=fsync
        drop_caches
        [ "$(md5_of_range $DEV 8 8)" != "$ZEROS_MD5" ]
        blkdiscard -o $((8 << 20)) -l $((8 << 20)) $DEV
        drop_caches
        [ "$(md5_of_range $DEV 8 8)" = "$ZEROS_MD5" ]
        echo DISCARD=zeros

        # Raw pattern outside the file system, checked again after the server restarts.
        dd if=/dev/urandom of=/tmp/pattern bs=1M count={{PatternLengthMiB}}
        dd if=/tmp/pattern of=$DEV bs=1M seek={{PatternOffsetMiB}} conv=fsync
        drop_caches
        PATTERN_MD5=$(md5sum < /tmp/pattern | cut -d' ' -f1)
        [ "$(md5_of_range $DEV {{PatternOffsetMiB}} {{PatternLengthMiB}})" = "$PATTERN_MD5" ]
        echo "PATTERN_MD5=$PATTERN_MD5"

        mkfs.ext4 -F -q $DEV 128M
        mkdir -p /mnt/vol
        mount -t ext4 $DEV /mnt/vol
        dd if=/dev/urandom of=/mnt/vol/random.bin bs=1M count=12
        cp /usr/bin/fio /mnt/vol/fio.copy
        mkdir -p /mnt/vol/dir/sub
        seq 1 200000 > /mnt/vol/dir/sub/numbers.txt
        echo "written by the kernel host" > /mnt/vol/dir/hello.txt
        (cd /mnt/vol && md5sum random.bin fio.copy dir/sub/numbers.txt dir/hello.txt > /tmp/sums)
        sync
        umount /mnt/vol
        drop_caches
        mount -t ext4 $DEV /mnt/vol
        (cd /mnt/vol && md5sum -c /tmp/sums)
        umount /mnt/vol
        e2fsck -fn $DEV
        section filesums cat /tmp/sums

        nvme disconnect -n $NQN
        no_nvme_devices
        echo FIRST_BOOT=ok
        """;

    private static string AfterRestartScript(Volume volume, int port, NvmeHostIdentity host, string connectOptions, string patternMd5) =>
        GuestShell.Prelude + $$"""
        NQN={{volume.SubsystemNqn}}
        PORT={{port}}
        HOST="{{host.CliArgs}}"

        nvme connect -t tcp -a $ADDR -s $PORT -n $NQN $HOST {{connectOptions}}
        DEV=$(ns_dev $NQN)
        [ "$(md5_of_range $DEV {{PatternOffsetMiB}} {{PatternLengthMiB}})" = "{{patternMd5}}" ]
        e2fsck -fn $DEV
        mkdir -p /mnt/vol
        mount -t ext4 $DEV /mnt/vol
        (cd /mnt/vol && md5sum -c /etc/expected.md5)
        umount /mnt/vol
        nvme disconnect -n $NQN
        no_nvme_devices
        echo RESTART_CHECK=ok
        """;

    private static void AssertDiscoveryListsVolume(string json, Volume volume, int port)
    {
        using var doc = Parse(json, "nvme discover");
        var records = doc.RootElement.GetProperty("records").EnumerateArray().ToList();
        var ours = records.Where(r => r.GetProperty("subnqn").GetString() == volume.SubsystemNqn).ToList();
        Assert.That(ours, Has.Count.GreaterThanOrEqualTo(1), $"discovery log lacks {volume.SubsystemNqn}:\n{json}");
        Assert.Multiple(() =>
        {
            Assert.That(ours[0].GetProperty("trtype").GetString(), Is.EqualTo("tcp"), json);
            Assert.That(ours[0].GetProperty("adrfam").GetString(), Is.EqualTo("ipv4"), json);
            Assert.That(ours[0].GetProperty("trsvcid").GetString()?.Trim(), Is.EqualTo(port.ToString(System.Globalization.CultureInfo.InvariantCulture)), json);
            Assert.That(ours[0].GetProperty("subtype").GetString(), Is.EqualTo("nvme subsystem"), json);
        });
    }

    private static void AssertListShowsDevice(string json, string device, Volume volume)
    {
        using var doc = Parse(json, "nvme list");
        var entry = doc.RootElement.GetProperty("Devices").EnumerateArray()
            .Where(d => d.GetProperty("DevicePath").GetString() == device)
            .Select(d => (JsonElement?)d)
            .FirstOrDefault();
        Assert.That(entry, Is.Not.Null, $"nvme list does not show {device}:\n{json}");
        var d = entry!.Value;
        Assert.Multiple(() =>
        {
            Assert.That(d.GetProperty("ModelNumber").GetString()?.Trim(), Is.Not.Empty, json);
            Assert.That(d.GetProperty("SerialNumber").GetString()?.Trim(), Is.Not.Empty, json);
            Assert.That(d.GetProperty("NameSpace").GetInt32(), Is.EqualTo(1), json);
            Assert.That(d.GetProperty("PhysicalSize").GetUInt64(), Is.EqualTo(volume.SizeBytes), json);
            Assert.That(d.GetProperty("SectorSize").GetUInt32(), Is.EqualTo(volume.BlockSize), json);
        });
    }

    private static void AssertIdentifyController(string json, Volume volume)
    {
        using var doc = Parse(json, "nvme id-ctrl");
        var root = doc.RootElement;
        var mdts = root.GetProperty("mdts").GetInt32();
        var cntlid = root.GetProperty("cntlid").GetInt32();
        TestContext.Out.WriteLine(
            $"id-ctrl: mn '{root.GetProperty("mn").GetString()?.Trim()}' cntlid {cntlid} mdts {mdts} " +
            $"ioccsz {root.GetProperty("ioccsz")} kas {root.GetProperty("kas")} cmic {root.GetProperty("cmic")} oncs {root.GetProperty("oncs")} ver 0x{root.GetProperty("ver").GetInt64():x}");
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("mn").GetString()?.Trim(), Is.Not.Empty, "model number\n" + json);
            Assert.That(root.GetProperty("sn").GetString()?.Trim(), Is.Not.Empty, "serial number\n" + json);
            Assert.That(root.GetProperty("fr").GetString()?.Trim(), Is.Not.Empty, "firmware revision\n" + json);
            // Dynamic controller model: 1..0xFFEF (NVMe Base 2.0, 3.1.2 / Fabrics 1.1, 3.3).
            Assert.That(cntlid, Is.InRange(1, 0xFFEF), "cntlid\n" + json);
            // 0 = no limit; otherwise at least 128 KiB with 4 KiB pages so large I/O is not split absurdly.
            Assert.That(mdts == 0 || mdts >= 5, Is.True, $"mdts={mdts}\n" + json);
            Assert.That(root.GetProperty("ver").GetInt64(), Is.GreaterThanOrEqualTo(0x10300), "version\n" + json);
            Assert.That(root.GetProperty("subnqn").GetString(), Is.EqualTo(volume.SubsystemNqn), "subnqn\n" + json);
            Assert.That(root.GetProperty("cntrltype").GetInt32(), Is.EqualTo(1), "I/O controller\n" + json);
            Assert.That(root.GetProperty("nn").GetInt64(), Is.GreaterThanOrEqualTo(1), "nn\n" + json);
            Assert.That(root.GetProperty("kas").GetInt32(), Is.GreaterThan(0), "keep alive support\n" + json);
            Assert.That(root.GetProperty("cmic").GetInt32() & 0x2, Is.Not.Zero, "cmic: several controllers\n" + json);
            Assert.That(root.GetProperty("oncs").GetInt32() & 0x4, Is.Not.Zero, "oncs: dataset management\n" + json);
            Assert.That(root.GetProperty("sgls").GetInt64() & 0x3, Is.Not.Zero, "sgls\n" + json);
            Assert.That(root.GetProperty("ioccsz").GetInt32(), Is.GreaterThanOrEqualTo(4), "ioccsz\n" + json);
            Assert.That(root.GetProperty("iorcsz").GetInt32(), Is.GreaterThanOrEqualTo(1), "iorcsz\n" + json);
        });
    }

    private static void AssertIdentifyNamespace(string idNsJson, string descriptorsJson, Volume volume)
    {
        using var doc = Parse(idNsJson, "nvme id-ns");
        var root = doc.RootElement;
        var flbas = root.GetProperty("flbas").GetInt32() & 0xF;
        var dataShift = root.GetProperty("lbafs")[flbas].GetProperty("ds").GetInt32();
        var blockSize = 1UL << dataShift;
        TestContext.Out.WriteLine($"id-ns: nsze {root.GetProperty("nsze")} block {blockSize} nguid {root.GetProperty("nguid")} (API {volume.Nguid})");
        Assert.Multiple(() =>
        {
            Assert.That(blockSize, Is.EqualTo((ulong)volume.BlockSize), "LBA data size\n" + idNsJson);
            Assert.That(root.GetProperty("nsze").GetUInt64(), Is.EqualTo(volume.SizeBytes / blockSize), "nsze\n" + idNsJson);
            Assert.That(root.GetProperty("ncap").GetUInt64(), Is.EqualTo(volume.SizeBytes / blockSize), "ncap\n" + idNsJson);
            Assert.That(root.GetProperty("nmic").GetInt32() & 0x1, Is.Not.Zero, "nmic: shared namespace\n" + idNsJson);
            Assert.That(HexDigits(root.GetProperty("nguid").GetString()), Is.EqualTo(HexDigits(volume.Nguid)), "nguid\n" + idNsJson);
        });

        using var descriptors = Parse(descriptorsJson, "nvme ns-descs");
        var uuids = descriptors.RootElement.GetProperty("ns-descs").EnumerateArray()
            .Where(d => d.TryGetProperty("uuid", out _))
            .Select(d => Guid.Parse(d.GetProperty("uuid").GetString()!))
            .ToList();
        Assert.That(uuids, Is.EqualTo(new[] { Guid.Parse(volume.Uuid) }), "namespace UUID descriptor\n" + descriptorsJson);
    }

    private static string HexDigits(string? text) =>
        new string((text ?? string.Empty).Where(Uri.IsHexDigit).Select(char.ToLowerInvariant).ToArray()).TrimStart('0') is { Length: > 0 } s
            ? s
            : "0";

    private static JsonDocument Parse(string json, string what)
    {
        try
        {
            return JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new AssertionException($"{what} printed no valid JSON ({e.Message}):\n{json}");
        }
    }
}
