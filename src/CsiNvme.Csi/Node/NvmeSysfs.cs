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

/// <summary>
/// A controller's own device of a namespace: with native multipath the hidden per-path device nvmeScKnN under the
/// controller (/sys/class/nvme/nvmeK/nvmeScKnN), without it the controller's nvmeKnN. <paramref name="AnaState"/> is the
/// kernel's view of the path's ANA group (optimized, non-optimized, inaccessible, persistent-loss, change), null when
/// the controller does not report ANA.
/// </summary>
public sealed record NvmeNamespacePath(string Name, string? AnaState);

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

    /// <summary>
    /// The kernel's nvme_core.multipath parameter: true when native multipath joins the controllers of a subsystem under
    /// one device, false when every controller gets its own, null when it cannot be read (nvme-core not loaded).
    /// </summary>
    public bool? NativeMultipath =>
        ReadAttribute(Path.Combine(Root, "module", "nvme_core", "parameters"), "multipath") switch
        {
            "Y" or "1" => true,
            "N" or "0" => false,
            _ => null,
        };

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
    public NvmeBlockDevice? FindNamespace(string? uuid, string? nguid) => FindNamespaces(uuid, nguid).FirstOrDefault();

    /// <summary>
    /// Every whole namespace device carrying the UUID or NGUID, in name order. More than one means the controllers of the
    /// subsystem were not joined under one multipath device (native multipath off): each is a path of its own.
    /// </summary>
    public IEnumerable<NvmeBlockDevice> FindNamespaces(string? uuid, string? nguid)
    {
        var wantUuid = NormaliseId(uuid);
        var wantNguid = NormaliseId(nguid);
        if (wantUuid.Length == 0 && wantNguid.Length == 0)
        {
            throw new ArgumentException("a UUID or an NGUID is needed to find a namespace");
        }

        return Enumerate();

        IEnumerable<NvmeBlockDevice> Enumerate()
        {
            if (!Directory.Exists(Block))
            {
                yield break;
            }

            foreach (var dir in Directory.EnumerateFileSystemEntries(Block).OrderBy(d => d, StringComparer.Ordinal))
            {
                var name = Path.GetFileName(dir);
                if (NamespaceName().IsMatch(name) && IdentifiersMatch(dir, wantUuid, wantNguid) && ReadBlockDevice(name) is { } device)
                {
                    yield return device;
                }
            }
        }
    }

    /// <summary>
    /// The controller's device of the namespace with the UUID or NGUID and its ANA state; null while the controller has
    /// not attached the namespace (still connecting for the first time) or once it is gone. The kernel keeps the device of
    /// a controller that is reconnecting, with the ANA state it last read.
    /// </summary>
    public NvmeNamespacePath? NamespacePathOf(string controller, string? uuid, string? nguid)
    {
        var wantUuid = NormaliseId(uuid);
        var wantNguid = NormaliseId(nguid);
        var dir = Path.Combine(ClassNvme, controller);
        try
        {
            foreach (var entry in Directory.EnumerateDirectories(dir).OrderBy(d => d, StringComparer.Ordinal))
            {
                var name = Path.GetFileName(entry);
                if (PathName().IsMatch(name) && IdentifiersMatch(entry, wantUuid, wantNguid))
                {
                    return new NvmeNamespacePath(name, ReadAttribute(entry, "ana_state"));
                }
            }
        }
        catch (DirectoryNotFoundException)
        {
            // Deleted meanwhile.
        }

        return null;
    }

    /// <summary>A controller attribute such as ctrl_loss_tmo ("off" or seconds), or null once the controller is gone.</summary>
    public string? ReadControllerAttribute(string controller, string attribute) => ReadAttribute(Path.Combine(ClassNvme, controller), attribute);

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

    // nvmeScKnN under a controller with native multipath, nvmeKnN without it (multipath.c, nvme_set_disk_name).
    [GeneratedRegex("^nvme[0-9]+(c[0-9]+)?n[0-9]+$")]
    private static partial Regex PathName();
}
