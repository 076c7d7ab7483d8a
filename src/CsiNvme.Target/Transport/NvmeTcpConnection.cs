using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Tcp;
using CsiNvme.Protocol.Tls;
using CsiNvme.Storage;
using CsiNvme.Target.Controllers;
using CsiNvme.Target.Io;
using CsiNvme.Target.Fabrics;
using CsiNvme.Target.Subsystems;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target.Transport;

/// <summary>
/// One NVMe/TCP connection, which carries exactly one queue pair (TCP 1.0, 2.1). Runs to completion: the receive loop
/// parses every complete PDU in its buffer, executes the command synchronously against storage, appends the responses
/// to one send buffer and flushes them in a single send, so there is no task hop and no allocation per command.
/// </summary>
internal sealed partial class NvmeTcpConnection
{
    private const int CapsuleResponseLength = 24;
    private const int AdminInCapsuleDataSize = 8192;

    private readonly NvmeTarget _target;
    private readonly Socket _socket;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _closing = new();
    private readonly byte[] _receiveBuffer;
    private readonly byte[] _sendBuffer;
    private readonly int _maxDataTransfer;
    private readonly int _maxResponseBytes;
    private int _receiveStart;
    private int _receiveEnd;
    private int _sendLength;
    private bool _headerDigest;
    private bool _dataDigest;
    private int _digestLength;
    private int _c2hDataOffset;
    private bool _terminated;
    private bool _sqFlowControlDisabled;
    private volatile bool _dedicatedThread;
    private int _loopThreadId = -1;
    private int _closed;
    private volatile bool _queueBound;
    private volatile bool _authenticated = true;
    private string? _closeAfterResponses;
    private TlsChannel? _tls;

    private Controller? _controller;
    private ushort _queueId;
    private int _queueEntries;
    private ushort _submissionHead;
    private PendingTransfer[] _transfers = [];
    private BatchIoTally _ioTally;
    private int[] _freeTags = [];
    private int _freeTagCount;

    public NvmeTcpConnection(NvmeTarget target, Socket socket, ILogger logger)
    {
        _target = target;
        _socket = socket;
        _logger = logger;
        var options = target.Options;
        _maxDataTransfer = options.MaxDataTransferSize;
        var maxInCapsule = Math.Max(options.InCapsuleDataSize, AdminInCapsuleDataSize);
        var largestPdu = Math.Max(72 + 4 + maxInCapsule + 4, 24 + 4 + options.MaxH2CDataSize + 4);
        _receiveBuffer = GC.AllocateUninitializedArray<byte>(largestPdu * 2 + 64 * 1024, pinned: true);

        // Worst case of one command: C2HData header + digest + padding + MDTS of data + data digest + CapsuleResp.
        _maxResponseBytes = 128 + _maxDataTransfer + 4 + CapsuleResponseLength + 4;
        _sendBuffer = GC.AllocateUninitializedArray<byte>(_maxResponseBytes * 2, pinned: true);
        RemoteEndPoint = socket.RemoteEndPoint as IPEndPoint;
        LocalEndPoint = socket.LocalEndPoint as IPEndPoint;
        AcceptedTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>When the connection was accepted (<see cref="Stopwatch"/> ticks): the Connect timeout counts from here.</summary>
    public long AcceptedTimestamp { get; }

    /// <summary>True once a Connect bound this connection to a queue.</summary>
    public bool IsQueueBound => _queueBound;

    /// <summary>
    /// Bound to a queue, and authenticated when its subsystem requires it of the host: until then the Connect timeout
    /// applies, so a host that never authenticates (or failed to) does not keep the connection.
    /// </summary>
    public bool IsAdmitted => _queueBound && _authenticated;

    /// <summary>False while the queue owes a DH-HMAC-CHAP authentication: it is served only Authentication Send/Receive.</summary>
    public bool IsAuthenticated => _authenticated;

    /// <summary>The queue's DH-HMAC-CHAP transaction under way, if any; only the receive loop touches it.</summary>
    public DhchapControllerTransaction? Authentication { get; set; }

    /// <summary>The host NQN this connection counts for against the per-host cap, from its successful Connect on.</summary>
    public string? AdmittedHostNqn { get; set; }

    public IPEndPoint? RemoteEndPoint { get; }

    /// <summary>The PSK identity of the connection's TLS secure channel, or null for a plaintext connection.</summary>
    public TlsPskIdentity? TlsIdentity => _tls?.PeerIdentity;

    /// <summary>
    /// When the batch of PDUs being processed was received: the start of every command in it. A command's latency then
    /// includes its wait behind the earlier commands of its batch, as its host sees it, and the clock is read once per
    /// batch instead of once per command.
    /// </summary>
    public long BatchStartTimestamp { get; private set; }

    public IPEndPoint? LocalEndPoint { get; }

    public ushort QueueId => _queueId;

    public Controller? Controller => _controller;

    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>Largest transfer of one command, for MDTS checks by the command handlers.</summary>
    public int MaxDataTransfer => _maxDataTransfer;

    public NvmeTarget Target => _target;

    public async Task RunAsync()
    {
        try
        {
            if (!await NegotiateAsync().ConfigureAwait(false))
            {
                return;
            }

            var token = _closing.Token;
            while (!_terminated)
            {
                CompactReceiveBufferIfNeeded();
                var received = _tls is null
                    ? await _socket.ReceiveAsync(_receiveBuffer.AsMemory(_receiveEnd), SocketFlags.None, token).ConfigureAwait(false)
                    : await _tls.ReceiveAsync(_receiveBuffer.AsMemory(_receiveEnd), token).ConfigureAwait(false);
                if (received == 0)
                {
                    break;
                }

                _receiveEnd += received;
                await ProcessReceivedAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException or IOException)
        {
            LogConnectionDropped(_logger, RemoteEndPoint, ex.Message);
        }
        catch (Exception ex)
        {
            LogConnectionFailed(_logger, ex, RemoteEndPoint);
        }
        finally
        {
            Finish();
        }
    }

    /// <summary>
    /// The same receive loop on a thread of its own with blocking socket calls: a request wakes this thread directly
    /// instead of passing from the socket engine's epoll thread to the thread pool, which saves a hand-off per
    /// batch at the price of one thread per connection.
    /// </summary>
    public void RunOnDedicatedThread()
    {
        _loopThreadId = Environment.CurrentManagedThreadId;
        _dedicatedThread = true;
        try
        {
            if (!NegotiateBlocking())
            {
                return;
            }

            var handle = _socket.SafeHandle;
            var pollTicks = SocketCalls.ToTicks(_target.Options.ReceivePollTime);
            while (!_terminated)
            {
                CompactReceiveBufferIfNeeded();
                var received = _tls is null
                    ? SocketCalls.ReceivePolling(_socket, handle, _receiveBuffer.AsSpan(_receiveEnd), pollTicks)
                    : _tls.Receive(_receiveBuffer.AsSpan(_receiveEnd), handle, pollTicks);
                if (received == 0)
                {
                    break;
                }

                _receiveEnd += received;
                ProcessReceivedBlocking();
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException or IOException)
        {
            LogConnectionDropped(_logger, RemoteEndPoint, ex.Message);
        }
        catch (Exception ex)
        {
            LogConnectionFailed(_logger, ex, RemoteEndPoint);
        }
        finally
        {
            Finish();
        }
    }

    private void SendOutOfBandBlocking(ushort commandId, NvmeStatus status, uint dw0)
    {
        if (Environment.CurrentManagedThreadId == _loopThreadId)
        {
            // Raised while this connection's own loop executes a command (an AER meeting a queued event): the loop
            // holds the send lock and flushes the batch, so the completion just joins it.
            Complete(commandId, status, dw0);
            return;
        }

        _sendLock.Wait();
        try
        {
            if (!IsClosed)
            {
                Complete(commandId, status, dw0);
                FlushBlocking();
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Close("send failed");
        }
        finally
        {
            ReleaseSendLock();
        }
    }

    private void ProcessReceivedBlocking()
    {
        _sendLock.Wait();
        BatchStartTimestamp = Stopwatch.GetTimestamp();
        try
        {
            PrefetchBatchData();
            // What the batch's commands send on other connections (a replicated volume's writes to its replicas) goes
            // out once, when the batch has run, before this connection's own completions.
            SendBatch.Begin();
            try
            {
                while (!_terminated)
                {
                    if (_sendBuffer.Length - _sendLength < _maxResponseBytes)
                    {
                        FlushBlocking();
                    }

                    if (!ProcessOnePdu())
                    {
                        break;
                    }
                }
            }
            finally
            {
                SendBatch.End();
            }

            DrainFinishedDeferredLocked();
            if (_sendLength > 0)
            {
                FlushBlocking();
            }
        }
        finally
        {
            ReleaseSendLock();
        }

        CloseIfAsked();
        if (_terminated)
        {
            LingerAfterTermReqBlocking();
            Close("fatal transport error");
        }
    }

    private void LingerAfterTermReqBlocking()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Send);
            _socket.ReceiveTimeout = 2000;
            while (_socket.Receive(_receiveBuffer) > 0)
            {
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The host closed or the grace period ended.
        }
    }

    private void FlushBlocking()
    {
        CommitIoTally();
        if (_tls is not null)
        {
            _tls.Send(_sendBuffer.AsSpan(0, _sendLength));
            _sendLength = 0;
            return;
        }

        var offset = 0;
        while (offset < _sendLength)
        {
            offset += _socket.Send(_sendBuffer.AsSpan(offset, _sendLength - offset), SocketFlags.None);
        }

        _sendLength = 0;
    }

    /// <summary>Ends a connection whose receive loop never started: closes it and releases what it holds, as the loop would.</summary>
    public void Abandon(string reason)
    {
        Close(reason);
        Finish();
    }

    private void Finish()
    {
        Close("connection ended");

        // Only the receive loop touches the transfer table, so it is released here, after the loop, never from
        // the thread that asked for the close.
        ReleaseTransfers();
        LoopFinished();
        _tls?.Dispose();
        _controller?.QueueClosed(this);
        _target.ConnectionClosed(this);
    }

    /// <summary>Closes the socket from any thread; the receive loop then ends and detaches the queue from its controller.</summary>
    public void Close(string reason)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        LogConnectionClosed(_logger, RemoteEndPoint, _queueId, reason);
        _closing.Cancel();
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already gone.
        }

        _socket.Dispose();
    }

    /// <summary>
    /// Sends a completion from outside the receive loop (an Asynchronous Event Request completing because of a
    /// namespace change elsewhere). Rare, so the closure allocation does not matter.
    /// </summary>
    public async Task SendOutOfBandAsync(ushort commandId, NvmeStatus status, uint dw0)
    {
        if (IsClosed)
        {
            return;
        }

        if (_dedicatedThread)
        {
            SendOutOfBandBlocking(commandId, status, dw0);
            return;
        }

        await _sendLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (IsClosed)
            {
                return;
            }

            Complete(commandId, status, dw0);
            await FlushAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            Close("send failed");
        }
        finally
        {
            ReleaseSendLock();
        }
    }

    private async Task<bool> NegotiateAsync()
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_closing.Token);
        timeout.CancelAfter(_target.Options.InitializeTimeout);
        while (_receiveEnd < ICReq.Length)
        {
            var received = _tls is null
                ? await _socket.ReceiveAsync(_receiveBuffer.AsMemory(_receiveEnd, ICReq.Length - _receiveEnd), SocketFlags.None, timeout.Token).ConfigureAwait(false)
                : await _tls.ReceiveAsync(_receiveBuffer.AsMemory(_receiveEnd, ICReq.Length - _receiveEnd), timeout.Token).ConfigureAwait(false);
            if (received == 0)
            {
                return false;
            }

            _receiveEnd += received;
            if (_tls is null && TlsChannel.StartsTlsRecord(_receiveBuffer[0]))
            {
                if (!await StartTlsAsync(timeout.Token).ConfigureAwait(false))
                {
                    return false;
                }

                continue;
            }

            if (!MayBeICReq())
            {
                break;
            }
        }

        var accepted = AnswerICReq();
        await FlushAsync().ConfigureAwait(false);
        if (!accepted)
        {
            await LingerAfterTermReqAsync().ConfigureAwait(false);
        }

        return accepted;
    }

    /// <summary>
    /// The blocking twin of <see cref="NegotiateAsync"/>: a socket used only synchronously stays in blocking mode, where
    /// .NET receives without allocating; one asynchronous call would switch it to emulated blocking for good.
    /// </summary>
    private bool NegotiateBlocking()
    {
        _socket.ReceiveTimeout = (int)_target.Options.InitializeTimeout.TotalMilliseconds;
        while (_receiveEnd < ICReq.Length)
        {
            var received = _tls is null
                ? _socket.Receive(_receiveBuffer.AsSpan(_receiveEnd, ICReq.Length - _receiveEnd), SocketFlags.None)
                : _tls.Receive(_receiveBuffer.AsSpan(_receiveEnd, ICReq.Length - _receiveEnd), _socket.SafeHandle, 0);
            if (received == 0)
            {
                return false;
            }

            _receiveEnd += received;
            if (_tls is null && TlsChannel.StartsTlsRecord(_receiveBuffer[0]))
            {
                if (!StartTlsBlocking())
                {
                    return false;
                }

                continue;
            }

            if (!MayBeICReq())
            {
                break;
            }
        }

        _socket.ReceiveTimeout = 0;
        var accepted = AnswerICReq();
        FlushBlocking();
        if (!accepted)
        {
            LingerAfterTermReqBlocking();
        }

        return accepted;
    }

    /// <summary>False as soon as the first 8 bytes show the PDU cannot be a valid ICReq, so the error is answered at once.</summary>
    private bool MayBeICReq()
    {
        if (_receiveEnd < PduHeader.Size)
        {
            return true;
        }

        var early = PduHeader.Read(_receiveBuffer);
        return early.Type == PduType.ICReq && early.HeaderLength == ICReq.Length && early.PduLength == ICReq.Length;
    }

    /// <summary>Validates the ICReq and queues the ICResp (true) or a C2HTermReq (false) in the send buffer.</summary>
    private bool AnswerICReq()
    {
        var pdu = _receiveBuffer.AsSpan(0, _receiveEnd);
        var header = PduHeader.Read(pdu);
        TermReqFatalError? error = null;
        uint errorField = 0;
        if (header.Type != PduType.ICReq)
        {
            (error, errorField) = (TermReqFatalError.InvalidPduHeaderField, 0);
        }
        else if (header.HeaderLength != ICReq.Length)
        {
            (error, errorField) = (TermReqFatalError.InvalidPduHeaderField, 2);
        }
        else if (header.PduLength != ICReq.Length)
        {
            (error, errorField) = (TermReqFatalError.InvalidPduHeaderField, 4);
        }

        if (error is null)
        {
            var request = ICReq.Read(pdu);
            if (request.ProtocolFormatVersion != 0)
            {
                (error, errorField) = (TermReqFatalError.UnsupportedParameter, 8);
            }
            else if (request.HostPduDataAlignment > 31)
            {
                (error, errorField) = (TermReqFatalError.InvalidPduHeaderField, 10);
            }
            else
            {
                _headerDigest = request.HeaderDigest;
                _dataDigest = request.DataDigest;
                _digestLength = _dataDigest ? PduHeader.DigestSize : 0;
                var alignment = (request.HostPduDataAlignment + 1) * 4;
                var headerEnd = 24 + (_headerDigest ? PduHeader.DigestSize : 0);
                _c2hDataOffset = (headerEnd + alignment - 1) / alignment * alignment;
                new ICResp(0, 0, _headerDigest, _dataDigest, (uint)_target.Options.MaxH2CDataSize).Write(_sendBuffer);
                _sendLength = ICResp.Length;
                _receiveStart = ICReq.Length;
                LogConnectionInitialized(_logger, RemoteEndPoint, _headerDigest, _dataDigest);
                return true;
            }
        }

        LogProtocolError(_logger, RemoteEndPoint, error.Value, errorField);
        _sendLength = new TermReq(error.Value, errorField).Write(_sendBuffer, PduType.C2HTermReq, pdu[..Math.Min(pdu.Length, ICReq.Length)]);
        return false;
    }

    // Pooled builders: under load these awaits complete asynchronously once per receive batch, and a plain async
    // method would box its state machine each time.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ProcessReceivedAsync()
    {
        await _sendLock.WaitAsync().ConfigureAwait(false);
        BatchStartTimestamp = Stopwatch.GetTimestamp();
        try
        {
            PrefetchBatchData();
            while (!_terminated)
            {
                if (_sendBuffer.Length - _sendLength < _maxResponseBytes)
                {
                    await FlushAsync().ConfigureAwait(false);
                }

                if (!ProcessOnePdu())
                {
                    break;
                }
            }

            DrainFinishedDeferredLocked();
            if (_sendLength > 0)
            {
                await FlushAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            ReleaseSendLock();
        }

        CloseIfAsked();
        if (_terminated)
        {
            await LingerAfterTermReqAsync().ConfigureAwait(false);
            Close("fatal transport error");
        }
    }

    /// <summary>
    /// Half-closes after a TermReq and drains what the host still sends for a moment: closing with unread bytes
    /// would reset the connection and could destroy the TermReq before the host reads it.
    /// </summary>
    private async Task LingerAfterTermReqAsync()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Send);
            using var linger = CancellationTokenSource.CreateLinkedTokenSource(_closing.Token);
            linger.CancelAfter(TimeSpan.FromSeconds(2));
            while (await _socket.ReceiveAsync(_receiveBuffer.AsMemory(), SocketFlags.None, linger.Token).ConfigureAwait(false) > 0)
            {
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // The host closed or the grace period ended.
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushAsync()
    {
        CommitIoTally();
        if (_tls is not null)
        {
            await _tls.SendAsync(_sendBuffer.AsMemory(0, _sendLength), _closing.Token).ConfigureAwait(false);
            _sendLength = 0;
            return;
        }

        var offset = 0;
        while (offset < _sendLength)
        {
            offset += await _socket.SendAsync(_sendBuffer.AsMemory(offset, _sendLength - offset), SocketFlags.None, _closing.Token).ConfigureAwait(false);
        }

        _sendLength = 0;
    }

    private void CompactReceiveBufferIfNeeded()
    {
        if (_receiveStart == _receiveEnd)
        {
            _receiveStart = _receiveEnd = 0;
            return;
        }

        // Keep room for the largest PDU after the one being assembled so a receive never gets a tiny window.
        if (_receiveBuffer.Length - _receiveEnd < _receiveBuffer.Length / 2)
        {
            var pending = _receiveEnd - _receiveStart;
            Buffer.BlockCopy(_receiveBuffer, _receiveStart, _receiveBuffer, 0, pending);
            _receiveStart = 0;
            _receiveEnd = pending;
        }
    }

    /// <summary>
    /// Walks the complete command capsules received and lets each command but the first hint its data to the volume
    /// before any runs (<see cref="IoCommandHandler.Prefetch"/>), so the blocks of the whole batch load at once.
    /// Nothing is validated or executed here; <see cref="ProcessOnePdu"/> does that as usual.
    /// </summary>
    private void PrefetchBatchData()
    {
        const int CapsuleCommandLength = PduHeader.Size + SubmissionQueueEntry.Size;
        var controller = _controller;
        if (controller is null || _queueId == 0 || _headerDigest || !_authenticated)
        {
            return;
        }

        var at = _receiveStart;
        while (_receiveEnd - at >= CapsuleCommandLength)
        {
            var header = PduHeader.Read(_receiveBuffer.AsSpan(at));
            if (header.PduLength < PduHeader.Size || header.PduLength > (uint)(_receiveEnd - at))
            {
                return;
            }

            // The first command runs right away, so a hint for it would overlap with nothing (a lone read at QD1
            // measured 3 % slower with it).
            if (at != _receiveStart && header.Type == PduType.CapsuleCmd)
            {
                IoCommandHandler.Prefetch(controller, SubmissionQueueEntry.Read(_receiveBuffer.AsSpan(at + PduHeader.Size, SubmissionQueueEntry.Size)));
            }

            at += (int)header.PduLength;
        }
    }

    /// <summary>Parses and executes one complete PDU; false when more bytes are needed or the connection is terminated.</summary>
    private bool ProcessOnePdu()
    {
        var available = _receiveEnd - _receiveStart;
        if (available < PduHeader.Size)
        {
            return false;
        }

        var headerBytes = _receiveBuffer.AsSpan(_receiveStart, available);
        var header = PduHeader.Read(headerBytes);
        var expectedHeaderLength = header.Type switch
        {
            PduType.CapsuleCmd or PduType.H2CData or PduType.H2CTermReq => PduHeader.ExpectedHeaderLength(header.Type),
            _ => -1,
        };
        if (expectedHeaderLength < 0)
        {
            return Terminate(TermReqFatalError.InvalidPduHeaderField, 0, headerBytes);
        }

        if (header.HeaderLength != expectedHeaderLength)
        {
            return Terminate(TermReqFatalError.InvalidPduHeaderField, 2, headerBytes);
        }

        if (header.Type == PduType.H2CTermReq)
        {
            if (available < Math.Min(header.PduLength, 152u))
            {
                return false;
            }

            var term = TermReq.Read(headerBytes);
            LogHostTerminated(_logger, RemoteEndPoint, term.FatalErrorStatus, term.FatalErrorInformation);
            _terminated = true;
            return false;
        }

        var headerDigestLength = _headerDigest ? PduHeader.DigestSize : 0;
        var headerEnd = header.HeaderLength + headerDigestLength;
        var hasData = header.PduLength > headerEnd;
        var maxData = header.Type == PduType.H2CData ? _target.Options.MaxH2CDataSize : InCapsuleLimit;
        if (hasData && (header.DataOffset < headerEnd || header.DataOffset > header.PduLength))
        {
            return Terminate(TermReqFatalError.InvalidPduHeaderField, 3, headerBytes);
        }

        if (!hasData && header.DataOffset != 0)
        {
            return Terminate(TermReqFatalError.InvalidPduHeaderField, 3, headerBytes);
        }

        if (header.PduLength < headerEnd)
        {
            return Terminate(TermReqFatalError.InvalidPduHeaderField, 4, headerBytes);
        }

        var dataDigestLength = hasData ? _digestLength : 0;
        if (hasData && header.PduLength - header.DataOffset - dataDigestLength > maxData)
        {
            return header.Type == PduType.H2CData
                ? Terminate(TermReqFatalError.DataTransferLimitExceeded, 4, headerBytes)
                : Terminate(TermReqFatalError.InvalidPduHeaderField, 4, headerBytes);
        }

        if (_headerDigest != ((header.Flags & PduFlags.HeaderDigest) != 0) || (hasData && _dataDigest != ((header.Flags & PduFlags.DataDigest) != 0)))
        {
            return Terminate(TermReqFatalError.InvalidPduHeaderField, 1, headerBytes);
        }

        if (available < header.PduLength)
        {
            return false;
        }

        var pdu = _receiveBuffer.AsSpan(_receiveStart, (int)header.PduLength);
        _receiveStart += (int)header.PduLength;
        if (_headerDigest && !Crc32C.Verify(pdu[..header.HeaderLength], pdu.Slice(header.HeaderLength, PduHeader.DigestSize)))
        {
            return Terminate(TermReqFatalError.HeaderDigestError, 0, pdu[..headerEnd]);
        }

        var data = hasData ? pdu[header.DataOffset..^dataDigestLength] : default;
        var dataDigestValid = !hasData || !_dataDigest || Crc32C.Verify(data, pdu[^PduHeader.DigestSize..]);
        if (header.Type == PduType.CapsuleCmd)
        {
            HandleCapsule(pdu, data, dataDigestValid);
        }
        else
        {
            HandleH2CData(pdu, header, data, dataDigestValid);
        }

        return !_terminated;
    }

    private int InCapsuleLimit => _queueId == 0 ? AdminInCapsuleDataSize : _target.Options.InCapsuleDataSize;

    /// <summary>Queues a C2HTermReq and stops processing; the connection is closed after the flush (TCP 1.0, 3.6.2.4).</summary>
    private bool Terminate(TermReqFatalError error, uint field, ReadOnlySpan<byte> offendingPdu)
    {
        LogProtocolError(_logger, RemoteEndPoint, error, field);
        var header = offendingPdu[..Math.Min(offendingPdu.Length, Math.Max(PduHeader.Size, (int)offendingPdu[2]))];
        _sendLength += new TermReq(error, field).Write(_sendBuffer.AsSpan(_sendLength), PduType.C2HTermReq, header);
        _terminated = true;
        return false;
    }

    private void HandleCapsule(ReadOnlySpan<byte> pdu, ReadOnlySpan<byte> data, bool dataDigestValid)
    {
        var command = SubmissionQueueEntry.Read(pdu.Slice(PduHeader.Size, SubmissionQueueEntry.Size));
        if (_queueEntries > 0)
        {
            // A compare, not a modulo: the integer division showed in profiles of every command.
            var head = _submissionHead + 1;
            _submissionHead = (ushort)(head >= _queueEntries ? 0 : head);
        }

        if (!dataDigestValid)
        {
            // A data digest error fails only the command (TCP 1.0, 3.6.2.2): the header is intact, so the stream is in sync.
            Complete(command.CommandId, NvmeStatus.TransientTransportError);
            return;
        }

        var controller = _controller;
        if (controller is not null && !_authenticated && !AuthenticationHandler.IsAuthenticationCommand(command))
        {
            // Until the queue authenticated, everything but the authentication itself is refused (NVMe base 2.0, 8.13).
            Complete(command.CommandId, NvmeStatus.AuthenticationRequired);
            return;
        }

        if (controller is null)
        {
            if (command.Opcode == (byte)AdminOpcode.Fabrics && command.FabricsCommandType == (byte)FabricsCommandType.Connect)
            {
                ConnectHandler.Handle(this, command, data);
            }
            else
            {
                Complete(command.CommandId, NvmeStatus.CommandSequenceError);
            }

            return;
        }

        controller.TouchKeepAlive(BatchStartTimestamp);
        if (_queueId == 0)
        {
            controller.ExecuteAdmin(this, command, data);
        }
        else
        {
            IoCommandHandler.Execute(this, controller, command, data);
        }
    }

    /// <summary>
    /// Counts a completed I/O command for its namespace's SMART counters and metrics. Commands that arrived in the
    /// batch being processed are tallied and reported when the batch is sent (<see cref="BatchIoTally"/>); one that
    /// arrived earlier (its data came by R2T) is reported at once with its own latency.
    /// </summary>
    public void CountIo(TargetNamespace? ns, IoKind kind, long bytes, bool success, long startTimestamp)
    {
        if (ns is null)
        {
            return;
        }

        if (startTimestamp != BatchStartTimestamp)
        {
            var single = default(BatchIoTally);
            single.TryAdd(ns, kind, bytes, success);
            single.Commit(Stopwatch.GetTimestamp() - startTimestamp);
            return;
        }

        if (!_ioTally.TryAdd(ns, kind, bytes, success))
        {
            CommitIoTally();
            _ioTally.TryAdd(ns, kind, bytes, success);
        }
    }

    /// <summary>Reports the batch's tallied commands; called just before their responses are sent.</summary>
    private void CommitIoTally()
    {
        if (!_ioTally.IsEmpty)
        {
            _ioTally.Commit(Stopwatch.GetTimestamp() - BatchStartTimestamp);
        }
    }

    /// <summary>The Connect bound a queue whose subsystem requires the host to authenticate first.</summary>
    public void RequireAuthentication() => _authenticated = false;

    public void MarkAuthenticated() => _authenticated = true;

    /// <summary>
    /// Authentication failed: nothing more is served, and once the answers already queued (the AUTH_Failure1) are sent
    /// the controller is torn down with all its queues.
    /// </summary>
    public void FailAuthentication(string reason)
    {
        _authenticated = false;
        _closeAfterResponses = reason;
    }

    /// <summary>Carries out <see cref="FailAuthentication"/> after the batch's responses went out.</summary>
    private void CloseIfAsked()
    {
        if (_closeAfterResponses is { } reason)
        {
            _closeAfterResponses = null;
            if (_controller is { } controller)
            {
                controller.Shutdown(reason);
            }
            else
            {
                Close(reason);
            }
        }
    }

    /// <summary>Binds this connection to a controller's queue after a successful Connect.</summary>
    public void BindQueue(Controller controller, ushort queueId, int queueEntries, bool sqFlowControlDisabled)
    {
        _sqFlowControlDisabled = sqFlowControlDisabled;
        _controller = controller;
        _queueId = queueId;
        _queueEntries = queueEntries;
        _submissionHead = (ushort)(1 % queueEntries);
        _transfers = new PendingTransfer[queueEntries];
        _freeTags = new int[queueEntries];
        for (var i = 0; i < queueEntries; i++)
        {
            _freeTags[i] = queueEntries - 1 - i;
        }

        _freeTagCount = queueEntries;
        _queueBound = true;
        if (queueId != 0)
        {
            InitializeDeferred(queueEntries);
        }
    }

    // ---- responses (called with the send lock held) ----

    /// <summary>Queues a CapsuleResp (TCP 1.0, 3.6.2.6) for a command.</summary>
    public void Complete(ushort commandId, NvmeStatus status, uint dw0 = 0, uint dw1 = 0)
    {
        var span = _sendBuffer.AsSpan(_sendLength);
        var headerLength = CapsuleResponseLength;
        var flags = _headerDigest ? PduFlags.HeaderDigest : PduFlags.None;
        var plen = headerLength + (_headerDigest ? PduHeader.DigestSize : 0);
        new PduHeader(PduType.CapsuleResp, flags, (byte)headerLength, 0, (uint)plen).Write(span);
        new CompletionQueueEntry(dw0, dw1, _submissionHead, _queueId, commandId, status).Write(span[PduHeader.Size..]);
        if (_headerDigest)
        {
            Crc32C.ComputeInto(span[..headerLength], span[headerLength..]);
        }

        _sendLength += plen;
    }

    /// <summary>Space for <paramref name="length"/> bytes of C2H data; fill it, then call <see cref="CommitData"/>.</summary>
    public Span<byte> ReserveData(int length) => _sendBuffer.AsSpan(_sendLength + _c2hDataOffset, length);

    /// <summary>
    /// Completes a successful read: the data PDU carries SUCCESS and no CapsuleResp follows when the host disabled SQ
    /// flow control (it then needs no SQ head pointer; TCP 1.0, 3.6.2.8), otherwise data then CapsuleResp.
    /// </summary>
    public void CompleteWithReservedData(ushort commandId, int length)
    {
        if (_sqFlowControlDisabled)
        {
            CommitData(commandId, length, success: true);
            return;
        }

        CommitData(commandId, length);
        Complete(commandId, NvmeStatus.Success);
    }

    /// <summary>Turns reserved data into one C2HData PDU with LAST_PDU set (TCP 1.0, 3.6.2.8).</summary>
    public void CommitData(ushort commandId, int length, bool success = false)
    {
        var span = _sendBuffer.AsSpan(_sendLength);
        var flags = PduFlags.LastPdu | (success ? PduFlags.Success : 0) | (_headerDigest ? PduFlags.HeaderDigest : 0) | (_dataDigest ? PduFlags.DataDigest : 0);
        var plen = _c2hDataOffset + length + _digestLength;
        new DataTransferHeader(commandId, 0, 0, (uint)length).Write(span, PduType.C2HData, flags, (byte)_c2hDataOffset, (uint)plen);
        if (_headerDigest)
        {
            Crc32C.ComputeInto(span[..24], span[24..]);
        }

        var padStart = 24 + (_headerDigest ? PduHeader.DigestSize : 0);
        span[padStart.._c2hDataOffset].Clear();
        if (_dataDigest)
        {
            Crc32C.ComputeInto(span.Slice(_c2hDataOffset, length), span[(_c2hDataOffset + length)..]);
        }

        _sendLength += plen;
    }

    /// <summary>Sends data the handler already has (Identify, logs), then the completion.</summary>
    public void CompleteWithData(ushort commandId, ReadOnlySpan<byte> data)
    {
        data.CopyTo(ReserveData(data.Length));
        CommitData(commandId, data.Length);
        Complete(commandId, NvmeStatus.Success);
    }

    // ---- host-to-controller data (R2T / H2CData) ----

    /// <summary>
    /// Starts a data-out transfer that did not fit in the capsule: records it under a free TTAG and sends one R2T for the
    /// whole length (MAXR2T 0 allows one outstanding R2T per command; TCP 1.0, 3.6.2.9).
    /// </summary>
    public void RequestData(in SubmissionQueueEntry command, Subsystems.TargetNamespace? ns, long volumeOffset, int length, bool fua, long startTimestamp)
    {
        if (_freeTagCount == 0)
        {
            Complete(command.CommandId, NvmeStatus.CommandIdConflict);
            return;
        }

        var tag = _freeTags[--_freeTagCount];
        ref var transfer = ref _transfers[tag];
        transfer.Active = true;
        transfer.CommandId = command.CommandId;
        transfer.Opcode = command.Opcode;
        transfer.Command = command;
        transfer.Namespace = ns;
        transfer.VolumeOffset = volumeOffset;
        transfer.Length = length;
        transfer.Received = 0;
        transfer.ForceUnitAccess = fua;
        transfer.Status = NvmeStatus.Success;
        transfer.StartTimestamp = startTimestamp;
        transfer.Buffer = command.Opcode == (byte)IoOpcode.Write ? null : ArrayPool<byte>.Shared.Rent(length);
        transfer.DeferredSlot = command.Opcode == (byte)IoOpcode.Write && ns?.AsyncVolume is not null
            ? BeginDeferred(command.CommandId, IoKind.Write, ns, length, startTimestamp)
            : -1;

        var span = _sendBuffer.AsSpan(_sendLength);
        var flags = _headerDigest ? PduFlags.HeaderDigest : PduFlags.None;
        var plen = 24 + (_headerDigest ? PduHeader.DigestSize : 0);
        new DataTransferHeader(command.CommandId, (ushort)tag, 0, (uint)length).Write(span, PduType.R2T, flags, 0, (uint)plen);
        if (_headerDigest)
        {
            Crc32C.ComputeInto(span[..24], span[24..]);
        }

        _sendLength += plen;
    }

    private void HandleH2CData(ReadOnlySpan<byte> pdu, PduHeader header, ReadOnlySpan<byte> data, bool dataDigestValid)
    {
        var h2c = DataTransferHeader.Read(pdu);
        if (h2c.TransferTag >= _transfers.Length || !_transfers[h2c.TransferTag].Active)
        {
            Terminate(TermReqFatalError.InvalidPduHeaderField, 10, pdu);
            return;
        }

        ref var transfer = ref _transfers[h2c.TransferTag];
        if (h2c.CommandId != transfer.CommandId)
        {
            Terminate(TermReqFatalError.InvalidPduHeaderField, 8, pdu);
            return;
        }

        if (h2c.Length != (uint)data.Length || data.Length == 0)
        {
            Terminate(TermReqFatalError.InvalidPduHeaderField, 16, pdu);
            return;
        }

        if ((long)h2c.Offset + h2c.Length > transfer.Length)
        {
            Terminate(TermReqFatalError.DataTransferOutOfRange, 12, pdu);
            return;
        }

        if (h2c.Offset != (uint)transfer.Received)
        {
            Terminate(TermReqFatalError.PduSequenceError, 12, pdu);
            return;
        }

        transfer.Received += data.Length;
        var last = transfer.Received == transfer.Length;
        if ((header.Flags & PduFlags.LastPdu) != 0 && !last)
        {
            Terminate(TermReqFatalError.PduSequenceError, 1, pdu);
            return;
        }

        if (!dataDigestValid)
        {
            transfer.Status = NvmeStatus.TransientTransportError;
        }
        else if (transfer.Status.IsSuccess)
        {
            if (transfer.DeferredSlot >= 0)
            {
                IoCommandHandler.StartWriteChunk(this, transfer.Namespace!, transfer.DeferredSlot, transfer.VolumeOffset + h2c.Offset, data, transfer.ForceUnitAccess);
            }
            else if (transfer.Buffer is null)
            {
                transfer.Status = IoCommandHandler.WriteChunk(transfer.Namespace!, transfer.VolumeOffset + h2c.Offset, data);
            }
            else
            {
                data.CopyTo(transfer.Buffer.AsSpan((int)h2c.Offset));
            }
        }

        if (!last)
        {
            return;
        }

        var tag = h2c.TransferTag;
        var finished = transfer;
        transfer = default;
        _freeTags[_freeTagCount++] = tag;
        try
        {
            IoCommandHandler.FinishDataOut(this, _controller!, finished);
        }
        finally
        {
            if (finished.Buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(finished.Buffer);
            }
        }
    }

    private void ReleaseTransfers()
    {
        _sendLock.Wait();
        try
        {
            for (var i = 0; i < _transfers.Length; i++)
            {
                if (_transfers[i].Buffer is { } buffer)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }

                if (_transfers[i].Active && _transfers[i].DeferredSlot >= 0)
                {
                    // The host never sent the rest of the data: the chunks already started still report, the command
                    // itself is dropped with the connection.
                    EndDeferred(_transfers[i].DeferredSlot, StorageStatus.Unavailable);
                }

                _transfers[i] = default;
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "NVMe/TCP connection from {Remote} initialized (header digest {HeaderDigest}, data digest {DataDigest})")]
    private static partial void LogConnectionInitialized(ILogger logger, IPEndPoint? remote, bool headerDigest, bool dataDigest);

    [LoggerMessage(Level = LogLevel.Warning, Message = "NVMe/TCP protocol error from {Remote}: {Error} (field {Field}); terminating the connection")]
    private static partial void LogProtocolError(ILogger logger, IPEndPoint? remote, TermReqFatalError error, uint field);

    [LoggerMessage(Level = LogLevel.Information, Message = "Host {Remote} terminated the connection: {Error} (field {Field})")]
    private static partial void LogHostTerminated(ILogger logger, IPEndPoint? remote, TermReqFatalError error, uint field);

    [LoggerMessage(Level = LogLevel.Debug, Message = "NVMe/TCP connection {Remote} queue {QueueId} closed: {Reason}")]
    private static partial void LogConnectionClosed(ILogger logger, IPEndPoint? remote, ushort queueId, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "NVMe/TCP connection {Remote} dropped: {Reason}")]
    private static partial void LogConnectionDropped(ILogger logger, IPEndPoint? remote, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "NVMe/TCP connection {Remote} failed")]
    private static partial void LogConnectionFailed(ILogger logger, Exception exception, IPEndPoint? remote);
}
