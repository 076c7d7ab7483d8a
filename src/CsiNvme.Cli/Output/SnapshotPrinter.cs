using System.Globalization;
using System.Text.Json;
using CsiNvme.Api;
using CsiNvme.Api.V1;

namespace CsiNvme.Cli.Output;

/// <summary>Prints snapshots and pools as tables, detail blocks or JSON.</summary>
internal static class SnapshotPrinter
{
    public static void WriteDetails(CommandSession session, Snapshot snapshot)
    {
        if (session.Json)
        {
            session.Out.WriteLine(JsonSerializer.Serialize(SnapshotView.From(snapshot), CliJsonContext.Default.SnapshotView));
            return;
        }

        var fields = new List<(string Label, string Value)>
        {
            ("Name", snapshot.Name),
            ("Id", snapshot.Id),
            ("Volume", $"{snapshot.SourceVolume} ({snapshot.SourceVolumeId})"),
            ("Size", $"{ByteSize.Format(checked((long)snapshot.SizeBytes))} ({snapshot.SizeBytes.ToString(CultureInfo.InvariantCulture)} bytes)"),
            ("Block size", snapshot.BlockSize.ToString(CultureInfo.InvariantCulture)),
            ("Pool", snapshot.Pool),
            ("Labels", LabelOption.Summary(snapshot.Labels)),
            ("Allocated", ByteSize.Format(checked((long)snapshot.AllocatedBytes))),
            ("Created", Created(snapshot.CreatedUnixMs)),
        };

        int width = fields.Max(f => f.Label.Length) + 2;
        foreach (var (label, value) in fields)
        {
            session.Out.WriteLine((label + ":").PadRight(width) + value);
        }
    }

    public static void WriteList(CommandSession session, IReadOnlyList<Snapshot> snapshots)
    {
        if (session.Json)
        {
            SnapshotView[] views = snapshots.Select(SnapshotView.From).ToArray();
            session.Out.WriteLine(JsonSerializer.Serialize(views, CliJsonContext.Default.SnapshotViewArray));
            return;
        }

        if (snapshots.Count == 0)
        {
            session.Out.WriteLine("No snapshots.");
            return;
        }

        var table = new TextTable("NAME", "VOLUME", "SIZE", "POOL", "CREATED");
        foreach (Snapshot snapshot in snapshots)
        {
            table.AddRow(
                snapshot.Name,
                snapshot.SourceVolume,
                ByteSize.Format(checked((long)snapshot.SizeBytes)),
                snapshot.Pool,
                Created(snapshot.CreatedUnixMs));
        }

        table.WriteTo(session.Out);
    }

    public static void WritePools(CommandSession session, IReadOnlyList<Pool> pools)
    {
        if (session.Json)
        {
            PoolView[] views = pools.Select(PoolView.From).ToArray();
            session.Out.WriteLine(JsonSerializer.Serialize(views, CliJsonContext.Default.PoolViewArray));
            return;
        }

        if (pools.Count == 0)
        {
            session.Out.WriteLine("No pools (only the thin backend has pools).");
            return;
        }

        var table = new TextTable("NAME", "CAPACITY", "USED", "FREE", "USE%", "VOLUMES", "SNAPSHOTS", "PATH");
        foreach (Pool pool in pools)
        {
            double percent = pool.CapacityBytes == 0 ? 0 : 100.0 * pool.UsedBytes / pool.CapacityBytes;
            table.AddRow(
                pool.Name,
                ByteSize.Format(checked((long)pool.CapacityBytes)),
                ByteSize.Format(checked((long)pool.UsedBytes)),
                ByteSize.Format(checked((long)pool.FreeBytes)),
                percent.ToString("0.0", CultureInfo.InvariantCulture) + "%",
                pool.VolumeCount.ToString(CultureInfo.InvariantCulture),
                pool.SnapshotCount.ToString(CultureInfo.InvariantCulture),
                pool.Path);
        }

        table.WriteTo(session.Out);
    }

    private static string Created(long unixMs) =>
        unixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(unixMs).ToString("u", CultureInfo.InvariantCulture) : "-";
}
