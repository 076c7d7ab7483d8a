namespace CsiNvme.Host;

/// <summary>How a host identifies itself and shapes its connections. Defaults follow the Linux host.</summary>
public sealed class NvmeTcpHostOptions
{
    /// <summary>Host NQN sent in every Connect.</summary>
    public string HostNqn { get; set; } = $"nqn.2014-08.org.nvmexpress:uuid:{DefaultHostId:D}";

    /// <summary>Host identifier sent in every Connect (reservations are keyed by it).</summary>
    public Guid HostId { get; set; } = DefaultHostId;

    public bool HeaderDigest { get; set; }

    public bool DataDigest { get; set; }

    /// <summary>I/O queues to open (the controller may grant fewer).</summary>
    public int IoQueueCount { get; set; } = 1;

    /// <summary>Entries per I/O queue; one is kept free, so up to this minus one commands run at once.</summary>
    public int IoQueueSize { get; set; } = 128;

    /// <summary>Keep Alive Timeout asked in the admin Connect; the host sends Keep Alive every half of it. Zero disables.</summary>
    public TimeSpan KeepAliveTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Limit on one command's data; the controller's MDTS may lower it.</summary>
    public int MaxTransferSize { get; set; } = 512 * 1024;

    /// <summary>Largest in-capsule write; the controller's IOCCSZ may lower it. Zero sends every write by R2T.</summary>
    public int MaxInCapsuleData { get; set; } = 64 * 1024;

    /// <summary>Largest H2CData PDU sent; the controller's MAXH2CDATA may lower it.</summary>
    public int MaxH2CDataChunk { get; set; } = 128 * 1024;

    /// <summary>
    /// Disable SQ flow control in every I/O queue Connect (CATTR bit 2, NVMe-oF 1.1, Figure 20; Linux disable_sqflow).
    /// The host never needs SQHD: it keeps at most queue size − 1 commands outstanding. A target may then complete a
    /// successful read with its last C2HData PDU (SUCCESS flag, TCP 1.0, 3.6.2.8) instead of a CapsuleResp.
    /// </summary>
    public bool DisableSqFlowControl { get; set; }

    /// <summary>
    /// Give each I/O queue a receive thread that blocks in <c>recv</c> and completes commands itself, and a send thread
    /// for sends the socket cannot take at once. Off, both loops run on the thread pool, woken by the socket engine's
    /// epoll thread: fewer threads, but a thread hop for every batch of completions. The admin queue always uses the
    /// thread pool.
    /// </summary>
    public bool DedicatedQueueThreads { get; set; } = true;

    /// <summary>
    /// With <see cref="DedicatedQueueThreads"/>: how long a queue's receive thread keeps polling the socket for the
    /// next response before it sleeps. Polling keeps the CPU busy while commands are in flight but saves the wake-up
    /// of a sleeping thread per batch, which on a virtual machine costs about as much as a 4 KiB command. Zero sleeps
    /// at once.
    /// </summary>
    public TimeSpan ReceivePollTime { get; set; } = TimeSpan.FromMicroseconds(50);

    /// <summary>
    /// Connect through the NVMe/TCP TLS secure channel (TLS 1.3, NVMe/TCP transport 3.6) with this configured PSK, the
    /// one the target holds for this host and subsystem; null connects in plaintext.
    /// </summary>
    public CsiNvme.Protocol.Tls.TlsPsk? TlsPsk { get; set; }

    /// <summary>The PSK identity version presented with <see cref="TlsPsk"/>: 1 (with a digest, as current nvme-cli) or 0.</summary>
    public int TlsIdentityVersion { get; set; } = 1;

    /// <summary>Time limit of TCP connect, IC exchange and each setup command.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Reconnect after a connection loss; outstanding commands fail with a path error either way.</summary>
    public bool Reconnect { get; set; } = true;

    /// <summary>First delay before a reconnect attempt; doubled after each failure up to <see cref="MaxReconnectDelay"/>.</summary>
    public TimeSpan ReconnectDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long to keep trying before the controller is declared lost (Linux ctrl_loss_tmo).</summary>
    public TimeSpan ControllerLossTimeout { get; set; } = TimeSpan.FromMinutes(10);

    private static Guid DefaultHostId { get; } = Guid.NewGuid();
}
