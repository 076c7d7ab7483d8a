using System.Buffers.Binary;
using System.Text;

namespace CsiNvme.Storage.Thin;

/// <summary>
/// What the pool keeps for its owner besides data: each image's lifecycle state and annotation, the pool's own
/// annotation, and whether writes are failing for lack of space.
/// </summary>
public sealed partial class ThinPool
{
    /// <summary>Annotations are small documents (an image's record, the pool's owner); this bounds a journal record.</summary>
    public const int MaxAnnotationBytes = 1 << 20;

    private string _annotation = "";

    // 1 from a write that failed for lack of space until a cluster comes free or a write gets one again.
    private int _outOfSpace;

    /// <summary>What the owner keeps with the pool (the server: the metadata store it is used with); "" when none.</summary>
    public string Annotation
    {
        get
        {
            lock (_metaLock)
            {
                return _annotation;
            }
        }
    }

    /// <summary>A write failed for lack of space and no space has come back since.</summary>
    public bool IsOutOfSpace => Volatile.Read(ref _outOfSpace) != 0;

    /// <summary>Replaces the pool's annotation; durable on return.</summary>
    public void SetAnnotation(string annotation)
    {
        ValidateAnnotation(annotation);
        lock (_metaLock)
        {
            if (_annotation == annotation)
            {
                return;
            }

            AnnotatePool(_journal, annotation);
            _annotation = annotation;
        }

        Commit();
    }

    /// <summary>Moves a live image (volume or snapshot) to another lifecycle state; durable on return.</summary>
    public void SetImageState(Guid id, ThinImageState state)
    {
        if (!Enum.IsDefined(state))
        {
            throw new ArgumentOutOfRangeException(nameof(state), $"{state} is not an image state");
        }

        lock (_metaLock)
        {
            var image = FindLive(id);
            if (image.State == state)
            {
                return;
            }

            AppendLifecycle(_journal, image, state);
            image.State = state;
        }

        Commit();
    }

    /// <summary>Replaces a live image's annotation; durable on return.</summary>
    public void SetImageAnnotation(Guid id, string annotation)
    {
        ValidateAnnotation(annotation);
        lock (_metaLock)
        {
            var image = FindLive(id);
            if (image.Annotation == annotation)
            {
                return;
            }

            AppendImageAnnotation(_journal, image, annotation);
            image.Annotation = annotation;
        }

        Commit();
    }

    private ThinImage FindLive(Guid id) =>
        _images.TryGetValue(id, out var image) && !image.Deleted ? image : throw new KeyNotFoundException($"image {id} does not exist");

    private static void ValidateAnnotation(string annotation)
    {
        ArgumentNullException.ThrowIfNull(annotation);
        if (Encoding.UTF8.GetByteCount(annotation) > MaxAnnotationBytes)
        {
            throw new ArgumentException($"an annotation is at most {MaxAnnotationBytes} bytes", nameof(annotation));
        }
    }

    /// <summary>Gives a new image (or one being compacted) its state and annotation; defaults need no record.</summary>
    private static void Annotate(MetadataJournal journal, ThinImage image, ThinImageState state, string annotation)
    {
        if (state != ThinImageState.Committed)
        {
            AppendLifecycle(journal, image, state);
        }

        if (annotation.Length > 0)
        {
            AppendImageAnnotation(journal, image, annotation);
        }

        image.State = state;
        image.Annotation = annotation;
    }

    private static void AppendLifecycle(MetadataJournal journal, ThinImage image, ThinImageState state)
    {
        Span<byte> payload = stackalloc byte[5];
        BinaryPrimitives.WriteInt32LittleEndian(payload, image.Index);
        payload[4] = (byte)state;
        journal.Append(JournalRecordType.ImageLifecycle, payload);
    }

    private static void AppendImageAnnotation(MetadataJournal journal, ThinImage image, string annotation)
    {
        var payload = new byte[4 + Encoding.UTF8.GetByteCount(annotation)];
        BinaryPrimitives.WriteInt32LittleEndian(payload, image.Index);
        Encoding.UTF8.GetBytes(annotation, payload.AsSpan(4));
        journal.Append(JournalRecordType.ImageAnnotation, payload);
    }

    private static void AnnotatePool(MetadataJournal journal, string annotation) =>
        journal.Append(JournalRecordType.PoolAnnotation, Encoding.UTF8.GetBytes(annotation));

    private void ReplayAnnotation(JournalRecordType type, ReadOnlySpan<byte> payload)
    {
        switch (type)
        {
            case JournalRecordType.ImageLifecycle:
                {
                    var state = (ThinImageState)payload[4];
                    if (!Enum.IsDefined(state))
                    {
                        throw new InvalidDataException($"{_options.DataPath}: the journal gives an image the unknown state {payload[4]}; the metadata is corrupted");
                    }

                    _imagesByIndex[BinaryPrimitives.ReadInt32LittleEndian(payload)].State = state;
                    break;
                }

            case JournalRecordType.ImageAnnotation:
                _imagesByIndex[BinaryPrimitives.ReadInt32LittleEndian(payload)].Annotation = Encoding.UTF8.GetString(payload[4..]);
                break;
            default:
                _annotation = Encoding.UTF8.GetString(payload);
                break;
        }
    }

    private void NoteOutOfSpace(ThinImage image)
    {
        if (Interlocked.Exchange(ref _outOfSpace, 1) == 0)
        {
            _options.SpaceObserver?.OutOfSpace(this, image.Name, FreeBytes == 0);
        }
    }

    private void NoteSpaceAvailable()
    {
        if (Interlocked.Exchange(ref _outOfSpace, 0) == 1)
        {
            _options.SpaceObserver?.SpaceAvailable(this);
        }
    }
}
