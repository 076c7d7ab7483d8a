using System.Globalization;
using System.Text.Json;
using CsiNvme.Api;
using CsiNvme.Api.V1;

namespace CsiNvme.Cli.Output;

/// <summary>Prints storage nodes as a table, a one-line state, or JSON.</summary>
internal static class NodePrinter
{
    /// <summary>
    /// A drain is done once the server says "drained" (nothing left on the node) or "drained of primaries; N replicas
    /// left" (no other node has room for them, e.g. three replicas on three nodes): either way no host's optimized
    /// path is on the node any more, so it can stop.
    /// </summary>
    public static bool IsDrained(Node node) =>
        node.AdminState == "draining" && node.DrainStatus.StartsWith("drained", StringComparison.Ordinal);

    public static void WriteList(CommandSession session, IReadOnlyList<Node> nodes)
    {
        if (session.Json)
        {
            NodeView[] views = nodes.Select(NodeView.From).ToArray();
            session.Out.WriteLine(JsonSerializer.Serialize(views, CliJsonContext.Default.NodeViewArray));
            return;
        }

        if (nodes.Count == 0)
        {
            session.Out.WriteLine("No nodes.");
            return;
        }

        var table = new TextTable("NAME", "STATE", "ADMIN", "POOLS", "FREE", "VOLUMES", "PRIMARIES", "DRAIN");
        foreach (Node node in nodes)
        {
            table.AddRow(
                node.Name,
                node.State,
                node.AdminState,
                node.Pools.Count == 0 ? "-" : string.Join(",", node.Pools.Select(p => p.Name)),
                node.State == "up" ? ByteSize.Format(checked((long)node.FreeBytes)) : "-",
                node.VolumeCount.ToString(CultureInfo.InvariantCulture),
                node.PrimaryCount.ToString(CultureInfo.InvariantCulture),
                node.DrainStatus.Length == 0 ? "-" : node.DrainStatus);
        }

        table.WriteTo(session.Out);
    }

    /// <summary>The node after a drain or undrain: JSON, or one line saying where it stands.</summary>
    public static void WriteState(CommandSession session, Node node)
    {
        if (session.Json)
        {
            session.Out.WriteLine(JsonSerializer.Serialize(NodeView.From(node), CliJsonContext.Default.NodeView));
            return;
        }

        session.Out.WriteLine(Describe(node));
    }

    /// <summary>"Node node-a is draining: 2 primaries to hand over", "Node node-a is active (up, 1 primary)".</summary>
    public static string Describe(Node node) => node.AdminState == "draining"
        ? $"Node {node.Name} is draining: {(node.DrainStatus.Length == 0 ? "starting" : node.DrainStatus)}."
        : string.Create(
            CultureInfo.InvariantCulture,
            $"Node {node.Name} is {node.AdminState} ({node.State}, {node.VolumeCount} volumes, {node.PrimaryCount} primaries).");
}
