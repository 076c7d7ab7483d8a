using System.Globalization;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests.EndToEnd;

/// <summary>
/// A Linux guest (the kernel's nvme-tcp host with native multipath) driven step by step through a
/// <see cref="GuestAgent"/>: it connects one path per storage node to a volume's subsystem, reports the paths with their
/// controller state and ANA state, runs fio with crc32c verification in the background and reports its errors and the
/// longest time without a completed I/O, and sends a single command down one path (its controller) to test fencing.
/// </summary>
internal sealed class ClusterGuest : IAsyncDisposable
{
    // Sourced before every command (busybox sh).
    private const string Helpers = """
        ADDR=10.0.2.2
        # head_dev NQN: the multipath block device (/dev/nvmeXnY) of the subsystem, waited for.
        head_dev() {
            i=0
            while [ $i -lt 300 ]; do
                for b in /sys/block/nvme*n*; do
                    [ -e "$b" ] || continue
                    name=${b##*/}
                    case "$name" in nvme*c*n*) continue ;; esac
                    if [ "$(cat "$b/device/subsysnqn" 2>/dev/null)" = "$1" ] && [ -b "/dev/$name" ]; then echo "/dev/$name"; return 0; fi
                done
                sleep 0.1
                i=$((i + 1))
            done
            echo "no multipath device for $1" >&2
            return 1
        }
        # ctrl_of NQN PORT: the controller (/dev/nvmeX) whose path goes to that port.
        ctrl_of() {
            for c in /sys/class/nvme/nvme*; do
                [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$1" ] || continue
                if sed -n 's/.*trsvcid=\([0-9]*\).*/\1/p' "$c/address" | grep -qx "$2"; then echo "/dev/${c##*/}"; return 0; fi
            done
            echo "no controller of $1 on port $2" >&2
            return 1
        }
        # paths NQN: PATH <ctrl> <state> port=<port> ana=<state> per controller, then HEADS=<multipath devices>.
        paths() {
            for c in /sys/class/nvme/nvme*; do
                [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$1" ] || continue
                echo "PATH ${c##*/} $(cat $c/state) port=$(sed -n 's/.*trsvcid=\([0-9]*\).*/\1/p' $c/address) ana=$(cat $c/nvme*c*n*/ana_state 2>/dev/null || echo none)"
            done
            echo "HEADS=$(ls /sys/block | grep -cE '^nvme[0-9]+n[0-9]+$')"
        }
        # fio_start NAME DEV RUNTIME [OPTIONS...]: random 4 KiB writes, each block verified by its crc32c while the run
        # goes on, every completed I/O logged with its time (fio's iops log without averaging).
        fio_start() {
            name=$1; dev=$2; runtime=$3; shift 3
            rm -f /tmp/$name.out /tmp/$name.rc /tmp/${name}_iops.*.log
            (cd /tmp && fio --name=$name --filename=$dev --ioengine=libaio --direct=1 --iodepth=8 --rw=randwrite --bs=4k \
                --offset=0 --size=32M --time_based --runtime=$runtime --verify=crc32c --verify_backlog=256 --verify_fatal=1 \
                --verify_state_save=0 --write_iops_log=/tmp/$name "$@" --output=/tmp/$name.out; echo "FIO_RC=$?" > /tmp/$name.rc.tmp; mv /tmp/$name.rc.tmp /tmp/$name.rc) \
                </dev/null >/tmp/$name.console 2>&1 &
            echo "FIO_STARTED=$name"
        }
        # fio_report NAME: FIO_RC, fio's error lines, and from the log the completed I/Os, the longest gap between two
        # completions (STALL_MS, and when it began, STALL_AT_MS) and the completions in each second of the run.
        fio_report() {
            name=$1
            # The exit code is written aside and renamed into place: a report never reads a half-written file.
            grep -s FIO_RC= /tmp/$name.rc || { echo "FIO_RUNNING=1"; return 0; }
            echo "@@BEGIN fio-$name"
            cat /tmp/$name.out /tmp/$name.console 2>/dev/null
            echo "@@END"
            echo "FIO_ERR_LINE=$(grep -o 'err= *[0-9]*' /tmp/$name.out | head -1 | tr -d ' ')"
            echo "FIO_VERIFY_FAILURES=$(grep -ciE 'verify.*(fail|bad)|bad magic|crc32c' /tmp/$name.out /tmp/$name.console | awk -F: '{ s += $NF } END { print s + 0 }')"
            sort -t, -k1,1n /tmp/${name}_iops.1.log | awk -F, '
                { t = $1 + 0; n++; s = int(t / 1000); c[s]++; if (s > last) last = s
                  if (n > 1 && t - p > gap) { gap = t - p; at = p }
                  p = t }
                END { printf "FIO_IOS=%d\nSTALL_MS=%d\nSTALL_AT_MS=%d\n", n, gap, at
                      line = ""; for (i = 0; i <= last; i++) line = line (i ? "," : "") (c[i] + 0)
                      print "IOPS_PER_SECOND=" line }'
        }

        """;

    private readonly GuestAgent _agent;
    private readonly Task<GuestResult> _run;
    private GuestResult? _result;

    private ClusterGuest(string name, GuestAgent agent, Task<GuestResult> run, NvmeHostIdentity identity)
    {
        Name = name;
        _agent = agent;
        _run = run;
        Identity = identity;
    }

    public string Name { get; }

    public NvmeHostIdentity Identity { get; }

    /// <summary>Boots the guest (TCG: tens of seconds on a busy machine) and waits until its agent asks for commands.</summary>
    public static async Task<ClusterGuest> StartAsync(string name, TimeSpan lifetime)
    {
        var agent = new GuestAgent();
        var options = new GuestOptions
        {
            Timeout = lifetime,
            MemoryMiB = 512,
            // Two CPUs: fio, the agent and the kernel's nvme-tcp work items do not queue behind each other.
            Cpus = 2,
            TextFiles = new Dictionary<string, string> { ["/opt/cluster.sh"] = Helpers },
            OutputLine = line => TestContext.Progress.WriteLine($"[{name}] {line}"),
        };
        var run = LinuxGuest.RunAsync(agent.GuestLoop() + "agent_loop\ndmesg | grep -i nvme | tail -n 80\n", options);
        var guest = new ClusterGuest(name, agent, run, NvmeHostIdentity.Create());
        try
        {
            await agent.WaitForGuestAsync(TimeSpan.FromMinutes(6), run);
            return guest;
        }
        catch
        {
            await guest.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs a command (helpers sourced); fails with its output when it exits non-zero.</summary>
    public Task<string> ShellAsync(string command, TimeSpan? timeout = null) =>
        _agent.CheckAsync(". /opt/cluster.sh\n" + command, timeout ?? TimeSpan.FromMinutes(2));

    /// <summary>Runs a command (helpers sourced) whatever its exit code.</summary>
    public Task<GuestCommandResult> TryShellAsync(string command, TimeSpan? timeout = null) =>
        _agent.RunAsync(". /opt/cluster.sh\n" + command, timeout ?? TimeSpan.FromMinutes(2));

    /// <summary>
    /// Connects one path per port (one controller per storage node, all of one subsystem) and returns the multipath
    /// device. Reconnect every second for two minutes: a killed node's path comes back when the node does.
    /// </summary>
    public async Task<string> ConnectAsync(string nqn, IEnumerable<int> ports)
    {
        var commands = string.Join("\n", ports.Select(p =>
            $"nvme connect -t tcp -a $ADDR -s {p.ToString(CultureInfo.InvariantCulture)} -n {nqn} {Identity.CliArgs} --reconnect-delay=1 --ctrl-loss-tmo=120"));
        var output = await ShellAsync(commands + $"\nhead_dev {nqn}", TimeSpan.FromMinutes(3));
        return output.Trim().Split('\n').Last().Trim();
    }

    /// <summary>The paths of the subsystem, one <see cref="GuestPath"/> per controller.</summary>
    public async Task<GuestPaths> PathsAsync(string nqn)
    {
        var output = await ShellAsync($"paths {nqn}");
        return GuestPaths.Parse(output);
    }

    /// <summary>Polls the paths (bounded) until <paramref name="condition"/> holds.</summary>
    public async Task<GuestPaths> WaitForPathsAsync(string nqn, string what, Func<GuestPaths, bool> condition, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            var paths = await PathsAsync(nqn);
            if (condition(paths))
            {
                return paths;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"guest paths: {what} not within {within.TotalSeconds:F0} s; last:\n{paths.Text}");
            }

            await Task.Delay(1000);
        }
    }

    public Task StartFioAsync(string name, string device, int runtimeSeconds, string extraOptions = "") =>
        ShellAsync($"fio_start {name} {device} {runtimeSeconds} {extraOptions}");

    /// <summary>Waits (bounded) for the background fio run to end and returns its report.</summary>
    public async Task<FioReport> WaitForFioAsync(string name, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            var output = await ShellAsync($"fio_report {name}");
            if (!output.Contains("FIO_RUNNING=1", StringComparison.Ordinal))
            {
                return FioReport.Parse(name, output);
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"fio {name} still running after {within.TotalSeconds:F0} s");
            }

            await Task.Delay(2000);
        }
    }

    /// <summary>The kernel's recent NVMe messages (path and controller events).</summary>
    public async Task<string> KernelLogAsync(int lines = 60) =>
        (await TryShellAsync($"dmesg | grep -iE 'nvme|ana' | tail -n {lines}")).Output;

    /// <summary>The guest's recent commands and, once it stopped, its console, for failure messages.</summary>
    public string Describe() =>
        $"----- {Name}: last guest commands -----\n{_agent.DescribeHistory(8)}\n" +
        (_result is null ? string.Empty : $"----- {Name}: console -----\n{_result.Describe(120)}");

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_result is null && !_run.IsCompleted)
            {
                _agent.Quit();
            }

            _result ??= await _run.WaitAsync(TimeSpan.FromMinutes(2));
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or TimeoutException)
        {
            TestContext.Progress.WriteLine($"[{Name}] guest run failed: {e.Message}");
        }
        finally
        {
            await _agent.DisposeAsync();
        }
    }
}

/// <summary>One path (controller) of a subsystem as the guest kernel sees it.</summary>
internal sealed record GuestPath(string Controller, string State, int Port, string AnaState);

internal sealed record GuestPaths(IReadOnlyList<GuestPath> Paths, int Heads, string Text)
{
    public GuestPath? OnPort(int port) => Paths.FirstOrDefault(p => p.Port == port);

    public bool Is(int port, string state, string ana) => OnPort(port) is { } p && p.State == state && p.AnaState == ana;

    public static GuestPaths Parse(string output)
    {
        var paths = new List<GuestPath>();
        var heads = -1;
        foreach (var line in output.Split('\n').Select(l => l.Trim()))
        {
            if (line.StartsWith("PATH ", StringComparison.Ordinal))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                var port = int.Parse(fields[3]["port=".Length..], CultureInfo.InvariantCulture);
                paths.Add(new GuestPath(fields[1], fields[2], port, fields[4]["ana=".Length..]));
            }
            else if (line.StartsWith("HEADS=", StringComparison.Ordinal))
            {
                heads = int.Parse(line["HEADS=".Length..], CultureInfo.InvariantCulture);
            }
        }

        return new GuestPaths(paths, heads, output.Trim());
    }

    public override string ToString() => Text;
}

/// <summary>What a background fio run reported: exit code, errors, completed I/Os and the longest stall.</summary>
internal sealed record FioReport(string Name, int ExitCode, string ErrLine, int VerifyFailures, long Ios, int StallMs, int StallAtMs, string IopsPerSecond, string Output)
{
    public double StallSeconds => StallMs / 1000.0;

    public static FioReport Parse(string name, string output)
    {
        string Value(string key) =>
            output.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith(key + "=", StringComparison.Ordinal))?[(key.Length + 1)..]
            ?? throw new InvalidOperationException($"fio report of {name} lacks {key}:\n{output}");
        int Int(string key) => int.TryParse(Value(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : -1;
        return new FioReport(
            name,
            Int("FIO_RC"),
            Value("FIO_ERR_LINE"),
            Int("FIO_VERIFY_FAILURES"),
            long.Parse(Value("FIO_IOS"), CultureInfo.InvariantCulture),
            Int("STALL_MS"),
            Int("STALL_AT_MS"),
            Value("IOPS_PER_SECOND"),
            output);
    }

    public bool Clean => ExitCode == 0 && ErrLine == "err=0" && VerifyFailures == 0 && Ios > 0;

    public string Summary =>
        $"fio {Name}: rc={ExitCode} {ErrLine} verify-failures={VerifyFailures} ios={Ios} longest stall {StallSeconds:F2} s (from {StallAtMs / 1000.0:F1} s); completions per second: {IopsPerSecond}";
}
