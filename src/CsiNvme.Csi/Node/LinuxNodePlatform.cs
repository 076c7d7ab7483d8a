using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace CsiNvme.Csi.Node;

/// <summary>The node's Linux facilities through system calls (LibraryImport) and sysfs files.</summary>
public sealed partial class LinuxNodePlatform : INodePlatform
{
    // Mount flags (include/uapi/linux/mount.h).
    public const ulong MS_RDONLY = 1;
    public const ulong MS_NOSUID = 2;
    public const ulong MS_NODEV = 4;
    public const ulong MS_NOEXEC = 8;
    public const ulong MS_SYNCHRONOUS = 16;
    public const ulong MS_REMOUNT = 32;
    public const ulong MS_DIRSYNC = 128;
    public const ulong MS_NOATIME = 1024;
    public const ulong MS_NODIRATIME = 2048;
    public const ulong MS_BIND = 4096;
    public const ulong MS_REC = 16384;
    public const ulong MS_RELATIME = 1 << 21;
    public const ulong MS_STRICTATIME = 1 << 24;
    public const ulong MS_LAZYTIME = 1 << 25;

    private const int O_RDWR = 2;
    private const int O_CLOEXEC = 0x80000;
    private const uint S_IFMT = 0xF000;
    private const uint S_IFDIR = 0x4000;
    private const uint S_IFREG = 0x8000;
    private const uint S_IFBLK = 0x6000;

    private const int W_OK = 2;

    private readonly string _mountInfo;

    public LinuxNodePlatform(string sysRoot = "/sys", string deviceDirectory = "/dev", string mountInfo = "/proc/self/mountinfo")
    {
        Sysfs = new NvmeSysfs(sysRoot);
        DeviceDirectory = deviceDirectory;
        FabricsDevice = Path.Combine(deviceDirectory, "nvme-fabrics");
        _mountInfo = mountInfo;
    }

    public NvmeSysfs Sysfs { get; }

    public string DeviceDirectory { get; }

    public string FabricsDevice { get; }

    public string ConnectFabrics(string options)
    {
        // The kernel connects during write() (fabrics.c, nvmf_dev_write) and answers the following read()
        // with "instance=N,cntlid=M"; the same descriptor must be used for both.
        var fd = Open(FabricsDevice, O_RDWR | O_CLOEXEC);
        if (fd < 0)
        {
            throw Failure($"open {FabricsDevice}");
        }

        try
        {
            var bytes = Encoding.ASCII.GetBytes(options);
            if (Write(fd, bytes, bytes.Length) < 0)
            {
                throw Failure("connect through " + FabricsDevice);
            }

            var answer = new byte[256];
            var read = Read(fd, answer, answer.Length);
            if (read < 0)
            {
                throw Failure("read " + FabricsDevice);
            }

            var text = Encoding.ASCII.GetString(answer, 0, (int)read).Trim();
            foreach (var part in text.Split(','))
            {
                if (part.StartsWith("instance=", StringComparison.Ordinal))
                {
                    return "nvme" + part["instance=".Length..];
                }
            }

            throw new IOException($"{FabricsDevice} answered '{text}' without instance=");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    public IReadOnlyList<MountEntry> Mounts() => MountTable.Parse(File.ReadAllText(_mountInfo));

    public void Mount(string? source, string target, string? fsType, ulong flags, string? data)
    {
        if (MountNative(source, target, fsType, (nuint)flags, data) != 0)
        {
            throw Failure($"mount {source ?? "(none)"} on {target}");
        }
    }

    public bool Unmount(string target)
    {
        if (Umount2(target, 0) == 0)
        {
            return true;
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno == NodeSystemException.EINVAL)
        {
            return false;
        }

        throw new NodeSystemException($"umount {target}", errno, Marshal.GetPInvokeErrorMessage(errno));
    }

    public void MakeBlockDeviceNode(string path, int major, int minor)
    {
        if (Mknod(path, S_IFBLK | 0x180 /* 0600 */, NvmeBlockDevice.MakeDev((uint)major, (uint)minor)) != 0)
        {
            throw Failure($"mknod {path} b {major} {minor}");
        }
    }

    public NodeFileStatus Stat(string path)
    {
        var buffer = new StatBuffer();
        if (StatNative(path, ref buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == NodeSystemException.ENOENT)
            {
                return new NodeFileStatus(NodeFileKind.Missing, 0, 0);
            }

            throw new NodeSystemException($"stat {path}", errno, Marshal.GetPInvokeErrorMessage(errno));
        }

        var kind = (buffer.Mode & S_IFMT) switch
        {
            S_IFDIR => NodeFileKind.Directory,
            S_IFREG => NodeFileKind.RegularFile,
            S_IFBLK => NodeFileKind.BlockDevice,
            _ => NodeFileKind.Other,
        };
        return new NodeFileStatus(kind, buffer.Rdev, buffer.Dev);
    }

    public FilesystemUsage StatFs(string path)
    {
        var buffer = new StatFsBuffer();
        if (StatFsNative(path, ref buffer) != 0)
        {
            throw Failure($"statfs {path}");
        }

        var unit = buffer.FragmentSize > 0 ? buffer.FragmentSize : buffer.BlockSize;
        var total = (long)buffer.Blocks * unit;
        var available = (long)buffer.BlocksAvailable * unit;
        var used = (long)(buffer.Blocks - buffer.BlocksFree) * unit;
        return new FilesystemUsage(total, available, used, (long)buffer.Files, (long)buffer.FilesFree, (long)(buffer.Files - buffer.FilesFree));
    }

    public string? WhyNotWritable(string path) =>
        Access(path, W_OK) == 0 ? null : Failure($"access {path} W_OK").Message;

    public string? FindTool(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") is { Length: > 0 } path ? path : "/usr/sbin:/usr/bin:/sbin:/bin").Split(':'))
        {
            var candidate = Path.Combine(dir.Length == 0 ? "." : dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    public async Task<ToolResult> RunToolAsync(string tool, IReadOnlyList<string> arguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var path = FindTool(tool) ?? throw new FileNotFoundException($"{tool} is not installed on this node (not on PATH)", tool);
        var startInfo = new ProcessStartInfo(path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        var output = new StringBuilder();
        using var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Exited meanwhile.
            }

            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            throw new TimeoutException($"{tool} did not finish within {timeout.TotalSeconds:F0} s");
        }

        process.WaitForExit();
        lock (output)
        {
            return new ToolResult(process.ExitCode, output.ToString().Trim());
        }

        void Append(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (output)
            {
                if (output.Length < 64 * 1024)
                {
                    output.Append(line).Append('\n');
                }
            }
        }
    }

    private static NodeSystemException Failure(string operation)
    {
        var errno = Marshal.GetLastPInvokeError();
        return new NodeSystemException(operation, errno, Marshal.GetPInvokeErrorMessage(errno));
    }

    // struct stat on x86_64 and aarch64 differ; this is the x86_64 layout (asm/stat.h), 144 bytes.
    [StructLayout(LayoutKind.Sequential)]
    private struct StatBuffer
    {
        public ulong Dev;
        public ulong Ino;
        public ulong Nlink;
        public uint Mode;
        public uint Uid;
        public uint Gid;
        public int Pad0;
        public ulong Rdev;
        public long Size;
        public long BlockSize;
        public long Blocks;
        public long AtimeSec;
        public long AtimeNsec;
        public long MtimeSec;
        public long MtimeNsec;
        public long CtimeSec;
        public long CtimeNsec;
        public long Reserved0;
        public long Reserved1;
        public long Reserved2;
    }

    // struct statfs (bits/statfs.h, 64-bit), 120 bytes.
    [StructLayout(LayoutKind.Sequential)]
    private struct StatFsBuffer
    {
        public long Type;
        public long BlockSize;
        public ulong Blocks;
        public ulong BlocksFree;
        public ulong BlocksAvailable;
        public ulong Files;
        public ulong FilesFree;
        public long FsId;
        public long NameLength;
        public long FragmentSize;
        public long Flags;
        public long Spare0;
        public long Spare1;
        public long Spare2;
        public long Spare3;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, byte[] buffer, nint count);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint Read(int fd, [Out] byte[] buffer, nint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MountNative(string? source, string target, string? fsType, nuint flags, string? data);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Umount2(string target, int flags);

    [LibraryImport("libc", EntryPoint = "mknod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mknod(string path, uint mode, ulong device);

    [LibraryImport("libc", EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int StatNative(string path, ref StatBuffer buffer);

    [LibraryImport("libc", EntryPoint = "access", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Access(string path, int mode);

    [LibraryImport("libc", EntryPoint = "statfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int StatFsNative(string path, ref StatFsBuffer buffer);
}
