using System.Text.Json;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Migration;

/// <summary>The harness' arithmetic on a run whose numbers are known: phases, gap, stall, ratios, files written.</summary>
public sealed class MigrationReportTests
{
    private static MigrationRecord Synthetic()
    {
        var record = new MigrationRecord
        {
            Setup = "synthetic",
            Disks = ["os", "data1"],
            DiskMiB = 32,
            Workload = "test",
            StartedAt = DateTimeOffset.UnixEpoch,
            PrecopyStart = 10,
            SwitchoverStart = 20,
            DestinationStart = 21,
            End = 30,
            VerificationSeconds = 0.5,
            SourceFlush = (20.5, 20.6),
            DestinationGoAt = 21.15,
        };
        // 100 I/Os per second per disk, 1 ms each, 2 ms during pre-copy; the source stops at 20.0, the destination
        // starts at 21.2; disk 1 stalls 3 s in pre-copy. The source flushes from 20.5 to 20.6, the
        // destination's go is at 21.15.
        for (var disk = 0; disk < 2; disk++)
        {
            for (var i = 0; i < 2000; i++)
            {
                var at = i / 100.0;
                if (disk == 1 && at is >= 14 and < 17)
                {
                    continue;
                }

                record.Completions.Add(new IoCompletion(at, at >= 10 ? 2 : 1, i % 2 == 0, disk, MigrationSide.Source));
            }

            for (var i = 0; i < 880; i++)
            {
                record.Completions.Add(new IoCompletion(21.2 + i / 100.0, 1, i % 2 == 0, disk, MigrationSide.Destination));
            }

            record.Handover[record.Disks[disk]] = ("abc", disk == 0 ? "abc" : "abd");
        }

        record.Fio.Add(new FioOutcome("os", MigrationSide.Source, 1000, 1000, 3, 1, "84"));
        record.Mark(0, "* source workload started");
        record.Mark(10, "* pre-copy");
        return record;
    }

    [Test]
    public void Phases_gap_stall_and_counts_come_out_as_recorded()
    {
        var report = new MigrationReport(Synthetic());
        var os = report.Disks[0];
        var data1 = report.Disks[1];
        Assert.Multiple(() =>
        {
            Assert.That(os.Before.Iops, Is.EqualTo(100).Within(1), "steady state after the warm-up");
            Assert.That(os.Precopy.Iops, Is.EqualTo(100).Within(1));
            Assert.That(os.PrecopyP99Ratio, Is.EqualTo(2.0).Within(1e-9));
            Assert.That(os.After.Iops, Is.EqualTo(100).Within(2));
            Assert.That(os.SwitchoverGapMs, Is.EqualTo(1210).Within(1), "last source completion 19.99, first destination 21.2");
            Assert.That(report.SwitchoverGapMs, Is.EqualTo(1210).Within(1));
            Assert.That(report.SourceFlushMs, Is.EqualTo(100).Within(1), "the flush from 20.5 to 20.6");
            Assert.That(report.DestinationFirstIoMs, Is.EqualTo(50).Within(1), "go at 21.15, first destination completion 21.2");
            Assert.That(report.StorageSwitchoverMs, Is.EqualTo(150).Within(1));
            Assert.That(report.DestinationStartupMs, Is.EqualTo(49).Within(1), "its first I/O issued 1 ms before it completed");
            Assert.That(data1.LongestStallMs, Is.EqualTo(3010).Within(1));
            Assert.That(os.AtRest.IopsRatioMin, Is.NaN, "8 s of steady state hold no window as long as the 10 s pre-copy");
            Assert.That(data1.Precopy.Iops, Is.EqualTo(70).Within(1), "the stall costs pre-copy IOPS");
            Assert.That(os.IoErrors, Is.EqualTo(2));
            Assert.That(os.VerifyFailures, Is.EqualTo(1));
            Assert.That(os.HandoverMatches, Is.True);
            Assert.That(data1.HandoverMatches, Is.False);
            Assert.That(report.VerifyFailures, Is.EqualTo(2), "one fio verify failure and one handover mismatch");
        });
    }

    [Test]
    public void The_rest_range_is_how_far_pre_copy_long_windows_of_the_steady_state_stray()
    {
        var record = new MigrationRecord
        {
            Setup = "uneven",
            Disks = ["os"],
            DiskMiB = 32,
            Workload = "test",
            StartedAt = DateTimeOffset.UnixEpoch,
            PrecopyStart = 40,
            SwitchoverStart = 50,
            DestinationStart = 51,
            End = 60,
        };
        // 100 I/Os per second until 20 s, then 50; latency 1 ms, 3 ms for every tenth I/O after 20 s.
        for (var i = 0; i < 2000; i++)
        {
            record.Completions.Add(new IoCompletion(i / 100.0, 1, true, 0, MigrationSide.Source));
        }

        for (var i = 0; i < 1500; i++)
        {
            record.Completions.Add(new IoCompletion(20 + i / 50.0, i % 10 == 0 ? 3 : 1, true, 0, MigrationSide.Source));
        }

        var rest = new MigrationReport(record).Disks[0].AtRest;
        Assert.Multiple(() =>
        {
            Assert.That(rest.WindowSeconds, Is.EqualTo(10).Within(1e-9), "windows as long as the pre-copy");
            // Steady state 2-40 s: 1800 + 1000 I/Os over 38 s.
            Assert.That(rest.IopsRatioMin, Is.EqualTo(50 / (2800 / 38.0)).Within(0.01), "the slowest window, 30-40 s");
            Assert.That(rest.IopsRatioMax, Is.EqualTo(100 / (2800 / 38.0)).Within(0.01), "the fastest, 2-12 s");
            Assert.That(rest.P99RatioMin, Is.EqualTo(1.0 / 3).Within(1e-9), "a window without the slow I/Os against the whole's 3 ms p99");
            Assert.That(rest.P99RatioMax, Is.EqualTo(1).Within(1e-9));
        });
    }

    [Test]
    public void Writes_the_series_the_summary_and_a_png_chart()
    {
        using var temp = new TempDirectory("migration-report");
        new MigrationReport(Synthetic()).Write(temp.Path, "run");
        var csv = File.ReadAllLines(temp.Combine("run.csv"));
        using var summary = JsonDocument.Parse(File.ReadAllText(temp.Combine("run.json")));
        var png = File.ReadAllBytes(temp.Combine("run.png"));
        Assert.Multiple(() =>
        {
            Assert.That(csv[0], Is.EqualTo("second,disk,reads,writes,iops,p50_ms,p99_ms,source_ios,destination_ios"));
            Assert.That(csv, Has.Length.EqualTo(1 + 31 * 2), "a row per second and disk, empty seconds included");
            Assert.That(csv[1], Is.EqualTo("0,os,50,50,100,1,1,100,0"));
            Assert.That(summary.RootElement.GetProperty("switchover").GetProperty("gapMs").GetDouble(), Is.EqualTo(1210).Within(1));
            Assert.That(summary.RootElement.GetProperty("switchover").GetProperty("storageSwitchoverMs").GetDouble(), Is.EqualTo(150).Within(1));
            Assert.That(summary.RootElement.GetProperty("goals").GetProperty("storageSwitchoverUnder1s").GetBoolean(), Is.True);
            Assert.That(summary.RootElement.GetProperty("disks")[0].GetProperty("precopyP99Ratio").GetDouble(), Is.EqualTo(2.0));
            Assert.That(summary.RootElement.GetProperty("goals").GetProperty("noMismatches").GetBoolean(), Is.False);
            Assert.That(png[..8], Is.EqualTo(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }));
        });
        if (Environment.GetEnvironmentVariable("CSINVME_KEEP_CHART") is { Length: > 0 } keep)
        {
            File.Copy(temp.Combine("run.png"), keep, overwrite: true);
        }
    }

    [Test]
    public void A_guest_clock_reading_from_busybox_stat_is_milliseconds_since_the_epoch()
    {
        Assert.Multiple(() =>
        {
            Assert.That(FioWorkload.ParseStatTime("1970-01-01 00:00:01.250000000 +0000"), Is.EqualTo(1250).Within(1e-6));
            Assert.That(FioWorkload.ParseStatTime("2026-12-07 05:49:48.917418725 +0000"),
                Is.EqualTo(new DateTimeOffset(2026, 12, 7, 5, 49, 48, TimeSpan.Zero).ToUnixTimeMilliseconds() + 917.418725).Within(1e-3));
            Assert.That(FioWorkload.ParseStatTime("1970-01-01 01:00:00.000000000 +0100"), Is.Zero);
        });
    }
}
