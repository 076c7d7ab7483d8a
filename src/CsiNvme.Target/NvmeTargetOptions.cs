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
    /// docs/performance.md), for one thread per connection (that is, per queue).
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
}
