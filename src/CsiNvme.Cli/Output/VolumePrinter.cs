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
        };

        int width = fields.Max(f => f.Label.Length) + 2;
        foreach (var (label, value) in fields)
        {
            session.Out.WriteLine((label + ":").PadRight(width) + value);
        }
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

        var table = new TextTable("NAME", "SIZE", "BLOCK", "HOSTS", "NQN");
        foreach (Volume volume in volumes)
        {
            table.AddRow(
                volume.Name,
                ByteSize.Format(checked((long)volume.SizeBytes)),
                volume.BlockSize.ToString(CultureInfo.InvariantCulture),
                HostsSummary(volume, separator: ","),
                volume.SubsystemNqn);
        }

        table.WriteTo(session.Out);
    }

    private static string HostsSummary(Volume volume, string separator) =>
        volume.AllowAnyHost ? "any" : JoinOrDash(volume.AllowedHosts, separator);

    private static string JoinOrDash(IEnumerable<string> values, string separator)
    {
        string joined = string.Join(separator, values);
        return joined.Length == 0 ? "-" : joined;
    }

    private static string OrDash(string value) => string.IsNullOrEmpty(value) ? "-" : value;
}
