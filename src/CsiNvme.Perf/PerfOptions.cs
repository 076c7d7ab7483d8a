using System.Net;

namespace CsiNvme.Perf;

/// <summary>Access patterns, as fio names them (rw and randrw mix reads and writes by <see cref="PerfOptions.ReadPercent"/>).</summary>
public enum IoPattern
{
    Read,
    Write,
    RandRead,
    RandWrite,
    Rw,
    RandRw,
}

/// <summary>One benchmark run.</summary>
public sealed record PerfOptions
{
    public required IPEndPoint Target { get; init; }

    /// <summary>Subsystem NQN (NVMe mode only).</summary>
    public string SubsystemNqn { get; init; } = "";

    public string? HostNqn { get; init; }

    public Guid? HostId { get; init; }

    public uint NamespaceId { get; init; } = 1;

    /// <summary>Outstanding I/Os per queue (per connection in TCP baseline mode).</summary>
    public int QueueDepth { get; init; } = 1;

    public int IoSize { get; init; } = 4096;

    public IoPattern Pattern { get; init; } = IoPattern.RandRead;

    /// <summary>Share of reads in rw/randrw, 0..100.</summary>
    public int ReadPercent { get; init; } = 50;

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Time run before measuring starts (warm-up, JIT tiering).</summary>
    public TimeSpan Ramp { get; init; } = TimeSpan.Zero;

    /// <summary>I/O queues per connection.</summary>
    public int Queues { get; init; } = 1;

    /// <summary>Controllers (NVMe associations) opened to the target; TCP connections in baseline mode.</summary>
    public int Connections { get; init; } = 1;

    public bool HeaderDigest { get; init; }

    public bool DataDigest { get; init; }

    /// <summary>Connect through the NVMe/TCP TLS secure channel with this configured PSK (NVMe mode only).</summary>
    public CsiNvme.Protocol.Tls.TlsPsk? TlsPsk { get; init; }

    /// <summary>Disable SQ flow control on the I/O queues, letting the target complete reads in their data PDU.</summary>
    public bool DisableSqFlowControl { get; init; }

    /// <summary>Write blocks with embedded checksums and check every block read.</summary>
    public bool Verify { get; init; }

    /// <summary>How long each queue's receive thread (and the baseline's) polls for responses before it sleeps.</summary>
    public TimeSpan ReceivePollTime { get; init; } = TimeSpan.FromMicroseconds(50);

    /// <summary>Limit the I/O to the first bytes of the namespace (0 = all of it).</summary>
    public long RegionBytes { get; init; }

    public bool IsRandom => Pattern is IoPattern.RandRead or IoPattern.RandWrite or IoPattern.RandRw;

    /// <summary>Share of reads implied by the pattern.</summary>
    public int EffectiveReadPercent => Pattern switch
    {
        IoPattern.Read or IoPattern.RandRead => 100,
        IoPattern.Write or IoPattern.RandWrite => 0,
        _ => Math.Clamp(ReadPercent, 0, 100),
    };

    public static IoPattern ParsePattern(string text) => text.ToLowerInvariant() switch
    {
        "read" => IoPattern.Read,
        "write" => IoPattern.Write,
        "randread" => IoPattern.RandRead,
        "randwrite" => IoPattern.RandWrite,
        "rw" => IoPattern.Rw,
        "randrw" => IoPattern.RandRw,
        _ => throw new FormatException($"unknown pattern '{text}' (read, write, randread, randwrite, rw, randrw)"),
    };

    public static string PatternName(IoPattern pattern) => pattern.ToString().ToLowerInvariant();
}
