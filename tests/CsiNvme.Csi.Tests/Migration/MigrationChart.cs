using System.Globalization;

namespace CsiNvme.Csi.Tests.Migration;

/// <summary>
/// The chart of a run: IOPS per disk per second above, p99 latency per disk per second below, the pre-copy phase and
/// the switchover shaded, and the events marked (numbered lines, listed under the chart).
/// </summary>
internal static class MigrationChart
{
    private const int Width = 1280;
    private const int Height = 860;
    private const int Left = 90;
    private const int Right = 30;
    private const uint Axis = 0x333333;
    private const uint Grid = 0xE4E4E4;
    private const uint PrecopyShade = 0x9EC9F0;
    private const uint SwitchShade = 0xF2A0A0;
    private static readonly uint[] _diskColors = [0x1F77B4, 0xFF7F0E, 0x2CA02C, 0x9467BD];

    public static PngCanvas Draw(MigrationReport report, MigrationRecord record)
    {
        var canvas = new PngCanvas(Width, Height);
        var title = $"live migration, {record.Setup}{(record.StorageEvent is null ? "" : ", " + record.StorageEvent)}: {record.Workload}";
        canvas.Text(Left, 12, title, Axis, 2);

        var seconds = Math.Max(1, Math.Ceiling(record.End));
        var perSecond = report.PerSecond().ToArray();
        var iops = perSecond.Select(p => (double)p.Ios.Length).DefaultIfEmpty(1).Max();
        var p99s = perSecond.Where(p => p.Ios.Length > 0).Select(p => MigrationReport.Percentile(p.Ios.Select(c => c.LatencyMs).ToArray(), 0.99)).ToArray();
        // The scale follows the bulk of the seconds; a second beyond it is drawn at the top edge, marked.
        var p99Top = p99s.Length == 0 ? 1 : MigrationReport.Percentile(p99s, 0.98) * 1.6;

        var top = new Panel(Left, 60, Width - Left - Right, 290, seconds, NiceCeiling(iops * 1.1), "IOPS per disk (reads + writes per second)");
        var bottom = new Panel(Left, 400, Width - Left - Right, 290, seconds, NiceCeiling(p99Top), "p99 latency per disk per second (ms)");
        var markers = Markers(record);
        foreach (var panel in new[] { top, bottom })
        {
            panel.Shade(canvas, record.PrecopyStart, record.SwitchoverStart, PrecopyShade);
            panel.Shade(canvas, record.SwitchoverStart, FirstDestination(report, record), SwitchShade);
            panel.Frame(canvas);
            for (var i = 0; i < markers.Count; i++)
            {
                panel.Marker(canvas, markers[i].At, (i + 1).ToString(CultureInfo.InvariantCulture));
            }
        }

        for (var disk = 0; disk < record.Disks.Count; disk++)
        {
            var color = _diskColors[disk % _diskColors.Length];
            var points = perSecond.Where(p => p.Disk == disk).ToArray();
            top.Series(canvas, points.Select(p => (p.Second + 0.5, (double)p.Ios.Length)).ToArray(), color);
            bottom.Series(canvas, points.Select(p => (p.Second + 0.5, p.Ios.Length == 0 ? double.NaN : MigrationReport.Percentile(p.Ios.Select(c => c.LatencyMs).ToArray(), 0.99))).ToArray(), color);
        }

        // Legend: disks and shades, then the numbered events.
        var y = 712;
        var x = Left;
        for (var disk = 0; disk < record.Disks.Count; disk++)
        {
            canvas.FillRect(x, y + 2, 24, 4, _diskColors[disk % _diskColors.Length]);
            canvas.Text(x + 30, y, record.Disks[disk], Axis, 1);
            x += 40 + PngCanvas.TextWidth(record.Disks[disk]);
        }

        canvas.FillRect(x, y - 1, 24, 10, PrecopyShade);
        canvas.Text(x + 30, y, "pre-copy (destination published, source writing)", Axis);
        x += 40 + PngCanvas.TextWidth("pre-copy (destination published, source writing)");
        canvas.FillRect(x, y - 1, 24, 10, SwitchShade);
        canvas.Text(x + 30, y, $"switchover: {report.SwitchoverGapMs:F0} ms without completions ({record.VerificationSeconds * 1000:F0} ms of it handover checksums; storage {report.StorageSwitchoverMs:F0} ms)", Axis);

        y += 18;
        var column = 0;
        for (var i = 0; i < markers.Count; i++)
        {
            var label = $"{i + 1} {markers[i].At:F1}s {markers[i].What}";
            if (label.Length > 98)
            {
                label = label[..98];
            }

            canvas.Text(Left + column * 600, y, label, Axis);
            column++;
            if (column == 2)
            {
                column = 0;
                y += 12;
            }
        }

        return canvas;
    }

    private static double FirstDestination(MigrationReport report, MigrationRecord record) =>
        report.Completions.Where(c => c.Side == MigrationSide.Destination).Select(c => c.At).DefaultIfEmpty(record.DestinationStart).Min();

    /// <summary>The events worth a line on the chart: phases, the source's clean-up and storage events (not each disk's CSI calls).</summary>
    private static List<RunEvent> Markers(MigrationRecord record) =>
        record.Events.Where(e => e.What.StartsWith('*')).OrderBy(e => e.At).Select(e => e with { What = e.What.TrimStart('*', ' ') }).ToList();

    private static double NiceCeiling(double value)
    {
        if (value <= 0 || !double.IsFinite(value))
        {
            return 1;
        }

        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(value)));
        foreach (var step in new[] { 1, 2, 2.5, 5, 10 })
        {
            if (step * magnitude >= value)
            {
                return step * magnitude;
            }
        }

        return 10 * magnitude;
    }

    private sealed class Panel(int x, int y, int width, int height, double seconds, double yMax, string title)
    {
        public void Frame(PngCanvas canvas)
        {
            canvas.Text(x, y - 14, title, Axis);
            for (var i = 0; i <= 5; i++)
            {
                var value = yMax * i / 5;
                var py = Y(value);
                canvas.Line(x, py, x + width, py, Grid);
                var label = value >= 100 ? value.ToString("0", CultureInfo.InvariantCulture) : value.ToString("0.##", CultureInfo.InvariantCulture);
                canvas.Text(x - 8 - PngCanvas.TextWidth(label), (int)py - 3, label, Axis);
            }

            var step = seconds <= 60 ? 5 : seconds <= 200 ? 10 : 30;
            for (var s = 0; s <= seconds; s += step)
            {
                var px = X(s);
                canvas.Line(px, y + height, px, y + height + 4, Axis);
                var label = s.ToString(CultureInfo.InvariantCulture);
                canvas.Text((int)px - PngCanvas.TextWidth(label) / 2, y + height + 8, label, Axis);
            }

            canvas.Text(x + width - PngCanvas.TextWidth("seconds"), y + height + 20, "seconds", Axis);
            canvas.Line(x, y, x, y + height, Axis);
            canvas.Line(x, y + height, x + width, y + height, Axis);
        }

        public void Shade(PngCanvas canvas, double from, double to, uint color)
        {
            if (!(to > from))
            {
                return;
            }

            var left = (int)X(from);
            canvas.FillRect(left, y, Math.Max(2, (int)X(to) - left), height, color, 0.35);
        }

        public void Marker(PngCanvas canvas, double at, string label)
        {
            var px = X(at);
            canvas.Line(px, y, px, y + height, 0x777777, 1, dash: 4);
            canvas.Text((int)px + 2, y + 2, label, 0x555555);
        }

        public void Series(PngCanvas canvas, (double Second, double Value)[] points, uint color)
        {
            (double X, double Y)? previous = null;
            foreach (var (second, value) in points)
            {
                if (!double.IsFinite(value))
                {
                    previous = null;
                    continue;
                }

                var clipped = value > yMax;
                var point = (X(second), Y(Math.Min(value, yMax)));
                if (previous is { } p)
                {
                    canvas.Line(p.X, p.Y, point.Item1, point.Item2, color, 2);
                }

                if (clipped)
                {
                    // Beyond the scale: an arrow head at the top edge.
                    canvas.Text((int)point.Item1 - 2, y + 1, "^", color);
                }

                previous = point;
            }
        }

        private double X(double second) => x + width * Math.Clamp(second / seconds, 0, 1);

        private double Y(double value) => y + height - height * Math.Clamp(value / yMax, 0, 1);
    }
}
