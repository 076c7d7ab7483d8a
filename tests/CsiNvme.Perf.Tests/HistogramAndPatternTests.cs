using CsCheck;

namespace CsiNvme.Perf.Tests;

public sealed class HistogramAndPatternTests
{
    [Test]
    public void PercentilesAreWithinTheBucketPrecision()
    {
        Gen.Long[1, 50_000_000_000].Array[1, 2000].Sample(values =>
        {
            var histogram = new LatencyHistogram();
            foreach (var value in values)
            {
                histogram.Record(value);
            }

            Array.Sort(values);
            foreach (var p in new[] { 0.0, 50, 90, 99, 99.9, 100 })
            {
                var rank = (int)Math.Clamp(Math.Ceiling(p / 100 * values.Length), 1, values.Length);
                var exact = values[rank - 1];
                var estimate = histogram.Percentile(p);
                Assert.That(Math.Abs(estimate - exact), Is.LessThanOrEqualTo(Math.Max(1, exact / 60)), $"p{p} of {values.Length} values");
            }

            Assert.That(histogram.MinNanoseconds, Is.EqualTo(values[0]));
            Assert.That(histogram.MaxNanoseconds, Is.EqualTo(values[^1]));
            Assert.That(histogram.Count, Is.EqualTo(values.Length));
        });
    }

    [Test]
    public void BucketIndexIsMonotonicAndBoundsRoundTrip()
    {
        Gen.Long[0, 1L << 40].Sample(value =>
        {
            var index = LatencyHistogram.IndexOf(value);
            Assert.That(LatencyHistogram.LowerBound(index), Is.LessThanOrEqualTo(value));
            Assert.That(LatencyHistogram.LowerBound(index + 1), Is.GreaterThan(value));
            Assert.That(LatencyHistogram.IndexOf(value + 1), Is.GreaterThanOrEqualTo(index));
        });
    }

    [Test]
    public void VerifyPatternDetectsCorruptionMisplacementAndUnwrittenBlocks()
    {
        var buffer = new byte[8192];
        VerifyPattern.Fill(buffer, 4096 * 10, 512, 42);
        Assert.That(VerifyPattern.Check(buffer, 4096 * 10, 512, out _, out var good, out _), Is.EqualTo(VerifyPattern.Outcome.Good));
        Assert.That(good, Is.EqualTo(16));

        Assert.That(VerifyPattern.Check(buffer, 4096 * 11, 512, out var misplaced, out _, out _), Is.EqualTo(VerifyPattern.Outcome.Corrupt));
        Assert.That(misplaced, Does.Contain("holds the block written for"));

        buffer[700] ^= 1;
        Assert.That(VerifyPattern.Check(buffer, 4096 * 10, 512, out var corrupt, out good, out _), Is.EqualTo(VerifyPattern.Outcome.Corrupt));
        Assert.That(corrupt, Does.Contain("checksum"));
        Assert.That(good, Is.EqualTo(15));

        Assert.That(VerifyPattern.Check(new byte[4096], 0, 512, out _, out _, out var unwritten), Is.EqualTo(VerifyPattern.Outcome.Unwritten));
        Assert.That(unwritten, Is.EqualTo(8));
    }
}
