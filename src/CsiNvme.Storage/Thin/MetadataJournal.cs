using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace CsiNvme.Storage.Thin;

/// <summary>Types of journal records; the payload layouts are in <see cref="ThinPool"/>'s replay.</summary>
internal enum JournalRecordType : byte
{
    /// <summary>Pool identity; always the first record of a journal file.</summary>
    PoolHeader = 1,
    CreateImage = 2,
    SetMapping = 3,
    Snapshot = 4,
    DeleteImage = 5,
    Resize = 6,
    /// <summary>Full state of an image, written by compaction instead of its history.</summary>
    ImageState = 7,
    /// <summary>Ends every commit; records after the last one are an interrupted commit and are dropped whole.</summary>
    Commit = 8,
    /// <summary>Lifecycle state of an image (<see cref="ThinImageState"/>); images without one are committed.</summary>
    ImageLifecycle = 9,
    /// <summary>The text the pool's owner keeps with an image, replacing the previous one.</summary>
    ImageAnnotation = 10,
    /// <summary>The text the pool's owner keeps with the pool itself, replacing the previous one.</summary>
    PoolAnnotation = 11,
}

/// <summary>
/// The pool's write-ahead metadata journal: an append-only file of records, each
/// <c>[magic u32][length u32][sequence u64][type u8][payload][crc32c u32]</c> with the CRC over everything before it.
/// Records become durable in batches, always after the data they describe was synced; each batch ends with a
/// <see cref="JournalRecordType.Commit"/> record, and only whole batches are replayed, so a commit is atomic (a clone
/// from a volume is three records that must not half happen). Replay stops at the first record that fails its
/// checksum: a torn tail from a crash is cut off, while a bad record followed by good ones is corruption and is
/// reported instead of being served.
/// </summary>
internal sealed class MetadataJournal : IDisposable
{
    public const uint RecordMagic = 0x4C4E4A54; // "TJNL"
    private const int HeaderSize = 4 + 4 + 8 + 1;
    private const int TrailerSize = 4;

    private readonly string _path;
    private SafeFileHandle _handle;
    private readonly MemoryStream _pending = new();
    private long _length;
    private ulong _sequence;
    private ulong _batchStart;

    private MetadataJournal(string path, SafeFileHandle handle, long length, ulong sequence)
    {
        _path = path;
        _handle = handle;
        _length = length;
        _sequence = sequence;
    }

    public string Path => _path;

    /// <summary>Durable length of the journal file.</summary>
    public long Length => _length;

    public bool HasPending => _pending.Length > 0;

    public long PendingBytes => _pending.Length;

    /// <summary>Opens (or creates) a journal and returns its valid records in order.</summary>
    public static MetadataJournal Open(string path, out List<(JournalRecordType Type, byte[] Payload)> records)
    {
        var handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        try
        {
            var fileLength = RandomAccess.GetLength(handle);
            var content = new byte[fileLength];
            var read = 0;
            while (read < content.Length)
            {
                var n = RandomAccess.Read(handle, content.AsSpan(read), read);
                if (n == 0)
                {
                    break;
                }

                read += n;
            }

            records = new List<(JournalRecordType, byte[])>();
            var offset = 0;
            ulong sequence = 0;
            var committedRecords = 0;
            var committedOffset = 0;
            ulong committedSequence = 0;
            while (TryParse(content, offset, out var type, out var payload, out var next, out var recordSequence))
            {
                if (recordSequence != sequence + 1)
                {
                    throw new InvalidDataException($"{path}: journal record at byte {offset} has sequence {recordSequence}, expected {sequence + 1}; the metadata is corrupted");
                }

                sequence = recordSequence;
                offset = next;
                if (type == JournalRecordType.Commit)
                {
                    committedRecords = records.Count;
                    committedOffset = offset;
                    committedSequence = sequence;
                }
                else
                {
                    records.Add((type, payload));
                }
            }

            if (offset < content.Length)
            {
                // Records of the interrupted last batch may reach the disk out of order (a power cut inside one write),
                // so valid records of that same batch after a bad one are a torn tail. A valid record of a LATER batch
                // is different: batches are written only after the previous one was synced, so the bad record was
                // durable once and has been damaged since; that is reported, never served.
                var tornBatch = committedSequence + 1;
                var laterCommitSeen = false;
                for (var probe = offset + 1; probe + HeaderSize + TrailerSize <= content.Length; probe++)
                {
                    if (BinaryPrimitives.ReadUInt32LittleEndian(content.AsSpan(probe)) != RecordMagic
                        || !TryParse(content, probe, out var laterType, out var laterPayload, out _, out var laterSequence)
                        || laterSequence <= sequence)
                    {
                        continue;
                    }

                    var laterBatch = laterType == JournalRecordType.Commit && laterPayload.Length >= 8 ? BinaryPrimitives.ReadUInt64LittleEndian(laterPayload) : 0;
                    if (laterCommitSeen || (laterType == JournalRecordType.Commit && (laterPayload.Length < 8 || laterBatch > tornBatch)))
                    {
                        throw new InvalidDataException($"{path}: journal record at byte {offset} fails its checksum but a later commit follows at byte {probe}; the metadata is corrupted and is not served");
                    }

                    laterCommitSeen |= laterType == JournalRecordType.Commit;
                }

            }

            // An interrupted commit (torn or without its commit record): cut it off whole so new records follow the
            // last complete commit.
            records.RemoveRange(committedRecords, records.Count - committedRecords);
            if (committedOffset < content.Length)
            {
                RandomAccess.SetLength(handle, committedOffset);
                LinuxFile.DataSync(handle);
            }

            return new MetadataJournal(path, handle, committedOffset, committedSequence);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static bool TryParse(byte[] content, int offset, out JournalRecordType type, out byte[] payload, out int next, out ulong sequence)
    {
        type = 0;
        payload = [];
        next = offset;
        sequence = 0;
        if (offset + HeaderSize + TrailerSize > content.Length)
        {
            return false;
        }

        var span = content.AsSpan(offset);
        if (BinaryPrimitives.ReadUInt32LittleEndian(span) != RecordMagic)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt32LittleEndian(span[4..]);
        if (length > 64 * 1024 * 1024 || offset + HeaderSize + (long)length + TrailerSize > content.Length)
        {
            return false;
        }

        var body = span[..(HeaderSize + (int)length)];
        if (Crc32CChecksum.Compute(body) != BinaryPrimitives.ReadUInt32LittleEndian(span[(HeaderSize + (int)length)..]))
        {
            return false;
        }

        sequence = BinaryPrimitives.ReadUInt64LittleEndian(span[8..]);
        type = (JournalRecordType)span[16];
        payload = span.Slice(HeaderSize, (int)length).ToArray();
        next = offset + HeaderSize + (int)length + TrailerSize;
        return true;
    }

    /// <summary>Adds a record to the next commit.</summary>
    public void Append(JournalRecordType type, ReadOnlySpan<byte> payload)
    {
        if (_pending.Length == 0)
        {
            _batchStart = _sequence + 1;
        }

        Span<byte> header = stackalloc byte[HeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(header, RecordMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(header[8..], ++_sequence);
        header[16] = (byte)type;
        var start = (int)_pending.Length;
        _pending.Write(header);
        _pending.Write(payload);
        var body = _pending.GetBuffer().AsSpan(start, HeaderSize + payload.Length);
        Span<byte> trailer = stackalloc byte[TrailerSize];
        BinaryPrimitives.WriteUInt32LittleEndian(trailer, Crc32CChecksum.Compute(body));
        _pending.Write(trailer);
    }

    /// <summary>Takes the pending records out, closed by a commit record, to be written by <see cref="WriteDurably"/> after the data is synced.</summary>
    public byte[] TakePending()
    {
        if (_pending.Length > 0)
        {
            // The commit record names the first sequence of its batch, so replay can tell a torn last batch from
            // damage to a batch that later, complete batches prove was durable.
            Span<byte> batch = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(batch, _batchStart);
            Append(JournalRecordType.Commit, batch);
        }

        var bytes = _pending.ToArray();
        _pending.SetLength(0);
        return bytes;
    }

    /// <summary>Appends records at the end and syncs them.</summary>
    public void WriteDurably(ReadOnlySpan<byte> records)
    {
        if (records.IsEmpty)
        {
            return;
        }

        RandomAccess.Write(_handle, records, _length);
        var error = LinuxFile.DataSync(_handle);
        if (error != 0)
        {
            throw new IOException($"{_path}: fdatasync failed with errno {error}");
        }

        _length += records.Length;
    }

    /// <summary>
    /// Replaces the journal with a compact one holding only the current state: written to a new file, synced, renamed
    /// over the old one and the directory synced, so a crash leaves either the old or the new journal whole.
    /// </summary>
    public void Rewrite(Action<MetadataJournal> writeState)
    {
        var temporary = _path + ".compact";
        File.Delete(temporary);
        var handle = File.OpenHandle(temporary, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        var compact = new MetadataJournal(temporary, handle, 0, 0);
        try
        {
            writeState(compact);
            compact.WriteDurably(compact.TakePending());
        }
        catch
        {
            handle.Dispose();
            File.Delete(temporary);
            throw;
        }

        File.Move(temporary, _path, overwrite: true);
        SyncDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(_path))!);
        _handle.Dispose();
        _handle = handle;
        _length = compact._length;
        _sequence = compact._sequence;
        _pending.SetLength(0);
    }

    private static void SyncDirectory(string directory)
    {
        var error = LinuxFile.SyncDirectory(directory);
        if (error != 0)
        {
            throw new IOException($"{directory}: fsync of the directory failed with errno {error}");
        }
    }

    public void Dispose() => _handle.Dispose();
}
