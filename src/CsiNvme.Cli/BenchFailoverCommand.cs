using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using CsiNvme.Api.V1;
using CsiNvme.Host;
using CsiNvme.Perf.Failover;

namespace CsiNvme.Cli;

/// <summary>
/// <c>csinvme bench-failover</c>: the failover stall of a replicated volume as a host sees it, over many kills of its
/// primary (the cluster's own processes are killed and restarted by the commands given, since only the caller knows
/// how they run).
/// </summary>
internal static class BenchFailoverCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var volume = new Option<string>("--volume") { Description = "The replicated volume to write to (it must allow --hostnqn).", Required = true };
        var hostNqn = new Option<string>("--hostnqn") { Description = "Host NQN the writes come from.", Required = true };
        var rounds = new Option<int>("--rounds") { Description = "Kills of the primary.", DefaultValueFactory = _ => 20 };
        var qd = new Option<int>("--qd") { Description = "Writes outstanding.", DefaultValueFactory = _ => 4 };
        var kill = new Option<string>("--kill-command") { Description = "Shell command that kills a node's server abruptly; {node} is replaced by the node name.", Required = true };
        var restart = new Option<string>("--restart-command") { Description = "Shell command that starts a node's server again; {node} is replaced by the node name.", Required = true };
        var output = new Option<string>("--output") { Description = "Also write the report as JSON to this file." };
        var command = new Command("bench-failover", "Measure the failover stall of a replicated volume: kill its primary repeatedly under a write load and report how long writes stalled each time.")
        {
            volume, hostNqn, rounds, qd, kill, restart, output,
        };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var name = parseResult.GetRequiredValue(volume);
            var current = await session.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = name }, session.Call);
            var nodes = await new NodeService.NodeServiceClient(session.Channel).ListNodesAsync(new ListNodesRequest(), session.Call);

            // Every node answers the management API; the one given may be the next to be killed, so all are tried.
            var channels = nodes.Nodes.Where(n => n.ManagementAddress.Length > 0)
                .Select(n => Grpc.Net.Client.GrpcChannel.ForAddress("http://" + n.ManagementAddress))
                .ToArray();
            using var disposer = new ChannelsDisposer(channels);
            var cluster = new ManagedCluster(
                channels.Select(c => new VolumeService.VolumeServiceClient(c)).ToArray(),
                name,
                parseResult.GetRequiredValue(kill),
                parseResult.GetRequiredValue(restart));
            var host = parseResult.GetRequiredValue(hostNqn);
            var bench = new FailoverBench(cluster, new FailoverBenchOptions
            {
                SubsystemNqn = current.SubsystemNqn,
                Host = new NvmeTcpHostOptions
                {
                    HostNqn = host,
                    HostId = new Guid(System.Security.Cryptography.MD5.HashData(System.Text.Encoding.UTF8.GetBytes(host))),
                    Reconnect = false,
                    IoQueueCount = 1,
                    KeepAliveTimeout = TimeSpan.FromSeconds(5),
                    ConnectTimeout = TimeSpan.FromSeconds(5),
                },
                Rounds = parseResult.GetValue(rounds),
                QueueDepth = parseResult.GetValue(qd),
                Region = Math.Min((long)current.SizeBytes, 64L << 20),
            });
            var progress = new Progress<string>(line => session.Error.WriteLine(line));
            var report = await bench.RunAsync(progress, ct);
            var json = JsonSerializer.Serialize(report, FailoverJson.Default.FailoverReport);
            if (parseResult.GetValue(output) is { Length: > 0 } file)
            {
                await File.WriteAllTextAsync(file, json, ct);
            }

            if (session.Json)
            {
                session.Out.WriteLine(json);
            }
            else
            {
                session.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{report.Rounds.Count} failovers: stall median {report.MedianSeconds:F2} s, p90 {report.P90Seconds:F2} s, max {report.MaxSeconds:F2} s; {report.Writes} writes, {report.WriteErrors} failed"));
            }

            return report.WriteErrors == 0 ? ExitCodes.Success : ExitCodes.ServerRefused;
        }));
        return command;
    }

    /// <summary>The cluster as the benchmark sees it: the management API of any node up, and the caller's commands for killing and restarting.</summary>
    private sealed class ManagedCluster(VolumeService.VolumeServiceClient[] nodes, string volume, string killCommand, string restartCommand) : IFailoverCluster
    {
        public async Task<PrimaryPath> FindPrimaryAsync(CancellationToken cancellationToken)
        {
            var current = await GetAsync(cancellationToken);
            var primary = current.Replicas.FirstOrDefault(r => r.Primary && r.NodeUp)
                ?? throw new InvalidOperationException($"volume {volume} has no primary that is up");
            return new PrimaryPath(primary.Node, IPEndPoint.Parse(primary.NvmeListenAddresses[0]));
        }

        private async Task<Volume> GetAsync(CancellationToken cancellationToken)
        {
            Grpc.Core.RpcException? last = null;
            foreach (var node in nodes)
            {
                try
                {
                    return await node.GetVolumeAsync(new GetVolumeRequest { Name = volume }, deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: cancellationToken);
                }
                catch (Grpc.Core.RpcException e) when (e.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded or Grpc.Core.StatusCode.Internal)
                {
                    last = e;
                }
            }

            if (last is not null) throw last;
            throw new InvalidOperationException("no node to ask");
        }

        public Task KillAsync(string node, CancellationToken cancellationToken) => RunAsync(killCommand, node, cancellationToken);

        public Task RestartAsync(string node, CancellationToken cancellationToken) => RunAsync(restartCommand, node, cancellationToken);

        public async Task<bool> AllInSyncAsync(CancellationToken cancellationToken)
        {
            try
            {
                var current = await GetAsync(cancellationToken);
                return current.Replicas.All(r => r.State == "in-sync" && r.NodeUp);
            }
            catch (Exception e) when (e is Grpc.Core.RpcException or InvalidOperationException)
            {
                return false;
            }
        }

        private static async Task RunAsync(string template, string node, CancellationToken cancellationToken)
        {
            var start = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add(template.Replace("{node}", node, StringComparison.Ordinal));
            using var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start /bin/sh");
            await process.WaitForExitAsync(cancellationToken);
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"'{template}' for {node} exited with {process.ExitCode}");
            }
        }
    }
}

internal sealed class ChannelsDisposer(IEnumerable<IDisposable> channels) : IDisposable
{
    public void Dispose()
    {
        foreach (var channel in channels)
        {
            channel.Dispose();
        }
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(FailoverReport))]
internal sealed partial class FailoverJson : JsonSerializerContext;
