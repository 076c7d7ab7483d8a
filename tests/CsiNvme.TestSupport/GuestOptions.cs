namespace CsiNvme.TestSupport;

/// <summary>The guest images tests/guest/build-guest.sh builds; they differ in the kernel only.</summary>
public enum GuestImage
{
    /// <summary>Debian 12's cloud kernel (6.1).</summary>
    Default,

    /// <summary>
    /// Debian 13's cloud kernel (6.12), for what 6.1's cloud build lacks: NVMe in-band authentication (DH-HMAC-CHAP) and
    /// NVMe/TCP TLS. Built on first use into .guest-trixie.
    /// </summary>
    Trixie,
}

/// <summary>How one guest run is booted.</summary>
public sealed class GuestOptions
{
    /// <summary>Which image (kernel) boots.</summary>
    public GuestImage Image { get; init; } = GuestImage.Default;

    /// <summary>
    /// Limit for the script, counted from the moment the guest starts running it (its run marker), so a slow boot on a
    /// busy machine never eats into it; the VM is killed after it.
    /// </summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Limit for the boot, from starting QEMU until the guest starts the script. Generous: under TCG on a loaded machine
    /// a boot that takes 5 s when idle has been seen to take over 20 s.
    /// </summary>
    public TimeSpan BootTimeout { get; init; } = TimeSpan.FromMinutes(5);

    public int MemoryMiB { get; init; } = 512;

    /// <summary>Virtual CPUs; nvme-tcp opens one I/O queue per CPU, so 2 exercises several queues.</summary>
    public int Cpus { get; init; } = 1;

    /// <summary>
    /// Host files to place into the guest, guest path to host path. /tmp is a fresh tmpfs in the
    /// guest, so use another directory (e.g. /opt).
    /// </summary>
    public IReadOnlyDictionary<string, string> Files { get; init; } = new Dictionary<string, string>();

    /// <summary>Small text files to place into the guest, guest path to content.</summary>
    public IReadOnlyDictionary<string, string> TextFiles { get; init; } = new Dictionary<string, string>();

    /// <summary>Appended to the kernel command line.</summary>
    public IReadOnlyList<string> KernelArgs { get; init; } = [];

    /// <summary>
    /// TCP ports forwarded from the host's 127.0.0.1 into the guest, host port to guest port (QEMU user-mode
    /// hostfwd), so a test can call a server running inside the guest.
    /// </summary>
    public IReadOnlyDictionary<int, int> HostForwards { get; init; } = new Dictionary<int, int>();

    /// <summary>
    /// The host CPU QEMU runs on (all its threads, through <c>taskset</c>), or null for any: a measurement that needs one
    /// guest's CPU kept from another's pins them apart.
    /// </summary>
    public int? HostCpu { get; init; }

    /// <summary>Called with every line of serial output as it arrives (e.g. TestContext.Progress.WriteLine).</summary>
    public Action<string>? OutputLine { get; init; }
}
