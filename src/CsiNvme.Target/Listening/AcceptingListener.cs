using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target.Listening;

/// <summary>
/// One bound NVMe/TCP listener: its socket, how many connections it holds against its cap, whether its accept loop
/// runs, and its last accept failure. The cap's transitions are logged once each way, never per refused connection.
/// </summary>
internal sealed partial class AcceptingListener
{
    private readonly int _maxConnections;
    private readonly ILogger _logger;
    private int _connections;
    private int _atCap;
    private long _refused;
    private volatile bool _accepting;
    private FailureRecord? _lastFailure;

    public AcceptingListener(Socket socket, int maxConnections, ILogger logger)
    {
        Socket = socket;
        Endpoint = (IPEndPoint)socket.LocalEndPoint!;
        _maxConnections = maxConnections;
        _logger = logger;
    }

    public Socket Socket { get; }

    public IPEndPoint Endpoint { get; }

    public int MaxConnections => _maxConnections;

    public int Connections => Volatile.Read(ref _connections);

    public bool IsAtCap => Connections >= _maxConnections;

    /// <summary>Connections closed at once because the listener was at its cap.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>True while the accept loop runs; it only stops when the target stops.</summary>
    public bool IsAccepting
    {
        get => _accepting;
        set => _accepting = value;
    }

    public FailureRecord? LastFailure => Volatile.Read(ref _lastFailure);

    /// <summary>Takes a connection slot; false (and the transition logged) when the listener is at its cap.</summary>
    public bool TryReserve()
    {
        if (Interlocked.Increment(ref _connections) > _maxConnections)
        {
            Interlocked.Decrement(ref _connections);
            Interlocked.Increment(ref _refused);
            if (Interlocked.Exchange(ref _atCap, 1) == 0)
            {
                LogCapReached(_logger, Endpoint, _maxConnections);
            }

            return false;
        }

        return true;
    }

    public void Release()
    {
        var left = Interlocked.Decrement(ref _connections);
        if (Volatile.Read(ref _atCap) != 0 && Saturation.IsWellBelow(left, _maxConnections) && Interlocked.Exchange(ref _atCap, 0) != 0)
        {
            LogBelowCap(_logger, Endpoint, left);
        }
    }

    public void RecordFailure(Exception exception) => Volatile.Write(ref _lastFailure, new FailureRecord(Stopwatch.GetTimestamp(), exception.Message));

    [LoggerMessage(Level = LogLevel.Warning, Message = "NVMe/TCP listener {Endpoint} reached its cap of {MaxConnections} connections: new connections are closed until some end")]
    private static partial void LogCapReached(ILogger logger, IPEndPoint endpoint, int maxConnections);

    [LoggerMessage(Level = LogLevel.Information, Message = "NVMe/TCP listener {Endpoint} accepts new connections again ({Connections} open)")]
    private static partial void LogBelowCap(ILogger logger, IPEndPoint endpoint, int connections);
}

/// <summary>When something failed (a <see cref="Stopwatch"/> timestamp) and what.</summary>
internal sealed record FailureRecord(long Timestamp, string Message)
{
    public TimeSpan Age => Stopwatch.GetElapsedTime(Timestamp);
}
