namespace CsiNvme.Csi.Node;

/// <summary>What kind of file a path is, and for a device node which device.</summary>
public enum NodeFileKind
{
    Missing,
    Directory,
    RegularFile,
    BlockDevice,
    Other,
}

public readonly record struct NodeFileStatus(NodeFileKind Kind, ulong DeviceNumber, ulong ContainingDevice);

/// <summary>statfs(2) of a mounted filesystem, in bytes and inodes.</summary>
public readonly record struct FilesystemUsage(long TotalBytes, long AvailableBytes, long UsedBytes, long TotalInodes, long FreeInodes, long UsedInodes);

public sealed record ToolResult(int ExitCode, string Output);

/// <summary>A failed system call, with the kernel's errno and its message.</summary>
public sealed class NodeSystemException(string operation, int errno, string message)
    : IOException($"{operation}: {message} (errno {errno})")
{
    public const int ENOENT = 2;
    public const int EINVAL = 22;
    public const int EBUSY = 16;
    public const int EALREADY = 114;

    public string Operation { get; } = operation;

    public int Errno { get; } = errno;
}

/// <summary>
/// The Linux facilities the node service acts through: the fabrics device, sysfs, mounts, device nodes and
/// the filesystem tools. One implementation, <see cref="LinuxNodePlatform"/>, whose roots are parameters,
/// so unit tests point it at a directory laid out like /sys.
/// </summary>
public interface INodePlatform
{
    NvmeSysfs Sysfs { get; }

    /// <summary>Where device nodes live (/dev).</summary>
    string DeviceDirectory { get; }

    /// <summary>The kernel's NVMe over Fabrics device (/dev/nvme-fabrics): there once nvme-fabrics is loaded.</summary>
    string FabricsDevice { get; }

    /// <summary>Writes a connect option string to /dev/nvme-fabrics; returns the new controller's name (nvmeN).</summary>
    string ConnectFabrics(string options);

    IReadOnlyList<MountEntry> Mounts();

    void Mount(string? source, string target, string? fsType, ulong flags, string? data);

    /// <summary>umount2(2); returns false when <paramref name="target"/> was not a mount point.</summary>
    bool Unmount(string target);

    void MakeBlockDeviceNode(string path, int major, int minor);

    NodeFileStatus Stat(string path);

    FilesystemUsage StatFs(string path);

    /// <summary>access(2) with W_OK: null when <paramref name="path"/> can be written, otherwise why not.</summary>
    string? WhyNotWritable(string path);

    /// <summary>The full path of a tool on PATH, or null.</summary>
    string? FindTool(string name);

    Task<ToolResult> RunToolAsync(string tool, IReadOnlyList<string> arguments, TimeSpan timeout, CancellationToken cancellationToken);
}
