using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using CsiNvme.Host.Transport;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Fabrics;
using CsiNvme.Protocol.Identify;
using CsiNvme.Protocol.Logs;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Host;

/// <summary>
/// A connected controller: the admin queue, the I/O queues and the association's upkeep (keep-alive, Asynchronous
/// Event Requests, reconnect). Set up the way the Linux host does it (NVMe-oF 1.1, 3.5): Connect, Property Get CAP and
/// VS, CC.EN with IOSQES/IOCQES, wait for CSTS.RDY, Identify, Set Features Number of Queues and Asynchronous Event
/// Configuration, then one Connect per I/O queue. When any connection drops, every queue is torn down, outstanding
/// commands fail with a host path error, and the whole association is rebuilt with exponential backoff.
/// </summary>
public sealed partial class NvmeController : IAsyncDisposable
{
    private const byte SglFlags = 0x40;
    private const int AdminQueueSize = 32;
    private const int AdminMaxData = 64 * 1024;
    // CC (NVMe base 2.0, 3.1.3.5): EN bit 0, SHN bits 15:14, IOSQES bits 19:16 (2^6 = 64), IOCQES bits 23:20 (2^4 = 16).
    private const uint CcEnable = 1;
    private const uint CcQueueEntrySizes = (6u << 16) | (4u << 20);
    private const uint CcNormalShutdown = 1u << 14;
    private const uint AecNamespaceAttribute = 1u << 8;

    private readonly EndPoint _endpoint;
    private readonly NvmeTcpHostOptions _options;
    private readonly ILogger _logger;
    private readonly QueuePair _admin;
    private readonly List<IoQueue> _ioQueues = new();
    private readonly List<NvmeNamespace> _namespaces = new();
    private readonly CancellationTokenSource _disposing = new();
    private readonly object _stateGate = new();
    private Timer? _keepAliveTimer;
    private Task _reconnect = Task.CompletedTask;
    private ControllerState _state = ControllerState.Reconnecting;
    private int _reconnects;

    private NvmeController(EndPoint endpoint, string subsystemNqn, bool isDiscovery, NvmeTcpHostOptions options, ILogger logger)
    {
        _endpoint = endpoint;
        SubsystemNqn = subsystemNqn;
        IsDiscovery = isDiscovery;
        _options = options;
        _logger = logger;
        _admin = new QueuePair(0, AdminQueueSize, AdminMaxData, 8192, logger) { SecureChannel = SecureChannel() };
        _admin.ConnectionLost += OnConnectionLost;
    }

    public string SubsystemNqn { get; }

    /// <summary>The TLS channel factory of every queue when the options carry a PSK (identity: this host, this subsystem).</summary>
    private Func<System.Net.Sockets.Socket, CsiNvme.Protocol.Tls.TlsChannel>? SecureChannel()
    {
        if (_options.TlsPsk is not { } psk)
        {
            return null;
        }

        var identity = psk.IdentityFor(_options.HostNqn, SubsystemNqn, _options.TlsIdentityVersion);
        return socket => CsiNvme.Protocol.Tls.TlsChannel.ForClient(socket, psk, identity);
    }

    public bool IsDiscovery { get; }

    public ControllerState State
    {
        get
        {
            lock (_stateGate)
            {
                return _state;
            }
        }
    }

    /// <summary>CNTLID of the current association (it changes on reconnect: the controller is dynamic).</summary>
    public ushort ControllerId { get; private set; }

    /// <summary>CAP (NVMe base 2.0, 3.1.3.1).</summary>
    public ulong Capabilities { get; private set; }

    /// <summary>VS, e.g. 0x00010400 for 1.4.</summary>
    public uint Version { get; private set; }

    public IdentifyController Identify { get; private set; } = new();

    public IReadOnlyList<NvmeNamespace> Namespaces
    {
        get
        {
            lock (_namespaces)
            {
                return _namespaces.ToArray();
            }
        }
    }

    public IReadOnlyList<IoQueue> IoQueues => _ioQueues;

    /// <summary>How many times the association was rebuilt after a connection loss.</summary>
    public int ReconnectCount => Volatile.Read(ref _reconnects);

    /// <summary>Keep Alive commands sent and completed successfully.</summary>
    public long KeepAlivesSent => Interlocked.Read(ref _keepAlives);

    private long _keepAlives;

    /// <summary>An Asynchronous Event arrived (on a thread pool thread). Handlers must not block for long.</summary>
    public event Action<NvmeController, AsyncEvent>? AsyncEventReceived;

    /// <summary>The state changed (live, reconnecting, failed, closed).</summary>
    public event Action<NvmeController, ControllerState>? StateChanged;

    public NvmeNamespace? FindNamespace(uint namespaceId) => Namespaces.FirstOrDefault(n => n.NamespaceId == namespaceId);

    internal static async Task<NvmeController> ConnectAsync(EndPoint endpoint, string subsystemNqn, bool isDiscovery, NvmeTcpHostOptions options, ILogger logger, CancellationToken cancellationToken)
    {
        var controller = new NvmeController(endpoint, subsystemNqn, isDiscovery, options, logger);
        try
        {
            await controller.EstablishAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await controller.CloseQueuesAsync("connect failed").ConfigureAwait(false);
            throw;
        }

        controller.SetState(ControllerState.Live);
        return controller;
    }

    // ---- association setup ----

    private async Task EstablishAsync(CancellationToken cancellationToken)
    {
        var timeout = _options.ConnectTimeout;
        await _admin.OpenAsync(_endpoint, _options.HeaderDigest, _options.DataDigest, timeout, cancellationToken).ConfigureAwait(false);
        // Linux sends KATO 0 to a non-persistent discovery controller.
        var keepAliveMs = IsDiscovery ? 0u : (uint)_options.KeepAliveTimeout.TotalMilliseconds;
        ControllerId = await _admin.ConnectAsync(SubsystemNqn, _options.HostNqn, _options.HostId, ConnectData.DynamicControllerId, keepAliveMs, timeout).ConfigureAwait(false);

        Capabilities = await PropertyGetAsync(PropertyOffset.Capabilities, eightBytes: true).ConfigureAwait(false);
        Version = (uint)await PropertyGetAsync(PropertyOffset.Version, eightBytes: false).ConfigureAwait(false);
        await PropertySetAsync(PropertyOffset.ControllerConfiguration, CcQueueEntrySizes | CcEnable).ConfigureAwait(false);
        await WaitReadyAsync(cancellationToken).ConfigureAwait(false);

        var identify = new byte[IdentifyController.Size];
        (await AdminAsync(IdentifySqe(IdentifyCns.Controller, 0), default, identify).ConfigureAwait(false)).EnsureSuccess("Identify Controller");
        Identify = IdentifyController.Read(identify);
        if (Identify.ControllerId != ControllerId)
        {
            throw new NvmeTransportException($"Identify reports CNTLID {Identify.ControllerId}, Connect returned {ControllerId}");
        }

        if (!IsDiscovery)
        {
            await SetUpIoAsync(cancellationToken).ConfigureAwait(false);
        }

        if (keepAliveMs > 0)
        {
            var period = TimeSpan.FromMilliseconds(keepAliveMs / 2.0);
            _keepAliveTimer?.Dispose();
            _keepAliveTimer = new Timer(static s => _ = ((NvmeController)s!).SendKeepAliveAsync(), this, period, period);
        }
    }

    private async Task WaitReadyAsync(CancellationToken cancellationToken)
    {
        // CAP.TO (bits 31:24) is the worst-case time to ready in 500 ms units.
        var limit = TimeSpan.FromMilliseconds(Math.Max(1, (Capabilities >> 24) & 0xFF) * 500);
        var elapsed = Stopwatch.StartNew();
        var delay = 1;
        while (true)
        {
            var status = await PropertyGetAsync(PropertyOffset.ControllerStatus, eightBytes: false).ConfigureAwait(false);
            if ((status & 2) != 0)
            {
                throw new NvmeTransportException("the controller reports a fatal status (CSTS.CFS) while enabling");
            }

            if ((status & 1) != 0)
            {
                return;
            }

            if (elapsed.Elapsed > limit)
            {
                throw new NvmeTransportException($"CSTS.RDY did not become 1 within {limit.TotalSeconds} s");
            }

            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            delay = Math.Min(delay * 2, 100);
        }
    }

    private async Task SetUpIoAsync(CancellationToken cancellationToken)
    {
        var mdts = Identify.MaxDataTransferSizeExponent;
        var maxTransfer = mdts == 0 ? _options.MaxTransferSize : (int)Math.Min(_options.MaxTransferSize, 4096L << mdts);
        // IOCCSZ counts 16-byte units of the whole capsule, SQE included (NVMe-oF 1.1, 4.1).
        var inCapsule = (int)Math.Clamp(Identify.IoQueueCommandCapsuleSize * 16L - SubmissionQueueEntry_Size, 0, _options.MaxInCapsuleData);

        var wanted = Math.Max(1, _options.IoQueueCount);
        var granted = await SetFeaturesAsync(FeatureId.NumberOfQueues, (uint)(wanted - 1) | ((uint)(wanted - 1) << 16)).ConfigureAwait(false);
        var queues = (int)Math.Min(wanted, Math.Min((granted & 0xFFFF) + 1, (granted >> 16) + 1));

        if ((Identify.OptionalAsyncEvents & AecNamespaceAttribute) != 0)
        {
            await SetFeaturesAsync(FeatureId.AsyncEventConfiguration, AecNamespaceAttribute).ConfigureAwait(false);
        }

        await RefreshNamespacesAsync().ConfigureAwait(false);

        var entries = (int)Math.Min((ulong)_options.IoQueueSize, (Capabilities & 0xFFFF) + 1);
        if (Identify.MaxOutstandingCommands > 0)
        {
            entries = Math.Min(entries, Identify.MaxOutstandingCommands);
        }

        entries = Math.Min(entries, CommandSlot.MaxSlots);
        if (_ioQueues.Count == 0)
        {
            for (var i = 1; i <= queues; i++)
            {
                var pair = new QueuePair((ushort)i, entries, maxTransfer, _options.MaxH2CDataChunk, _logger, _options.DedicatedQueueThreads, _options.ReceivePollTime)
                {
                    InCapsuleLimit = inCapsule,
                    SecureChannel = SecureChannel(),
                };
                pair.ConnectionLost += OnConnectionLost;
                _ioQueues.Add(new IoQueue(pair));
            }
        }
        else if (queues < _ioQueues.Count)
        {
            throw new NvmeTransportException($"the controller now grants {queues} I/O queues, {_ioQueues.Count} were in use");
        }

        foreach (var queue in _ioQueues)
        {
            await queue.Pair.OpenAsync(_endpoint, _options.HeaderDigest, _options.DataDigest, _options.ConnectTimeout, cancellationToken).ConfigureAwait(false);
            await queue.Pair.ConnectAsync(SubsystemNqn, _options.HostNqn, _options.HostId, ControllerId, 0, _options.ConnectTimeout, _options.DisableSqFlowControl).ConfigureAwait(false);
        }

        if (Identify.OptionalAsyncEvents != 0)
        {
            _ = Task.Run(AsyncEventLoopAsync, CancellationToken.None);
        }
    }

    private const int SubmissionQueueEntry_Size = SubmissionQueueEntry.Size;

    /// <summary>Re-reads the active namespace list (CNS 02h) and each namespace (CNS 00h and 03h).</summary>
    public async Task RefreshNamespacesAsync()
    {
        var list = new byte[ActiveNamespaceList.Size];
        (await AdminAsync(IdentifySqe(IdentifyCns.ActiveNamespaceList, 0), default, list).ConfigureAwait(false)).EnsureSuccess("Identify active namespace list");
        var active = ActiveNamespaceList.Read(list);
        var refreshed = new List<NvmeNamespace>();
        foreach (var nsid in active)
        {
            var ns = FindNamespace(nsid) ?? new NvmeNamespace(nsid);
            await RefreshNamespaceAsync(ns).ConfigureAwait(false);
            refreshed.Add(ns);
        }

        lock (_namespaces)
        {
            _namespaces.Clear();
            _namespaces.AddRange(refreshed);
        }
    }

    private async Task RefreshNamespaceAsync(NvmeNamespace ns)
    {
        var identify = new byte[IdentifyNamespace.Size];
        (await AdminAsync(IdentifySqe(IdentifyCns.Namespace, ns.NamespaceId), default, identify).ConfigureAwait(false)).EnsureSuccess($"Identify Namespace {ns.NamespaceId}");
        var descriptors = new byte[NamespaceIdDescriptor.ListSize];
        var descriptorStatus = await AdminAsync(IdentifySqe(IdentifyCns.NamespaceIdDescriptorList, ns.NamespaceId), default, descriptors).ConfigureAwait(false);
        ns.Update(IdentifyNamespace.Read(identify), descriptorStatus.IsSuccess ? NamespaceIdDescriptor.ReadList(descriptors) : []);
    }

    // ---- admin commands ----

    /// <summary>Runs one admin command; the CID and SGL of <paramref name="sqe"/> are filled in.</summary>
    public async Task<NvmeCompletion> AdminAsync(SubmissionQueueEntry sqe, ReadOnlyMemory<byte> dataOut, Memory<byte> dataIn)
    {
        return await _admin.WithTimeout(_admin.Submit(sqe, dataOut, dataIn, exactData: false), _options.ConnectTimeout, $"admin command {sqe.Opcode:X2}").ConfigureAwait(false);
    }

    /// <summary>Get Log Page (NVMe base 2.0, 5.16): NUMD 0-based dwords split over CDW10/11, LPO in CDW12/13.</summary>
    public async Task<NvmeCompletion> GetLogPageAsync(LogPageId logPage, ulong offset, Memory<byte> destination, bool retainAsyncEvent = false, uint namespaceId = 0xFFFFFFFF)
    {
        var dwords = (uint)(destination.Length / 4) - 1;
        var cdw10 = (uint)logPage | (retainAsyncEvent ? 1u << 15 : 0) | ((dwords & 0xFFFF) << 16);
        var sqe = new SubmissionQueueEntry((byte)AdminOpcode.GetLogPage, SglFlags, 0, namespaceId, default,
            cdw10, dwords >> 16, (uint)offset, (uint)(offset >> 32), 0, 0);
        return await AdminAsync(sqe, default, destination).ConfigureAwait(false);
    }

    /// <summary>Set Features; returns completion DW0 (for Number of Queues: the granted counts, 0-based).</summary>
    public async Task<uint> SetFeaturesAsync(FeatureId feature, uint value)
    {
        var sqe = new SubmissionQueueEntry((byte)AdminOpcode.SetFeatures, SglFlags, 0, 0, default, (uint)feature, value, 0, 0, 0, 0);
        return (await AdminAsync(sqe, default, default).ConfigureAwait(false)).EnsureSuccess($"Set Features {feature}").Dw0;
    }

    public async Task<uint> GetFeaturesAsync(FeatureId feature)
    {
        var sqe = new SubmissionQueueEntry((byte)AdminOpcode.GetFeatures, SglFlags, 0, 0, default, (uint)feature, 0, 0, 0, 0, 0);
        return (await AdminAsync(sqe, default, default).ConfigureAwait(false)).EnsureSuccess($"Get Features {feature}").Dw0;
    }

    /// <summary>Sends one Keep Alive now (the timer sends them every KATO/2 by itself).</summary>
    public async Task<NvmeCompletion> KeepAliveAsync()
    {
        var sqe = new SubmissionQueueEntry((byte)AdminOpcode.KeepAlive, SglFlags, 0, 0, default, 0, 0, 0, 0, 0, 0);
        var completion = await AdminAsync(sqe, default, default).ConfigureAwait(false);
        if (completion.IsSuccess)
        {
            Interlocked.Increment(ref _keepAlives);
        }

        return completion;
    }

    /// <summary>
    /// Reads the whole Discovery log page (NVMe-oF 1.1, 5.3) the way libnvme does: the header, then header and records
    /// by offset in 4 KiB pieces, then the header again; if GENCTR moved in between, start over.
    /// </summary>
    public async Task<DiscoveryLogPage> GetDiscoveryLogAsync()
    {
        const int Chunk = 4096;
        for (var attempt = 0; attempt < 10; attempt++)
        {
            var header = new byte[DiscoveryLog.HeaderSize];
            (await GetLogPageAsync(LogPageId.Discovery, 0, header, retainAsyncEvent: true, namespaceId: 0).ConfigureAwait(false)).EnsureSuccess("Get Log Page (discovery header)");
            var generation = BinaryPrimitives.ReadUInt64LittleEndian(header);
            var records = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8));
            if (records > 1024)
            {
                throw new NvmeTransportException($"the discovery log claims {records} records");
            }

            var page = new byte[DiscoveryLog.HeaderSize + (int)records * DiscoveryLogEntry.Size];
            for (var offset = 0; offset < page.Length; offset += Chunk)
            {
                var piece = page.AsMemory(offset, Math.Min(Chunk, page.Length - offset));
                (await GetLogPageAsync(LogPageId.Discovery, (ulong)offset, piece, retainAsyncEvent: true, namespaceId: 0).ConfigureAwait(false)).EnsureSuccess($"Get Log Page (discovery at {offset})");
            }

            (await GetLogPageAsync(LogPageId.Discovery, 0, header, retainAsyncEvent: false, namespaceId: 0).ConfigureAwait(false)).EnsureSuccess("Get Log Page (discovery header)");
            if (BinaryPrimitives.ReadUInt64LittleEndian(header) == generation && BinaryPrimitives.ReadUInt64LittleEndian(page) == generation)
            {
                var parsed = DiscoveryLog.Parse(page);
                return new DiscoveryLogPage(parsed.Generation, parsed.Entries);
            }
        }

        throw new NvmeTransportException("the discovery log kept changing while being read");
    }

    private static SubmissionQueueEntry IdentifySqe(IdentifyCns cns, uint namespaceId) =>
        new((byte)AdminOpcode.Identify, SglFlags, 0, namespaceId, default, (uint)cns, 0, 0, 0, 0, 0);

    private async Task<ulong> PropertyGetAsync(uint offset, bool eightBytes)
    {
        var sqe = new SubmissionQueueEntry((byte)AdminOpcode.Fabrics, SglFlags, 0, (uint)FabricsCommandType.PropertyGet, default,
            eightBytes ? 1u : 0u, offset, 0, 0, 0, 0);
        var completion = (await AdminAsync(sqe, default, default).ConfigureAwait(false)).EnsureSuccess($"Property Get {offset:X2}");
        return completion.Dw0 | ((ulong)completion.Dw1 << 32);
    }

    private async Task PropertySetAsync(uint offset, uint value)
    {
        var sqe = new SubmissionQueueEntry((byte)AdminOpcode.Fabrics, SglFlags, 0, (uint)FabricsCommandType.PropertySet, default,
            0, offset, value, 0, 0, 0);
        (await AdminAsync(sqe, default, default).ConfigureAwait(false)).EnsureSuccess($"Property Set {offset:X2}");
    }

    // ---- upkeep ----

    private async Task SendKeepAliveAsync()
    {
        try
        {
            if (State == ControllerState.Live)
            {
                await KeepAliveAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is NvmeTransportException or InvalidOperationException)
        {
            LogKeepAliveFailed(_logger, SubsystemNqn, ex.Message);
        }
    }

    /// <summary>Keeps one Asynchronous Event Request outstanding, as Linux does; ends when the connection goes.</summary>
    private async Task AsyncEventLoopAsync()
    {
        while (!_disposing.IsCancellationRequested)
        {
            var sqe = new SubmissionQueueEntry((byte)AdminOpcode.AsyncEventRequest, SglFlags, 0, 0, default, 0, 0, 0, 0, 0, 0);
            NvmeCompletion completion;
            try
            {
                completion = await _admin.Submit(sqe, default, default, exactData: false).ConfigureAwait(false);
            }
            catch (InvalidOperationException)
            {
                return;
            }

            if (!completion.IsSuccess)
            {
                return;
            }

            var logPage = (byte)(completion.Dw0 >> 16);
            IReadOnlyList<uint> changed = [];
            try
            {
                if (logPage == (byte)LogPageId.ChangedNamespaceList)
                {
                    // Reading the log with RAE clear re-arms the notice (NVMe base 2.0, 5.2.2).
                    var log = new byte[4096];
                    (await GetLogPageAsync(LogPageId.ChangedNamespaceList, 0, log).ConfigureAwait(false)).EnsureSuccess("Get Log Page (changed namespaces)");
                    changed = ActiveNamespaceList.Read(log);
                    await RefreshNamespacesAsync().ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is NvmeCommandException or NvmeTransportException)
            {
                LogEventHandlingFailed(_logger, SubsystemNqn, ex.Message);
            }

            var asyncEvent = AsyncEvent.FromDw0(completion.Dw0, changed);
            LogAsyncEvent(_logger, SubsystemNqn, asyncEvent.Type, asyncEvent.Info, asyncEvent.LogPage);
            try
            {
                AsyncEventReceived?.Invoke(this, asyncEvent);
            }
            catch (Exception ex)
            {
                LogEventHandlingFailed(_logger, SubsystemNqn, ex.Message);
            }
        }
    }

    private void OnConnectionLost(QueuePair queue, string reason)
    {
        lock (_stateGate)
        {
            if (_state != ControllerState.Live)
            {
                return;
            }

            _state = ControllerState.Reconnecting;
            LogConnectionLost(_logger, SubsystemNqn, queue.QueueId, reason);
            _reconnect = Task.Run(ReconnectLoopAsync, CancellationToken.None);
        }

        StateChanged?.Invoke(this, ControllerState.Reconnecting);
    }

    private async Task ReconnectLoopAsync()
    {
        _keepAliveTimer?.Dispose();
        _keepAliveTimer = null;
        await CloseQueuesAsync("resetting the association").ConfigureAwait(false);
        if (!_options.Reconnect)
        {
            SetState(ControllerState.Failed);
            return;
        }

        var delay = _options.ReconnectDelay;
        var giveUp = Stopwatch.StartNew();
        var token = _disposing.Token;
        for (var attempt = 1; !token.IsCancellationRequested; attempt++)
        {
            try
            {
                await Task.Delay(delay, token).ConfigureAwait(false);
                await EstablishAsync(token).ConfigureAwait(false);
                Interlocked.Increment(ref _reconnects);
                LogReconnected(_logger, SubsystemNqn, ControllerId, attempt);
                SetState(ControllerState.Live);
                return;
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is NvmeTransportException or NvmeCommandException or System.Net.Sockets.SocketException)
            {
                LogReconnectFailed(_logger, SubsystemNqn, attempt, ex.Message);
                await CloseQueuesAsync("reconnect failed").ConfigureAwait(false);
                if (giveUp.Elapsed > _options.ControllerLossTimeout)
                {
                    SetState(ControllerState.Failed);
                    return;
                }

                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxReconnectDelay.Ticks));
            }
        }
    }

    private void SetState(ControllerState state)
    {
        lock (_stateGate)
        {
            if (_state == state || _state == ControllerState.Closed)
            {
                return;
            }

            _state = state;
        }

        StateChanged?.Invoke(this, state);
    }

    private async Task CloseQueuesAsync(string reason)
    {
        foreach (var queue in _ioQueues)
        {
            await queue.Pair.CloseAsync(reason).ConfigureAwait(false);
        }

        await _admin.CloseAsync(reason).ConfigureAwait(false);
    }

    /// <summary>Shuts the controller down (CC.SHN normal, NVMe base 2.0, 3.6.2) and closes every queue.</summary>
    public async ValueTask DisposeAsync()
    {
        bool wasLive;
        lock (_stateGate)
        {
            if (_state == ControllerState.Closed)
            {
                return;
            }

            wasLive = _state == ControllerState.Live;
            _state = ControllerState.Closed;
        }

        _disposing.Cancel();
        _keepAliveTimer?.Dispose();
        try
        {
            await _reconnect.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        if (wasLive && _admin.IsConnected)
        {
            try
            {
                foreach (var queue in _ioQueues)
                {
                    await queue.Pair.CloseAsync("host disconnecting").ConfigureAwait(false);
                }

                await PropertySetAsync(PropertyOffset.ControllerConfiguration, CcQueueEntrySizes | CcEnable | CcNormalShutdown).ConfigureAwait(false);
                var elapsed = Stopwatch.StartNew();
                // CSTS.SHST = 10b: shutdown processing complete.
                while (elapsed.Elapsed < TimeSpan.FromSeconds(2) &&
                       ((await PropertyGetAsync(PropertyOffset.ControllerStatus, eightBytes: false).ConfigureAwait(false) >> 2) & 3) != 2)
                {
                    await Task.Delay(5).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is NvmeCommandException or NvmeTransportException)
            {
                LogShutdownFailed(_logger, SubsystemNqn, ex.Message);
            }
        }

        await CloseQueuesAsync("host disconnected").ConfigureAwait(false);
        StateChanged?.Invoke(this, ControllerState.Closed);
        _disposing.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Controller of {Nqn}: queue {QueueId} lost its connection ({Reason}); reconnecting")]
    private static partial void LogConnectionLost(ILogger logger, string nqn, ushort queueId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Controller of {Nqn} reconnected as controller {ControllerId} after {Attempts} attempts")]
    private static partial void LogReconnected(ILogger logger, string nqn, ushort controllerId, int attempts);

    [LoggerMessage(Level = LogLevel.Information, Message = "Reconnect attempt {Attempt} to {Nqn} failed: {Reason}")]
    private static partial void LogReconnectFailed(ILogger logger, string nqn, int attempt, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Keep Alive to {Nqn} failed: {Reason}")]
    private static partial void LogKeepAliveFailed(ILogger logger, string nqn, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Asynchronous event from {Nqn}: type {Type} info {Info} log {LogPage}")]
    private static partial void LogAsyncEvent(ILogger logger, string nqn, byte type, byte info, byte logPage);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Handling an asynchronous event from {Nqn} failed: {Reason}")]
    private static partial void LogEventHandlingFailed(ILogger logger, string nqn, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Shutting down the controller of {Nqn} failed: {Reason}")]
    private static partial void LogShutdownFailed(ILogger logger, string nqn, string reason);
}

/// <summary>The Discovery log page as read: its generation counter and entries.</summary>
public sealed record DiscoveryLogPage(ulong Generation, IReadOnlyList<DiscoveryLogEntry> Entries);
