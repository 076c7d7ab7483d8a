using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using CsiNvme.Host;
using CsiNvme.Perf;

namespace CsiNvme.Cli;

/// <summary>
/// <c>csinvme perf</c>: NVMe/TCP load from our own host against any target, in the spirit of spdk_nvme_perf and fio;
/// <c>--tcp-baseline</c> runs the same message sizes over plain TCP against <c>--tcp-baseline-server</c>;
/// <c>--compare-tcp-limit</c> runs both in alternating windows and reports their ratio.
/// </summary>
internal static class PerfCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var target = new Option<string>("--target") { Description = "NVMe/TCP (or baseline) target, ADDR:PORT.", HelpName = "ADDR:PORT" };
        var nqn = new Option<string>("--nqn") { Description = "Subsystem NQN to connect to." };
        var hostNqn = new Option<string>("--hostnqn") { Description = "Host NQN (default: derived from --hostid or a random UUID)." };
        var hostId = new Option<Guid?>("--hostid") { Description = "Host identifier (UUID)." };
        var nsid = new Option<uint>("--nsid") { Description = "Namespace to load.", DefaultValueFactory = _ => 1 };
        var qd = new Option<int>("--qd") { Description = "Outstanding I/Os per queue.", DefaultValueFactory = _ => 1 };
        var ioSize = new Option<string>("--io-size") { Description = "Bytes per I/O (suffixes k, m).", DefaultValueFactory = _ => "4096", HelpName = "BYTES" };
        var pattern = new Option<string>("--pattern") { Description = "read, write, randread, randwrite, rw or randrw.", DefaultValueFactory = _ => "randread" };
        var mix = new Option<int>("--mix") { Description = "Percentage of reads for rw/randrw.", DefaultValueFactory = _ => 50 };
        var time = new Option<double>("--time") { Description = "Seconds to measure.", DefaultValueFactory = _ => 10 };
        var ramp = new Option<double>("--ramp") { Description = "Seconds of load before measuring starts.", DefaultValueFactory = _ => 0 };
        var queues = new Option<int>("--queues") { Description = "I/O queues per connection.", DefaultValueFactory = _ => 1 };
        var connections = new Option<int>("--connections") { Description = "Controllers (or baseline TCP connections) to open.", DefaultValueFactory = _ => 1 };
        var core = new Option<string>("--core") { Description = "Pin this process to CPU N (or a list N,M) with sched_setaffinity.", HelpName = "N" };
        var headerDigest = new Option<bool>("--header-digest") { Description = "Ask for NVMe/TCP header digests." };
        var dataDigest = new Option<bool>("--data-digest") { Description = "Ask for NVMe/TCP data digests." };
        var tlsPsk = new Option<string>("--tls-psk") { Description = "Connect with NVMe/TCP TLS 1.3 and this configured PSK (NVMeTLSkey-1:hh:base64:, as nvme gen-tls-key prints it); the environment variable CSINVME_TLS_PSK works too, and keeps the key out of the process list.", HelpName = "PSK" };
        var disableSqFlow = new Option<bool>("--disable-sqflow") { Description = "Disable SQ flow control on the I/O queues (reads may complete in their last data PDU)." };
        var poll = new Option<double>("--poll-us") { Description = "Microseconds a queue's receive thread polls for responses before it sleeps (0: sleep at once).", DefaultValueFactory = _ => 50 };
        var verify = new Option<bool>("--verify") { Description = "Write self-checking blocks and check every block read." };
        var region = new Option<string>("--region") { Description = "Only use the first BYTES of the namespace (TCP limit mode: the server's memory, default 256 MiB, and the client's offsets within it).", HelpName = "BYTES" };
        var baseline = new Option<bool>("--tcp-baseline") { Description = "Raw TCP limit mode against a --tcp-baseline-server." };
        var baselineServer = new Option<bool>("--tcp-baseline-server") { Description = "Serve the raw TCP limit mode on --listen until interrupted." };
        var compare = new Option<string>("--compare-tcp-limit") { Description = "Alternate the NVMe load with the raw TCP limit load against this --tcp-baseline-server in short windows, from one process, and report the ratio of each pair.", HelpName = "ADDR:PORT" };
        var windows = new Option<int>("--windows") { Description = "Window pairs of --compare-tcp-limit; --time is each side's measured time over all of them.", DefaultValueFactory = _ => 10 };
        var listen = new Option<string>("--listen") { Description = "Listen address of --tcp-baseline-server.", DefaultValueFactory = _ => "127.0.0.1:4421", HelpName = "ADDR:PORT" };

        var command = new Command("perf", "Measure IOPS, bandwidth and latency of an NVMe/TCP target with the built-in host (like spdk_nvme_perf).")
        {
            target, nqn, hostNqn, hostId, nsid, qd, ioSize, pattern, mix, time, ramp, queues, connections, core,
            headerDigest, dataDigest, tlsPsk, disableSqFlow, poll, verify, region, baseline, baselineServer, compare, windows, listen,
        };

        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var stdout = parseResult.InvocationConfiguration.Output;
            var stderr = parseResult.InvocationConfiguration.Error;
            try
            {
                if (parseResult.GetValue(core) is { Length: > 0 } cpuList)
                {
                    CpuAffinity.PinProcess(cpuList.Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture)).ToArray());
                }

                if (parseResult.GetValue(baselineServer))
                {
                    var endpoint = await ResolveAsync(parseResult.GetValue(listen)!, cancellationToken, allowAnyPort: true);
                    var storage = parseResult.GetValue(region) is { Length: > 0 } size ? ParseSize(size) : TcpBaseline.DefaultStorageBytes;
                    await TcpBaseline.ServeAsync(
                        endpoint, bound => stdout.WriteLine($"CSINVME-BASELINE-READY {bound}"), cancellationToken, TimeSpan.FromMicroseconds(parseResult.GetValue(poll)), storage);
                    return ExitCodes.Success;
                }

                if (parseResult.GetValue(target) is not { Length: > 0 } targetText)
                {
                    await stderr.WriteLineAsync("csinvme: --target is required");
                    return ExitCodes.UsageError;
                }

                var options = new PerfOptions
                {
                    Target = await ResolveAsync(targetText, cancellationToken),
                    SubsystemNqn = parseResult.GetValue(nqn) ?? "",
                    HostNqn = parseResult.GetValue(hostNqn),
                    HostId = parseResult.GetValue(hostId),
                    NamespaceId = parseResult.GetValue(nsid),
                    QueueDepth = parseResult.GetValue(qd),
                    IoSize = (int)ParseSize(parseResult.GetValue(ioSize)!),
                    Pattern = PerfOptions.ParsePattern(parseResult.GetValue(pattern)!),
                    ReadPercent = parseResult.GetValue(mix),
                    Duration = TimeSpan.FromSeconds(parseResult.GetValue(time)),
                    Ramp = TimeSpan.FromSeconds(parseResult.GetValue(ramp)),
                    Queues = parseResult.GetValue(queues),
                    Connections = parseResult.GetValue(connections),
                    HeaderDigest = parseResult.GetValue(headerDigest),
                    DataDigest = parseResult.GetValue(dataDigest),
                    TlsPsk = (parseResult.GetValue(tlsPsk) ?? Environment.GetEnvironmentVariable("CSINVME_TLS_PSK")) is { Length: > 0 } pskText
                        ? CsiNvme.Protocol.Tls.TlsPsk.Parse(pskText)
                        : null,
                    DisableSqFlowControl = parseResult.GetValue(disableSqFlow),
                    ReceivePollTime = TimeSpan.FromMicroseconds(parseResult.GetValue(poll)),
                    Verify = parseResult.GetValue(verify),
                    RegionBytes = parseResult.GetValue(region) is { Length: > 0 } r ? ParseSize(r) : 0,
                };

                if (parseResult.GetValue(compare) is { Length: > 0 } limitText)
                {
                    if (parseResult.GetValue(baseline))
                    {
                        throw new ArgumentException("--compare-tcp-limit runs both loads; leave out --tcp-baseline");
                    }

                    var comparison = await PerfComparison.RunAsync(
                        options, await ResolveAsync(limitText, cancellationToken), parseResult.GetValue(windows), cancellationToken: cancellationToken);
                    comparison = comparison with { Nvme = WhereItRan(comparison.Nvme), Limit = WhereItRan(comparison.Limit) };
                    await stdout.WriteLineAsync(parseResult.GetValue(globals.Json) ? comparison.ToJson() : comparison.ToText());
                    return comparison.Nvme.Errors > 0 || comparison.Nvme.VerifyFailures > 0 ? ExitCodes.ServerRefused : ExitCodes.Success;
                }

                var result = parseResult.GetValue(baseline)
                    ? await TcpBaseline.RunAsync(options, cancellationToken)
                    : await NvmePerfRunner.RunAsync(options, cancellationToken: cancellationToken);
                result = WhereItRan(result);
                await stdout.WriteLineAsync(parseResult.GetValue(globals.Json) ? result.ToJson() : result.ToText());
                return result.Errors > 0 || result.VerifyFailures > 0 ? ExitCodes.ServerRefused : ExitCodes.Success;
            }
            catch (Exception ex) when (ex is ArgumentException or FormatException)
            {
                await stderr.WriteLineAsync($"csinvme: {ex.Message}");
                return ExitCodes.UsageError;
            }
            catch (Exception ex) when (ex is NvmeTransportException or SocketException or TimeoutException or IOException)
            {
                await stderr.WriteLineAsync($"csinvme: {ex.Message}");
                return ExitCodes.ServerUnreachable;
            }
            catch (Exception ex) when (ex is NvmeCommandException or InvalidOperationException)
            {
                await stderr.WriteLineAsync($"csinvme: {ex.Message}");
                return ExitCodes.ServerRefused;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return ExitCodes.Success;
            }
        });
        return command;
    }

    /// <summary>Adds the CPUs and the machine the load ran on to its result.</summary>
    private static PerfResult WhereItRan(PerfResult result) =>
        result with { Cpus = OperatingSystem.IsLinux() ? CpuAffinity.CurrentThreadCpus().ToArray() : null, Host = Environment.MachineName };

    private static async Task<IPEndPoint> ResolveAsync(string text, CancellationToken cancellationToken, bool allowAnyPort = false)
    {
        if (IPEndPoint.TryParse(text, out var endpoint) && (endpoint.Port != 0 || allowAnyPort))
        {
            return endpoint;
        }

        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 0 or > 65535 || (port == 0 && !allowAnyPort))
        {
            throw new FormatException($"'{text}' is not ADDR:PORT");
        }

        var addresses = await Dns.GetHostAddressesAsync(text[..colon], cancellationToken);
        return new IPEndPoint(addresses.First(), port);
    }

    private static long ParseSize(string text)
    {
        text = text.Trim();
        long multiplier = 1;
        if (text.Length > 0 && char.IsLetter(text[^1]))
        {
            multiplier = char.ToLowerInvariant(text[^1]) switch
            {
                'k' => 1024,
                'm' => 1024 * 1024,
                'g' => 1024L * 1024 * 1024,
                _ => throw new FormatException($"'{text}': unknown size suffix"),
            };
            text = text[..^1];
        }

        return long.Parse(text, NumberStyles.None, CultureInfo.InvariantCulture) * multiplier;
    }
}
