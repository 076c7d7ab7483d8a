using System.Text;

namespace CsiNvme.TestSupport;

/// <summary>
/// Writes a cpio archive in the "newc" (SVR4, no CRC) format, the one the Linux kernel unpacks
/// into its initramfs (Documentation/driver-api/early-userspace/buffer-format.rst). Parent
/// directories are emitted before their entries because the kernel's unpacker creates each
/// path with a single mkdir/open and does not create missing parents.
/// </summary>
public sealed class NewcArchive
{
    private const int S_IFDIR = 0x4000;
    private const int S_IFREG = 0x8000;

    private readonly SortedDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    /// <summary>Adds a regular file with the given content; <paramref name="mode"/> holds the permission bits.</summary>
    public void AddFile(string guestPath, byte[] content, int mode = 0x1ED /* 0755 */)
    {
        var name = Normalize(guestPath);
        AddParents(name);
        _entries[name] = new Entry(S_IFREG | (mode & 0xFFF), content, null);
    }

    /// <summary>Adds a regular file whose content is read from the host when the archive is written.</summary>
    public void AddHostFile(string guestPath, string hostPath, int? mode = null)
    {
        var info = new FileInfo(hostPath);
        if (!info.Exists)
        {
            throw new FileNotFoundException($"file for the guest not found: {hostPath}", hostPath);
        }

        var name = Normalize(guestPath);
        AddParents(name);
        var permissions = mode ?? (OperatingSystem.IsWindows() ? 0x1ED : (int)File.GetUnixFileMode(hostPath));
        _entries[name] = new Entry(S_IFREG | (permissions & 0xFFF), null, hostPath);
    }

    public void AddText(string guestPath, string text, int mode = 0x1ED) =>
        AddFile(guestPath, Encoding.UTF8.GetBytes(text.ReplaceLineEndings("\n")), mode);

    public void AddDirectory(string guestPath, int mode = 0x1ED)
    {
        var name = Normalize(guestPath);
        AddParents(name);
        _entries.TryAdd(name, new Entry(S_IFDIR | (mode & 0xFFF), null, null));
    }

    public void WriteTo(Stream output)
    {
        uint inode = 1;
        // Ordinal order puts every directory before the paths below it.
        foreach (var (name, entry) in _entries)
        {
            if ((entry.Mode & S_IFDIR) != 0)
            {
                WriteEntry(output, inode++, name, entry.Mode, 2, 0, null);
            }
            else if (entry.HostPath is { } hostPath)
            {
                using var source = File.OpenRead(hostPath);
                WriteEntry(output, inode++, name, entry.Mode, 1, source.Length, source);
            }
            else
            {
                using var source = new MemoryStream(entry.Content!, writable: false);
                WriteEntry(output, inode++, name, entry.Mode, 1, source.Length, source);
            }
        }

        WriteEntry(output, 0, "TRAILER!!!", 0, 1, 0, null);
    }

    private static void WriteEntry(Stream output, uint inode, string name, int mode, int links, long size, Stream? data)
    {
        if (size > uint.MaxValue)
        {
            throw new NotSupportedException($"newc cannot hold {name}: {size} bytes");
        }

        var nameBytes = Encoding.UTF8.GetBytes(name);
        var header = new StringBuilder(110);
        header.Append("070701");
        foreach (var field in new uint[]
                 {
                     inode, (uint)mode, 0, 0, (uint)links, 0, (uint)size, 0, 0, 0, 0, (uint)nameBytes.Length + 1, 0,
                 })
        {
            header.Append(field.ToString("X8", System.Globalization.CultureInfo.InvariantCulture));
        }

        output.Write(Encoding.ASCII.GetBytes(header.ToString()));
        output.Write(nameBytes);
        output.WriteByte(0);
        Pad(output, 110 + nameBytes.Length + 1);
        if (data is not null)
        {
            data.CopyTo(output);
            Pad(output, size);
        }
    }

    private static void Pad(Stream output, long written)
    {
        var padding = (int)((4 - (written % 4)) % 4);
        for (var i = 0; i < padding; i++)
        {
            output.WriteByte(0);
        }
    }

    private void AddParents(string name)
    {
        for (var slash = name.IndexOf('/'); slash > 0; slash = name.IndexOf('/', slash + 1))
        {
            _entries.TryAdd(name[..slash], new Entry(S_IFDIR | 0x1ED, null, null));
        }
    }

    private static string Normalize(string guestPath)
    {
        var name = guestPath.Replace('\\', '/').Trim('/');
        if (name.Length == 0 || name.Split('/').Any(part => part is "" or "." or ".."))
        {
            throw new ArgumentException($"invalid guest path '{guestPath}'", nameof(guestPath));
        }

        return name;
    }

    private sealed record Entry(int Mode, byte[]? Content, string? HostPath);
}
