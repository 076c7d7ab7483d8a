using System.Globalization;
using System.Text.Json;
using CsiNvme.Api;
using CsiNvme.Api.V1;

namespace CsiNvme.Cli.Output;

/// <summary>Prints volumes as a table, as a detail block, or as JSON.</summary>
internal static class VolumePrinter
{
    public static void WriteDetails(CommandSession session, Volume volume)
    {
        if (session.Json)
        {
            session.Out.WriteLine(JsonSerializer.Serialize(VolumeView.From(volume), CliJsonContext.Default.VolumeView));
            return;
        }

        var fields = new List<(string Label, string Value)>
        {
            ("Name", volume.Name),
            ("Id", volume.Id),
            ("Size", $"{ByteSize.Format(checked((long)volume.SizeBytes))} ({volume.SizeBytes.ToString(CultureInfo.InvariantCulture)} bytes)"),
            ("Block size", volume.BlockSize.ToString(CultureInfo.InvariantCulture)),
            ("Subsystem NQN", volume.SubsystemNqn),
            ("NGUID", volume.Nguid),
            ("UUID", volume.Uuid),
            ("Allowed hosts", HostsSummary(volume, separator: ", ")),
            ("Authentication", AuthenticationSummary(volume)),
            ("Listening on", JoinOrDash(volume.ListenAddresses, ", ")),
            ("Connected hosts", JoinOrDash(volume.ConnectedHosts, ", ")),
            ("Backend", OrDash(volume.Backend)),
            ("Pool", OrDash(volume.Pool)),
            ("Labels", LabelOption.Summary(volume.Labels)),
            ("Allocated", volume.Backend == "thin"
                ? $"{ByteSize.Format(checked((long)volume.AllocatedBytes))} written since the last snapshot"
                : "-"),
            ("Created", volume.CreatedUnixMs > 0
                ? DateTimeOffset.FromUnixTimeMilliseconds(volume.CreatedUnixMs).ToString("u", CultureInfo.InvariantCulture)
                : "-"),
            ("Replicas", ReplicaSummary(volume, detailed: true)),
            ("Primary", volume.Primary.Length == 0 ? "-" : $"{volume.Primary} (epoch {volume.Epoch.ToString(CultureInfo.InvariantCulture)})"),
        };

        int width = fields.Max(f => f.Label.Length) + 2;
        foreach (var (label, value) in fields)
        {
            session.Out.WriteLine((label + ":").PadRight(width) + value);
        }

        if (volume.Replicas.Count > 0)
        {
            session.Out.WriteLine();
            WriteReplicas(session.Out, volume);
        }
    }

    /// <summary>
    /// "3 (3 in sync)"; with <paramref name="detailed"/> the replicas not in sync by state too, "3 (1 in sync, 1
    /// rebuilding, 1 out of sync)", and how many are still to add or remove, "2 (3 in sync, 1 to remove)". A single
    /// server's volume is just "1".
    /// </summary>
    public static string ReplicaSummary(Volume volume, bool detailed)
    {
        string count = Math.Max(1u, volume.ReplicaCount).ToString(CultureInfo.InvariantCulture);
        if (volume.Replicas.Count == 0)
        {
            return count;
        }

        int inSync = volume.Replicas.Count(r => r.State == "in-sync");
        if (!detailed)
        {
            return $"{count} ({inSync.ToString(CultureInfo.InvariantCulture)} in sync)";
        }

        var parts = new List<string> { $"{inSync.ToString(CultureInfo.InvariantCulture)} in sync" };
        parts.AddRange(volume.Replicas
            .Where(r => r.State != "in-sync")
            .GroupBy(r => r.State, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => $"{g.Count().ToString(CultureInfo.InvariantCulture)} {g.Key.Replace('-', ' ')}"));
        // After a change of the count (or during a drain's move) the replicas held differ from the count for a while.
        int difference = (int)Math.Max(1u, volume.ReplicaCount) - volume.Replicas.Count;
        if (difference != 0)
        {
            parts.Add($"{Math.Abs(difference).ToString(CultureInfo.InvariantCulture)} to {(difference > 0 ? "add" : "remove")}");
        }

        return $"{count} ({string.Join(", ", parts)})";
    }

    /// <summary>One line per replica: its node, state, role, whether the node is up, what it lacks, a rebuild's progress.</summary>
    private static void WriteReplicas(TextWriter writer, Volume volume)
    {
        var table = new TextTable("NODE", "STATE", "PRIMARY", "NODE UP", "IN SYNC AT EPOCH", "DIRTY REGIONS", "REBUILD");
        foreach (Replica replica in volume.Replicas)
        {
            table.AddRow(
                replica.Node,
                replica.State,
                replica.Primary ? "yes" : "no",
                replica.NodeUp ? "yes" : "no",
                replica.InSyncEpoch.ToString(CultureInfo.InvariantCulture),
                replica.DirtyRegions.ToString(CultureInfo.InvariantCulture),
                RebuildProgress(replica));
        }

        table.WriteTo(writer);
    }

    /// <summary>"40/100 regions (40%), 40.0 MiB copied at 10.0 MiB/s", or "-" when no rebuild runs.</summary>
    private static string RebuildProgress(Replica replica)
    {
        if (RebuildView.From(replica) is not { } rebuild)
        {
            return "-";
        }

        if (rebuild.RegionsTotal == 0)
        {
            return "no progress reported yet";
        }

        long percent = rebuild.RegionsDone * 100 / rebuild.RegionsTotal;
        return string.Create(
            CultureInfo.InvariantCulture,
            $"{rebuild.RegionsDone}/{rebuild.RegionsTotal} regions ({percent}%), {ByteSize.Format(rebuild.BytesCopied)} copied at {ByteSize.Format((long)rebuild.BytesPerSecond)}/s");
    }

    public static void WriteList(CommandSession session, IReadOnlyList<Volume> volumes)
    {
        if (session.Json)
        {
            VolumeView[] views = volumes.Select(VolumeView.From).ToArray();
            session.Out.WriteLine(JsonSerializer.Serialize(views, CliJsonContext.Default.VolumeViewArray));
            return;
        }

        if (volumes.Count == 0)
        {
            session.Out.WriteLine("No volumes.");
            return;
        }

        var table = new TextTable("NAME", "SIZE", "BLOCK", "REPLICAS", "HOSTS", "NQN");
        foreach (Volume volume in volumes)
        {
            table.AddRow(
                volume.Name,
                ByteSize.Format(checked((long)volume.SizeBytes)),
                volume.BlockSize.ToString(CultureInfo.InvariantCulture),
                ReplicaSummary(volume, detailed: false),
                HostsSummary(volume, separator: ","),
                volume.SubsystemNqn);
        }

        table.WriteTo(session.Out);
    }

    /// <summary>"HOSTNQN (DH-HMAC-CHAP sha256/ffdhe2048, bidirectional)" per host that must authenticate; never a secret.</summary>
    private static string AuthenticationSummary(Volume volume) =>
        JoinOrDash(volume.Authentication.Select(a =>
            $"{a.HostNqn} (DH-HMAC-CHAP {a.Hash}/{a.DhGroup}{(a.Bidirectional ? ", bidirectional" : "")}" +
            $"{(a.Problem.Length > 0 ? ", locked out: " + a.Problem : "")})"), ", ");

    private static string HostsSummary(Volume volume, string separator) =>
        volume.AllowAnyHost ? "any" : JoinOrDash(volume.AllowedHosts, separator);

    private static string JoinOrDash(IEnumerable<string> values, string separator)
    {
        string joined = string.Join(separator, values);
        return joined.Length == 0 ? "-" : joined;
    }

    private static string OrDash(string value) => string.IsNullOrEmpty(value) ? "-" : value;
}
