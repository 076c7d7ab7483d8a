using CsCheck;

namespace CsiNvme.Api.Tests;

public sealed class ByteSizeTests
{
    [TestCase("0", 0L)]
    [TestCase("4096", 4096L)]
    [TestCase("  4096  ", 4096L)]
    [TestCase("+7", 7L)]
    [TestCase("512B", 512L)]
    [TestCase("512 b", 512L)]
    [TestCase("1K", 1024L)]
    [TestCase("1Ki", 1024L)]
    [TestCase("1KiB", 1024L)]
    [TestCase("1kib", 1024L)]
    [TestCase("1kB", 1000L)]
    [TestCase("1KB", 1000L)]
    [TestCase("1kb", 1000L)]
    [TestCase("64M", 64L * 1024 * 1024)]
    [TestCase("64Mi", 64L * 1024 * 1024)]
    [TestCase("64MiB", 64L * 1024 * 1024)]
    [TestCase("64MB", 64_000_000L)]
    [TestCase("1G", 1L << 30)]
    [TestCase("1GiB", 1L << 30)]
    [TestCase("1 GiB", 1L << 30)]
    [TestCase("1.0 GiB", 1L << 30)]
    [TestCase("1.5GiB", 3L << 29)]
    [TestCase(".5GiB", 1L << 29)]
    [TestCase("10GB", 10_000_000_000L)]
    [TestCase("2T", 2L << 40)]
    [TestCase("2TiB", 2L << 40)]
    [TestCase("2TB", 2_000_000_000_000L)]
    [TestCase("1.5kB", 1500L)]
    [TestCase("7EiB", 7L << 60)]
    public void ParsesValidSizes(string text, long expected)
    {
        Assert.That(ByteSize.TryParse(text, out var bytes, out var error), Is.True, error);
        Assert.That(bytes, Is.EqualTo(expected));
        Assert.That(error, Is.Null);
    }

    [TestCase("", "empty")]
    [TestCase("   ", "empty")]
    [TestCase(null, "empty")]
    [TestCase("-1", "negative")]
    [TestCase("-1GiB", "negative")]
    [TestCase("GiB", "does not start with a number")]
    [TestCase("abc", "does not start with a number")]
    [TestCase(".", "does not start with a number")]
    [TestCase("10 XB", "unknown unit")]
    [TestCase("10GiBs", "unknown unit")]
    [TestCase("10 G B", "unknown unit")]
    [TestCase("1.2.3", "unknown unit")]
    [TestCase("0x10", "unknown unit")]
    [TestCase("1.5B", "not a whole number")]
    [TestCase("1.0001KiB", "not a whole number")]
    [TestCase("9223372036854775808", "too large")]
    [TestCase("8EiB", "too large")]
    [TestCase("100000000000000TiB", "too large")]
    [TestCase("1111111111111111111111111111111111111111111111111111111111111111111111", "too long")]
    public void RejectsInvalidSizes(string? text, string expectedMessagePart)
    {
        Assert.That(ByteSize.TryParse(text, out var bytes, out var error), Is.False);
        Assert.That(bytes, Is.Zero);
        Assert.That(error, Does.Contain(expectedMessagePart));
    }

    [TestCase(0L, "0 B")]
    [TestCase(512L, "512 B")]
    [TestCase(1023L, "1023 B")]
    [TestCase(1024L, "1.0 KiB")]
    [TestCase(1536L, "1.5 KiB")]
    [TestCase(1L << 30, "1.0 GiB")]
    [TestCase(3L << 29, "1.5 GiB")]
    [TestCase(10_000_000_000L, "9.3 GiB")]
    [TestCase((1L << 20) - 1, "1.0 MiB")]
    [TestCase(5L << 40, "5.0 TiB")]
    [TestCase(long.MaxValue, "8.0 EiB")]
    public void FormatsWithOneDecimalInIecUnits(long bytes, string expected)
    {
        Assert.That(ByteSize.Format(bytes), Is.EqualTo(expected));
    }

    [Test]
    public void PlainIntegersRoundTrip()
    {
        Gen.Long[0, long.MaxValue].Sample(n =>
        {
            Assert.That(ByteSize.TryParse(n.ToString(System.Globalization.CultureInfo.InvariantCulture), out var bytes, out _), Is.True);
            Assert.That(bytes, Is.EqualTo(n));
        });
    }

    [Test]
    public void FormatThenParseIsExactWhenTheTenthIsExact()
    {
        // A value of (whole + tenth/10) units is exactly representable by Format, so parsing its output gives it back.
        var gen = from unitPower in Gen.Int[1, 5]
                  from whole in Gen.Long[1, 1023]
                  from tenth in Gen.Long[0, 9]
                  select (whole * 10 + tenth) * ((Int128)1 << (10 * unitPower)) / 10;
        gen.Where(v => v <= long.MaxValue && IsExactTenth((long)v)).Select(v => (long)v).Sample(value =>
        {
            var text = ByteSize.Format(value);
            Assert.That(ByteSize.TryParse(text, out var parsed, out var error), Is.True, error);
            Assert.That(parsed, Is.EqualTo(value), text);
        });
    }

    [Test]
    public void FormatIsWithinRoundingOfTheValue()
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        Gen.Long[0, long.MaxValue].Sample(value =>
        {
            var text = ByteSize.Format(value);
            var parts = text.Split(' ');
            Assert.That(parts, Has.Length.EqualTo(2), text);
            var number = decimal.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
            var unit = (decimal)Math.Pow(1024, Array.IndexOf(units, parts[1]));
            Assert.That(unit, Is.GreaterThan(0m), text);
            // One decimal is at most half a tenth of a unit away, and the number shown is at least 1.0.
            Assert.That(Math.Abs(number * unit - value), Is.LessThanOrEqualTo(unit / 20), text);
            Assert.That(number, Is.LessThan(1024m), text);
        });
    }

    private static bool IsExactTenth(long value)
    {
        var unit = 1L;
        while (value / unit >= 1024)
        {
            unit *= 1024;
        }

        return unit == 1 || value * 10L % unit == 0;
    }
}
