using System.Diagnostics;
using System.Net;
using CsiNvme.Target.Transport;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target.Listening;

/// <summary>
/// Decides where a connection's receive loop runs. With <see cref="NvmeTargetOptions.DedicatedConnectionThreads"/>,
/// up to <see cref="NvmeTargetOptions.MaxConnectionThreads"/> connections get a thread of their own (the fast path,
/// see docs/performance.md); connections beyond that budget, and any whose thread cannot be started (a pids limit,
/// memory), run the asynchronous loop on the thread pool, which needs no thread of its own. Reaching the budget and
/// failing to start threads are logged once per transition, with the count when threads start again.
/// </summary>
internal sealed partial class ConnectionThreads
{
    private readonly NvmeTargetOptions _options;
    private readonly ILogger _logger;
    private int _running;
    private int _budgetReached;
    private int _failuresInARow;
    private FailureRecord? _lastFailure;

    public ConnectionThreads(NvmeTargetOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
    }

    /// <summary>Connections running on a thread of their own now.</summary>
    public int Running => Volatile.Read(ref _running);

    /// <summary>The last time a connection's thread could not be started, if ever.</summary>
    public FailureRecord? LastFailure => Volatile.Read(ref _lastFailure);

    /// <summary>
    /// Starts the connection's receive loop: on a dedicated thread when allowed and possible, otherwise on the thread
    /// pool. Throws only when neither could be started; the caller then abandons the connection.
    /// </summary>
    public void Run(NvmeTcpConnection connection)
    {
        if (_options.DedicatedConnectionThreads && TryStartDedicated(connection))
        {
            return;
        }

        _ = Task.Run(connection.RunAsync, CancellationToken.None);
    }

    private bool TryStartDedicated(NvmeTcpConnection connection)
    {
        if (Interlocked.Increment(ref _running) > _options.MaxConnectionThreads)
        {
            Interlocked.Decrement(ref _running);
            if (Interlocked.Exchange(ref _budgetReached, 1) == 0)
            {
                LogBudgetReached(_logger, _options.MaxConnectionThreads);
            }

            return false;
        }

        try
        {
            _options.StartConnectionThread(() => RunDedicated(connection));
        }
        catch (Exception ex)
        {
            // Thread.Start throws OutOfMemoryException when the thread cannot be created (EAGAIN from pthread_create
            // under RLIMIT_NPROC or a cgroup's pids.max); whatever it was, the thread did not start.
            Interlocked.Decrement(ref _running);
            Volatile.Write(ref _lastFailure, new FailureRecord(Stopwatch.GetTimestamp(), $"{ex.GetType().Name}: {ex.Message}"));
            if (Interlocked.Increment(ref _failuresInARow) == 1)
            {
                LogThreadStartFailed(_logger, ex, connection.RemoteEndPoint);
            }
            else
            {
                LogThreadStartFailedAgain(_logger, connection.RemoteEndPoint, ex.Message);
            }

            return false;
        }

        var failures = Interlocked.Exchange(ref _failuresInARow, 0);
        if (failures > 0)
        {
            LogThreadsStartAgain(_logger, failures);
        }

        return true;
    }

    private void RunDedicated(NvmeTcpConnection connection)
    {
        try
        {
            connection.RunOnDedicatedThread();
        }
        finally
        {
            var left = Interlocked.Decrement(ref _running);
            if (Volatile.Read(ref _budgetReached) != 0 && Saturation.IsWellBelow(left, _options.MaxConnectionThreads) &&
                Interlocked.Exchange(ref _budgetReached, 0) != 0)
            {
                LogBudgetAvailable(_logger, left);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "All {MaxThreads} NVMe/TCP connection threads are in use: further connections run on the thread pool")]
    private static partial void LogBudgetReached(ILogger logger, int maxThreads);

    [LoggerMessage(Level = LogLevel.Information, Message = "NVMe/TCP connection threads are free again ({Running} in use): new connections get threads of their own")]
    private static partial void LogBudgetAvailable(ILogger logger, int running);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Starting a thread for the NVMe/TCP connection from {Remote} failed (a pids or memory limit?): it and later ones run on the thread pool until a thread starts again")]
    private static partial void LogThreadStartFailed(ILogger logger, Exception exception, IPEndPoint? remote);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Starting a thread for the NVMe/TCP connection from {Remote} failed again: {Error}")]
    private static partial void LogThreadStartFailedAgain(ILogger logger, IPEndPoint? remote, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "NVMe/TCP connection threads start again after {Failures} failed to start")]
    private static partial void LogThreadsStartAgain(ILogger logger, int failures);
}
