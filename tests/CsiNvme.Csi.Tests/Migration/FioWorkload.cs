using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using CsiNvme.Csi.Tests.EndToEnd;

namespace CsiNvme.Csi.Tests.Migration;

/// <summary>
/// The VM's workload: one fio process per node with a job per disk, 4 KiB random writes each followed by a read that
/// verifies it (crc32c in every block; <c>verify_backlog</c>, so half the I/Os are reads checking what this node wrote),
/// queue depth 4 per disk, O_DIRECT through libaio, every I/O logged with its completion time (Unix epoch) and latency.
/// It runs until stopped: SIGINT ends it the way a paused VM stops issuing I/O, its in-flight I/Os completed, then
/// each disk is flushed (the QEMU flush at the switchover), timed on its own.
/// </summary>
internal sealed class FioWorkload(IReadOnlyList<string> disks, string devicesDirectory, int diskMiB)
{
    public const int IoDepth = 4;
    private const string WorkDirectory = "/tmp/migration";

    public string Description => $"fio 4k randwrite+verify reads (crc32c, verify_backlog 8), QD{IoDepth} per disk, {disks.Count} disks of {diskMiB} MiB, O_DIRECT libaio";

    public string DevicePath(string disk) => $"{devicesDirectory}/{disk}";

    /// <summary>Fills each disk sequentially once, so the workload meets allocated space from its first second.</summary>
    public string PrefillCommand() =>
        $"fio --output=/dev/null --ioengine=libaio --direct=1 --bs=1M --iodepth=4 --rw=write --size={diskMiB}M " +
        string.Join(" ", disks.Select(d => $"--name={d} --filename={DevicePath(d)}"));

    /// <summary>
    /// Starts fio in the background and returns at once; the pid goes to a file for <see cref="StopCommand"/>. With
    /// <paramref name="waitForGo"/>, each job opens its disk and then waits (fio's <c>exec_prerun</c>, blocked on a FIFO
    /// of its own) until <see cref="GoCommand"/>: the destination's QEMU waiting, paused, for the switchover, so the
    /// time fio takes to start is not counted as the storage's.
    /// </summary>
    public string StartCommand(MigrationSide side, bool waitForGo = false)
    {
        var name = Name(side);
        var jobs = string.Join(" ", disks.Select((d, i) =>
            $"--name={d} --filename={DevicePath(d)}" + (waitForGo ? $" --exec_prerun='cat {WorkDirectory}/{name}_go.{i + 1}'" : "")));
        var fifos = waitForGo ? "mkfifo " + string.Join(" ", disks.Select((_, i) => $"{name}_go.{i + 1}")) : "true";
        return $"""
            mkdir -p {WorkDirectory} && cd {WorkDirectory} && rm -f {name}_*
            {fifos}
            fio --output-format=json --output={name}.json --ioengine=libaio --direct=1 --bs=4k --iodepth={IoDepth} --size={diskMiB}M \
                --rw=randwrite --randrepeat=0 --verify=crc32c --verify_backlog=8 --verify_fatal=0 --continue_on_error=all \
                --time_based --runtime=3600 --write_lat_log={name} --log_unix_epoch=1 --log_avg_msec=0 \
                {jobs} > {name}.stdout 2> {name}.stderr &
            echo $! > {name}.pid
            echo STARTED=$(cat {name}.pid)
            """;
    }

    /// <summary>
    /// Lets a workload started with <c>waitForGo</c> issue its I/O: prints <c>GO_AT=</c> (the guest's clock just before)
    /// and opens each job's FIFO; a writer whose job is not yet waiting stays in the background until it is.
    /// </summary>
    public string GoCommand(MigrationSide side)
    {
        var name = Name(side);
        var numbers = string.Join(" ", Enumerable.Range(1, disks.Count));
        return $"""
            cd {WorkDirectory}
            touch {name}_go_at && echo "GO_AT=$(stat -c %y {name}_go_at)"
            for n in {numbers}; do echo go 2>/dev/null > {name}_go.$n & done
            """;
    }

    /// <summary>
    /// SIGINT, then waits (bounded) for fio to complete its in-flight I/Os and exit, then flushes every disk
    /// (<c>fdatasync</c> of each block device: an NVMe Flush, what QEMU issues when it pauses the VM); prints
    /// <c>FLUSH_START=</c> and <c>FLUSH_END=</c> on the guest's clock.
    /// </summary>
    public string StopCommand(MigrationSide side)
    {
        var name = Name(side);
        return $"""
            cd {WorkDirectory}
            pid=$(cat {name}.pid)
            kill -INT $pid
            i=0
            while kill -0 $pid 2>/dev/null && [ $i -lt 3000 ]; do sleep 0.01; i=$((i + 1)); done
            kill -0 $pid 2>/dev/null && echo STOPPED=no || echo STOPPED=yes
            touch {name}_flush_start && sync -d {string.Join(" ", disks.Select(DevicePath))} && touch {name}_flush_end
            echo "FLUSH_START=$(stat -c %y {name}_flush_start)"
            echo "FLUSH_END=$(stat -c %y {name}_flush_end)"
            """;
    }

    /// <summary>A guest's <c>stat -c %y</c> time (from <see cref="GoCommand"/> or <see cref="StopCommand"/>) in seconds of the run, on the host's clock.</summary>
    public static double RunSeconds(string statTime, MigrationSide side, MigrationRecord record) => RunSeconds(ParseStatTime(statTime), side, record);

    /// <summary>A time on a guest's clock (ms since the Unix epoch) in seconds of the run, on the host's clock.</summary>
    private static double RunSeconds(double guestMs, MigrationSide side, MigrationRecord record) =>
        (guestMs - record.Clocks[side].OffsetMs - record.StartedAt.ToUnixTimeMilliseconds()) / 1000;

    /// <summary>The per-I/O latency logs (gzip, base64) and fio's JSON and error output.</summary>
    public string CollectCommand(MigrationSide side)
    {
        var name = Name(side);
        var numbers = string.Join(" ", Enumerable.Range(1, disks.Count));
        return $$"""
            cd {{WorkDirectory}}
            for i in {{numbers}}; do
                echo "LOG $i"
                gzip -c {{name}}_lat.$i.log | base64
                echo "END"
            done
            echo "JSON"
            sed -n '/^{/,$p' {{name}}.json
            echo "END"
            echo "STDERR"
            grep -v '^$' {{name}}.stderr | tail -n 200
            echo "END"
            """;
    }

    /// <summary>Parses <see cref="CollectCommand"/>'s output into the record: completions on the host's clock and fio's counts.</summary>
    public void Collect(string output, MigrationSide side, MigrationRecord record)
    {
        var sections = Sections(output);
        for (var i = 0; i < disks.Count; i++)
        {
            var compressed = Convert.FromBase64String(sections[$"LOG {i + 1}"]);
            using var reader = new StreamReader(new GZipStream(new MemoryStream(compressed), CompressionMode.Decompress));
            var completions = new List<IoCompletion>();
            while (reader.ReadLine() is { } line)
            {
                // time (ms, Unix epoch on the guest's clock), latency (ns), direction (0 read, 1 write), block size, ...
                var fields = line.Split(',');
                if (fields.Length < 3 || !double.TryParse(fields[0], CultureInfo.InvariantCulture, out var guestMs))
                {
                    continue;
                }

                var latencyNs = double.Parse(fields[1], CultureInfo.InvariantCulture);
                var direction = int.Parse(fields[2].Trim(), CultureInfo.InvariantCulture);
                completions.Add(new IoCompletion(RunSeconds(guestMs, side, record), latencyNs / 1e6, direction == 1, i, side));
            }

            lock (record.Completions)
            {
                record.Completions.AddRange(completions);
            }
        }

        var stderr = sections.GetValueOrDefault("STDERR", "");
        using var json = JsonDocument.Parse(sections["JSON"]);
        foreach (var job in json.RootElement.GetProperty("jobs").EnumerateArray())
        {
            var disk = job.GetProperty("jobname").GetString()!;
            var path = DevicePath(disk);
            var verify = stderr.Split('\n').Count(l => l.Contains(path, StringComparison.Ordinal) && l.Contains("verify", StringComparison.OrdinalIgnoreCase));
            var firstError = job.TryGetProperty("first_error", out var fe) ? fe.ToString() : "";
            record.Fio.Add(new FioOutcome(
                disk, side,
                job.GetProperty("read").GetProperty("total_ios").GetInt64(),
                job.GetProperty("write").GetProperty("total_ios").GetInt64(),
                job.TryGetProperty("total_err", out var te) ? te.GetInt64() : job.GetProperty("error").GetInt64() != 0 ? 1 : 0,
                verify,
                firstError == "0" ? "" : firstError));
        }
    }

    /// <summary>A whole-disk checksum of every disk, read with O_DIRECT: what this node sees on the volume.</summary>
    public string ChecksumCommand() => string.Join("\n", disks.Select(d =>
        $"echo \"SUM {d} $(dd if={DevicePath(d)} bs=1M count={diskMiB} iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)\""));

    public static Dictionary<string, string> ParseChecksums(string output) => output.Split('\n')
        .Where(l => l.StartsWith("SUM ", StringComparison.Ordinal))
        .Select(l => l.Split(' '))
        .ToDictionary(f => f[1], f => f.Length > 2 ? f[2].Trim() : "", StringComparer.Ordinal);

    /// <summary>
    /// The guest's clock minus the host's: the guest reads its clock inside a command whose round trip the host times;
    /// the shortest of a few round trips bounds the error.
    /// </summary>
    public static async Task<(double OffsetMs, double UncertaintyMs)> ClockOffsetAsync(GuestNode guest, int samples = 5)
    {
        var best = (Offset: 0.0, Window: double.MaxValue);
        for (var i = 0; i < samples; i++)
        {
            var before = DateTimeOffset.UtcNow;
            var watch = Stopwatch.StartNew();
            // Busybox's date has no %N; a file's modification time, which busybox's stat prints to the nanosecond, does.
            var output = await guest.ShellAsync("touch /tmp/migration-clock && stat -c %y /tmp/migration-clock");
            var window = watch.Elapsed.TotalMilliseconds;
            var guestMs = ParseStatTime(output.Trim().Split('\n')[^1]);
            var hostMidMs = before.ToUnixTimeMilliseconds() + window / 2;
            if (window < best.Window)
            {
                best = (guestMs - hostMidMs, window);
            }
        }

        return (best.Offset, best.Window / 2);
    }

    /// <summary>"2026-12-07 05:49:48.917418725 +0000" (the guest runs on UTC) as milliseconds since the Unix epoch.</summary>
    public static double ParseStatTime(string text)
    {
        var parts = text.Trim().Split(' ');
        var dot = parts[1].IndexOf('.');
        var local = DateTime.ParseExact($"{parts[0]} {parts[1][..dot]}", "yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
        // The zone as stat prints it: +HHMM.
        var zone = int.Parse(parts[2], CultureInfo.InvariantCulture);
        var offset = new TimeSpan(zone / 100, zone % 100, 0);
        var fraction = double.Parse("0" + parts[1][dot..], CultureInfo.InvariantCulture);
        return new DateTimeOffset(local, offset).ToUnixTimeMilliseconds() + fraction * 1000;
    }

    private static string Name(MigrationSide side) => side == MigrationSide.Source ? "source" : "destination";

    private static Dictionary<string, string> Sections(string output)
    {
        var sections = new Dictionary<string, string>(StringComparer.Ordinal);
        string? current = null;
        var body = new System.Text.StringBuilder();
        foreach (var line in output.Split('\n'))
        {
            var trimmed = line.TrimEnd('\r');
            if (current is null && (trimmed.StartsWith("LOG ", StringComparison.Ordinal) || trimmed is "JSON" or "STDERR"))
            {
                current = trimmed;
                body.Clear();
            }
            else if (current is not null && trimmed == "END")
            {
                sections[current] = body.ToString();
                current = null;
            }
            else if (current is not null)
            {
                body.AppendLine(trimmed);
            }
        }

        return sections;
    }
}
