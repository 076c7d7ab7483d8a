namespace CsiNvme.Metadata.Etcd;

/// <summary>Deadlines of an <see cref="EtcdMetadataStore"/>. Every call is bounded: nothing waits for etcd forever.</summary>
public sealed record EtcdStoreOptions
{
    /// <summary>The prefix every key lives under; several clusters (or tests) can share one etcd with distinct prefixes.</summary>
    public const string DefaultPrefix = "/csinvme/v1/";

    /// <summary>One request's deadline; a request that times out is retried while <see cref="OperationTimeout"/> allows.</summary>
    public TimeSpan AttemptTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long one store call may take in all, retries included, before it fails with
    /// <see cref="MetadataStoreUnavailableException"/> (a caller's cancellation token may end it sooner).
    /// </summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>How long opening a TCP connection to an endpoint may take.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// After this long without a frame from etcd on a connection with open calls, an HTTP/2 ping is sent, and the
    /// answer may take as long again; a connection to a hung or partitioned etcd is then dropped, so watches and
    /// keep-alives reconnect (lease deadlines never depend on it). Must not be shorter than etcd's
    /// --grpc-keepalive-min-time (5 s by default), or etcd closes the connection for pinging too often.
    /// </summary>
    public TimeSpan ConnectionPing { get; init; } = TimeSpan.FromSeconds(10);
}
