using System.Globalization;
using System.Text.RegularExpressions;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>
/// NVMe reservations as clustered applications and fencing agents use them: two Linux kernel hosts (two guests with
/// their own host NQN and host identifier) run nvme-cli's resv-register, resv-acquire, resv-release and resv-report
/// against one volume of a real storage server, and read and write the namespace block device with direct I/O. Every
/// reservation type's rules from the holder and from the other host (registered and not), preemption, preempt and
/// abort, and the state after a restart of the server.
/// </summary>
[TestFixture]
[Category("Guest")]
public sealed partial class ReservationEndToEndTests
{
    private const ulong KeyA = 0xA1;
    private const ulong KeyB = 0xB2;

    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    // Expected access of the other host per type (NVMe base 2.0, 8.19.1, Figure 426): (registered reads, registered
    // writes, unregistered reads, unregistered writes). The holder may always read and write.
    private static readonly (int Type, bool RegRead, bool RegWrite, bool UnregRead, bool UnregWrite)[] s_table =
    [
        (1, true, false, true, false),
        (2, false, false, false, false),
        (3, true, true, true, false),
        (4, true, true, false, false),
        (5, true, true, true, false),
        (6, true, true, false, false),
    ];

    [Test]
    public async Task Two_kernel_hosts_see_every_reservation_type_preemption_and_the_state_after_a_restart()
    {
        await using var server = await ServerUnderTest.StartAsync();
        var hostA = NvmeHostIdentity.Create();
        var hostB = NvmeHostIdentity.Create();
        var volume = await server.CreateVolumeAsync("clustered", 64UL << 20, allowAnyHost: false, hostA, hostB);
        var nqn = volume.SubsystemNqn;

        // Both guests boot at once; each report names the hosts by these identities.
        var starting = new[] { ReservationGuest.StartAsync("host-a", hostA, nqn, [hostA, hostB]), ReservationGuest.StartAsync("host-b", hostB, nqn, [hostA, hostB]) };
        try
        {
            await Task.WhenAll(starting);
        }
        catch
        {
            foreach (var started in starting.Where(t => t.IsCompletedSuccessfully))
            {
                await started.Result.DisposeAsync();
            }

            throw;
        }

        await using var a = starting[0].Result;
        await using var b = starting[1].Result;
        string Describe() => $"{a.Describe()}\n{b.Describe()}\n----- server -----\n{server.Server.OutputTail()}";

        try
        {
            await Task.WhenAll(a.ConnectAsync(server.NvmePort), b.ConnectAsync(server.NvmePort));

            // Registration from both hosts; the report lists both 128-bit host identifiers.
            Assert.That(await a.ResvAsync($"nvme resv-register $(nsdev) --nrkey={KeyA}"), Is.EqualTo("ok"), Describe());
            Assert.That(await b.ResvAsync($"nvme resv-register $(nsdev) --nrkey={KeyB}"), Is.EqualTo("ok"), Describe());
            var report = await b.ReportAsync();
            Assert.That(report.Registrants, Is.EquivalentTo(new[] { (hostA.Id, KeyA, false), (hostB.Id, KeyB, false) }), Describe());
            Assert.That(report.Type, Is.Zero);
            Assert.That(await b.ResvAsync($"nvme resv-register $(nsdev) --nrkey={KeyB + 1}"), Is.EqualTo("conflict"), "registering again with another key\n" + Describe());
            Assert.That(await b.OutputAsync("nvme resv-report $(nsdev) 2>&1 || true"), Does.Contain("Host Identifier Inconsistent Format").IgnoreCase.Or.Contain("0x4018").Or.Contain("0x18"),
                "the regular report cannot hold 128-bit host ids\n" + Describe());

            foreach (var (type, regRead, regWrite, unregRead, unregWrite) in s_table)
            {
                Assert.That(await a.ResvAsync($"nvme resv-acquire $(nsdev) --crkey={KeyA} --rtype={type} --racqa=0"), Is.EqualTo("ok"), $"type {type}\n" + Describe());
                var holder = await a.AccessAsync();
                Assert.That(holder, Is.EqualTo(("ok", "ok")), $"type {type}: the holder reads and writes\n" + Describe());
                var registered = await b.AccessAsync();
                Assert.That(registered, Is.EqualTo((Outcome(regRead), Outcome(regWrite))), $"type {type}: the registered other host\n" + Describe());
                Assert.That(await b.ResvAsync($"nvme resv-register $(nsdev) --crkey={KeyB} --rrega=1"), Is.EqualTo("ok"), Describe());
                var unregistered = await b.AccessAsync();
                Assert.That(unregistered, Is.EqualTo((Outcome(unregRead), Outcome(unregWrite))), $"type {type}: the unregistered other host\n" + Describe());
                Assert.That(await b.ResvAsync($"nvme resv-register $(nsdev) --nrkey={KeyB}"), Is.EqualTo("ok"), Describe());
                var held = await b.ReportAsync();
                Assert.That(held.Type, Is.EqualTo(type), Describe());
                Assert.That(held.Registrants.Single(r => r.HostId == hostA.Id).Holds, Is.True, Describe());
                Assert.That(await a.ResvAsync($"nvme resv-release $(nsdev) --crkey={KeyA} --rtype={type} --rrela=0"), Is.EqualTo("ok"), Describe());
                Assert.That(await b.AccessAsync(), Is.EqualTo(("ok", "ok")), $"type {type} released\n" + Describe());
            }

            // B preempts A's reservation: B holds exclusive access, A's registration is gone and A is told so.
            Assert.That(await a.ResvAsync($"nvme resv-acquire $(nsdev) --crkey={KeyA} --rtype=1 --racqa=0"), Is.EqualTo("ok"), Describe());
            Assert.That(await b.ResvAsync($"nvme resv-acquire $(nsdev) --crkey={KeyB} --prkey={KeyA} --rtype=2 --racqa=1"), Is.EqualTo("ok"), Describe());
            var preempted = await a.ReportAsync();
            Assert.That(preempted.Type, Is.EqualTo(2), Describe());
            Assert.That(preempted.Registrants, Is.EquivalentTo(new[] { (hostB.Id, KeyB, true) }), Describe());
            Assert.That(await a.AccessAsync(), Is.EqualTo(("conflict", "conflict")), "exclusive access of another host\n" + Describe());
            Assert.That(await a.OutputAsync("nvme get-log $(ctrldev) --log-id=0x80 --log-len=64 --raw-binary | od -An -tu1 -j8 -N1 | tr -d ' '"),
                Is.EqualTo("1"), "the Reservation Notification log says: registration preempted\n" + Describe());

            // Preempt and abort while A writes: A's controller is ended, B's command completes after it drained, and A
            // (back after reconnecting) is refused.
            Assert.That(await b.ResvAsync($"nvme resv-release $(nsdev) --crkey={KeyB} --rrela=1"), Is.EqualTo("ok"), "clear\n" + Describe());
            Assert.That(await a.ResvAsync($"nvme resv-register $(nsdev) --nrkey={KeyA}"), Is.EqualTo("ok"), Describe());
            Assert.That(await b.ResvAsync($"nvme resv-register $(nsdev) --nrkey={KeyB}"), Is.EqualTo("ok"), Describe());
            Assert.That(await a.ResvAsync($"nvme resv-acquire $(nsdev) --crkey={KeyA} --rtype=1 --racqa=0"), Is.EqualTo("ok"), Describe());
            await a.CheckAsync("""
                DEV=$(nsdev)
                sh -c 'i=0; while dd if=/dev/urandom of='"$DEV"' bs=4096 count=1 seek=$((i % 1024)) oflag=direct 2>/opt/writer.err; do i=$((i + 1)); echo $i > /opt/writer.count; done; echo stopped > /opt/writer.state' </dev/null >/dev/null 2>&1 &
                i=0
                while [ ! -s /opt/writer.count ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
                cat /opt/writer.err /opt/writer.state 2>/dev/null || true
                [ "$(cat /opt/writer.count)" -gt 0 ]
                """);
            Assert.That(await b.ResvAsync($"nvme resv-acquire $(nsdev) --crkey={KeyB} --prkey={KeyA} --rtype=1 --racqa=2"), Is.EqualTo("ok"), "preempt and abort\n" + Describe());
            var writer = await a.OutputAsync("""
                i=0
                while [ ! -e /opt/writer.state ] && [ $i -lt 120 ]; do sleep 1; i=$((i + 1)); done
                echo "state=$(cat /opt/writer.state 2>/dev/null) count=$(cat /opt/writer.count) error=$(cat /opt/writer.err | tr '\n' ' ')"
                """, TimeSpan.FromMinutes(3));
            Assert.That(writer, Does.Contain("state=stopped").And.Contain("Invalid exchange"), "A's writes end with a reservation conflict\n" + Describe());
            await a.CheckAsync("wait_live", TimeSpan.FromMinutes(2));
            Assert.That(await a.OutputAsync("dmesg | grep -c -i 'reconnect\\|error recovery' || true"), Is.Not.EqualTo("0"), "A's controller was ended and reconnected\n" + Describe());
            var afterAbort = await b.ReportAsync();
            Assert.That(afterAbort.Registrants, Is.EquivalentTo(new[] { (hostB.Id, KeyB, true) }), Describe());
            Assert.That(await b.AccessAsync(), Is.EqualTo(("ok", "ok")), Describe());

            // Persistence: registrations and a reservation taken with PTPL on survive a restart of the server.
            Assert.That(await b.ResvAsync($"nvme resv-release $(nsdev) --crkey={KeyB} --rrela=1"), Is.EqualTo("ok"), Describe());
            Assert.That(await a.ResvAsync($"nvme resv-register $(nsdev) --nrkey={KeyA} --cptpl=3"), Is.EqualTo("ok"), Describe());
            Assert.That(await b.ResvAsync($"nvme resv-register $(nsdev) --nrkey={KeyB}"), Is.EqualTo("ok"), Describe());
            Assert.That(await a.ResvAsync($"nvme resv-acquire $(nsdev) --crkey={KeyA} --rtype=3 --racqa=0"), Is.EqualTo("ok"), Describe());
            var before = await b.ReportAsync();
            await Task.WhenAll(a.DisconnectAsync(), b.DisconnectAsync());
            await server.RestartAsync();
            await Task.WhenAll(a.ConnectAsync(server.NvmePort), b.ConnectAsync(server.NvmePort));
            var after = await b.ReportAsync();
            TestContext.Out.WriteLine($"before the restart:\n{before.Text}\nafter:\n{after.Text}");
            Assert.That(after.Ptpl, Is.EqualTo(1), Describe());
            Assert.That((after.Generation, after.Type), Is.EqualTo((before.Generation, 3)), Describe());
            Assert.That(after.Registrants, Is.EquivalentTo(new[] { (hostA.Id, KeyA, true), (hostB.Id, KeyB, false) }), Describe());
            Assert.That(await b.AccessAsync(), Is.EqualTo(("ok", "ok")), "a registrant writes under Write Exclusive - Registrants Only\n" + Describe());
            Assert.That(await b.ResvAsync($"nvme resv-register $(nsdev) --crkey={KeyB} --rrega=1"), Is.EqualTo("ok"), Describe());
            Assert.That(await b.AccessAsync(), Is.EqualTo(("ok", "conflict")), "and, unregistered, is refused after the restart\n" + Describe());
        }
        catch (Exception e) when (e is not AssertionException)
        {
            Assert.Fail($"{e.GetType().Name}: {e.Message}\n{Describe()}");
        }
    }

    private static string Outcome(bool allowed) => allowed ? "ok" : "conflict";

    /// <summary>Parsed output of <c>nvme resv-report --eds</c> (nvme-cli 2.3: rkey, rcsts and host id in hex).</summary>
    private sealed record ReportResult(string Text, uint Generation, int Type, int Ptpl, IReadOnlyList<(Guid HostId, ulong Key, bool Holds)> Registrants);

    [GeneratedRegex(@"^\s*(\w+)\s*:\s*(\S*)\s*$", RegexOptions.Multiline)]
    private static partial Regex ReportField();

    private static ReportResult ParseReport(string text, params NvmeHostIdentity[] known)
    {
        var fields = ReportField().Matches(text).Select(m => (m.Groups[1].Value, m.Groups[2].Value)).ToList();
        string Top(string name) => fields.First(f => f.Item1 == name).Item2;
        var registrants = new List<(Guid, ulong, bool)>();
        int? rcsts = null;
        ulong? key = null;
        foreach (var (name, value) in fields)
        {
            switch (name)
            {
                case "rcsts":
                    rcsts = int.Parse(value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    break;
                case "rkey":
                    key = ulong.Parse(value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    break;
                case "hostid":
                    var host = known.FirstOrDefault(h => PrintsHostId(value, h.Id))?.Id ?? Guid.Empty;
                    registrants.Add((host, key ?? 0, rcsts == 1));
                    break;
            }
        }

        return new ReportResult(text, uint.Parse(Top("gen"), CultureInfo.InvariantCulture), int.Parse(Top("rtype"), CultureInfo.InvariantCulture),
            int.Parse(Top("ptpls"), CultureInfo.InvariantCulture), registrants);
    }

    /// <summary>
    /// Whether nvme-cli printed <paramref name="id"/>: the 16 bytes in hex, in wire order (nvme-cli 2.3 pads each byte to
    /// two digits; older versions printed each with %x, dropping leading zeros).
    /// </summary>
    private static bool PrintsHostId(string printed, Guid id)
    {
        var bytes = id.ToByteArray(bigEndian: true);
        return printed == Convert.ToHexStringLower(bytes) || printed == string.Concat(bytes.Select(b => b.ToString("x", CultureInfo.InvariantCulture)));
    }

    /// <summary>A guest acting as one host: its identity, and a <see cref="GuestAgent"/> running the test's shell commands.</summary>
    private sealed class ReservationGuest : IAsyncDisposable
    {
        private readonly GuestAgent _agent;
        private readonly Task<GuestResult> _run;
        private readonly NvmeHostIdentity _identity;
        private readonly NvmeHostIdentity[] _knownHosts;
        private GuestResult? _result;

        private ReservationGuest(string name, GuestAgent agent, Task<GuestResult> run, NvmeHostIdentity identity, NvmeHostIdentity[] knownHosts)
        {
            Name = name;
            _agent = agent;
            _run = run;
            _identity = identity;
            _knownHosts = knownHosts;
        }

        public string Name { get; }

        public static async Task<ReservationGuest> StartAsync(string name, NvmeHostIdentity identity, string nqn, NvmeHostIdentity[] knownHosts)
        {
            var agent = new GuestAgent();
            var helpers = $$"""
                ADDR={{LinuxGuest.HostAddress}}
                NQN={{nqn}}
                nsdev() {
                    i=0
                    while [ $i -lt 300 ]; do
                        for b in /sys/block/nvme*n*; do
                            [ -e "$b" ] || continue
                            name=${b##*/}
                            case "$name" in nvme*c*n*) continue ;; esac
                            if [ "$(cat "$b/device/subsysnqn" 2>/dev/null)" = "$NQN" ] && [ -b "/dev/$name" ]; then echo "/dev/$name"; return 0; fi
                        done
                        sleep 0.1
                        i=$((i + 1))
                    done
                    return 1
                }
                ctrldev() {
                    for c in /sys/class/nvme/nvme*; do
                        [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$NQN" ] && [ "$(cat "$c/state")" = live ] && { echo "/dev/${c##*/}"; return 0; }
                    done
                    return 1
                }
                # wait_live: until a controller of the subsystem is live again (after a reconnect)
                wait_live() {
                    i=0
                    while ! ctrldev >/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
                    ctrldev
                }
                # try_io NAME read|write: NAME=ok, NAME=conflict (EBADE, what the kernel makes of a reservation conflict) or NAME=error:...
                try_io() {
                    if [ "$2" = read ]; then
                        out=$(dd if=$(nsdev) of=/dev/null bs=4096 count=1 skip=16 iflag=direct 2>&1)
                    else
                        out=$(dd if=/dev/urandom of=$(nsdev) bs=4096 count=1 seek=16 oflag=direct 2>&1)
                    fi
                    rc=$?
                    if [ $rc -eq 0 ]; then echo "$1=ok"
                    elif echo "$out" | grep -qi 'invalid exchange'; then echo "$1=conflict"
                    else echo "$1=error:$(echo $out)"; fi
                }
                # resv CMD...: RESV=ok, RESV=conflict or RESV=fail:...
                resv() {
                    if out=$("$@" 2>&1); then echo "RESV=ok"
                    elif echo "$out" | grep -qi 'conflict'; then echo "RESV=conflict"
                    else echo "RESV=fail:$(echo $out)"; fi
                }

                """;
            var script = agent.GuestLoop() + "agent_loop\n";
            var options = new GuestOptions
            {
                Timeout = TimeSpan.FromMinutes(25),
                TextFiles = new Dictionary<string, string> { ["/opt/resv.sh"] = helpers },
                OutputLine = line => TestContext.Progress.WriteLine($"[{name}] {line}"),
            };
            var run = LinuxGuest.RunAsync(script, options);
            var guest = new ReservationGuest(name, agent, run, identity, knownHosts);
            try
            {
                await agent.WaitForGuestAsync(TimeSpan.FromMinutes(5), run);
                return guest;
            }
            catch
            {
                await guest.DisposeAsync();
                throw;
            }
        }

        public Task<string> CheckAsync(string command, TimeSpan? timeout = null) => _agent.CheckAsync(". /opt/resv.sh\n" + command, timeout ?? TimeSpan.FromMinutes(2));

        public async Task<string> OutputAsync(string command, TimeSpan? timeout = null) =>
            (await _agent.RunAsync(". /opt/resv.sh\n" + command, timeout ?? TimeSpan.FromMinutes(2))).Output.Trim();

        public Task ConnectAsync(int port) => CheckAsync(
            $"nvme connect -t tcp -a $ADDR -s {port} -n $NQN {_identity.CliArgs} --reconnect-delay=1 --ctrl-loss-tmo=120\nnsdev", TimeSpan.FromMinutes(3));

        public Task DisconnectAsync() => CheckAsync("nvme disconnect -n $NQN");

        /// <summary>Runs an nvme-cli reservation command: "ok", "conflict" or "fail:...".</summary>
        public async Task<string> ResvAsync(string command)
        {
            var output = await OutputAsync("resv " + command);
            var line = output.Split('\n').LastOrDefault(l => l.StartsWith("RESV=", StringComparison.Ordinal));
            return line?["RESV=".Length..] ?? "no answer: " + output;
        }

        /// <summary>A direct read and a direct write of the namespace block device: each "ok", "conflict" or "error:...".</summary>
        public async Task<(string Read, string Write)> AccessAsync()
        {
            var output = await OutputAsync("try_io READ read; try_io WRITE write");
            string Value(string name) => output.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith(name + "=", StringComparison.Ordinal))?[(name.Length + 1)..] ?? "missing";
            return (Value("READ"), Value("WRITE"));
        }

        public async Task<ReportResult> ReportAsync()
        {
            var text = await CheckAsync("nvme resv-report $(nsdev) --eds");
            return ParseReport(text, _knownHosts);
        }

        public string Describe() =>
            $"----- {Name}: last guest commands -----\n{_agent.DescribeHistory()}" +
            (_result is null ? string.Empty : $"\n----- {Name}: guest output -----\n{_result.Describe(120)}");

        public async ValueTask DisposeAsync()
        {
            try
            {
                if (!_run.IsCompleted)
                {
                    _agent.Quit();
                }

                _result = await _run.WaitAsync(TimeSpan.FromMinutes(2));
            }
            catch (Exception e) when (e is TimeoutException or InvalidOperationException or IOException)
            {
                TestContext.Progress.WriteLine($"[{Name}] guest run failed: {e.Message}");
            }
            finally
            {
                await _agent.DisposeAsync();
            }
        }
    }
}
