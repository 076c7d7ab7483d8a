using System.Diagnostics;
using CsiNvme.Protocol.Authentication;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Fabrics;
using CsiNvme.Protocol.Logs;
using CsiNvme.Target.Fabrics;
using CsiNvme.Target.Subsystems;
using CsiNvme.Target.Transport;

namespace CsiNvme.Target.Controllers;

/// <summary>
/// A dynamic controller (NVMe-oF 1.1, 3.2.1): created by an admin queue Connect, owns the controller registers
/// (CC, CSTS), features, the Asynchronous Event Requests the host left outstanding, and the keep-alive timer. Its I/O
/// queues are separate connections that attach with their own Connect.
/// </summary>
internal sealed partial class Controller : ISubsystemController
{
    // CC fields (NVMe base 2.0, 3.1.3.5): EN bit 0, SHN bits 15:14, IOSQES 19:16, IOCQES 23:20.
    private const uint CcEnable = 1;
    private const uint CcShutdownMask = 0x3u << 14;
    // CSTS fields (3.1.3.6): RDY bit 0, CFS bit 1, SHST bits 3:2 (10b = shutdown complete).
    private const uint CstsReady = 1;
    private const uint CstsFatal = 2;
    private const uint CstsShutdownComplete = 0x2u << 2;
    // Async Event Configuration bit 8: Namespace Attribute Notices; bit 11: ANA change notices; bit 31: discovery log change.
    private const uint AecNamespaceAttribute = 1u << 8;
    private const uint AecAnaChange = 1u << 11;

    private readonly object _gate = new();
    private readonly NvmeTarget _target;
    private readonly NvmeTcpConnection?[] _ioQueues;
    private readonly Stack<ushort> _eventRequests = new();
    private readonly Queue<uint> _pendingEvents = new();
    private readonly SortedSet<uint> _changedNamespaces = new();
    private readonly Timer _keepAliveTimer;
    private NvmeTcpConnection? _adminQueue;
    private uint _controllerConfiguration;
    private uint _controllerStatus;
    private uint _asyncEventConfiguration;
    private uint _keepAliveTimeoutMs;
    private long _lastActivity;
    private int _grantedIoQueues;
    private bool _namespaceNoticeMasked;
    private bool _anaNoticeMasked;
    private long _replicationEpoch;
    private bool _writeCacheEnabled = true;
    private int _shutDown;
    private Task? _drained;
    private readonly Dictionary<DhchapDhGroup, FfdheKeyPair> _dhKeyPairs = [];
    private IReadOnlySet<string> _discoveryGrants = new HashSet<string>();

    public Controller(NvmeTarget target, Subsystem subsystem, bool isDiscovery, string hostNqn, Guid hostId, uint keepAliveTimeoutMs)
    {
        _target = target;
        Subsystem = subsystem;
        IsDiscovery = isDiscovery;
        HostNqn = hostNqn;
        HostId = hostId;
        _keepAliveTimeoutMs = keepAliveTimeoutMs;
        _ioQueues = new NvmeTcpConnection?[target.Options.MaxIoQueues + 1];
        _grantedIoQueues = target.Options.MaxIoQueues;
        _lastActivity = Stopwatch.GetTimestamp();
        _keepAliveTimer = new Timer(static state => ((Controller)state!).CheckKeepAlive(), this, Timeout.Infinite, Timeout.Infinite);
        ArmKeepAlive();
    }

    public Subsystem Subsystem { get; }

    public bool IsDiscovery { get; }

    public string HostNqn { get; }

    public Guid HostId { get; }

    public ushort ControllerId { get; private set; }

    public NvmeTarget Target => _target;

    /// <summary>False after the host cleared the Volatile Write Cache feature: every write is then made durable before completing.</summary>
    public bool WriteCacheEnabled => Volatile.Read(ref _writeCacheEnabled);

    public bool IsEnabled => (Volatile.Read(ref _controllerStatus) & CstsReady) != 0;

    /// <summary>The replication epoch the host set (<see cref="FeatureId.ReplicationEpoch"/>); 0 when none.</summary>
    public long ReplicationEpoch => Volatile.Read(ref _replicationEpoch);

    public void AttachAdminQueue(ushort controllerId, NvmeTcpConnection connection)
    {
        ControllerId = controllerId;
        _adminQueue = connection;
    }

    /// <summary>Attaches an I/O queue; refuses a queue id out of the granted range or already connected.</summary>
    public bool TryAttachIoQueue(ushort queueId, NvmeTcpConnection connection)
    {
        lock (_gate)
        {
            if (_shutDown != 0 || queueId == 0 || queueId > _grantedIoQueues || _ioQueues[queueId] is not null)
            {
                return false;
            }

            _ioQueues[queueId] = connection;
            return true;
        }
    }

    public void QueueClosed(NvmeTcpConnection connection)
    {
        if (connection.QueueId == 0)
        {
            Shutdown("admin queue closed");
            return;
        }

        // An I/O queue the host closed on its own: the controller lives on, the queue's commands may not have finished.
        Subsystem.TrackDraining(HostNqn, connection.WhenDrained);
        lock (_gate)
        {
            if (connection.QueueId < _ioQueues.Length && ReferenceEquals(_ioQueues[connection.QueueId], connection))
            {
                _ioQueues[connection.QueueId] = null;
            }
        }
    }

    /// <summary>Any command counts as host activity (Traffic Based Keep Alive, NVMe base 2.0, 3.9.5).</summary>
    public void TouchKeepAlive() => TouchKeepAlive(Stopwatch.GetTimestamp());

    /// <summary>
    /// Records activity seen at <paramref name="timestamp"/> (a <see cref="Stopwatch"/> value; I/O passes its batch's
    /// arrival, so a command costs no clock read). Every queue of the controller touches this field, so it is written
    /// only when the time moved on, which keeps its cache line from bouncing between the queues' cores per command.
    /// </summary>
    public void TouchKeepAlive(long timestamp)
    {
        if (Volatile.Read(ref _lastActivity) < timestamp)
        {
            Volatile.Write(ref _lastActivity, timestamp);
        }
    }

    /// <summary>
    /// Tears the controller down: every queue's connection is closed and the controller id is released. The task
    /// completes once every queue's receive loop has ended and every command the queues accepted has finished (a
    /// replicated write waits for its replicas), so nothing the controller accepted can change a volume afterwards; the
    /// same task for every caller.
    /// </summary>
    public Task Shutdown(string reason)
    {
        NvmeTcpConnection?[] queues;
        lock (_gate)
        {
            if (_drained is { } drained)
            {
                return drained;
            }

            Volatile.Write(ref _shutDown, 1);
            queues = [.. _ioQueues, _adminQueue];
            Array.Clear(_ioQueues);
            _drained = Task.WhenAll(queues.OfType<NvmeTcpConnection>().Select(q => q.WhenDrained));
        }

        _keepAliveTimer.Dispose();
        // Known to the subsystem as draining before it is no longer registered, so a waiter sees one or the other.
        Subsystem.UnregisterController(ControllerId, this, HostNqn, _drained);
        _target.LogControllerRemoved(ControllerId, HostNqn, Subsystem.Nqn, reason);
        foreach (var queue in queues)
        {
            queue?.Close(reason);
        }

        return _drained;
    }

    private void ArmKeepAlive()
    {
        var kato = Volatile.Read(ref _keepAliveTimeoutMs);
        if (kato == 0)
        {
            _keepAliveTimer.Change(Timeout.Infinite, Timeout.Infinite);
            return;
        }

        _keepAliveTimer.Change(kato, Timeout.Infinite);
    }

    private void CheckKeepAlive()
    {
        if (Volatile.Read(ref _shutDown) != 0)
        {
            return;
        }

        var kato = Volatile.Read(ref _keepAliveTimeoutMs);
        if (kato == 0)
        {
            return;
        }

        var idleMs = Stopwatch.GetElapsedTime(Volatile.Read(ref _lastActivity)).TotalMilliseconds;
        // A little grace past KATO: hosts send Keep Alive at about KATO/2, and a slow host should not lose its paths.
        if (idleMs > kato * 1.5)
        {
            Volatile.Write(ref _controllerStatus, _controllerStatus | CstsFatal);
            Shutdown($"keep-alive timeout ({kato} ms)");
            return;
        }

        try
        {
            _keepAliveTimer.Change(Math.Max(100, (int)(kato * 1.5 - idleMs) + 10), Timeout.Infinite);
        }
        catch (ObjectDisposedException)
        {
            // Shut down concurrently.
        }
    }

    // ---- ISubsystemController ----

    public bool IsOverTls => _adminQueue?.TlsIdentity is not null;

    public void NotifyNamespaceChanged(uint namespaceId)
    {
        lock (_gate)
        {
            _changedNamespaces.Add(namespaceId);
            if ((_asyncEventConfiguration & AecNamespaceAttribute) == 0 || _namespaceNoticeMasked)
            {
                return;
            }

            // Further notices of this type stay masked until the host reads the Changed Namespace List (NVMe base 2.0, 5.2).
            _namespaceNoticeMasked = true;
            _pendingEvents.Enqueue(AsyncEvent.CompletionDw0(AsyncEvent.TypeNotice, AsyncEvent.NoticeNamespaceAttributeChanged, (byte)LogPageId.ChangedNamespaceList));
        }

        DeliverEvents();
    }

    /// <summary>
    /// The path's ANA state changed: an Asymmetric Namespace Access Change notice, masked until the host reads the ANA
    /// log (NVMe base 2.0, 5.2 and 8.1.3.9), so a host that has not caught up gets one notice, not one per change.
    /// </summary>
    public void NotifyAnaChanged()
    {
        lock (_gate)
        {
            if (IsDiscovery || (_asyncEventConfiguration & AecAnaChange) == 0 || _anaNoticeMasked)
            {
                return;
            }

            _anaNoticeMasked = true;
            _pendingEvents.Enqueue(AsyncEvent.CompletionDw0(AsyncEvent.TypeNotice, AsyncEvent.NoticeAnaChange, (byte)LogPageId.AsymmetricNamespaceAccess));
        }

        DeliverEvents();
    }

    /// <summary>The host read the ANA log: the next change raises a notice again (unless it asked to retain the event).</summary>
    private void AnaLogRead(bool retainEvent)
    {
        if (retainEvent)
        {
            return;
        }

        lock (_gate)
        {
            _anaNoticeMasked = false;
        }
    }

    /// <summary>Completes outstanding Asynchronous Event Requests with queued events.</summary>
    private void DeliverEvents()
    {
        var admin = _adminQueue;
        if (admin is null)
        {
            return;
        }

        while (true)
        {
            ushort commandId;
            uint dw0;
            lock (_gate)
            {
                if (_pendingEvents.Count == 0 || _eventRequests.Count == 0)
                {
                    return;
                }

                commandId = _eventRequests.Pop();
                dw0 = _pendingEvents.Dequeue();
            }

            _ = admin.SendOutOfBandAsync(commandId, NvmeStatus.Success, dw0);
        }
    }

    // ---- properties (NVMe-oF 1.1, 3.4 / 3.5) ----

    private ulong Capabilities
    {
        get
        {
            var options = _target.Options;
            ulong mqes = (ulong)(options.MaxQueueEntries - 1);
            const ulong contiguousQueuesRequired = 1UL << 16;
            const ulong timeout500Ms = 15UL << 24;
            const ulong nvmCommandSet = 1UL << 37;
            return mqes | contiguousQueuesRequired | timeout500Ms | nvmCommandSet;
        }
    }

    private const uint SpecVersion = 0x00010300;

    private NvmeStatus GetProperty(in SubmissionQueueEntry sqe, out ulong value)
    {
        var property = PropertyCommand.From(sqe);
        value = 0;
        switch (property.Offset)
        {
            case PropertyOffset.Capabilities:
                value = property.EightBytes ? Capabilities : (uint)Capabilities;
                return NvmeStatus.Success;
            case PropertyOffset.Capabilities + 4 when !property.EightBytes:
                value = Capabilities >> 32;
                return NvmeStatus.Success;
            case PropertyOffset.Version:
                value = SpecVersion;
                return NvmeStatus.Success;
            case PropertyOffset.ControllerConfiguration:
                value = Volatile.Read(ref _controllerConfiguration);
                return NvmeStatus.Success;
            case PropertyOffset.ControllerStatus:
                value = Volatile.Read(ref _controllerStatus);
                return NvmeStatus.Success;
            default:
                return NvmeStatus.InvalidField;
        }
    }

    private NvmeStatus SetProperty(in SubmissionQueueEntry sqe)
    {
        var property = PropertyCommand.From(sqe);
        if (property.Offset != PropertyOffset.ControllerConfiguration || property.EightBytes)
        {
            return NvmeStatus.InvalidField;
        }

        var value = (uint)property.Value;
        NvmeTcpConnection?[] toClose = [];
        lock (_gate)
        {
            var previous = _controllerConfiguration;
            _controllerConfiguration = value;
            var status = _controllerStatus;
            if ((value & CcEnable) != 0 && (previous & CcEnable) == 0)
            {
                // The host must program 64-byte SQEs and 16-byte CQEs before enabling (IOSQES 6, IOCQES 4) on I/O controllers.
                var iosqes = (value >> 16) & 0xF;
                var iocqes = (value >> 20) & 0xF;
                status = !IsDiscovery && (iosqes != 6 || iocqes != 4) ? status | CstsFatal : (status | CstsReady) & ~CstsShutdownComplete;
            }
            else if ((value & CcEnable) == 0 && (previous & CcEnable) != 0)
            {
                // EN 1 -> 0 is a controller reset: the I/O queues are deleted.
                status &= ~(CstsReady | CstsFatal);
                toClose = [.. _ioQueues];
                Array.Clear(_ioQueues);
            }

            if ((value & CcShutdownMask) != 0)
            {
                // Writes are synchronous, so nothing is left to drain: shutdown processing completes at once.
                status = (status & ~(0x3u << 2)) | CstsShutdownComplete;
                toClose = [.. _ioQueues];
                Array.Clear(_ioQueues);
            }

            _controllerStatus = status;
        }

        var closedAny = false;
        foreach (var queue in toClose)
        {
            if (queue is not null)
            {
                Subsystem.TrackDraining(HostNqn, queue.WhenDrained);
                queue.Close("controller disabled");
                closedAny = true;
            }
        }

        if (closedAny || (value & CcShutdownMask) != 0)
        {
            // A reset or shutdown must leave completed writes durable, as a power loss after it would.
            foreach (var ns in Subsystem.Namespaces)
            {
                ns.Volume.Flush();
            }
        }

        return NvmeStatus.Success;
    }

    // ---- admin command dispatch ----

    public void ExecuteAdmin(NvmeTcpConnection connection, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> data)
    {
        var commandId = sqe.CommandId;
        switch ((AdminOpcode)sqe.Opcode)
        {
            case AdminOpcode.Fabrics:
                ExecuteFabrics(connection, sqe, data);
                return;
            case AdminOpcode.Identify:
                Identify(connection, sqe);
                return;
            case AdminOpcode.GetLogPage:
                GetLogPage(connection, sqe);
                return;
            case AdminOpcode.SetFeatures:
                SetFeatures(connection, sqe);
                return;
            case AdminOpcode.GetFeatures:
                GetFeatures(connection, sqe);
                return;
            case AdminOpcode.AsyncEventRequest:
                AsyncEventRequest(connection, commandId);
                return;
            case AdminOpcode.KeepAlive:
                connection.Complete(commandId, NvmeStatus.Success);
                return;
            case AdminOpcode.Abort:
                // DW0 bit 0 set: the command was not aborted. Commands here complete synchronously, so there is never one to abort.
                connection.Complete(commandId, NvmeStatus.Success, 1);
                return;
            default:
                connection.Complete(commandId, NvmeStatus.InvalidOpcode);
                return;
        }
    }

    private void ExecuteFabrics(NvmeTcpConnection connection, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> data)
    {
        switch ((FabricsCommandType)sqe.FabricsCommandType)
        {
            case FabricsCommandType.PropertyGet:
                var status = GetProperty(sqe, out var value);
                connection.Complete(sqe.CommandId, status, (uint)value, (uint)(value >> 32));
                return;
            case FabricsCommandType.PropertySet:
                connection.Complete(sqe.CommandId, SetProperty(sqe));
                return;
            case FabricsCommandType.Connect:
                // Refused there as out of sequence, and logged like every refused Connect.
                ConnectHandler.Handle(connection, sqe, data);
                return;
            case FabricsCommandType.Disconnect:
                connection.Complete(sqe.CommandId, NvmeStatus.Success);
                return;
            case FabricsCommandType.AuthenticationSend or FabricsCommandType.AuthenticationReceive:
                AuthenticationHandler.Handle(connection, this, sqe, data);
                return;
            default:
                connection.Complete(sqe.CommandId, NvmeStatus.InvalidField);
                return;
        }
    }

    private void AsyncEventRequest(NvmeTcpConnection connection, ushort commandId)
    {
        lock (_gate)
        {
            if (_eventRequests.Count > AsyncEventRequestLimit)
            {
                connection.Complete(commandId, NvmeStatus.AsyncEventRequestLimitExceeded);
                return;
            }

            _eventRequests.Push(commandId);
        }

        DeliverEvents();
    }

    /// <summary>AERL, 0-based: four outstanding requests.</summary>
    internal const byte AsyncEventRequestLimit = 3;

    // ---- features (NVMe base 2.0, 5.27) ----

    private void SetFeatures(NvmeTcpConnection connection, in SubmissionQueueEntry sqe)
    {
        if ((sqe.Cdw10 & 0x8000_0000) != 0)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.FeatureIdNotSaveable);
            return;
        }

        switch ((FeatureId)(byte)sqe.Cdw10)
        {
            case FeatureId.NumberOfQueues when !IsDiscovery:
                {
                    var requestedSubmission = (sqe.Cdw11 & 0xFFFF) + 1;
                    var requestedCompletion = (sqe.Cdw11 >> 16) + 1;
                    if (requestedSubmission == 0x10000 || requestedCompletion == 0x10000)
                    {
                        connection.Complete(sqe.CommandId, NvmeStatus.InvalidField);
                        return;
                    }

                    var granted = (int)Math.Min(Math.Max(requestedSubmission, requestedCompletion), (uint)_target.Options.MaxIoQueues);
                    lock (_gate)
                    {
                        _grantedIoQueues = granted;
                    }

                    connection.Complete(sqe.CommandId, NvmeStatus.Success, QueueCountResult(granted));
                    return;
                }

            case FeatureId.AsyncEventConfiguration:
                lock (_gate)
                {
                    _asyncEventConfiguration = sqe.Cdw11;
                }

                connection.Complete(sqe.CommandId, NvmeStatus.Success);
                return;
            case FeatureId.KeepAliveTimer:
                Volatile.Write(ref _keepAliveTimeoutMs, sqe.Cdw11);
                TouchKeepAlive();
                ArmKeepAlive();
                connection.Complete(sqe.CommandId, NvmeStatus.Success);
                return;
            case FeatureId.VolatileWriteCache when !IsDiscovery:
                var enable = (sqe.Cdw11 & 1) != 0;
                if (!enable)
                {
                    foreach (var ns in Subsystem.Namespaces)
                    {
                        ns.Volume.Flush();
                    }
                }

                Volatile.Write(ref _writeCacheEnabled, enable);
                connection.Complete(sqe.CommandId, NvmeStatus.Success);
                return;
            case FeatureId.ReservationNotificationMask or FeatureId.ReservationPersistence when !IsDiscovery:
                SetReservationFeature(connection, sqe);
                return;
            case FeatureId.HostIdentifier:
                // Over fabrics the host identifier comes with Connect and cannot be changed (NVMe-oF 1.1, 3.3).
                connection.Complete(sqe.CommandId, NvmeStatus.CommandSequenceError);
                return;
            case FeatureId.ReplicationEpoch when Subsystem.Fence is { } fence:
                {
                    var epoch = (long)sqe.Cdw11;
                    if (!fence.TryAccept(epoch, out var raised))
                    {
                        connection.Complete(sqe.CommandId, NvmeStatus.ReservationConflict, (uint)fence.Current);
                        return;
                    }

                    Volatile.Write(ref _replicationEpoch, epoch);
                    if (raised)
                    {
                        Subsystem.FenceBelow(epoch);
                    }

                    connection.Complete(sqe.CommandId, NvmeStatus.Success, (uint)fence.Current);
                    return;
                }

            default:
                connection.Complete(sqe.CommandId, NvmeStatus.InvalidField);
                return;
        }
    }

    private void GetFeatures(NvmeTcpConnection connection, in SubmissionQueueEntry sqe)
    {
        // SEL (CDW10 bits 10:8): current, default and saved all read the same here; 3 (capabilities) reports "changeable".
        var select = (sqe.Cdw10 >> 8) & 0x7;
        var feature = (FeatureId)(byte)sqe.Cdw10;
        if (feature is FeatureId.ReservationNotificationMask or FeatureId.ReservationPersistence && !IsDiscovery)
        {
            GetReservationFeature(connection, sqe, select);
            return;
        }

        if (select == 3)
        {
            var known = feature is FeatureId.NumberOfQueues or FeatureId.AsyncEventConfiguration or FeatureId.KeepAliveTimer or FeatureId.VolatileWriteCache or FeatureId.HostIdentifier;
            connection.Complete(sqe.CommandId, known ? NvmeStatus.Success : NvmeStatus.InvalidField, known ? 0x4u : 0);
            return;
        }

        switch (feature)
        {
            case FeatureId.NumberOfQueues when !IsDiscovery:
                connection.Complete(sqe.CommandId, NvmeStatus.Success, QueueCountResult(_grantedIoQueues));
                return;
            case FeatureId.AsyncEventConfiguration:
                connection.Complete(sqe.CommandId, NvmeStatus.Success, _asyncEventConfiguration);
                return;
            case FeatureId.KeepAliveTimer:
                connection.Complete(sqe.CommandId, NvmeStatus.Success, Volatile.Read(ref _keepAliveTimeoutMs));
                return;
            case FeatureId.VolatileWriteCache when !IsDiscovery:
                connection.Complete(sqe.CommandId, NvmeStatus.Success, WriteCacheEnabled ? 1u : 0u);
                return;
            case FeatureId.ReplicationEpoch when Subsystem.Fence is { } fence:
                connection.Complete(sqe.CommandId, NvmeStatus.Success, (uint)fence.Current);
                return;
            case FeatureId.HostIdentifier:
                // EXHID (CDW11 bit 0) must be set: the 128-bit identifier is the only one fabrics use.
                if ((sqe.Cdw11 & 1) == 0)
                {
                    connection.Complete(sqe.CommandId, NvmeStatus.HostIdentifierInconsistentFormat);
                    return;
                }

                Span<byte> hostId = stackalloc byte[16];
                HostId.TryWriteBytes(hostId, bigEndian: true, out _);
                SendAdminData(connection, sqe, hostId);
                return;
            default:
                connection.Complete(sqe.CommandId, NvmeStatus.InvalidField);
                return;
        }
    }

    private static uint QueueCountResult(int granted) => (uint)(granted - 1) | ((uint)(granted - 1) << 16);

    /// <summary>
    /// Sends admin data sized by the command's SGL (and, for logs, by NUMD): shorter data is zero-padded (what reads past a structure's end
    /// return), longer data is cut to what the host asked for.
    /// </summary>
    private static void SendAdminData(NvmeTcpConnection connection, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> data, ulong requestedLength = ulong.MaxValue)
    {
        var sgl = sqe.DataPointer;
        if (sgl.Identifier != Protocol.Commands.SglDescriptor.TransportDataBlock)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.SglDescriptorTypeInvalid);
            return;
        }

        var length = (int)Math.Min(requestedLength, Math.Min(sgl.Length, (uint)connection.MaxDataTransfer));
        if (length == 0)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.Success);
            return;
        }

        var destination = connection.ReserveData(length);
        var copied = Math.Min(length, data.Length);
        data[..copied].CopyTo(destination);
        destination[copied..].Clear();
        connection.CommitData(sqe.CommandId, length);
        connection.Complete(sqe.CommandId, NvmeStatus.Success);
    }

    /// <summary>Reads and clears the Changed Namespace List; unmasks further namespace notices.</summary>
    private uint[] TakeChangedNamespaces(bool retainEvent)
    {
        lock (_gate)
        {
            var list = _changedNamespaces.ToArray();
            if (!retainEvent)
            {
                _changedNamespaces.Clear();
                _namespaceNoticeMasked = false;
            }

            return list;
        }
    }

    internal bool AnaNoticesEnabled => (_asyncEventConfiguration & AecAnaChange) != 0;

    // ---- in-band authentication (NVMe base 2.0, 8.13) ----

    /// <summary>
    /// A DH-HMAC-CHAP transaction for one of this controller's queues. An I/O subsystem checks the host's credentials on
    /// it; the discovery controller checks every set the host has on this target, each granting its subsystem.
    /// </summary>
    public DhchapControllerTransaction CreateAuthentication()
    {
        IReadOnlyList<DhchapControllerTransaction.Candidate> candidates = IsDiscovery
            ? _target.CredentialsOf(HostNqn)
            : Subsystem.FindHostCredentials(HostNqn) is { } credentials ? [new(credentials, Subsystem.Nqn)] : [];
        return new DhchapControllerTransaction(HostNqn, Subsystem.Nqn, candidates, DhKeyPair);
    }

    /// <summary>A queue authenticated; on the discovery controller the subsystems its secret opens become visible.</summary>
    public void Authenticated(DhchapControllerTransaction transaction)
    {
        if (IsDiscovery)
        {
            Volatile.Write(ref _discoveryGrants, transaction.Granted.ToHashSet(StringComparer.Ordinal));
        }
    }

    /// <summary>Whether the discovery log may list <paramref name="subsystem"/> to this controller's host.</summary>
    private bool MayDiscover(Subsystem subsystem) =>
        subsystem.IsHostAllowed(HostNqn)
        && (subsystem.FindHostCredentials(HostNqn) is null || Volatile.Read(ref _discoveryGrants).Contains(subsystem.Nqn));

    /// <summary>The controller's DH key pair for a group, made once and shared by its queues (as nvmet does).</summary>
    private FfdheKeyPair DhKeyPair(DhchapDhGroup group)
    {
        lock (_dhKeyPairs)
        {
            if (!_dhKeyPairs.TryGetValue(group, out var keyPair))
            {
                keyPair = FfdheGroup.Get(group).GenerateKeyPair();
                _dhKeyPairs[group] = keyPair;
            }

            return keyPair;
        }
    }
}
