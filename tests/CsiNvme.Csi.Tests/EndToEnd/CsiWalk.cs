using System.Diagnostics;
using Csi.V1;
using CsiNvme.TestSupport;
using Google.Protobuf.Collections;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.EndToEnd;

/// <summary>Request builders and guest checks shared by the node end-to-end tests.</summary>
internal static class CsiWalk
{
    public const long MiB = 1L << 20;

    public static VolumeCapability Block(VolumeCapability.Types.AccessMode.Types.Mode mode = VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeWriter) =>
        new() { Block = new VolumeCapability.Types.BlockVolume(), AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode } };

    public static VolumeCapability Ext4(params string[] mountFlags)
    {
        var mount = new VolumeCapability.Types.MountVolume { FsType = "ext4" };
        mount.MountFlags.AddRange(mountFlags);
        return new VolumeCapability
        {
            Mount = mount,
            AccessMode = new VolumeCapability.Types.AccessMode { Mode = VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeWriter },
        };
    }

    public static CreateVolumeRequest Create(string name, long bytes, VolumeCapability capability) => new()
    {
        Name = name,
        CapacityRange = new CapacityRange { RequiredBytes = bytes },
        VolumeCapabilities = { capability },
        // Short timeouts keep a lost connection from stalling a test for the production defaults' minutes.
        Parameters = { ["ctrlLossTmo"] = "30", ["reconnectDelay"] = "2", ["fastIoFailTmo"] = "5" },
    };

    /// <summary>
    /// The guest reaches the host's loopback listeners through QEMU's NAT at 10.0.2.2, so the target
    /// addresses the server reports (127.0.0.1:PORT) are rewritten the way a CO behind NAT would see them.
    /// </summary>
    public static MapField<string, string> ForGuest(MapField<string, string> publishContext)
    {
        var copy = new MapField<string, string>();
        foreach (var (key, value) in publishContext)
        {
            copy[key] = key == "targets" ? value.Replace("127.0.0.1:", LinuxGuest.HostAddress + ":", StringComparison.Ordinal) : value;
        }

        return copy;
    }

    /// <summary>NVMe controllers, NVMe device nodes and mounts of NVMe devices or test paths left in the guest.</summary>
    public const string LeftoversCommand = """
        c=""; for x in /sys/class/nvme/nvme*; do [ -e "$x" ] && c="$c ${x##*/}"; done
        d=""; for x in /dev/nvme[0-9]*; do [ -e "$x" ] && d="$d ${x##*/}"; done
        m=$(grep -E '^/dev/nvme| /csi-e2e/' /proc/mounts | tr '\n' ';')
        echo "controllers=[$c] devices=[$d] mounts=[$m]"
        """;

    public const string NothingLeft = "controllers=[] devices=[] mounts=[]";

    /// <summary>The value of the last KEY=VALUE line of a guest command's output.</summary>
    public static string Value(string output, string key)
    {
        var prefix = key + "=";
        return output.Split('\n').LastOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal))?[prefix.Length..].Trim()
            ?? throw new InvalidOperationException($"no {key}= in guest output:\n{output}");
    }

    /// <summary>Times each CSI call for the report.</summary>
    public sealed class Timings
    {
        private readonly List<string> _entries = [];

        public async Task<T> Time<T>(string what, Func<Task<T>> call)
        {
            var stopwatch = Stopwatch.StartNew();
            var result = await call();
            _entries.Add($"{what} {stopwatch.Elapsed.TotalSeconds:F2}s");
            return result;
        }

        public override string ToString() => string.Join(", ", _entries);
    }
}
