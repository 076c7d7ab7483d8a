using CsiNvme.TestSupport;

namespace CsiNvme.Csi.Tests.Node;

/// <summary>
/// A directory laid out like the parts of /sys (and /dev) the node reads: /sys/class/nvme/nvmeX with its
/// attributes and /sys/block/nvmeXnY with identifiers, dev and size, written as the kernel formats them.
/// </summary>
internal sealed class FakeSysfs : IDisposable
{
    private readonly TempDirectory _temp = new("fake-sysfs");

    public FakeSysfs()
    {
        Directory.CreateDirectory(SysRoot);
        Directory.CreateDirectory(DevRoot);
    }

    public string SysRoot => _temp.Combine("sys");

    public string DevRoot => _temp.Combine("dev");

    public string Root => _temp.Path;

    public void AddController(string name, string subsysNqn, string hostNqn, string address, string state = "live", string transport = "tcp")
    {
        var dir = Path.Combine(SysRoot, "class", "nvme", name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "subsysnqn"), subsysNqn + "\n");
        File.WriteAllText(Path.Combine(dir, "hostnqn"), hostNqn + "\n");
        File.WriteAllText(Path.Combine(dir, "address"), address + "\n");
        File.WriteAllText(Path.Combine(dir, "state"), state + "\n");
        File.WriteAllText(Path.Combine(dir, "transport"), transport + "\n");
        File.WriteAllText(Path.Combine(dir, "delete_controller"), string.Empty);
        File.WriteAllText(Path.Combine(dir, "rescan_controller"), string.Empty);
        if (!File.Exists(Path.Combine(dir, "ctrl_loss_tmo")))
        {
            File.WriteAllText(Path.Combine(dir, "ctrl_loss_tmo"), "600\n");
        }
    }

    /// <summary>
    /// A controller's own device of a namespace, as native multipath makes it: /sys/class/nvme/CTRL/nvmeScKnN with the
    /// namespace's identifiers and the path's ANA state (null: the kernel prints none, as for a subsystem without ANA).
    /// </summary>
    public void AddPath(string controller, string name, string? uuid, string? anaState)
    {
        var dir = Path.Combine(SysRoot, "class", "nvme", controller, name);
        Directory.CreateDirectory(dir);
        if (uuid is not null)
        {
            File.WriteAllText(Path.Combine(dir, "uuid"), Dashed(uuid) + "\n");
            File.WriteAllText(Path.Combine(dir, "wwid"), "uuid." + Dashed(uuid) + "\n");
        }

        if (anaState is not null)
        {
            File.WriteAllText(Path.Combine(dir, "ana_state"), anaState + "\n");
        }
    }

    public void SetControllerState(string name, string state) =>
        File.WriteAllText(Path.Combine(SysRoot, "class", "nvme", name, "state"), state + "\n");

    /// <summary>nvme_core's multipath parameter, Y or N.</summary>
    public void SetNativeMultipath(bool on)
    {
        var dir = Path.Combine(SysRoot, "module", "nvme_core", "parameters");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "multipath"), on ? "Y\n" : "N\n");
    }

    /// <summary>
    /// A stand-in for /dev/nvme-fabrics (a regular file), for checks that only look for it, such as Probe; a
    /// connect through it does not work.
    /// </summary>
    public void AddFabricsDevice() => File.WriteAllText(Path.Combine(DevRoot, "nvme-fabrics"), string.Empty);

    public void RemoveController(string name) => Directory.Delete(Path.Combine(SysRoot, "class", "nvme", name), recursive: true);

    /// <summary>A namespace disk; uuid and nguid as 32 hex digits (printed dashed, %pU, as the kernel does), null to hide.</summary>
    public void AddNamespace(string name, string? uuid, string? nguid, int major, int minor, long sectors, string? wwid = null)
    {
        var dir = Path.Combine(SysRoot, "block", name);
        Directory.CreateDirectory(dir);
        if (uuid is not null)
        {
            File.WriteAllText(Path.Combine(dir, "uuid"), Dashed(uuid) + "\n");
        }

        if (nguid is not null)
        {
            File.WriteAllText(Path.Combine(dir, "nguid"), Dashed(nguid) + "\n");
        }

        if (wwid is not null)
        {
            File.WriteAllText(Path.Combine(dir, "wwid"), wwid + "\n");
        }

        File.WriteAllText(Path.Combine(dir, "dev"), $"{major}:{minor}\n");
        File.WriteAllText(Path.Combine(dir, "size"), $"{sectors}\n");
    }

    public void SetSize(string name, long sectors) => File.WriteAllText(Path.Combine(SysRoot, "block", name, "size"), $"{sectors}\n");

    public string ReadControllerAttribute(string name, string attribute) =>
        File.ReadAllText(Path.Combine(SysRoot, "class", "nvme", name, attribute));

    public static string Dashed(string hex32) =>
        $"{hex32[..8]}-{hex32[8..12]}-{hex32[12..16]}-{hex32[16..20]}-{hex32[20..]}";

    public void Dispose() => _temp.Dispose();
}
