using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using CsiNvme.Target.Subsystems;
using CsiNvme.Target.Transport;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target;

public sealed partial class NvmeTarget
{
    private readonly ConcurrentDictionary<NvmeTcpConnection, byte> _connections = new();
    private readonly List<Socket> _listeners = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _acceptLoops = new();
    private Subsystem? _discoverySubsystem;
    private int _started;

    /// <summary>Number of open NVMe/TCP connections (each carries one queue).</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>When the target started; SMART power-on hours count from here.</summary>
    public DateTime StartedAt { get; private set; } = DateTime.UtcNow;

    /// <summary>The discovery subsystem: any host may connect and sees the subsystems it is allowed to use.</summary>
    internal Subsystem DiscoverySubsystem => _discoverySubsystem ??= new Subsystem(DiscoveryNqn, DiscoverySerialNumber, allowAnyHost: true);

    internal string DiscoverySerialNumber => "csinvme-discovery";

    /// <summary>Binds every endpoint of <see cref="NvmeTargetOptions.Listen"/> and starts accepting hosts.</summary>
    public IReadOnlyList<IPEndPoint> Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException("the target is already started");
        }

        ValidateOptions(Options);
        StartedAt = DateTime.UtcNow;
        var bound = new List<IPEndPoint>();
        try
        {
            foreach (var endpoint in Options.Listen)
            {
                var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                if (endpoint.AddressFamily == AddressFamily.InterNetworkV6 && endpoint.Address.Equals(IPAddress.IPv6Any))
                {
                    socket.DualMode = true;
                }

                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(endpoint);
                socket.Listen(512);
                _listeners.Add(socket);
                bound.Add((IPEndPoint)socket.LocalEndPoint!);
            }
        }
        catch
        {
            foreach (var socket in _listeners)
            {
                socket.Dispose();
            }

            _listeners.Clear();
            throw;
        }

        LocalEndpoints = bound;
        foreach (var socket in _listeners)
        {
            LogListening(_logger, (IPEndPoint)socket.LocalEndPoint!);
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(socket)));
        }

        return bound;
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
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        var token = _stopping.Token;
        while (!token.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                LogAcceptFailed(_logger, ex.SocketErrorCode);
                continue;
            }

            socket.NoDelay = true;
            var connection = new NvmeTcpConnection(this, socket, _loggerFactory.CreateLogger<NvmeTcpConnection>());
            _connections.TryAdd(connection, 0);
            Observer?.ConnectionOpened();
            if (Options.DedicatedConnectionThreads)
            {
                new Thread(connection.RunOnDedicatedThread) { IsBackground = true, Name = "nvme-tcp-connection" }.Start();
            }
            else
            {
                _ = Task.Run(connection.RunAsync, CancellationToken.None);
            }
        }
    }

    internal void ConnectionClosed(NvmeTcpConnection connection)
    {
        if (_connections.TryRemove(connection, out _))
        {
            Observer?.ConnectionClosed();
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
        foreach (var socket in _listeners)
        {
            socket.Dispose();
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

    internal void LogConnectRejected(IPEndPoint? remote, string hostNqn, string subsystemNqn, string reason) =>
        LogConnectRejectedCore(_logger, remote, hostNqn, subsystemNqn, reason);

    internal void LogControllerCreated(ushort controllerId, string hostNqn, string subsystemNqn, uint keepAliveMs) =>
        LogControllerCreatedCore(_logger, controllerId, hostNqn, subsystemNqn, keepAliveMs);

    internal void LogIoQueueConnected(ushort controllerId, ushort queueId, int entries, bool sqFlowControlDisabled) =>
        LogIoQueueConnectedCore(_logger, controllerId, queueId, entries, sqFlowControlDisabled ? "off" : "on");

    internal void LogControllerRemoved(ushort controllerId, string hostNqn, string subsystemNqn, string reason) =>
        LogControllerRemovedCore(_logger, controllerId, hostNqn, subsystemNqn, reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "NVMe/TCP target listening on {Endpoint}")]
    private static partial void LogListening(ILogger logger, IPEndPoint endpoint);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Accepting an NVMe/TCP connection failed: {Error}")]
    private static partial void LogAcceptFailed(ILogger logger, SocketError error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Connect from {Remote} (host {HostNqn}) to {SubsystemNqn} rejected: {Reason}")]
    private static partial void LogConnectRejectedCore(ILogger logger, IPEndPoint? remote, string hostNqn, string subsystemNqn, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Controller {ControllerId} created for host {HostNqn} on {SubsystemNqn} (KATO {KeepAliveMs} ms)")]
    private static partial void LogControllerCreatedCore(ILogger logger, ushort controllerId, string hostNqn, string subsystemNqn, uint keepAliveMs);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Controller {ControllerId} I/O queue {QueueId} connected: {Entries} entries, SQ flow control {SqFlowControl}")]
    private static partial void LogIoQueueConnectedCore(ILogger logger, ushort controllerId, ushort queueId, int entries, string sqFlowControl);

    [LoggerMessage(Level = LogLevel.Information, Message = "Controller {ControllerId} of host {HostNqn} on {SubsystemNqn} removed: {Reason}")]
    private static partial void LogControllerRemovedCore(ILogger logger, ushort controllerId, string hostNqn, string subsystemNqn, string reason);
}
