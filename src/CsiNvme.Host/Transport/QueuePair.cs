using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Fabrics;
using CsiNvme.Protocol.Tcp;
using CsiNvme.Protocol.Tls;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Host.Transport;

/// <summary>
/// One NVMe/TCP connection carrying one queue pair (TCP 1.0, 2.1), seen from the host. Commands are written into a
/// pinned send buffer under a lock and sent by whoever finds no send in progress, with a non-blocking send; when the
/// socket is full the rest is handed to a send worker, so no thread ever blocks in a send. The receive loop parses PDUs
/// from a pinned buffer and completes commands inline: the caller's continuation usually submits the next command,
/// which then rides the send of the whole batch. Nothing is allocated per command.
/// </summary>
internal sealed partial class QueuePair : IDeferredSend
{
    private const int CapsuleHeaderLength = 72;
    private const int DataHeaderLength = 24;
    private const int AdminInCapsuleData = 8192;
    // CATTR bit 2 of the Connect command (NVMe-oF 1.1, Figure 20).
    private const byte ConnectAttributeSqFlowControlDisable = 0x04;
    // Room kept for one header-only capsule per queue entry, so a submission never waits for buffer space.
    private const int CapsuleReserve = CapsuleHeaderLength + 2 * PduHeader.DigestSize;

    [ThreadStatic]
    private static QueuePair? t_receiving;

    private readonly object _gate = new();
    private readonly ILogger _logger;
    private readonly CommandSlot[] _slots;
    private readonly int[] _free;
    private readonly int[] _r2tRing;
    private readonly int _capacity;
    private readonly int _maxData;
    private readonly long _pollTicks;
    private byte[] _pending;
    private byte[] _spare;
    private readonly byte[] _receive;
    private int _freeCount;
    private int _pendingLength;
    private int _r2tHead;
    private int _r2tCount;
    private bool _flushing;
    private bool _flushDeferred;
    private int _receiveStart;
    private int _receiveEnd;

    private Connection? _connection;
    private bool _headerDigest;
    private bool _dataDigest;
    private int _maxH2CChunk;
    private int _inCapsuleLimit;

    /// <param name="queueId">0 for the admin queue.</param>
    /// <param name="entries">Queue size; up to entries − 1 commands are outstanding (one SQ entry stays free).</param>
    /// <param name="maxData">Largest data transfer of one command on this queue.</param>
    /// <param name="dedicatedThreads">Run the receive loop and the send worker on threads of their own with blocking socket calls.</param>
    /// <param name="pollTime">With dedicated threads: how long the receive loop polls for data before it sleeps.</param>
    public QueuePair(ushort queueId, int entries, int maxData, int maxH2CChunk, ILogger logger, bool dedicatedThreads = false, TimeSpan pollTime = default)
    {
        if (entries is < 2 or > CommandSlot.MaxSlots)
        {
            throw new ArgumentOutOfRangeException(nameof(entries), $"queue size must be 2..{CommandSlot.MaxSlots}");
        }

        QueueId = queueId;
        Entries = entries;
        DedicatedThreads = dedicatedThreads;
        _pollTicks = SocketCalls.ToTicks(pollTime);
        _logger = logger;
        _maxData = maxData;
        _maxH2CChunk = maxH2CChunk;
        _slots = new CommandSlot[entries - 1];
        _free = new int[_slots.Length];
        for (var i = 0; i < _slots.Length; i++)
        {
            _slots[i] = new CommandSlot(this, i);
            _free[i] = _slots.Length - 1 - i;
        }

        _freeCount = _slots.Length;
        _r2tRing = new int[_slots.Length];

        var largestOut = Math.Max(CapsuleHeaderLength + 8 + Math.Max(AdminInCapsuleData, Math.Min(maxData, 128 * 1024)), DataHeaderLength + 8 + maxH2CChunk);
        _capacity = _slots.Length * CapsuleReserve + 2 * largestOut + 16 * 1024;
        _pending = GC.AllocateUninitializedArray<byte>(_capacity, pinned: true);
        _spare = GC.AllocateUninitializedArray<byte>(_capacity, pinned: true);

        // A C2HData PDU never carries more than the command's data; 256 bytes cover its header, digests and padding.
        var largestIn = maxData + 256;
        _receive = GC.AllocateUninitializedArray<byte>(2 * largestIn + 64 * 1024, pinned: true);
        _maxPduIn = largestIn;
    }

    private readonly int _maxPduIn;

    // Receive-loop state: completions in the current batch, and when to send what they submitted.
    private int _batchCompletions;
    private EarlySendRule _earlySend;

    public ushort QueueId { get; }

    /// <summary>
    /// The connection's receive loop owns a thread and blocks in <c>recv</c>, so a response wakes the thread that
    /// completes the commands directly instead of going from the socket engine's epoll thread through the thread
    /// pool; the send worker has a thread too. Sends from the loop stay non-blocking (MSG_DONTWAIT), so the loop
    /// never stops reading because the controller is slow to read.
    /// </summary>
    public bool DedicatedThreads { get; }

    public int Entries { get; }

    /// <summary>Commands that may be outstanding at once.</summary>
    public int Depth => _slots.Length;

    public bool IsConnected => Volatile.Read(ref _connection) is { Closed: false };

    public bool HeaderDigest => _headerDigest;

    public bool DataDigest => _dataDigest;

    /// <summary>Largest write sent in the capsule on this queue; larger ones wait for R2T.</summary>
    public int InCapsuleLimit
    {
        get => _inCapsuleLimit;
        set => _inCapsuleLimit = Math.Clamp(value, 0, Math.Min(_maxData, 128 * 1024));
    }

    public int MaxDataTransfer => _maxData;

    /// <summary>
    /// Opens the NVMe/TCP TLS secure channel over each new connection before ICReq, when set (TLS 1.3 with a PSK, NVMe/TCP
    /// transport 3.6). Sends then always go through the send worker, which encrypts and sends with blocking calls.
    /// </summary>
    public Func<Socket, TlsChannel>? SecureChannel { get; init; }

    /// <summary>Raised once per connection when it is lost (not when closed by <see cref="Close"/> on purpose).</summary>
    public event Action<QueuePair, string>? ConnectionLost;

    // ---- connection setup ----

    /// <summary>Opens the TCP connection and exchanges ICReq/ICResp (TCP 1.0, 3.6.2.2–3).</summary>
    public async Task OpenAsync(EndPoint endpoint, bool headerDigest, bool dataDigest, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_connection is { Closed: false })
        {
            throw new InvalidOperationException("the queue is already connected");
        }

        if (_connection is { } previous)
        {
            await previous.Finished.ConfigureAwait(false);
        }

        if (DedicatedThreads)
        {
            var opened = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            new Thread(() => RunOnDedicatedThread(endpoint, headerDigest, dataDigest, timeout, cancellationToken, opened))
            {
                IsBackground = true,
                Name = $"nvme-tcp-host-q{QueueId}",
            }.Start();
            await opened.Task.ConfigureAwait(false);
            return;
        }

        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        TlsChannel? tls = null;
        try
        {
            await socket.ConnectAsync(endpoint, limit.Token).ConfigureAwait(false);
            var icreq = NewICReq(headerDigest, dataDigest);
            var icresp = new byte[ICResp.Length];
            if (SecureChannel is not null)
            {
                tls = SecureChannel(socket);
                await tls.HandshakeAsync(limit.Token).ConfigureAwait(false);
                await tls.SendAsync(icreq, limit.Token).ConfigureAwait(false);
                for (var received = 0; received < icresp.Length;)
                {
                    var n = await tls.ReceiveAsync(icresp.AsMemory(received), limit.Token).ConfigureAwait(false);
                    received += n > 0 ? n : throw new EndOfStreamException("the controller closed the connection during initialization");
                }
            }
            else
            {
                await SendAllAsync(socket, icreq, limit.Token).ConfigureAwait(false);
                await ReceiveExactlyAsync(socket, icresp, limit.Token).ConfigureAwait(false);
            }

            var response = CheckICResp(icresp, headerDigest, dataDigest);
            socket.Blocking = false;
            Install(socket, tls, headerDigest, dataDigest, response, connection => Task.WhenAll(
                Task.Run(() => ReceiveLoopAsync(connection, blocking: false), CancellationToken.None),
                Task.Run(() => SendWorkerAsync(connection, blocking: false), CancellationToken.None)));
        }
        catch (Exception ex)
        {
            socket.Dispose();
            tls?.Dispose();
            var failure = OpenFailure(ex, endpoint, cancellationToken);
            if (ReferenceEquals(failure, ex))
            {
                throw;
            }

            throw failure;
        }
    }

    /// <summary>
    /// The dedicated-thread twin of <see cref="OpenAsync"/>: connects and exchanges ICReq/ICResp with synchronous
    /// calls on the receive loop's own thread (a socket that has seen an asynchronous call stays in the socket
    /// engine's emulated-blocking mode, which costs a wake-up per call), then becomes the receive loop.
    /// </summary>
    private void RunOnDedicatedThread(EndPoint endpoint, bool headerDigest, bool dataDigest, TimeSpan timeout, CancellationToken cancellationToken, TaskCompletionSource opened)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var receiveEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sendEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Connection connection;
        TlsChannel? tls = null;
        try
        {
            using (cancellationToken.Register(socket.Dispose))
            {
                ConnectBlocking(socket, endpoint, timeout);
                socket.ReceiveTimeout = socket.SendTimeout;
                var icresp = new byte[ICResp.Length];
                if (SecureChannel is not null)
                {
                    tls = SecureChannel(socket);
                    tls.Handshake();
                    tls.Send(NewICReq(headerDigest, dataDigest));
                    for (var received = 0; received < icresp.Length;)
                    {
                        var n = tls.Receive(icresp.AsSpan(received), socket.SafeHandle, 0);
                        received += n > 0 ? n : throw new EndOfStreamException("the controller closed the connection during initialization");
                    }
                }
                else
                {
                    socket.Send(NewICReq(headerDigest, dataDigest));
                    for (var received = 0; received < icresp.Length;)
                    {
                        var n = socket.Receive(icresp.AsSpan(received), SocketFlags.None);
                        received += n > 0 ? n : throw new EndOfStreamException("the controller closed the connection during initialization");
                    }
                }

                var response = CheckICResp(icresp, headerDigest, dataDigest);
                socket.SendTimeout = socket.ReceiveTimeout = 0;
                cancellationToken.ThrowIfCancellationRequested();
                connection = Install(socket, tls, headerDigest, dataDigest, response, _ => Task.WhenAll(receiveEnded.Task, sendEnded.Task));
            }
        }
        catch (Exception ex)
        {
            socket.Dispose();
            tls?.Dispose();
            opened.SetException(OpenFailure(ex, endpoint, cancellationToken));
            return;
        }

        new Thread(() =>
        {
            try
            {
                SendWorkerAsync(connection, blocking: true).GetAwaiter().GetResult();
            }
            finally
            {
                sendEnded.SetResult();
            }
        })
        {
            IsBackground = true,
            Name = $"nvme-tcp-host-q{QueueId}-send",
        }.Start();
        opened.SetResult();
        try
        {
            // With blocking calls the loop never awaits anything incomplete, so it runs to its end on this thread.
            ReceiveLoopAsync(connection, blocking: true).GetAwaiter().GetResult();
        }
        finally
        {
            receiveEnded.SetResult();
        }
    }

    /// <summary>
    /// A blocking TCP connect bounded by <paramref name="timeout"/>: Linux applies SO_SNDTIMEO to connect(2). The socket
    /// is never switched to non-blocking mode, which the socket engine would remember for good and then emulate
    /// blocking calls through epoll, allocating per call.
    /// </summary>
    private static void ConnectBlocking(Socket socket, EndPoint endpoint, TimeSpan timeout)
    {
        socket.SendTimeout = (int)Math.Clamp(timeout.TotalMilliseconds, 1, int.MaxValue);
        try
        {
            socket.Connect(endpoint);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress or SocketError.TimedOut)
        {
            throw new TimeoutException($"TCP connect to {endpoint} timed out", ex);
        }
    }

    private static byte[] NewICReq(bool headerDigest, bool dataDigest)
    {
        var icreq = new byte[ICReq.Length];
        new ICReq(0, 0, headerDigest, dataDigest, 0).Write(icreq);
        return icreq;
    }

    private static ICResp CheckICResp(byte[] icresp, bool headerDigest, bool dataDigest)
    {
        var header = PduHeader.Read(icresp);
        if (header.Type == PduType.C2HTermReq)
        {
            var term = TermReq.Read(icresp);
            throw new NvmeTransportException($"the controller refused the connection: {term.FatalErrorStatus} (field {term.FatalErrorInformation})");
        }

        if (header.Type != PduType.ICResp || header.HeaderLength != ICResp.Length || header.PduLength != ICResp.Length)
        {
            throw new NvmeTransportException($"expected ICResp, got {header.Type} hlen {header.HeaderLength} plen {header.PduLength}");
        }

        var response = ICResp.Read(icresp);
        // The same checks as Linux: PFV 0, no controller data alignment, digests as asked, sane MAXH2CDATA.
        if (response.ProtocolFormatVersion != 0 || response.ControllerPduDataAlignment != 0 ||
            response.HeaderDigest != headerDigest || response.DataDigest != dataDigest ||
            response.MaxH2CData < 4096 || response.MaxH2CData % 4 != 0)
        {
            throw new NvmeTransportException($"unacceptable ICResp: {response}");
        }

        return response;
    }

    private Connection Install(Socket socket, TlsChannel? tls, bool headerDigest, bool dataDigest, in ICResp response, Func<Connection, Task> startLoops)
    {
        lock (_gate)
        {
            _headerDigest = headerDigest;
            _dataDigest = dataDigest;
            _maxH2CChunk = (int)Math.Min(response.MaxH2CData, (uint)_maxH2CChunk);
            _inCapsuleLimit = QueueId == 0 ? AdminInCapsuleData : Math.Min(_inCapsuleLimit, _maxData);
            _receiveStart = _receiveEnd = 0;
            _pendingLength = 0;
            _r2tCount = 0;
            _flushing = false;
            _flushDeferred = false;
            var connection = new Connection(socket, DedicatedThreads) { Tls = tls };
            _connection = connection;
            connection.Finished = startLoops(connection);
            return connection;
        }
    }

    private Exception OpenFailure(Exception ex, EndPoint endpoint, CancellationToken cancellationToken)
    {
        if ((ex is OperationCanceledException || (ex is ObjectDisposedException && cancellationToken.IsCancellationRequested)) && cancellationToken.IsCancellationRequested)
        {
            return new OperationCanceledException(cancellationToken);
        }

        if (ex is OperationCanceledException or TimeoutException || ex is SocketException { SocketErrorCode: SocketError.TimedOut })
        {
            return new NvmeTransportException($"connecting queue {QueueId} to {endpoint} timed out", ex);
        }

        if (ex is SocketException or IOException or EndOfStreamException or ObjectDisposedException)
        {
            return new NvmeTransportException($"connecting queue {QueueId} to {endpoint} failed: {ex.Message}", ex);
        }

        return ex;
    }

    /// <summary>Sends the fabrics Connect (NVMe-oF 1.1, 3.3) and returns the controller id.</summary>
    /// <param name="disableSqFlowControl">CATTR bit 2; safe because outstanding commands are bounded by the slots, not by SQHD.</param>
    public async Task<ushort> ConnectAsync(string subsystemNqn, string hostNqn, Guid hostId, ushort controllerId, uint keepAliveMs, TimeSpan timeout, bool disableSqFlowControl = false)
    {
        var data = new byte[ConnectData.Size];
        new ConnectData(hostId, controllerId, subsystemNqn, hostNqn).Write(data);
        var command = new ConnectCommand(0, QueueId, (ushort)(Entries - 1), disableSqFlowControl ? ConnectAttributeSqFlowControlDisable : (byte)0, QueueId == 0 ? keepAliveMs : 0)
            .ToSubmissionQueueEntry(0, default);
        var completion = await WithTimeout(Submit(command, data, default, exactData: false, forceInCapsule: true), timeout, "Connect").ConfigureAwait(false);
        if (!completion.IsSuccess)
        {
            throw new NvmeCommandException($"Connect of queue {QueueId} to {subsystemNqn}", completion.Status);
        }

        // Bits 17:16 set would ask for in-band authentication, which this host does not do (NVMe-oF 1.1, Figure 21).
        if ((completion.Dw0 & 0x30000) != 0)
        {
            throw new NvmeTransportException($"{subsystemNqn} requires authentication");
        }

        return (ushort)completion.Dw0;
    }

    /// <summary>Awaits a command with a time limit; on expiry the connection is closed, which fails the command.</summary>
    public async Task<NvmeCompletion> WithTimeout(ValueTask<NvmeCompletion> command, TimeSpan timeout, string what)
    {
        if (command.IsCompleted)
        {
            return command.Result;
        }

        var task = command.AsTask();
        if (await Task.WhenAny(task, Task.Delay(timeout)).ConfigureAwait(false) != task)
        {
            Close($"{what} timed out");
            await task.ConfigureAwait(false);
            throw new NvmeTransportException($"{what} on queue {QueueId} timed out after {timeout.TotalSeconds:0.#} s");
        }

        return await task.ConfigureAwait(false);
    }

    /// <summary>Closes the connection; outstanding commands fail with a host path error. Returns when both loops ended.</summary>
    public Task CloseAsync(string reason)
    {
        var connection = Volatile.Read(ref _connection);
        if (connection is null)
        {
            return Task.CompletedTask;
        }

        connection.Deliberate = true;
        Shutdown(connection, reason);
        return connection.Finished;
    }

    /// <summary>Drops the connection as if the network failed (a timeout or a protocol error).</summary>
    public void Close(string reason)
    {
        if (Volatile.Read(ref _connection) is { } connection)
        {
            Shutdown(connection, reason);
        }
    }

    private void Shutdown(Connection connection, string reason)
    {
        if (Interlocked.Exchange(ref connection.ClosedFlag, 1) != 0)
        {
            return;
        }

        connection.Reason = reason;
        LogQueueClosed(_logger, QueueId, reason);
        try
        {
            connection.Socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already gone.
        }

        connection.Socket.Dispose();
        connection.SendSignal.Set();

        // The loops may still be inside an OpenSSL call: TlsChannel serialises them with its disposal, after which
        // they fail like the closed socket does.
        connection.Tls?.Dispose();
    }

    // ---- submission ----

    /// <summary>
    /// Submits one command. <paramref name="dataOut"/> (host to controller) goes in the capsule when it fits, else after
    /// the controller's R2T; <paramref name="dataIn"/> receives C2H data. The CID and SGL of <paramref name="sqe"/> are
    /// filled in here. Fails with a host path error at once when the queue is not connected.
    /// </summary>
    public ValueTask<NvmeCompletion> Submit(in SubmissionQueueEntry sqe, ReadOnlyMemory<byte> dataOut, Memory<byte> dataIn, bool exactData, bool forceInCapsule = false)
    {
        var slot = SubmitCore(sqe, dataOut, dataIn, exactData, forceInCapsule, callback: null, out var version);
        return slot is null ? new ValueTask<NvmeCompletion>(NvmeCompletion.PathError) : new ValueTask<NvmeCompletion>(slot, version);
    }

    /// <summary>
    /// As <see cref="Submit"/>, but the completion goes to <paramref name="callback"/> on the receive loop instead of a
    /// ValueTask. False when the queue is not connected: nothing was sent and the callback will not run.
    /// </summary>
    public bool TrySubmit(in SubmissionQueueEntry sqe, ReadOnlyMemory<byte> dataOut, Memory<byte> dataIn, bool exactData, INvmeCompletionCallback callback) =>
        SubmitCore(sqe, dataOut, dataIn, exactData, forceInCapsule: false, callback, out _) is not null;

    /// <summary>Queues the command and sends it (or leaves it to the flush under way); null when not connected.</summary>
    private CommandSlot? SubmitCore(in SubmissionQueueEntry sqe, ReadOnlyMemory<byte> dataOut, Memory<byte> dataIn, bool exactData, bool forceInCapsule, INvmeCompletionCallback? callback, out short version)
    {
        var length = dataOut.Length > 0 ? dataOut.Length : dataIn.Length;
        if (length > _maxData)
        {
            throw new ArgumentException($"transfer of {length} bytes exceeds the queue's limit of {_maxData}");
        }

        CommandSlot slot;
        Connection? connection;
        lock (_gate)
        {
            connection = _connection;
            if (connection is null || connection.Closed)
            {
                version = 0;
                return null;
            }

            if (_freeCount == 0)
            {
                throw new InvalidOperationException($"queue {QueueId} already has {_slots.Length} commands outstanding");
            }

            slot = _slots[_free[--_freeCount]];
            slot.Begin(dataOut, dataIn, exactData, callback);
            // Taken before the command is sent: it may complete (and the slot be reused) during the flush.
            version = slot.Version;
            WriteCapsuleLocked(slot, sqe, dataOut, forceInCapsule);
            if (_flushing)
            {
                return slot;
            }

            if (t_receiving == this)
            {
                // Inside the receive loop's batch: the loop sends everything the batch produced at once.
                _flushDeferred = true;
                return slot;
            }

            if (SendBatch.TryDefer(this))
            {
                // Inside another queue's batch on this thread (a target connection running a batch of replicated
                // writes, a link's receive loop): sent once at the batch's end with the batch's other commands.
                _flushDeferred = true;
                return slot;
            }

            _flushing = true;
        }

        Flush(connection);
        return slot;
    }

    /// <summary>Sends what a <see cref="SendBatch"/> put off, unless the receive loop or a flush under way has.</summary>
    void IDeferredSend.SendDeferred()
    {
        if (Volatile.Read(ref _connection) is { } connection)
        {
            FlushDeferred(connection);
        }
    }

    private void WriteCapsuleLocked(CommandSlot slot, in SubmissionQueueEntry sqe, ReadOnlyMemory<byte> dataOut, bool forceInCapsule)
    {
        var headerDigestLength = _headerDigest ? PduHeader.DigestSize : 0;
        var headerEnd = CapsuleHeaderLength + headerDigestLength;
        var data = dataOut.Length;
        var inCapsule = data > 0 &&
            (forceInCapsule || (data <= _inCapsuleLimit && _pendingLength + headerEnd + data + 4 + _slots.Length * CapsuleReserve <= _capacity));
        var dataDigestLength = inCapsule && _dataDigest ? PduHeader.DigestSize : 0;
        var plen = headerEnd + (inCapsule ? data + dataDigestLength : 0);
        if (_pendingLength + plen > _capacity)
        {
            throw new InvalidOperationException("send buffer overflow");
        }

        var pdu = _pending.AsSpan(_pendingLength, plen);
        var flags = (_headerDigest ? PduFlags.HeaderDigest : 0) | (dataDigestLength != 0 ? PduFlags.DataDigest : 0);
        new PduHeader(PduType.CapsuleCmd, flags, CapsuleHeaderLength, inCapsule ? (byte)headerEnd : (byte)0, (uint)plen).Write(pdu);
        var entry = pdu.Slice(PduHeader.Size, SubmissionQueueEntry.Size);
        sqe.Write(entry);
        BinaryPrimitives.WriteUInt16LittleEndian(entry[2..], slot.CommandId);
        // Every NVMe/TCP command describes its data with one SGL (TCP 1.0, 3.3.2): in-capsule data at offset 0
        // (ICDOFF 0), otherwise a transport data block moved by H2CData/C2HData; a null transport block for no data.
        var transferLength = data > 0 ? data : slot.DataIn.Length;
        new SglDescriptor(0, (uint)transferLength, inCapsule ? SglDescriptor.InCapsuleDataBlock : SglDescriptor.TransportDataBlock).Write(entry[24..]);
        if (_headerDigest)
        {
            Crc32C.ComputeInto(pdu[..CapsuleHeaderLength], pdu[CapsuleHeaderLength..]);
        }

        if (inCapsule)
        {
            var payload = pdu.Slice(headerEnd, data);
            dataOut.Span.CopyTo(payload);
            if (_dataDigest)
            {
                Crc32C.ComputeInto(payload, pdu[(headerEnd + data)..]);
            }

            slot.H2COffset = slot.H2CEnd = data;
        }

        _pendingLength += plen;
    }

    /// <summary>Appends H2CData PDUs for pending R2Ts while they fit, keeping the capsule reserve (TCP 1.0, 3.6.2.7).</summary>
    private void FillH2CDataLocked()
    {
        var headerDigestLength = _headerDigest ? PduHeader.DigestSize : 0;
        var dataDigestLength = _dataDigest ? PduHeader.DigestSize : 0;
        var reserve = _slots.Length * CapsuleReserve;
        while (_r2tCount > 0)
        {
            var slot = _slots[_r2tRing[_r2tHead]];
            var chunk = Math.Min(_maxH2CChunk, slot.H2CEnd - slot.H2COffset);
            var dataOffset = DataHeaderLength + headerDigestLength;
            var plen = dataOffset + chunk + dataDigestLength;
            if (_pendingLength + plen + reserve > _capacity)
            {
                return;
            }

            var pdu = _pending.AsSpan(_pendingLength, plen);
            var last = slot.H2COffset + chunk == slot.H2CEnd;
            var flags = (_headerDigest ? PduFlags.HeaderDigest : 0) | (_dataDigest ? PduFlags.DataDigest : 0) | (last ? PduFlags.LastPdu : 0);
            new DataTransferHeader(slot.CommandId, slot.TransferTag, (uint)slot.H2COffset, (uint)chunk).Write(pdu, PduType.H2CData, flags, (byte)dataOffset, (uint)plen);
            if (_headerDigest)
            {
                Crc32C.ComputeInto(pdu[..DataHeaderLength], pdu[DataHeaderLength..]);
            }

            var payload = pdu.Slice(dataOffset, chunk);
            slot.DataOut.Span.Slice(slot.H2COffset, chunk).CopyTo(payload);
            if (_dataDigest)
            {
                Crc32C.ComputeInto(payload, pdu[(dataOffset + chunk)..]);
            }

            _pendingLength += plen;
            slot.H2COffset += chunk;
            if (last)
            {
                _r2tHead = (_r2tHead + 1) % _r2tRing.Length;
                _r2tCount--;
            }
        }
    }

    /// <summary>
    /// Sends what is pending with non-blocking sends; the caller owns the flushing token. If the socket is full, the
    /// send worker takes over (and keeps the token).
    /// </summary>
    private void Flush(Connection connection)
    {
        while (true)
        {
            byte[] buffer;
            int length;
            lock (_gate)
            {
                FillH2CDataLocked();
                if (_pendingLength == 0 || connection.Closed)
                {
                    _flushing = false;
                    return;
                }

                buffer = _pending;
                length = _pendingLength;
                (_pending, _spare) = (_spare, _pending);
                _pendingLength = 0;
            }

            if (connection.Tls is not null)
            {
                // Encryption and the blocking send belong to the send worker, off the submitting thread.
                connection.HandOff(buffer, 0, length);
                return;
            }

            var offset = 0;
            while (offset < length)
            {
                int sent;
                SocketError error;
                try
                {
                    sent = connection.Dedicated
                        ? SocketCalls.SendNonBlocking(connection.Handle, buffer.AsSpan(offset, length - offset), out error)
                        : connection.Socket.Send(buffer, offset, length - offset, SocketFlags.None, out error);
                }
                catch (ObjectDisposedException)
                {
                    sent = 0;
                    error = SocketError.Shutdown;
                }

                if (error == SocketError.WouldBlock)
                {
                    connection.HandOff(buffer, offset, length);
                    return;
                }

                if (error != SocketError.Success)
                {
                    lock (_gate)
                    {
                        _flushing = false;
                    }

                    Shutdown(connection, $"send failed: {error}");
                    return;
                }

                offset += sent;
            }
        }
    }

    /// <summary>
    /// Finishes sends that would have blocked, then keeps flushing until nothing is pending. With
    /// <paramref name="blocking"/> it runs on a thread of its own and never awaits anything incomplete.
    /// </summary>
    private async Task SendWorkerAsync(Connection connection, bool blocking)
    {
        try
        {
            while (true)
            {
                if (blocking)
                {
                    connection.SendSignal.Wait();
                }
                else
                {
                    await connection.SendSignal.WaitAsync().ConfigureAwait(false);
                }

                if (connection.Closed)
                {
                    return;
                }

                var (buffer, offset, length) = connection.TakeHandOff();
                if (buffer is null)
                {
                    continue;
                }

                while (true)
                {
                    if (connection.Tls is { } tls)
                    {
                        if (blocking)
                        {
                            tls.Send(buffer.AsSpan(offset, length - offset));
                        }
                        else
                        {
                            await tls.SendAsync(buffer.AsMemory(offset, length - offset), CancellationToken.None).ConfigureAwait(false);
                        }

                        offset = length;
                    }

                    while (offset < length)
                    {
                        offset += blocking
                            ? connection.Socket.Send(buffer.AsSpan(offset, length - offset), SocketFlags.None)
                            : await connection.Socket.SendAsync(buffer.AsMemory(offset, length - offset), SocketFlags.None).ConfigureAwait(false);
                    }

                    lock (_gate)
                    {
                        FillH2CDataLocked();
                        if (_pendingLength == 0 || connection.Closed)
                        {
                            _flushing = false;
                            Volatile.Write(ref connection.SendWorkerActive, false);
                            break;
                        }

                        buffer = _pending;
                        length = _pendingLength;
                        offset = 0;
                        (_pending, _spare) = (_spare, _pending);
                        _pendingLength = 0;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
        {
            lock (_gate)
            {
                _flushing = false;
            }

            Volatile.Write(ref connection.SendWorkerActive, false);
            Shutdown(connection, $"send failed: {ex.Message}");
        }
    }

    /// <summary>Called by <see cref="CommandSlot.GetResult"/>: the slot's CID is free again.</summary>
    internal void Release(CommandSlot slot)
    {
        lock (_gate)
        {
            slot.State = SlotState.Free;
            _free[_freeCount++] = slot.Index;
        }
    }

    // ---- receive ----

    /// <param name="blocking">On the connection's own thread: blocking receives, so nothing is ever awaited.</param>
    private async Task ReceiveLoopAsync(Connection connection, bool blocking)
    {
        var socket = connection.Socket;
        try
        {
            while (!connection.Closed)
            {
                CompactReceiveBuffer();
                var received = connection.Tls is { } tls
                    ? blocking
                        ? tls.Receive(_receive.AsSpan(_receiveEnd), connection.Handle, Volatile.Read(ref connection.SendWorkerActive) ? 0 : _pollTicks)
                        : await tls.ReceiveAsync(_receive.AsMemory(_receiveEnd), CancellationToken.None).ConfigureAwait(false)
                    : blocking
                        ? SocketCalls.ReceivePolling(socket, connection.Handle, _receive.AsSpan(_receiveEnd), Volatile.Read(ref connection.SendWorkerActive) ? 0 : _pollTicks)
                        : await socket.ReceiveAsync(_receive.AsMemory(_receiveEnd), SocketFlags.None).ConfigureAwait(false);
                if (received == 0)
                {
                    Shutdown(connection, "the controller closed the connection");
                    break;
                }

                _receiveEnd += received;
                ProcessReceived(connection);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException or OperationCanceledException)
        {
            Shutdown(connection, $"receive failed: {ex.Message}");
        }
        catch (NvmeTransportException ex)
        {
            LogProtocolError(_logger, QueueId, ex.Message);
            Shutdown(connection, ex.Message);
        }
        finally
        {
            FailOutstanding(connection);
        }
    }

    private void ProcessReceived(Connection connection)
    {
        // Outstanding commands when the batch arrived (a racy read is good enough for a scheduling hint).
        _earlySend.BeginBatch(_slots.Length - Volatile.Read(ref _freeCount));
        _batchCompletions = 0;
        t_receiving = this;
        // Completions that finish commands of other connections (a replica's answers finishing the primary's host
        // commands) send once per batch, not once each.
        SendBatch.Begin();
        try
        {
            while (TryProcessOnePdu())
            {
                if (_earlySend.SendNow(_batchCompletions, _receiveEnd > _receiveStart))
                {
                    t_receiving = null;
                    FlushDeferred(connection);
                    t_receiving = this;
                }
            }
        }
        finally
        {
            t_receiving = null;
            SendBatch.End();
        }

        _earlySend.EndBatch(_batchCompletions);
        FlushDeferred(connection);
    }

    private void FlushDeferred(Connection connection)
    {
        bool flush;
        lock (_gate)
        {
            flush = (_flushDeferred || _r2tCount > 0) && !_flushing;
            _flushDeferred = false;
            if (flush)
            {
                _flushing = true;
            }
        }

        if (flush)
        {
            Flush(connection);
        }
    }

    private void CompactReceiveBuffer()
    {
        if (_receiveStart == _receiveEnd)
        {
            _receiveStart = _receiveEnd = 0;
        }
        else if (_receive.Length - _receiveEnd < _maxPduIn)
        {
            var pending = _receiveEnd - _receiveStart;
            Buffer.BlockCopy(_receive, _receiveStart, _receive, 0, pending);
            _receiveStart = 0;
            _receiveEnd = pending;
        }
    }

    private bool TryProcessOnePdu()
    {
        var available = _receiveEnd - _receiveStart;
        if (available < PduHeader.Size)
        {
            return false;
        }

        var header = PduHeader.Read(_receive.AsSpan(_receiveStart, PduHeader.Size));
        var expectedHeaderLength = header.Type switch
        {
            PduType.CapsuleResp or PduType.C2HData or PduType.R2T or PduType.C2HTermReq => PduHeader.ExpectedHeaderLength(header.Type),
            _ => throw new NvmeTransportException($"unexpected PDU type {header.Type} from the controller"),
        };
        if (header.HeaderLength != expectedHeaderLength || header.PduLength < header.HeaderLength || header.PduLength > _maxPduIn)
        {
            throw new NvmeTransportException($"bad {header.Type} PDU: hlen {header.HeaderLength} plen {header.PduLength}");
        }

        if (header.Type == PduType.C2HTermReq)
        {
            if (available < Math.Min(header.PduLength, (uint)TermReq.HeaderLength))
            {
                return false;
            }

            var term = TermReq.Read(_receive.AsSpan(_receiveStart));
            throw new NvmeTransportException($"the controller terminated the connection: {term.FatalErrorStatus} (field {term.FatalErrorInformation})");
        }

        if (available < header.PduLength)
        {
            return false;
        }

        var pdu = _receive.AsSpan(_receiveStart, (int)header.PduLength);
        _receiveStart += (int)header.PduLength;
        var headerDigestLength = _headerDigest ? PduHeader.DigestSize : 0;
        if (_headerDigest)
        {
            if ((header.Flags & PduFlags.HeaderDigest) == 0 || pdu.Length < header.HeaderLength + PduHeader.DigestSize)
            {
                throw new NvmeTransportException($"{header.Type} without the negotiated header digest");
            }

            // A header digest error loses the PDU boundaries: the connection cannot continue (TCP 1.0, 3.6.2.2).
            if (!Crc32C.Verify(pdu[..header.HeaderLength], pdu.Slice(header.HeaderLength, PduHeader.DigestSize)))
            {
                throw new NvmeTransportException($"header digest error on {header.Type}");
            }
        }

        switch (header.Type)
        {
            case PduType.CapsuleResp:
                HandleResponse(CompletionQueueEntry.Read(pdu.Slice(PduHeader.Size, CompletionQueueEntry.Size)));
                break;
            case PduType.C2HData:
                HandleData(pdu, header, header.HeaderLength + headerDigestLength);
                break;
            default:
                HandleR2T(DataTransferHeader.Read(pdu));
                break;
        }

        return true;
    }

    private CommandSlot Lookup(ushort commandId, PduType type)
    {
        var index = commandId & (CommandSlot.MaxSlots - 1);
        if (index >= _slots.Length || _slots[index] is not { State: SlotState.Outstanding } slot || slot.CommandId != commandId)
        {
            throw new NvmeTransportException($"{type} for unknown command id {commandId:X4}");
        }

        return slot;
    }

    private void HandleResponse(in CompletionQueueEntry cqe)
    {
        var slot = Lookup(cqe.CommandId, PduType.CapsuleResp);
        var status = cqe.Status;
        if (!slot.DataError.IsSuccess)
        {
            status = slot.DataError;
        }
        else if (status.IsSuccess && slot.ExactData && slot.Received != slot.DataIn.Length)
        {
            status = NvmeStatus.DataTransferError;
        }

        _batchCompletions++;
        slot.Complete(new NvmeCompletion(status, cqe.Dw0, cqe.Dw1));
    }

    private void HandleData(ReadOnlySpan<byte> pdu, PduHeader header, int headerEnd)
    {
        var transfer = DataTransferHeader.Read(pdu);
        var slot = Lookup(transfer.CommandId, PduType.C2HData);
        var dataDigestLength = _dataDigest ? PduHeader.DigestSize : 0;
        if (header.DataOffset < headerEnd || header.DataOffset + transfer.Length + dataDigestLength != header.PduLength)
        {
            throw new NvmeTransportException($"C2HData with pdo {header.DataOffset}, datal {transfer.Length}, plen {header.PduLength}");
        }

        if (transfer.Offset != (uint)slot.Received || transfer.Offset + transfer.Length > (uint)slot.DataIn.Length)
        {
            throw new NvmeTransportException($"C2HData at {transfer.Offset}+{transfer.Length}, expected offset {slot.Received} within {slot.DataIn.Length}");
        }

        var data = pdu.Slice(header.DataOffset, (int)transfer.Length);
        if (_dataDigest && !Crc32C.Verify(data, pdu[^PduHeader.DigestSize..]))
        {
            // The stream is still in sync; only this command fails (Linux reports a data transfer error the same way).
            slot.DataError = NvmeStatus.TransientTransportError;
        }
        else
        {
            data.CopyTo(slot.DataIn.Span[(int)transfer.Offset..]);
        }

        slot.Received += (int)transfer.Length;
        if ((header.Flags & PduFlags.Success) != 0)
        {
            // SUCCESS replaces the CapsuleResp and is only valid on the last PDU (TCP 1.0, 3.6.2.8).
            if ((header.Flags & PduFlags.LastPdu) == 0)
            {
                throw new NvmeTransportException("C2HData with SUCCESS but without LAST_PDU");
            }

            var status = slot.DataError.IsSuccess ? NvmeStatus.Success : slot.DataError;
            _batchCompletions++;
            slot.Complete(new NvmeCompletion(status, 0, 0));
        }
    }

    private void HandleR2T(in DataTransferHeader r2t)
    {
        var slot = Lookup(r2t.CommandId, PduType.R2T);
        var length = slot.DataOut.Length;
        if (length == 0 || r2t.Length == 0 || (long)r2t.Offset + r2t.Length > length || r2t.Offset < (uint)slot.H2CEnd)
        {
            throw new NvmeTransportException($"R2T {r2t.Offset}+{r2t.Length} for a command with {length} bytes, {slot.H2CEnd} already sent");
        }

        lock (_gate)
        {
            slot.TransferTag = r2t.TransferTag;
            slot.H2COffset = (int)r2t.Offset;
            slot.H2CEnd = (int)(r2t.Offset + r2t.Length);
            _r2tRing[(_r2tHead + _r2tCount) % _r2tRing.Length] = slot.Index;
            _r2tCount++;
        }
    }

    private void FailOutstanding(Connection connection)
    {
        Shutdown(connection, "receive loop ended");
        List<CommandSlot>? failed = null;
        lock (_gate)
        {
            _pendingLength = 0;
            _r2tCount = 0;
            foreach (var slot in _slots)
            {
                if (slot.State == SlotState.Outstanding)
                {
                    (failed ??= new List<CommandSlot>()).Add(slot);
                }
            }
        }

        if (failed is not null)
        {
            LogFailingOutstanding(_logger, QueueId, failed.Count);
            foreach (var slot in failed)
            {
                slot.Complete(NvmeCompletion.PathError);
            }
        }

        connection.SendSignal.Set();
        if (!connection.Deliberate)
        {
            ConnectionLost?.Invoke(this, connection.Reason ?? "connection lost");
        }
    }

    private static async Task SendAllAsync(Socket socket, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            data = data[await socket.SendAsync(data, SocketFlags.None, cancellationToken).ConfigureAwait(false)..];
        }
    }

    private static async Task ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (!buffer.IsEmpty)
        {
            var received = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (received == 0)
            {
                throw new EndOfStreamException("the controller closed the connection during initialization");
            }

            buffer = buffer[received..];
        }
    }

    /// <summary>State of one TCP connection of the queue; a reconnect gets a new one.</summary>
    private sealed class Connection
    {
        private readonly object _handOffGate = new();
        private byte[]? _handOffBuffer;
        private int _handOffOffset;
        private int _handOffLength;

        public Connection(Socket socket, bool dedicated)
        {
            Socket = socket;
            Dedicated = dedicated;
            // Taken once: the handle of a blocking socket used for MSG_DONTWAIT sends from the receive loop.
            Handle = dedicated ? socket.SafeHandle : null!;
        }

        public Socket Socket { get; }

        /// <summary>The TLS secure channel every byte goes through, or null for a plaintext connection.</summary>
        public TlsChannel? Tls { get; init; }

        public bool Dedicated { get; }

        public SafeHandle Handle { get; }

        public AsyncSignal SendSignal { get; } = new();

        public int ClosedFlag;

        public bool Closed => Volatile.Read(ref ClosedFlag) != 0;

        public bool Deliberate { get; set; }

        public string? Reason { get; set; }

        public Task Finished { get; set; } = Task.CompletedTask;

        /// <summary>
        /// Set while the send worker owns the pending sends. The receive loop then sleeps instead of polling: on a
        /// dedicated thread its spinning would take the CPU from the send worker whose requests it is waiting for.
        /// </summary>
        public bool SendWorkerActive;

        public void HandOff(byte[] buffer, int offset, int length)
        {
            Volatile.Write(ref SendWorkerActive, true);
            lock (_handOffGate)
            {
                _handOffBuffer = buffer;
                _handOffOffset = offset;
                _handOffLength = length;
            }

            SendSignal.Set();
        }

        public (byte[]? Buffer, int Offset, int Length) TakeHandOff()
        {
            lock (_handOffGate)
            {
                var result = (_handOffBuffer, _handOffOffset, _handOffLength);
                _handOffBuffer = null;
                return result;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "NVMe/TCP queue {QueueId} closed: {Reason}")]
    private static partial void LogQueueClosed(ILogger logger, ushort queueId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "NVMe/TCP queue {QueueId}: protocol error from the controller: {Detail}")]
    private static partial void LogProtocolError(ILogger logger, ushort queueId, string detail);

    [LoggerMessage(Level = LogLevel.Information, Message = "NVMe/TCP queue {QueueId} lost its connection; failing {Count} outstanding commands with a host path error")]
    private static partial void LogFailingOutstanding(ILogger logger, ushort queueId, int count);
}
