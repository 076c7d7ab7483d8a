using System.Buffers.Binary;

namespace CsiNvme.Csi.Node;

/// <summary>What the first bytes of a block device hold, as far as deciding whether it may be formatted.</summary>
public enum DeviceContent
{
    /// <summary>No signature we know in the probed range: safe to format.</summary>
    Blank,
    Ext4,
    Xfs,

    /// <summary>A signature of something else (another filesystem, a partition table, LUKS, swap): never format.</summary>
    Other,
}

/// <summary>
/// Recognises on-disk signatures in the first <see cref="ProbeLength"/> bytes of a device. Formatting only
/// ever happens on <see cref="DeviceContent.Blank"/>, so every signature that could mean data is checked
/// for, not only the two filesystems we create.
/// </summary>
public static class FilesystemSignature
{
    /// <summary>Covers the btrfs superblock at 64 KiB and the swap signature in a 64 KiB page.</summary>
    public const int ProbeLength = 68 * 1024;

    public static (DeviceContent Content, string Description) Detect(ReadOnlySpan<byte> head)
    {
        // ext2/3/4: superblock at 1024, s_magic 0xEF53 at offset 0x38 (little endian); the ext4 features
        // do not matter to us: ext4 mounts all three.
        if (head.Length >= 1024 + 0x3A && BinaryPrimitives.ReadUInt16LittleEndian(head[(1024 + 0x38)..]) == 0xEF53)
        {
            return (DeviceContent.Ext4, "ext4");
        }

        // XFS: "XFSB" at the start of the primary superblock (sb_magicnum).
        if (StartsWith(head, 0, "XFSB"u8))
        {
            return (DeviceContent.Xfs, "xfs");
        }

        if (StartsWith(head, 0, LuksMagic))
        {
            return (DeviceContent.Other, "LUKS");
        }

        if (StartsWith(head, 512, "EFI PART"u8))
        {
            return (DeviceContent.Other, "GPT partition table");
        }

        if (StartsWith(head, 0x10040, "_BHRfS_M"u8))
        {
            return (DeviceContent.Other, "btrfs");
        }

        // Swap: "SWAPSPACE2" in the last 10 bytes of the first page, for 4 KiB to 64 KiB pages.
        for (var page = 4096; page <= 65536; page *= 2)
        {
            if (StartsWith(head, page - 10, "SWAPSPACE2"u8) || StartsWith(head, page - 10, "SWAP-SPACE"u8))
            {
                return (DeviceContent.Other, "swap");
            }
        }

        // A DOS partition table (boot signature 0x55AA) with at least one non-empty entry.
        if (head.Length >= 512 && head[510] == 0x55 && head[511] == 0xAA)
        {
            for (var entry = 0; entry < 4; entry++)
            {
                if (head[446 + (entry * 16) + 4] != 0)
                {
                    return (DeviceContent.Other, "DOS partition table");
                }
            }
        }

        if (StartsWith(head, 0x8001, "CD001"u8))
        {
            return (DeviceContent.Other, "iso9660");
        }

        return (DeviceContent.Blank, "no signature");
    }

    /// <summary>Reads the probe range of a device (or image file) and classifies it.</summary>
    public static (DeviceContent Content, string Description) Probe(string devicePath)
    {
        var buffer = new byte[ProbeLength];
        using var stream = new FileStream(devicePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
        var total = 0;
        while (total < buffer.Length)
        {
            var read = stream.Read(buffer, total, buffer.Length - total);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        return Detect(buffer.AsSpan(0, total));
    }

    // "LUKS" 0xBA 0xBE (LUKS on-disk format, phdr magic).
    private static ReadOnlySpan<byte> LuksMagic => [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE];

    private static bool StartsWith(ReadOnlySpan<byte> head, int offset, ReadOnlySpan<byte> magic) =>
        head.Length >= offset + magic.Length && head.Slice(offset, magic.Length).SequenceEqual(magic);
}
