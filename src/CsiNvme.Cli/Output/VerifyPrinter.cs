using System.Globalization;
using System.Text.Json;
using CsiNvme.Api;
using CsiNvme.Api.V1;

namespace CsiNvme.Cli.Output;

/// <summary>Prints what <c>volume verify</c> found: a summary block and the regions that differ, or JSON.</summary>
internal static class VerifyPrinter
{
    public static void Write(CommandSession session, string volume, VerifyVolumeResponse response)
    {
        if (session.Json)
        {
            session.Out.WriteLine(JsonSerializer.Serialize(VerifyView.From(volume, response), CliJsonContext.Default.VerifyView));
            return;
        }

        var fields = new List<(string Label, string Value)>
        {
            ("Volume", volume),
            ("Result", Verdict(response)),
            ("Region size", ByteSize.Format(response.RegionSize)),
            ("Regions compared", response.RegionsCompared.ToString(CultureInfo.InvariantCulture)),
            ("Nodes compared", response.Nodes.Count == 0 ? "-" : string.Join(", ", response.Nodes)),
            ("All in sync", response.AllInSync ? "yes" : "no"),
            ("Skipped", response.Skipped.Count == 0 ? "-" : string.Join("; ", response.Skipped)),
            ("Mismatches", response.MismatchCount.ToString(CultureInfo.InvariantCulture)
                + (response.MismatchCount > (ulong)response.Mismatches.Count ? $" (the first {response.Mismatches.Count} below)" : "")),
        };

        int width = fields.Max(f => f.Label.Length) + 2;
        foreach (var (label, value) in fields)
        {
            session.Out.WriteLine((label + ":").PadRight(width) + value);
        }

        if (response.Mismatches.Count == 0)
        {
            return;
        }

        // One checksum column per compared node, in the order the server compared them.
        string[] nodes = [.. response.Nodes.Union(response.Mismatches.SelectMany(m => m.Checksums.Keys).Order(StringComparer.Ordinal))];
        var table = new TextTable(["OFFSET", "LENGTH", .. nodes]);
        foreach (RegionMismatch mismatch in response.Mismatches)
        {
            table.AddRow([
                mismatch.Offset.ToString(CultureInfo.InvariantCulture),
                mismatch.Length.ToString(CultureInfo.InvariantCulture),
                .. nodes.Select(n => mismatch.Checksums.TryGetValue(n, out string? checksum) ? checksum : "-"),
            ]);
        }

        session.Out.WriteLine();
        table.WriteTo(session.Out);
    }

    private static string Verdict(VerifyVolumeResponse response)
    {
        if (response.Identical)
        {
            return "identical";
        }

        var reasons = new List<string>();
        if (!response.AllInSync)
        {
            reasons.Add("not every replica is in sync");
        }

        if (response.Skipped.Count > 0)
        {
            reasons.Add(string.Create(CultureInfo.InvariantCulture, $"{response.Skipped.Count} replica(s) not compared"));
        }

        if (response.MismatchCount > 0)
        {
            reasons.Add(string.Create(CultureInfo.InvariantCulture, $"{response.MismatchCount} region(s) differ"));
        }

        return reasons.Count == 0 ? "NOT identical" : $"NOT identical: {string.Join(", ", reasons)}";
    }
}
