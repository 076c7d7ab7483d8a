using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace CsiNvme.Storage;

/// <summary>Linux file calls that <see cref="RandomAccess"/> does not offer, returning errno instead of throwing.</summary>
internal static partial class LinuxFile
{
    public const int Eio = 5;
    public const int Enospc = 28;
    public const int Eopnotsupp = 95;
    public const int Edquot = 122;
    public const int Eintr = 4;

    // linux/falloc.h
    private const int FallocFlKeepSize = 0x01;
    private const int FallocFlPunchHole = 0x02;

    /// <summary>fdatasync(2): data and the metadata needed to read it back (size) reach stable storage.</summary>
    public static int DataSync(SafeFileHandle handle)
    {
        while (true)
        {
            if (fdatasync(handle) == 0)
            {
                return 0;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno != Eintr)
            {
                return errno;
            }
        }
    }

    /// <summary>fallocate(2) with PUNCH_HOLE | KEEP_SIZE; partial blocks at the edges are zeroed by the file system.</summary>
    public static int PunchHole(SafeFileHandle handle, long offset, long length)
    {
        while (true)
        {
            if (fallocate(handle, FallocFlPunchHole | FallocFlKeepSize, offset, length) == 0)
            {
                return 0;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno != Eintr)
            {
                return errno;
            }
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fdatasync(SafeFileHandle fd);

    // off_t is 64-bit on the 64-bit Linux targets this server runs on.
    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long len);

    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;

    /// <summary>fsync(2) of a directory, so a rename or a new file in it survives a crash.</summary>
    public static int SyncDirectory(string path)
    {
        var fd = open(path, ORdOnly | ODirectory);
        if (fd < 0)
        {
            return Marshal.GetLastPInvokeError();
        }

        try
        {
            return fsync(fd) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        finally
        {
            close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}
