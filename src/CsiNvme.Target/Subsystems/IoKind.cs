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

/// <summary>Receives one call per completed I/O command. Implementations must not allocate or block.</summary>
public interface INamespaceMetrics
{
    void Record(IoKind kind, int bytes, long elapsedTimestampTicks, bool success);
}

/// <summary>Connection-level events of the target, for metrics.</summary>
public interface ITargetObserver
{
    void ConnectionOpened();

    void ConnectionClosed();
}
