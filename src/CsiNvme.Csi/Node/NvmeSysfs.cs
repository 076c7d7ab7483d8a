using System.Globalization;
using System.Text.RegularExpressions;

namespace CsiNvme.Csi.Node;

/// <summary>A fabrics controller as /sys/class/nvme/nvmeX shows it.</summary>
public sealed record NvmeControllerInfo(string Name, string SubsystemNqn, string HostNqn, string Transport, string Address, string State)
{
    public string? TransportAddress => AddressField("traddr");

    public int? TransportServiceId =>
        int.TryParse(AddressField("trsvcid"), NumberStyles.None, CultureInfo.InvariantCulture, out var port) ? port : null;

    /// <summary>States in which the kernel still owns (or is re-establishing) the association.</summary>
    public bool IsActive => State is "live" or "connecting" or "resetting" or "new";

    public bool IsLive => State == "live";

    public bool Matches(FabricsTarget target) =>
        string.Equals(Transport, "tcp", StringComparison.Ordinal) &&
        TransportServiceId == target.Port &&
        string.Equals(NormaliseAddress(TransportAddress), NormaliseAddress(target.Address), StringComparison.OrdinalIgnoreCase);

    // The kernel prints "traddr=A,trsvcid=P[,src_addr=S]" (fabrics.c, nvmf_get_address).
    private string? AddressField(string key)
    {
        foreach (var part in Address.Split(',', StringSplitOptions.TrimEntries))
        {
            var eq = part.IndexOf('=');
            if (eq > 0 && part.AsSpan(0, eq).SequenceEqual(key))
            {
                return part[(eq + 1)..];
            }
        }

        return null;
    }

    private static string? NormaliseAddress(string? address) =>
        address is not null && System.Net.IPAddress.TryParse(address.Trim('[', ']'), out var parsed) ? parsed.ToString() : address;
}

/// <summary>A namespace block device as /sys/block/X shows it.</summary>
public sealed record NvmeBlockDevice(string Name, int Major, int Minor, long SizeBytes)
{
    public ulong DeviceNumber => MakeDev((uint)Major, (uint)Minor);

    /// <summary>glibc's makedev (sys/sysmacros.h): the dev_t encoding of a major:minor pair.</summary>
    public static ulong MakeDev(uint major, uint minor) =>
        ((ulong)(major & 0xFFFFF000) << 32) | ((ulong)(major & 0xFFF) << 8) | ((ulong)(minor & 0xFFFFFF00) << 12) | (minor & 0xFF);
}

/// <summary>
/// Reads the kernel's view of NVMe controllers and namespaces from a sysfs tree. The root is a parameter
/// so the parsing is tested against a directory laid out like /sys.
/// </summary>
public sealed partial class NvmeSysfs(string sysRoot)
{
    public string Root { get; } = sysRoot;

    public string ClassNvme => Path.Combine(Root, "class", "nvme");

    public string Block => Path.Combine(Root, "block");

    /// <summary>Every NVMe controller the kernel knows, fabrics or not, in name order.</summary>
    public IReadOnlyList<NvmeControllerInfo> Controllers()
    {
        if (!Directory.Exists(ClassNvme))
        {
            return [];
        }

        var result = new List<NvmeControllerInfo>();
        foreach (var dir in Directory.EnumerateFileSystemEntries(ClassNvme))
        {
            var name = Path.GetFileName(dir);
            if (!ControllerName().IsMatch(name))
            {
                continue;
            }

            // A controller being deleted loses its attributes between listing and reading: skip it.
            var nqn = ReadAttribute(dir, "subsysnqn");
            if (nqn is null)
            {
                continue;
            }

            result.Add(new NvmeControllerInfo(
                name,
                nqn,
                ReadAttribute(dir, "hostnqn") ?? string.Empty,
                ReadAttribute(dir, "transport") ?? string.Empty,
                ReadAttribute(dir, "address") ?? string.Empty,
                ReadAttribute(dir, "state") ?? string.Empty));
        }

        result.Sort((a, b) => ControllerNumber(a.Name).CompareTo(ControllerNumber(b.Name)));
        return result;
    }

    /// <summary>The controllers of one subsystem that this host (by host NQN) has.</summary>
    public IReadOnlyList<NvmeControllerInfo> ControllersOf(string subsystemNqn, string hostNqn) =>
        Controllers().Where(c => c.SubsystemNqn == subsystemNqn && c.HostNqn == hostNqn).ToList();

    /// <summary>
    /// The namespace block device whose UUID or NGUID (either may be empty) is the volume's. Only whole
    /// namespace devices (nvmeXnY) count: with native multipath the per-path nvmeXcYnZ devices are hidden
    /// and the shared head is the one to use.
    /// </summary>
    public NvmeBlockDevice? FindNamespace(string? uuid, string? nguid)
    {
        var wantUuid = NormaliseId(uuid);
        var wantNguid = NormaliseId(nguid);
        if (wantUuid.Length == 0 && wantNguid.Length == 0)
        {
            throw new ArgumentException("a UUID or an NGUID is needed to find a namespace");
        }

        if (!Directory.Exists(Block))
        {
            return null;
        }

        foreach (var dir in Directory.EnumerateFileSystemEntries(Block).OrderBy(d => d, StringComparer.Ordinal))
        {
            var name = Path.GetFileName(dir);
            if (!NamespaceName().IsMatch(name) || !IdentifiersMatch(dir, wantUuid, wantNguid))
            {
                continue;
            }

            return ReadBlockDevice(name);
        }

        return null;
    }

    /// <summary>The block device's number and current size, or null once it is gone.</summary>
    public NvmeBlockDevice? ReadBlockDevice(string name)
    {
        var dir = Path.Combine(Block, name);
        var dev = ReadAttribute(dir, "dev");
        var sectors = ReadAttribute(dir, "size");
        if (dev is null || sectors is null)
        {
            return null;
        }

        var colon = dev.IndexOf(':');
        if (colon <= 0 ||
            !int.TryParse(dev.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var major) ||
            !int.TryParse(dev.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var minor) ||
            !long.TryParse(sectors, NumberStyles.None, CultureInfo.InvariantCulture, out var size))
        {
            throw new FormatException($"{dir}: unreadable dev '{dev}' or size '{sectors}'");
        }

        // /sys/block/X/size counts 512-byte sectors whatever the logical block size (block/genhd.c).
        return new NvmeBlockDevice(name, major, minor, size * 512);
    }

    /// <summary>Writes a controller attribute such as delete_controller or rescan_controller.</summary>
    public void WriteControllerAttribute(string controller, string attribute, string value)
    {
        // One write() of the whole value: these attributes act on the write, not on close.
        using var stream = new FileStream(Path.Combine(ClassNvme, controller, attribute), FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
        stream.Write(System.Text.Encoding.ASCII.GetBytes(value));
    }

    public bool ControllerExists(string controller) => Directory.Exists(Path.Combine(ClassNvme, controller));

    /// <summary>32 lowercase hex digits: sysfs prints NGUIDs and UUIDs as dashed UUIDs (%pU), the API without dashes.</summary>
    public static string NormaliseId(string? id) =>
        string.IsNullOrWhiteSpace(id) ? string.Empty : id.Trim().Replace("-", string.Empty, StringComparison.Ordinal).ToLowerInvariant();

    private static bool IdentifiersMatch(string dir, string wantUuid, string wantNguid)
    {
        if (wantUuid.Length > 0 && NormaliseId(ReadAttribute(dir, "uuid")) == wantUuid)
        {
            return true;
        }

        if (wantNguid.Length > 0 && NormaliseId(ReadAttribute(dir, "nguid")) == wantNguid)
        {
            return true;
        }

        // wwid is "uuid.<uuid>", "eui.<nguid>" or "eui.<eui64>" (core.c, wwid_show): the fallback when the
        // separate attributes are hidden.
        var wwid = ReadAttribute(dir, "wwid");
        if (wwid is null)
        {
            return false;
        }

        var dot = wwid.IndexOf('.');
        if (dot <= 0)
        {
            return false;
        }

        var kind = wwid[..dot];
        var value = NormaliseId(wwid[(dot + 1)..]);
        return (kind == "uuid" && wantUuid.Length > 0 && value == wantUuid) ||
               (kind == "eui" && wantNguid.Length > 0 && value == wantNguid);
    }

    internal static string? ReadAttribute(string dir, string name)
    {
        try
        {
            return File.ReadAllText(Path.Combine(dir, name)).Trim();
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static int ControllerNumber(string name) =>
        int.TryParse(name.AsSpan(4), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : int.MaxValue;

    [GeneratedRegex("^nvme[0-9]+$")]
    private static partial Regex ControllerName();

    [GeneratedRegex("^nvme[0-9]+n[0-9]+$")]
    private static partial Regex NamespaceName();
}
