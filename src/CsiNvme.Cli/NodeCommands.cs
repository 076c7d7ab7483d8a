using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CsiNvme.Api.V1;
using CsiNvme.Cli.Output;
using Grpc.Core;

namespace CsiNvme.Cli;

/// <summary><c>csinvme node list|drain|undrain</c>: the storage nodes of a cluster (a single server is one node, "local").</summary>
internal static class NodeCommands
{
    private static readonly TimeSpan s_pollInterval = TimeSpan.FromMilliseconds(500);

    // A drain that makes no visible progress still says so now and then, so a log shows the wait is alive.
    private static readonly TimeSpan s_progressRepeat = TimeSpan.FromSeconds(30);

    public static Command Create(GlobalOptions globals) => new("node", "List the storage nodes, drain one for maintenance, undrain it.")
    {
        ListCommand(globals),
        DrainCommand(globals),
        UndrainCommand(globals),
    };

    private static Argument<string> NameArgument() => new("NAME") { Description = "Node name (as in 'csinvme node list')." };

    private static Command ListCommand(GlobalOptions globals)
    {
        var command = new Command("list", "List the nodes: state, admin state and drain progress, pools, free space, volumes and primaries.");
        command.Aliases.Add("ls");
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            ListNodesResponse response = await session.Nodes.ListNodesAsync(new ListNodesRequest(), session.Call);
            NodePrinter.WriteList(session, [.. response.Nodes.OrderBy(n => n.Name, StringComparer.Ordinal)]);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command DrainCommand(GlobalOptions globals)
    {
        Argument<string> name = NameArgument();
        var wait = new Option<bool>("--wait")
        {
            Description = "Wait until the node holds no primary (and every replica that can move has moved), printing progress; "
                + $"exit code {ExitCodes.TimedOut} if that takes longer than --timeout.",
        };
        Option<TimeSpan> timeout = DurationOption.Create("--timeout", "With --wait: how long to wait (default 10m).", TimeSpan.FromMinutes(10));
        var command = new Command(
            "drain",
            "Move every primary off the node (hosts switch to an in-sync replica's path), then its replicas where another node has room, "
            + "so the node can be stopped. The node takes nothing new until 'node undrain'.")
        {
            name, wait, timeout,
        };
        command.Validators.Add(result =>
        {
            if (result.GetResult(timeout) is { Implicit: false } && result.GetResult(wait) is null)
            {
                result.AddError("--timeout applies to --wait; add --wait");
            }
        });
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            string nodeName = parseResult.GetRequiredValue(name);
            Node node = await session.Nodes.DrainNodeAsync(new NodeRequest { Name = nodeName }, session.Call);
            if (!parseResult.GetValue(wait))
            {
                NodePrinter.WriteState(session, node);
                return ExitCodes.Success;
            }

            return await WaitUntilDrainedAsync(session, node, parseResult.GetValue(timeout));
        }));
        return command;
    }

    private static Command UndrainCommand(GlobalOptions globals)
    {
        Argument<string> name = NameArgument();
        var command = new Command("undrain", "End a drain: the node takes primaries and replicas again. Succeeds on a node that is not draining.") { name };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            Node node = await session.Nodes.UndrainNodeAsync(new NodeRequest { Name = parseResult.GetRequiredValue(name) }, session.Call);
            NodePrinter.WriteState(session, node);
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>
    /// Polls ListNodes until the node's drain status says drained, printing each change of it (to stderr with --json, so
    /// stdout stays one JSON document). Transient failures to get an answer are retried until the timeout: the server
    /// being asked may itself be busy handing primaries over.
    /// </summary>
    private static async Task<int> WaitUntilDrainedAsync(CommandSession session, Node node, TimeSpan timeout)
    {
        TextWriter progress = session.Json ? session.Error : session.Out;
        var elapsed = Stopwatch.StartNew();
        DateTime deadline = DateTime.UtcNow + timeout;
        string? lastStatus = null;
        string? lastProblem = null;
        TimeSpan lastPrinted = TimeSpan.Zero;
        while (true)
        {
            if (NodePrinter.IsDrained(node))
            {
                if (session.Json)
                {
                    NodePrinter.WriteState(session, node);
                }
                else
                {
                    string detail = node.DrainStatus == "drained" ? "" : $": {node.DrainStatus}";
                    await progress.WriteLineAsync($"Node {node.Name} drained after {Seconds(elapsed.Elapsed)}{detail}.");
                }

                return ExitCodes.Success;
            }

            if (node.AdminState != "draining")
            {
                await session.Error.WriteLineAsync($"csinvme: node {node.Name} is {node.AdminState} again: the drain was ended (node undrain) while waiting for it.");
                return ExitCodes.ServerRefused;
            }

            string status = node.DrainStatus.Length == 0 ? "starting" : node.DrainStatus;
            if (status != lastStatus || elapsed.Elapsed - lastPrinted >= s_progressRepeat)
            {
                await progress.WriteLineAsync($"[{Seconds(elapsed.Elapsed)}] node {node.Name} {node.State}, draining: {status}");
                lastStatus = status;
                lastPrinted = elapsed.Elapsed;
            }

            TimeSpan remaining = deadline - DateTime.UtcNow;
            if (remaining > TimeSpan.Zero)
            {
                // Task.Delay counts whole milliseconds: rounded down, a sub-millisecond wait would not wait at all.
                TimeSpan wait = remaining < s_pollInterval ? TimeSpan.FromMilliseconds(Math.Ceiling(remaining.TotalMilliseconds)) : s_pollInterval;
                await Task.Delay(wait, session.CancellationToken);
            }

            // The deadline is checked before the next poll, not after it: a poll that starts late and sees the node
            // drained would otherwise stretch --timeout by a whole round trip.
            if (DateTime.UtcNow >= deadline)
            {
                await session.Error.WriteLineAsync(
                    $"csinvme: node {node.Name} not drained within {Seconds(timeout)}: {status}. The drain goes on on the server: "
                    + $"watch it with 'csinvme node list', end it with 'csinvme node undrain {node.Name}'.");
                return ExitCodes.TimedOut;
            }

            try
            {
                ListNodesResponse response = await session.Nodes.ListNodesAsync(new ListNodesRequest(), session.CallBy(deadline));
                if (response.Nodes.FirstOrDefault(n => n.Name == node.Name) is not { } current)
                {
                    await session.Error.WriteLineAsync($"csinvme: node {node.Name} is no longer listed by the server.");
                    return ExitCodes.ServerRefused;
                }

                node = current;
                lastProblem = null;
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
            {
                string problem = e.Status.Detail.Length == 0 ? e.StatusCode.ToString() : e.Status.Detail;
                if (problem != lastProblem && DateTime.UtcNow < deadline)
                {
                    await session.Error.WriteLineAsync($"csinvme: no answer from {session.Server} ({problem}); asking again until the timeout.");
                    lastProblem = problem;
                }
            }
        }
    }

    private static string Seconds(TimeSpan duration) => duration.TotalSeconds switch
    {
        < 1 => duration.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture) + " ms",
        < 10 => duration.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + " s",
        _ => duration.TotalSeconds.ToString("0", CultureInfo.InvariantCulture) + " s",
    };
}
