using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using CsiNvme.Target.Listening;
using CsiNvme.Target.Subsystems;
using CsiNvme.Target.Transport;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target;

public sealed partial class NvmeTarget
{
    private static readonly TimeSpan _longestAcceptBackoff = TimeSpan.FromSeconds(1);

    // Each open connection with the listener that accepted it, whose slot it holds.
    private readonly ConcurrentDictionary<NvmeTcpConnection, AcceptingListener> _connections = new();
    private readonly List<AcceptingListener> _listeners = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _acceptLoops = new();
    private ConnectionThreads? _connectionThreads;
    private HostConnectionLimit? _hostLimit;
    private Timer? _connectTimeoutSweep;
    private Subsystem? _discoverySubsystem;
    private int _started;

    /// <summary>Number of open NVMe/TCP connections (each carries one queue).</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>Connections running on a thread of their own (the rest run on the thread pool).</summary>
    public int DedicatedThreadCount => _connectionThreads?.Running ?? 0;

    /// <summary>Connections closed as soon as they were accepted because their listener held its cap.</summary>
    public long ConnectionsRefusedAtCap => _listeners.Sum(l => l.Refused);

    /// <summary>When the target started; SMART power-on hours count from here.</summary>
    public DateTime StartedAt { get; private set; } = DateTime.UtcNow;

    /// <summary>The discovery subsystem: any host may connect and sees the subsystems it is allowed to use.</summary>
    internal Subsystem DiscoverySubsystem => _discoverySubsystem ??= new Subsystem(DiscoveryNqn, DiscoverySerialNumber, allowAnyHost: true);

    internal string DiscoverySerialNumber => "csinvme-discovery";

    /// <summary>
    /// Whether the target can take new hosts now. Not ready: before <see cref="Start"/> and once stopping; when an
    /// accept loop is not running (it only ends when the target stops, so this would be a bug); when a listener holds
    /// its <see cref="NvmeTargetOptions.MaxConnections"/>; for <see cref="NvmeTargetOptions.UnreadyAfterFailure"/>
    /// after accepting a connection failed (file descriptors, memory) or after a connection's thread failed to start
    /// (a pids limit: connections are still served, on the thread pool, but the process is at a limit). The per-host
    /// cap does not count: one host at its cap says nothing about the others.
    /// </summary>
    public TargetReadiness Readiness
    {
        get
        {
            if (Volatile.Read(ref _started) == 0)
            {
                return TargetReadiness.NotReady("the NVMe/TCP target is not started");
            }

            if (_stopping.IsCancellationRequested)
            {
                return TargetReadiness.NotReady("the NVMe/TCP target is stopping");
            }

            var window = Options.UnreadyAfterFailure;
            foreach (var listener in _listeners)
            {
                if (!listener.IsAccepting)
                {
                    return TargetReadiness.NotReady($"the accept loop of NVMe/TCP listener {listener.Endpoint} is not running");
                }

                if (listener.IsAtCap)
                {
                    return TargetReadiness.NotReady($"NVMe/TCP listener {listener.Endpoint} holds its cap of {listener.MaxConnections} connections");
                }

                if (listener.LastFailure is { } failure && failure.Age < window)
                {
                    return TargetReadiness.NotReady($"accepting on NVMe/TCP listener {listener.Endpoint} failed {Seconds(failure.Age)} s ago: {failure.Message}");
                }
            }

            if (_connectionThreads?.LastFailure is { } threadFailure && threadFailure.Age < window)
            {
                return TargetReadiness.NotReady(
                    $"a connection thread failed to start {Seconds(threadFailure.Age)} s ago ({threadFailure.Message}); connections run on the thread pool meanwhile");
            }

            return TargetReadiness.Ready;
        }
    }

    private static string Seconds(TimeSpan age) => age.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture);

    /// <summary>Binds every endpoint of <see cref="NvmeTargetOptions.Listen"/> and starts accepting hosts.</summary>
    public IReadOnlyList<IPEndPoint> Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException("the target is already started");
        }

        ValidateOptions(Options);
        StartedAt = DateTime.UtcNow;
        var sockets = new List<Socket>();
        try
        {
            foreach (var endpoint in Options.Listen)
            {
                var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                sockets.Add(socket);
                if (endpoint.AddressFamily == AddressFamily.InterNetworkV6 && endpoint.Address.Equals(IPAddress.IPv6Any))
                {
                    socket.DualMode = true;
                }

                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(endpoint);
                socket.Listen(512);
            }
        }
        catch
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }

            throw;
        }

        _connectionThreads = new ConnectionThreads(Options, _logger);
        _hostLimit = new HostConnectionLimit(Options.EffectiveMaxConnectionsPerHost, _logger);
        _listeners.AddRange(sockets.Select(s => new AcceptingListener(s, Options.MaxConnections, _logger)));
        LocalEndpoints = _listeners.Select(l => l.Endpoint).ToArray();
        var sweepPeriod = TimeSpan.FromTicks(Math.Clamp(Options.ConnectTimeout.Ticks / 4, TimeSpan.TicksPerMillisecond * 10, TimeSpan.TicksPerSecond));
        _connectTimeoutSweep = new Timer(CloseConnectionsWithoutConnect, null, sweepPeriod, sweepPeriod);
        foreach (var listener in _listeners)
        {
            LogListening(_logger, listener.Endpoint);
            listener.IsAccepting = true;
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener)));
        }

        return LocalEndpoints;
    }

    private static void ValidateOptions(NvmeTargetOptions options)
    {
        if (options.MaxDataTransferSize < 4096 || (options.MaxDataTransferSize & (options.MaxDataTransferSize - 1)) != 0)
        {
            throw new ArgumentException("MaxDataTransferSize must be a power of two of at least 4096");
        }

        if (options.MaxH2CDataSize < 4096 || options.MaxH2CDataSize % 4 != 0)
        {
            throw new ArgumentException("MaxH2CDataSize must be a multiple of 4 and at least 4096 (TCP 1.0, 3.6.2.3)");
        }

        if (options.InCapsuleDataSize < 0 || options.InCapsuleDataSize % 16 != 0)
        {
            throw new ArgumentException("InCapsuleDataSize must be a non-negative multiple of 16");
        }

        if (options.MaxQueueEntries is < 32 or > 65536 || options.MaxIoQueues is < 1 or > 0xFFFE)
        {
            throw new ArgumentException("MaxQueueEntries must be 32..65536 and MaxIoQueues 1..65534");
        }

        // CNTLID 0xFFF0..0xFFFF are reserved (NVMe base 2.0, 5.27.1.1), 0 is avoided so a zero never looks valid.
        if (options.ControllerIdBase == 0 || options.ControllerIdCount == 0 || options.ControllerIdBase + options.ControllerIdCount - 1 > 0xFFEF)
        {
            throw new ArgumentException("the controller id range must lie within 1..0xFFEF");
        }

        if (options.MaxConnections < 1 || options.EffectiveMaxConnectionsPerHost < 1 || options.MaxConnectionThreads < 0)
        {
            throw new ArgumentException("MaxConnections and MaxConnectionsPerHost must be at least 1, MaxConnectionThreads at least 0");
        }

        if (options.ConnectTimeout <= TimeSpan.Zero || options.UnreadyAfterFailure < TimeSpan.Zero)
        {
            throw new ArgumentException("ConnectTimeout must be positive and UnreadyAfterFailure not negative");
        }
    }

    /// <summary>
    /// Accepts connections until the target stops. Nothing ends it before: a failure (of accept itself, or of setting a
    /// connection up) is logged, counted for <see cref="Readiness"/>, and followed by a short pause that doubles with
    /// each failure in a row, up to a second, so that a lasting cause (no file descriptors left) does not spin.
    /// </summary>
    private async Task AcceptLoopAsync(AcceptingListener listener)
    {
        var token = _stopping.Token;
        var failuresInARow = 0;
        try
        {
            while (!token.IsCancellationRequested)
            {
                try
                {
                    if (failuresInARow > 0)
                    {
                        await Task.Delay(BackoffAfter(failuresInARow), token).ConfigureAwait(false);
                    }

                    var socket = await listener.Socket.AcceptAsync(token).ConfigureAwait(false);
                    Admit(listener, socket);
                    failuresInARow = 0;
                }
                catch (Exception) when (token.IsCancellationRequested)
                {
                    return;
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
                {
                    // The peer gave up before its connection was accepted: about that peer, not the listener.
                    LogPeerGoneBeforeAccept(_logger, listener.Endpoint, ex.SocketErrorCode);
                }
                catch (Exception ex)
                {
                    failuresInARow++;
                    listener.RecordFailure(ex);
                    LogAcceptFailed(_logger, ex, listener.Endpoint, (int)BackoffAfter(failuresInARow).TotalMilliseconds);
                }
            }
        }
        finally
        {
            listener.IsAccepting = false;
            if (!token.IsCancellationRequested)
            {
                LogAcceptLoopEnded(_logger, listener.Endpoint);
            }
        }
    }

    private static TimeSpan BackoffAfter(int failuresInARow) =>
        TimeSpan.FromMilliseconds(Math.Min(_longestAcceptBackoff.TotalMilliseconds, 10 << Math.Min(failuresInARow - 1, 10)));

    /// <summary>
    /// Takes an accepted socket: a slot of its listener (or the socket is closed at once when the listener is at its
    /// cap), then the connection on a thread of its own or on the thread pool. Throws only when the connection could
    /// not be set up at all; by then the slot and the socket are released, and nothing counts it.
    /// </summary>
    private void Admit(AcceptingListener listener, Socket socket)
    {
        if (!listener.TryReserve())
        {
            socket.Dispose();
            return;
        }

        NvmeTcpConnection connection;
        try
        {
            socket.NoDelay = true;
            connection = new NvmeTcpConnection(this, socket, _connectionLogger);
            Observer?.ConnectionOpened();
        }
        catch (SocketException ex)
        {
            listener.Release();
            socket.Dispose();
            LogPeerGoneBeforeAccept(_logger, listener.Endpoint, ex.SocketErrorCode);
            return;
        }
        catch
        {
            listener.Release();
            socket.Dispose();
            throw;
        }

        _connections.TryAdd(connection, listener);
        try
        {
            _connectionThreads!.Run(connection);
        }
        catch
        {
            connection.Abandon("its receive loop could not be started");
            throw;
        }
    }

    internal void ConnectionClosed(NvmeTcpConnection connection)
    {
        if (_connections.TryRemove(connection, out var listener))
        {
            listener.Release();
            ReleaseHost(connection);
            Observer?.ConnectionClosed();
        }
    }

    /// <summary>
    /// Counts a Connect of <paramref name="hostNqn"/> against the per-host cap until the connection ends; false when
    /// the host holds its cap already.
    /// </summary>
    internal bool TryAdmitHost(NvmeTcpConnection connection, string hostNqn)
    {
        if (!_hostLimit!.TryAdd(hostNqn))
        {
            return false;
        }

        connection.AdmittedHostNqn = hostNqn;
        return true;
    }

    /// <summary>Gives back the per-host count taken by <see cref="TryAdmitHost"/>, if any.</summary>
    internal void ReleaseHost(NvmeTcpConnection connection)
    {
        if (connection.AdmittedHostNqn is { } hostNqn)
        {
            connection.AdmittedHostNqn = null;
            _hostLimit!.Remove(hostNqn);
        }
    }

    internal int MaxConnectionsPerHost => _hostLimit?.MaxPerHost ?? Options.EffectiveMaxConnectionsPerHost;

    /// <summary>
    /// Closes connections that were accepted longer than <see cref="NvmeTargetOptions.ConnectTimeout"/> ago and have no
    /// queue yet, or a queue that owes an authentication (never completed, or failed).
    /// </summary>
    private void CloseConnectionsWithoutConnect(object? state)
    {
        try
        {
            var timeout = Options.ConnectTimeout;
            foreach (var (connection, _) in _connections)
            {
                if (!connection.IsAdmitted && !connection.IsClosed && Stopwatch.GetElapsedTime(connection.AcceptedTimestamp) > timeout)
                {
                    if (connection.IsQueueBound)
                    {
                        LogNoAuthenticationInTime(_logger, connection.RemoteEndPoint, connection.Controller?.HostNqn ?? "", timeout.TotalSeconds);
                        connection.Controller?.Shutdown("no authentication in time");
                        connection.Close("no authentication in time");
                        continue;
                    }

                    LogNoConnectInTime(_logger, connection.RemoteEndPoint, timeout.TotalSeconds);
                    connection.Close("no ICReq and Connect in time");
                }
            }
        }
        catch (Exception ex)
        {
            // A timer callback that throws would end the process.
            LogConnectTimeoutSweepFailed(_logger, ex);
        }
    }

    /// <summary>Stops listening and closes every connection; volumes are left to their owner.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }

        _stopping.Cancel();
        if (_connectTimeoutSweep is not null)
        {
            await _connectTimeoutSweep.DisposeAsync().ConfigureAwait(false);
        }

        foreach (var listener in _listeners)
        {
            listener.Socket.Dispose();
        }

        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        foreach (var subsystem in _subsystems.Values)
        {
            subsystem.DisconnectAll();
        }

        _discoverySubsystem?.DisconnectAll();
        foreach (var connection in _connections.Keys)
        {
            connection.Close("target stopping");
        }

        _stopping.Dispose();
    }

    /// <summary>The one log line of a refused Connect; every refusal goes through here exactly once.</summary>
    internal void LogConnectRejected(IPEndPoint? remote, string hostNqn, string subsystemNqn, string reason) =>
        LogConnectRejectedCore(_logger, remote, LogText.Nqn(hostNqn), LogText.Nqn(subsystemNqn), reason);

    internal void LogControllerCreated(ushort controllerId, string hostNqn, string subsystemNqn, uint keepAliveMs) =>
        LogControllerCreatedCore(_logger, controllerId, LogText.Nqn(hostNqn), subsystemNqn, keepAliveMs);

    internal void LogIoQueueConnected(ushort controllerId, ushort queueId, int entries, bool sqFlowControlDisabled) =>
        LogIoQueueConnectedCore(_logger, controllerId, queueId, entries, sqFlowControlDisabled ? "off" : "on");

    internal void LogControllerRemoved(ushort controllerId, string hostNqn, string subsystemNqn, string reason) =>
        LogControllerRemovedCore(_logger, controllerId, LogText.Nqn(hostNqn), subsystemNqn, reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "NVMe/TCP target listening on {Endpoint}")]
    private static partial void LogListening(ILogger logger, IPEndPoint endpoint);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Accepting an NVMe/TCP connection on {Endpoint} failed; accepting again in {DelayMs} ms")]
    private static partial void LogAcceptFailed(ILogger logger, Exception exception, IPEndPoint endpoint, int delayMs);

    [LoggerMessage(Level = LogLevel.Debug, Message = "An NVMe/TCP connection to {Endpoint} was gone before it was set up: {Error}")]
    private static partial void LogPeerGoneBeforeAccept(ILogger logger, IPEndPoint endpoint, SocketError error);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The accept loop of NVMe/TCP listener {Endpoint} ended although the target runs: no new host can connect there")]
    private static partial void LogAcceptLoopEnded(ILogger logger, IPEndPoint endpoint);

    [LoggerMessage(Level = LogLevel.Information, Message = "NVMe/TCP connection from {Remote} closed: no ICReq and Connect within {TimeoutSeconds} s")]
    private static partial void LogNoConnectInTime(ILogger logger, IPEndPoint? remote, double timeoutSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "NVMe/TCP connection from {Remote} (host {HostNqn}) closed: no DH-HMAC-CHAP authentication within {TimeoutSeconds} s of connecting")]
    private static partial void LogNoAuthenticationInTime(ILogger logger, IPEndPoint? remote, string hostNqn, double timeoutSeconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "Closing NVMe/TCP connections without a Connect failed")]
    private static partial void LogConnectTimeoutSweepFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Connect from {Remote} (host {HostNqn}) to {SubsystemNqn} rejected: {Reason}")]
    private static partial void LogConnectRejectedCore(ILogger logger, IPEndPoint? remote, string hostNqn, string subsystemNqn, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Controller {ControllerId} created for host {HostNqn} on {SubsystemNqn} (KATO {KeepAliveMs} ms)")]
    private static partial void LogControllerCreatedCore(ILogger logger, ushort controllerId, string hostNqn, string subsystemNqn, uint keepAliveMs);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Controller {ControllerId} I/O queue {QueueId} connected: {Entries} entries, SQ flow control {SqFlowControl}")]
    private static partial void LogIoQueueConnectedCore(ILogger logger, ushort controllerId, ushort queueId, int entries, string sqFlowControl);

    [LoggerMessage(Level = LogLevel.Information, Message = "Controller {ControllerId} of host {HostNqn} on {SubsystemNqn} removed: {Reason}")]
    private static partial void LogControllerRemovedCore(ILogger logger, ushort controllerId, string hostNqn, string subsystemNqn, string reason);
}
