using System.Net;

namespace CsiNvme.Target;

/// <summary>Tunables of the NVMe/TCP target. Defaults suit the Linux host and SPDK.</summary>
public sealed class NvmeTargetOptions
{
    /// <summary>TCP endpoints to listen on; port 0 picks a free port (see <see cref="NvmeTarget.LocalEndpoints"/>).</summary>
    public List<IPEndPoint> Listen { get; } = new();

    /// <summary>In-capsule data accepted on I/O queues. Writes up to this size skip the R2T round trip.</summary>
    public int InCapsuleDataSize { get; set; } = 16 * 1024;

    /// <summary>Largest transfer of one command (MDTS is derived from it; must be a power of two ≥ 4 KiB).</summary>
    public int MaxDataTransferSize { get; set; } = 512 * 1024;

    /// <summary>Largest H2CData PDU payload we accept (MAXH2CDATA in ICResp).</summary>
    public int MaxH2CDataSize { get; set; } = 128 * 1024;

    /// <summary>Entries per submission queue (CAP.MQES + 1).</summary>
    public int MaxQueueEntries { get; set; } = 1024;

    /// <summary>I/O queues granted per controller.</summary>
    public int MaxIoQueues { get; set; } = 64;

    /// <summary>Keep-alive granularity reported in Identify KAS (units of 100 ms).</summary>
    public int KeepAliveGranularity100Ms { get; set; } = 1;

    /// <summary>Model number reported in Identify Controller.</summary>
    public string ModelNumber { get; set; } = "CsiNvme";

    /// <summary>Firmware revision reported in Identify Controller (8 ASCII characters at most).</summary>
    public string FirmwareRevision { get; set; } = "1.0";

    /// <summary>
    /// Run each connection's receive loop on a thread of its own with blocking socket calls (the default) instead of
    /// asynchronous calls on the thread pool. A request then wakes its connection's thread directly rather than going
    /// from the socket engine's epoll thread to a pool thread: 20–30 % more IOPS at QD32 on one core (see
    /// docs/performance.md), for one thread per connection (that is, per queue), up to
    /// <see cref="MaxConnectionThreads"/>; connections beyond that run asynchronously.
    /// </summary>
    public bool DedicatedConnectionThreads { get; set; } = true;

    /// <summary>
    /// With <see cref="DedicatedConnectionThreads"/>: how long a connection's thread keeps polling its socket for the
    /// next request before it sleeps in <c>recv</c>. While a host keeps commands in flight the thread never sleeps,
    /// which saves a wake-up per batch (on a virtual machine about as costly as a 4 KiB command); an idle connection
    /// costs nothing after this long. Zero sleeps at once.
    /// </summary>
    public TimeSpan ReceivePollTime { get; set; } = TimeSpan.FromMicroseconds(50);

    /// <summary>
    /// First controller id this target hands out; with <see cref="ControllerIdCount"/> the range of ids of every
    /// subsystem on this target. Nodes exporting the same subsystem must use disjoint ranges, or a Linux host refuses
    /// the second path as a duplicate controller (NVMe base 2.0, 3.1.1: CNTLID is unique in the NVM subsystem).
    /// </summary>
    public ushort ControllerIdBase { get; set; } = 1;

    /// <summary>How many controller ids this target may hand out, from <see cref="ControllerIdBase"/>.</summary>
    public ushort ControllerIdCount { get; set; } = 0xFFEF;

    /// <summary>
    /// Added to the index of each listener to form its PORTID in the discovery log; in a cluster each node takes a range
    /// of its own so every path of a subsystem has a distinct port id.
    /// </summary>
    public ushort PortIdBase { get; set; } = 1;

    /// <summary>How long a fresh TCP connection may take to send its ICReq before it is closed.</summary>
    public TimeSpan InitializeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a connection may take from being accepted to a successful Connect (ICReq, then a Connect that binds
    /// it to a queue) before it is closed. A Linux host sends its Connect right after the ICResp; a connection that
    /// idles, or keeps sending refused Connects, holds a connection slot and buffers for nothing.
    /// </summary>
    public TimeSpan ConnectTimeout { get; set; } = DefaultConnectTimeout;

    public static TimeSpan DefaultConnectTimeout { get; } = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Connections one listener holds at once; a TCP connection beyond it is closed as soon as it is accepted (logged
    /// once when the listener reaches the cap and once when it is below again). Each connection holds about 1.4 MB of
    /// buffers with the default transfer sizes, so lower this to what the server's memory carries.
    /// </summary>
    public int MaxConnections { get; set; } = DefaultMaxConnections;

    /// <summary>Enough for several nodes full of volumes (see <see cref="MaxConnectionsPerHost"/>).</summary>
    public const int DefaultMaxConnections = 65536;

    /// <summary>
    /// Connections one host NQN may hold at once, counted at Connect over every subsystem, discovery included (hosts
    /// that send an empty host NQN share one count). A Connect beyond it is refused with Connect Controller Busy,
    /// which Linux reports as "controller is busy or not available" and retries. Null: enough for a node full of
    /// volumes, <see cref="VolumesPerNode"/> × (<see cref="MaxIoQueues"/> + 1 admin queue) plus
    /// <see cref="ReconnectHeadroom"/>, that is 17,664 with the defaults (Linux opens one I/O queue per online CPU up
    /// to what the target grants, and one admin queue, per controller and path).
    /// </summary>
    public int? MaxConnectionsPerHost { get; set; }

    /// <summary>The most volumes a CSI node takes (the node plugin's default max_volumes_per_node).</summary>
    public const int VolumesPerNode = 256;

    /// <summary>Room above a full node for discovery connections and for a reconnecting host's new connections while its old ones are still being closed.</summary>
    public const int ReconnectHeadroom = 1024;

    /// <summary>The per-host cap in force: <see cref="MaxConnectionsPerHost"/> or the default derived from the queue count.</summary>
    public int EffectiveMaxConnectionsPerHost => MaxConnectionsPerHost ?? VolumesPerNode * (MaxIoQueues + 1) + ReconnectHeadroom;

    /// <summary>
    /// With <see cref="DedicatedConnectionThreads"/>: how many connections at once get a thread of their own. Later
    /// connections, and any whose thread cannot be started (a pids limit, memory), run on the asynchronous model on
    /// the thread pool instead of being refused, so a pod's pids limit cannot stop the target from serving hosts.
    /// </summary>
    public int MaxConnectionThreads { get; set; } = DefaultMaxConnectionThreads;

    public const int DefaultMaxConnectionThreads = 256;

    /// <summary>
    /// How long a failure to accept a connection or to start a connection's thread keeps <see cref="NvmeTarget.Readiness"/>
    /// false: long enough for a readiness probe to see it, short enough to recover by itself once the cause is gone.
    /// </summary>
    public TimeSpan UnreadyAfterFailure { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Starts a connection's dedicated thread. Replaceable so that tests can make thread creation fail as it does
    /// under a pids limit (<see cref="Thread.Start()"/> throws); it must either start the thread or throw.
    /// </summary>
    internal Action<ThreadStart> StartConnectionThread { get; set; } = static body =>
        new Thread(body) { IsBackground = true, Name = "nvme-tcp-connection" }.Start();
}
