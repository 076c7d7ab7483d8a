namespace CsiNvme.Target.Listening;

/// <summary>
/// Whether the target can take new hosts now (<see cref="NvmeTarget.Readiness"/>), and if not, why, in one line.
/// </summary>
public readonly record struct TargetReadiness(bool IsReady, string Reason)
{
    public static TargetReadiness Ready { get; } = new(true, "ready");

    public static TargetReadiness NotReady(string reason) => new(false, reason);
}
