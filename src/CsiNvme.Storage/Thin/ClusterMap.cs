namespace CsiNvme.Storage.Thin;

/// <summary>
/// The sparse map of one image: virtual cluster index to entry. Entries are <see cref="Unmapped"/> (look further
/// down the snapshot chain), <see cref="Zero"/> (reads as zeros, hiding older data) or a physical cluster + 1.
/// Two levels of 4096-entry pages keep a thin 64 TiB volume's map at a few MiB until it is written.
/// Readers need no lock: pages are published once and entries are single aligned ints.
/// </summary>
internal sealed class ClusterMap
{
    public const int Unmapped = 0;
    public const int Zero = -1;
    private const int PageShift = 12;
    private const int PageSize = 1 << PageShift;
    private const int PageMask = PageSize - 1;

    private int[]?[] _pages;
    private long _count;
    private long _owned;

    public ClusterMap(long clusterCount)
    {
        _pages = new int[]?[PagesFor(clusterCount)];
    }

    /// <summary>Entries that are not <see cref="Unmapped"/>.</summary>
    public long Count => Volatile.Read(ref _count);

    /// <summary>Entries that point at a physical cluster (what the image owns), kept as entries change.</summary>
    public long OwnedCount => Volatile.Read(ref _owned);

    public long Capacity => (long)_pages.Length << PageShift;

    private static long PagesFor(long clusters) => Math.Max(1, (clusters + PageSize - 1) >> PageShift);

    public int Get(long cluster)
    {
        var pages = Volatile.Read(ref _pages);
        var pageIndex = cluster >> PageShift;
        if ((ulong)pageIndex >= (ulong)pages.Length)
        {
            return Unmapped;
        }

        var page = Volatile.Read(ref pages[pageIndex]);
        return page is null ? Unmapped : Volatile.Read(ref page[cluster & PageMask]);
    }

    /// <summary>Sets an entry; callers serialize writers of the same map.</summary>
    public int Set(long cluster, int value)
    {
        EnsureCapacity(cluster + 1);
        var pages = _pages;
        ref var page = ref pages[cluster >> PageShift];
        if (page is null)
        {
            if (value == Unmapped)
            {
                return Unmapped;
            }

            Volatile.Write(ref page, new int[PageSize]);
        }

        ref var slot = ref page![cluster & PageMask];
        var previous = slot;
        Volatile.Write(ref slot, value);
        if (previous <= 0 && value > 0)
        {
            Interlocked.Increment(ref _owned);
        }
        else if (previous > 0 && value <= 0)
        {
            Interlocked.Decrement(ref _owned);
        }

        if (previous == Unmapped && value != Unmapped)
        {
            Interlocked.Increment(ref _count);
        }
        else if (previous != Unmapped && value == Unmapped)
        {
            Interlocked.Decrement(ref _count);
        }

        return previous;
    }

    public void EnsureCapacity(long clusters)
    {
        var pages = _pages;
        var needed = PagesFor(clusters);
        if (needed <= pages.Length)
        {
            return;
        }

        var grown = new int[]?[needed];
        Array.Copy(pages, grown, pages.Length);
        Volatile.Write(ref _pages, grown);
    }

    /// <summary>Every non-unmapped entry, ascending by virtual cluster.</summary>
    public IEnumerable<(long Cluster, int Value)> Entries()
    {
        var pages = _pages;
        for (long p = 0; p < pages.Length; p++)
        {
            var page = pages[p];
            if (page is null)
            {
                continue;
            }

            for (var i = 0; i < PageSize; i++)
            {
                if (page[i] != Unmapped)
                {
                    yield return ((p << PageShift) + i, page[i]);
                }
            }
        }
    }

    /// <summary>Empties the map and returns what it held (snapshot creation moves a map in O(1) instead).</summary>
    public void Clear()
    {
        Volatile.Write(ref _pages, new int[]?[_pages.Length]);
        Volatile.Write(ref _count, 0);
        Volatile.Write(ref _owned, 0);
    }
}
