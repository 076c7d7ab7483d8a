namespace CsiNvme.Csi.Tests.Migration;

/// <summary>One completed I/O of the workload, on the host's clock (seconds since the run started).</summary>
internal readonly record struct IoCompletion(double At, double LatencyMs, bool Write, int Disk, MigrationSide Side);

internal enum MigrationSide
{
    Source,
    Destination,
}

/// <summary>Something that happened during a run: a CSI call, a phase boundary, a storage event.</summary>
internal sealed record RunEvent(double At, string What, double? DurationSeconds = null);

/// <summary>What fio on one side reported for one disk.</summary>
internal sealed record FioOutcome(string Disk, MigrationSide Side, long Reads, long Writes, long Errors, long VerifyFailures, string FirstError);

/// <summary>Everything a migration run recorded; <see cref="MigrationReport"/> turns it into the series, summary and chart.</summary>
internal sealed class MigrationRecord
{
    public required string Setup { get; init; }

    public string? StorageEvent { get; set; }

    public required IReadOnlyList<string> Disks { get; init; }

    public required int DiskMiB { get; init; }

    public required string Workload { get; init; }

    /// <summary>Host time (UTC) at second 0.</summary>
    public required DateTimeOffset StartedAt { get; init; }

    public List<IoCompletion> Completions { get; } = [];

    public List<RunEvent> Events { get; } = [];

    public List<FioOutcome> Fio { get; } = [];

    /// <summary>Per disk: the whole-disk checksum the source read after it stopped and the one the destination read before it started.</summary>
    public Dictionary<string, (string Source, string Destination)> Handover { get; } = new(StringComparer.Ordinal);

    /// <summary>The destination published, staged and published each disk (pre-copy starts).</summary>
    public double PrecopyStart { get; set; }

    /// <summary>The source was told to stop its workload (switchover starts).</summary>
    public double SwitchoverStart { get; set; }

    /// <summary>The destination's workload was told to go (host clock, before the guest round trip).</summary>
    public double DestinationStart { get; set; }

    /// <summary>The source's flush of every disk after its workload stopped: start and end (the source guest's clock, related to the host's).</summary>
    public (double Start, double End) SourceFlush { get; set; } = (double.NaN, double.NaN);

    /// <summary>The destination guest let its waiting workload go (its clock, related to the host's).</summary>
    public double DestinationGoAt { get; set; } = double.NaN;

    public double End { get; set; }

    /// <summary>How long the handover verification reads took (inside the switchover, before the destination started).</summary>
    public double VerificationSeconds { get; set; }

    /// <summary>Each guest's clock minus the host's, and how far off that estimate may be.</summary>
    public Dictionary<MigrationSide, (double OffsetMs, double UncertaintyMs)> Clocks { get; } = [];

    public void Mark(double at, string what, double? duration = null)
    {
        lock (Events)
        {
            Events.Add(new RunEvent(at, what, duration));
        }
    }
}
