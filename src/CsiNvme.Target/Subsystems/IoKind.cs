namespace CsiNvme.Target.Subsystems;

/// <summary>Classes of I/O the target reports to metrics.</summary>
public enum IoKind
{
    Read,
    Write,
    Flush,
    WriteZeroes,
    Deallocate,
}

/// <summary>
/// Receives completed I/O commands, several at a time: the commands of one kind that one receive batch completed
/// share their arrival and their completion, so the target reports them in one call. Implementations must not
/// allocate or block.
/// </summary>
public interface INamespaceMetrics
{
    /// <param name="kind">What the commands did.</param>
    /// <param name="commands">Commands completed, failed ones included.</param>
    /// <param name="failed">Commands of <paramref name="commands"/> completed with an error status.</param>
    /// <param name="bytes">Bytes moved by the successful commands.</param>
    /// <param name="elapsedTimestampTicks">Latency of each command, arrival to completion, in <see cref="System.Diagnostics.Stopwatch"/> ticks.</param>
    void Record(IoKind kind, int commands, int failed, long bytes, long elapsedTimestampTicks);
}

/// <summary>Connection-level events of the target, for metrics.</summary>
public interface ITargetObserver
{
    void ConnectionOpened();

    void ConnectionClosed();
}
