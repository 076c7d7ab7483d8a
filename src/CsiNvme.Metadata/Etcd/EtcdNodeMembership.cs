using System.Collections.Concurrent;
using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using static CsiNvme.Metadata.Etcd.EtcdOps;

namespace CsiNvme.Metadata.Etcd;

/// <summary>
/// A node's lease, kept alive over one keep-alive stream at a time (reopened when it breaks). Each keep-alive's send
/// time is remembered; etcd answers a stream's requests in order, so each answer is paired with the oldest unanswered
/// send time, and the deadline becomes that time plus the TTL in the answer, minus the safety margin. Because etcd
/// renews no earlier than the request was sent, its own expiry is at least the margin later than this deadline.
/// Once the deadline passes, or etcd answers that the lease is gone, the membership is lost for good: it stops
/// sending keep-alives, cancels <see cref="Lost"/> and revokes the lease, so the cluster sees the node go down.
/// </summary>
internal sealed class EtcdNodeMembership : INodeMembership
{
    // The margin covers the time between a check of IsValid and the act it guards (a thread descheduled or a GC
    // pause on a busy machine), and clock-rate differences between this host and etcd's.
    private static readonly TimeSpan s_minimumMargin = TimeSpan.FromMilliseconds(250);
    private const int MarginDivisor = 5;
    private const int KeepAlivesPerTtl = 4;

    private readonly EtcdConnection _connection;
    private readonly ByteString _key;
    private readonly string _name;
    private readonly int _ordinal;
    private readonly long _marginTicks;
    private readonly TimeSpan _interval;
    private readonly Action<EtcdNodeMembership> _onDisposed;
    private readonly CancellationTokenSource _lost = new();
    private readonly CancellationTokenSource _stop = new();
    private long _validUntil;
    private int _isLost;
    private int _disposed;
    private volatile bool _leaving;
    private volatile string? _lostReason;
    private Task _loops = Task.CompletedTask;

    public EtcdNodeMembership(
        EtcdConnection connection, ByteString key, NodeRecord self, long leaseId, long grantedTtlSeconds, long grantSentTimestamp, Action<EtcdNodeMembership> onDisposed)
    {
        _connection = connection;
        _key = key;
        _name = self.Name;
        _ordinal = self.Ordinal;
        _onDisposed = onDisposed;
        LeaseId = leaseId;
        GrantedTtl = TimeSpan.FromSeconds(grantedTtlSeconds);
        SafetyMargin = TimeSpan.FromTicks(Math.Max(GrantedTtl.Ticks / MarginDivisor, s_minimumMargin.Ticks));
        _marginTicks = ToStopwatchTicks(SafetyMargin);
        _interval = GrantedTtl / KeepAlivesPerTtl;
        _validUntil = grantSentTimestamp + ToStopwatchTicks(GrantedTtl) - _marginTicks;
    }

    public long LeaseId { get; }

    public TimeSpan GrantedTtl { get; }

    public TimeSpan SafetyMargin { get; }

    public bool IsValid => Volatile.Read(ref _isLost) == 0 && Stopwatch.GetTimestamp() < Volatile.Read(ref _validUntil);

    public long ValidUntilTimestamp => Volatile.Read(ref _validUntil);

    public CancellationToken Lost => _lost.Token;

    public string? LostReason => _lostReason;

    public void Start() => _loops = Task.WhenAll(Task.Run(KeepAliveAsync), Task.Run(WatchDeadlineAsync));

    public async Task UpdateAsync(NodeRecord self, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(self);
        if (self.Name != _name || self.Ordinal != _ordinal)
        {
            throw new ArgumentException($"this membership is node {_name} with ordinal {_ordinal}, not {self.Name} with {self.Ordinal}", nameof(self));
        }

        ThrowIfLost();

        // Only while the record is still attached to this lease: a record that went with an expired lease must not
        // come back under another.
        EtcdTxnResult put = await _connection.TxnAsync(
            $"updating node {_name}",
            new TxnRequest { Compare = { LeaseIs(_key, LeaseId) }, Success = { Put(_key, EtcdDocuments.Encode(self), LeaseId) } },
            cancellationToken).ConfigureAwait(false);
        if (!put.Succeeded)
        {
            MarkLost("the node's live record is gone: the lease expired");
            ThrowIfLost();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Not valid from here on, before the lease is revoked: nothing may act on it while it goes.
        _leaving = true;
        MarkLost("the node left the cluster");
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loops.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The loops end by cancellation.
        }

        await _connection.RevokeQuietlyAsync(_name, LeaseId).ConfigureAwait(false);
        _onDisposed(this);
        _stop.Dispose();
    }

    private async Task KeepAliveAsync()
    {
        using var running = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token, _lost.Token);
        CancellationToken token = running.Token;
        while (!token.IsCancellationRequested)
        {
            try
            {
                await KeepAliveOverOneStreamAsync(token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is RpcException or IOException or InvalidOperationException or OperationCanceledException)
            {
                // A broken stream (etcd restarted, connection dropped); the deadline keeps running meanwhile.
                EtcdLog.KeepAliveStreamFailed(_connection.Logger, _name, LeaseId, e.Message);
            }

            try
            {
                await Task.Delay(_interval / 2, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task KeepAliveOverOneStreamAsync(CancellationToken token)
    {
        using AsyncDuplexStreamingCall<LeaseKeepAliveRequest, LeaseKeepAliveResponse> call = _connection.Leases.LeaseKeepAlive(cancellationToken: token);
        var sentAt = new ConcurrentQueue<long>();
        Task answers = ReadAnswersAsync(call.ResponseStream, sentAt, token);

        // When a write fails first, disposing the call ends the reader with an error nobody awaits.
        _ = answers.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        var request = new LeaseKeepAliveRequest { ID = LeaseId };
        while (true)
        {
            // Taken before the request leaves, so the pairing answer can only be later.
            sentAt.Enqueue(Stopwatch.GetTimestamp());
            await call.RequestStream.WriteAsync(request, token).ConfigureAwait(false);
            Task delay = Task.Delay(_interval, token);
            if (await Task.WhenAny(answers, delay).ConfigureAwait(false) == answers)
            {
                // The answers ended: etcd closed the stream, or the lease was found lost.
                await answers.ConfigureAwait(false);
                token.ThrowIfCancellationRequested();
                throw new IOException("etcd closed the keep-alive stream");
            }

            token.ThrowIfCancellationRequested();
        }
    }

    private async Task ReadAnswersAsync(IAsyncStreamReader<LeaseKeepAliveResponse> answers, ConcurrentQueue<long> sentAt, CancellationToken token)
    {
        while (await answers.MoveNext(token).ConfigureAwait(false))
        {
            LeaseKeepAliveResponse answer = answers.Current;
            if (!sentAt.TryDequeue(out long sent))
            {
                // An answer to no request of this stream cannot be dated; it extends nothing.
                continue;
            }

            if (answer.TTL <= 0)
            {
                MarkLost($"etcd answered that lease {LeaseId:x} expired or does not exist");
                return;
            }

            Extend(sent + ToStopwatchTicks(TimeSpan.FromSeconds(answer.TTL)) - _marginTicks);
        }
    }

    /// <summary>Moves the deadline to <paramref name="candidate"/> if later, unless it has already passed: a passed deadline is final.</summary>
    private void Extend(long candidate)
    {
        while (true)
        {
            long current = Volatile.Read(ref _validUntil);
            if (Stopwatch.GetTimestamp() >= current)
            {
                MarkLost("the lease deadline passed before etcd answered a keep-alive");
                return;
            }

            if (candidate <= current || Interlocked.CompareExchange(ref _validUntil, candidate, current) == current)
            {
                return;
            }
        }
    }

    private async Task WatchDeadlineAsync()
    {
        try
        {
            while (Volatile.Read(ref _isLost) == 0)
            {
                long remaining = Volatile.Read(ref _validUntil) - Stopwatch.GetTimestamp();
                if (remaining <= 0)
                {
                    MarkLost($"no keep-alive was answered within {(GrantedTtl - SafetyMargin).TotalSeconds:F2}s of being sent");
                    return;
                }

                // Woken at the deadline; if a keep-alive moved it meanwhile, this waits again.
                await Task.Delay(Stopwatch.GetElapsedTime(0, remaining) + TimeSpan.FromMilliseconds(1), _stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // Disposed.
        }
    }

    private void MarkLost(string reason)
    {
        if (Interlocked.Exchange(ref _isLost, 1) != 0)
        {
            return;
        }

        _lostReason = reason;
        if (!_leaving)
        {
            EtcdLog.LeaseLost(_connection.Logger, _name, LeaseId, reason);
        }

        try
        {
            _lost.Cancel();
        }
        catch (AggregateException e)
        {
            EtcdLog.LostCallbackFailed(_connection.Logger, _name, e);
        }

        if (!_leaving)
        {
            // etcd may still hold the lease (answers too late, a partition that healed): revoke it, so the cluster
            // sees the node down as this process already does. A lost membership never renews.
            _ = _connection.RevokeQuietlyAsync(_name, LeaseId);
        }
    }

    private void ThrowIfLost()
    {
        if (!IsValid)
        {
            throw new InvalidOperationException($"node {_name}'s lease {LeaseId:x} is lost: {LostReason ?? "its deadline passed"}");
        }
    }

    private static long ToStopwatchTicks(TimeSpan span) => (long)(span.TotalSeconds * Stopwatch.Frequency);
}
