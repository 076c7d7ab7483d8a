using System.Diagnostics;
using System.Net.Http;
using dotnet_etcd;
using Grpc.Core;
using Grpc.Net.Client;
using Grpc.Net.Client.Balancer;
using Grpc.Net.Client.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Metadata.Etcd;

/// <summary>
/// One gRPC channel to the etcd endpoints (round robin over those that answer) and the retry rule every unary call
/// follows: each attempt has <see cref="EtcdStoreOptions.AttemptTimeout"/>, transient failures are retried with a
/// short backoff until <see cref="EtcdStoreOptions.OperationTimeout"/>, then the call fails with
/// <see cref="MetadataStoreUnavailableException"/> naming the endpoints. The channel itself retries nothing, so a
/// caller knows when a mutation may have been sent twice (the attempt number) and can check for its own earlier write.
/// </summary>
internal sealed class EtcdConnection : IDisposable
{
    private static readonly TimeSpan s_firstBackoff = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan s_maxBackoff = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan s_revokeBudget = TimeSpan.FromSeconds(3);

    private readonly GrpcChannel _channel;
    private readonly ServiceProvider _services;
    private int _disposed;

    public EtcdConnection(IReadOnlyList<string> endpoints, EtcdStoreOptions options, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.Count == 0)
        {
            throw new ArgumentException("at least one etcd endpoint is required", nameof(endpoints));
        }

        Uri[] uris = endpoints.Select(ParseEndpoint).ToArray();
        bool secure = uris[0].Scheme == Uri.UriSchemeHttps;
        if (uris.Any(u => (u.Scheme == Uri.UriSchemeHttps) != secure))
        {
            throw new ArgumentException($"etcd endpoints mix http and https: {string.Join(',', endpoints)}", nameof(endpoints));
        }

        Endpoints = string.Join(',', uris.Select(u => u.GetLeftPart(UriPartial.Authority)));
        Options = options;
        Logger = logger;

        // A static resolver hands every endpoint to the round-robin balancer, which skips those that do not connect.
        var resolver = new StaticResolverFactory(_ => uris.Select(u => new BalancerAddress(u.Host, u.Port)).ToArray());
        _services = new ServiceCollection().AddSingleton<ResolverFactory>(resolver).BuildServiceProvider();
        _channel = GrpcChannel.ForAddress("static://etcd", new GrpcChannelOptions
        {
            Credentials = secure ? ChannelCredentials.SecureSsl : ChannelCredentials.Insecure,
            ServiceProvider = _services,
            ServiceConfig = new ServiceConfig { LoadBalancingConfigs = { new RoundRobinConfig() } },
            HttpHandler = new SocketsHttpHandler
            {
                ConnectTimeout = options.ConnectTimeout,
                KeepAlivePingDelay = options.ConnectionPing,
                KeepAlivePingTimeout = options.ConnectionPing,
                // Only under open calls (watches, keep-alives): etcd answers pings on an idle connection with GOAWAY.
                KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
                EnableMultipleHttp2Connections = true,
            },
            DisposeHttpClient = true,
            ThrowOperationCanceledOnCancellation = true,

            // A restarted etcd must be found again within a second or two, not after gRPC's default two minutes.
            InitialReconnectBackoff = TimeSpan.FromMilliseconds(100),
            MaxReconnectBackoff = TimeSpan.FromSeconds(1),

            // Listings of many volumes exceed the 4 MiB default.
            MaxReceiveMessageSize = 256 << 20,
        });
        Client = new EtcdClient(_channel.CreateCallInvoker());
    }

    /// <summary>The endpoints as given, normalized, for messages and the store's description.</summary>
    public string Endpoints { get; }

    public EtcdStoreOptions Options { get; }

    public ILogger Logger { get; }

    /// <summary>The dotnet-etcd client for unary calls; its streaming clients come from <see cref="EtcdClient.GetConnection"/>.</summary>
    public EtcdClient Client { get; }

    public Etcdserverpb.Lease.LeaseClient Leases => Client.GetConnection().LeaseClient;

    public Etcdserverpb.Watch.WatchClient Watches => Client.GetConnection().WatchClient;

    /// <summary>
    /// Runs <paramref name="call"/> (given the attempt number, from 0, a per-attempt deadline and a token) until it
    /// succeeds, fails with a non-transient error, or the operation's time is up.
    /// </summary>
    public async Task<T> CallAsync<T>(string operation, Func<int, DateTime, CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        long started = Stopwatch.GetTimestamp();
        using var overall = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        overall.CancelAfter(Options.OperationTimeout);
        TimeSpan backoff = s_firstBackoff;
        Exception? last = null;
        int attempt = 0;
        for (; ; attempt++)
        {
            try
            {
                return await call(attempt, DateTime.UtcNow + Options.AttemptTimeout, overall.Token).ConfigureAwait(false);
            }
            catch (RpcException e) when (IsTransient(e))
            {
                last = e;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // The operation's own deadline ended an attempt.
                last ??= new TimeoutException($"no answer within {Options.OperationTimeout.TotalSeconds:F0}s");
                break;
            }

            try
            {
                await Task.Delay(backoff, overall.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                break;
            }

            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, s_maxBackoff.Ticks));
        }

        cancellationToken.ThrowIfCancellationRequested();
        throw Unavailable(operation, attempt + 1, Stopwatch.GetElapsedTime(started), last);
    }

    /// <summary>Reads one key; null when it does not exist.</summary>
    public async Task<Mvccpb.KeyValue?> GetAsync(string operation, Google.Protobuf.ByteString key, CancellationToken cancellationToken)
    {
        Etcdserverpb.RangeResponse response = await CallAsync(operation, (_, deadline, token) =>
            Client.GetAsync(new Etcdserverpb.RangeRequest { Key = key }, deadline: deadline, cancellationToken: token), cancellationToken).ConfigureAwait(false);
        return response.Kvs.Count > 0 ? response.Kvs[0] : null;
    }

    /// <summary>Reads every key of a range.</summary>
    public Task<Etcdserverpb.RangeResponse> RangeAsync(string operation, (Google.Protobuf.ByteString Key, Google.Protobuf.ByteString RangeEnd) range, CancellationToken cancellationToken) =>
        CallAsync(operation, (_, deadline, token) =>
            Client.GetAsync(new Etcdserverpb.RangeRequest { Key = range.Key, RangeEnd = range.RangeEnd }, deadline: deadline, cancellationToken: token), cancellationToken);

    /// <summary>Revokes a lease, deleting its keys; a failure is only logged, as the lease then expires by itself.</summary>
    public async Task RevokeQuietlyAsync(string node, long leaseId)
    {
        // A stopping node should not wait out the whole retry budget for an etcd that is gone: the lease ends by
        // itself a TTL later, which is all a revoke would have sped up.
        using var bound = new CancellationTokenSource(s_revokeBudget);
        try
        {
            await CallAsync($"revoking lease {leaseId:x}", (_, deadline, token) =>
                Client.LeaseRevokeAsync(new Etcdserverpb.LeaseRevokeRequest { ID = leaseId }, deadline: deadline, cancellationToken: token),
                bound.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MetadataStoreUnavailableException or RpcException or ObjectDisposedException or OperationCanceledException)
        {
            EtcdLog.RevokeFailed(Logger, node, leaseId, e.Message);
        }
    }

    /// <summary>Runs a transaction under <see cref="CallAsync"/>; the result says which attempt answered.</summary>
    public Task<EtcdTxnResult> TxnAsync(string operation, Etcdserverpb.TxnRequest request, CancellationToken cancellationToken) =>
        CallAsync(operation, async (attempt, deadline, token) =>
            new EtcdTxnResult(await Client.TransactionAsync(request, deadline: deadline, cancellationToken: token).ConfigureAwait(false), attempt), cancellationToken);

    public MetadataStoreUnavailableException Unavailable(string operation, int attempts, TimeSpan elapsed, Exception? last) => new(
        $"etcd at {Endpoints} did not complete {operation} ({attempts} attempt{(attempts == 1 ? "" : "s")} in {elapsed.TotalSeconds:F1}s): "
        + (last is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : last?.Message ?? "no answer"),
        last);

    /// <summary>Errors after which the same request may succeed: no connection, no leader, too slow, overloaded.</summary>
    public static bool IsTransient(RpcException e) => e.StatusCode switch
    {
        StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.ResourceExhausted or StatusCode.Aborted => true,

        // A connection reset in the middle of a call surfaces as Internal or Unknown with the transport's exception.
        StatusCode.Internal or StatusCode.Unknown => e.InnerException is HttpRequestException or IOException,
        _ => false,
    };

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Client.Dispose();
        _channel.Dispose();
        _services.Dispose();
    }

    private static Uri ParseEndpoint(string endpoint)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(endpoint);
        string text = endpoint.Contains("://", StringComparison.Ordinal) ? endpoint.Trim() : "http://" + endpoint.Trim();
        if (!Uri.TryCreate(text, UriKind.Absolute, out Uri? uri)
            || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
            || uri.AbsolutePath is not ("/" or ""))
        {
            throw new ArgumentException($"'{endpoint}' is not an etcd endpoint (http://HOST:PORT or https://HOST:PORT)", nameof(endpoint));
        }

        // etcd's client port when none is given.
        return uri.IsDefaultPort && !text.Contains(":" + uri.Port, StringComparison.Ordinal) ? new UriBuilder(uri) { Port = 2379 }.Uri : uri;
    }
}

/// <summary>
/// A transaction's response and the attempt (from 0) that got it. After a retry, the transaction's earlier attempt may
/// have been applied although its answer was lost; the caller checks for its own write then.
/// </summary>
internal readonly record struct EtcdTxnResult(Etcdserverpb.TxnResponse Response, int Attempt)
{
    public bool Succeeded => Response.Succeeded;

    public Google.Protobuf.Collections.RepeatedField<Etcdserverpb.ResponseOp> Responses => Response.Responses;

    public long Revision => Response.Header.Revision;
}
