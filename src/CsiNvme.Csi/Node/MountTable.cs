using System.Globalization;
using System.Text;

namespace CsiNvme.Csi.Node;

/// <summary>One line of /proc/self/mountinfo (proc(5)).</summary>
public sealed record MountEntry(int Id, int ParentId, int Major, int Minor, string Root, string MountPoint, string MountOptions, string FsType, string Source, string SuperOptions)
{
    public bool IsReadOnly => MountOptions.Split(',').Contains("ro");
}

/// <summary>Parses /proc/self/mountinfo: the mount table as this process sees it, with octal escapes undone.</summary>
public static class MountTable
{
    public static IReadOnlyList<MountEntry> Parse(string text)
    {
        var entries = new List<MountEntry>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(' ');
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            var separator = fields.Length >= 10 ? Array.IndexOf(fields, "-", 6) : -1;
            if (separator < 0 || separator + 2 >= fields.Length)
            {
                continue;
            }

            var devParts = fields[2].Split(':');
            if (devParts.Length != 2 ||
                !int.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var id) ||
                !int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var parent) ||
                !int.TryParse(devParts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var major) ||
                !int.TryParse(devParts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var minor))
            {
                continue;
            }

            entries.Add(new MountEntry(
                id, parent, major, minor,
                Unescape(fields[3]), Unescape(fields[4]), fields[5],
                fields[separator + 1],
                Unescape(fields[separator + 2]),
                separator + 3 < fields.Length ? fields[separator + 3] : string.Empty));
        }

        return entries;
    }

    /// <summary>The mounts at a path, last (topmost) one last.</summary>
    public static IEnumerable<MountEntry> At(IEnumerable<MountEntry> table, string path)
    {
        var normalised = NormalisePath(path);
        return table.Where(e => e.MountPoint == normalised);
    }

    public static string NormalisePath(string path)
    {
        var full = Path.GetFullPath(path);
        return full.Length > 1 ? full.TrimEnd('/') : full;
    }

    // The kernel escapes space, tab, newline and backslash as \ooo (fs/proc_namespace.c, mangle).
    private static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }

        var text = new StringBuilder(field.Length);
        for (var i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length && IsOctal(field[i + 1]) && IsOctal(field[i + 2]) && IsOctal(field[i + 3]))
            {
                text.Append((char)(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) | (field[i + 3] - '0')));
                i += 3;
            }
            else
            {
                text.Append(field[i]);
            }
        }

        return text.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';
}
