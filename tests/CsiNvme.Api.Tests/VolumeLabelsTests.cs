using CsiNvme.Api;

namespace CsiNvme.Api.Tests;

public sealed class VolumeLabelsTests
{
    [TestCase("a")]
    [TestCase("csi.nvme.csinvme.io/accessModes")]
    [TestCase("Under_score-Dash.0")]
    public void GoodKeys(string key) => Assert.That(VolumeLabels.IsValidKey(key, out _), Is.True);

    [TestCase("")]
    [TestCase("a b")]
    [TestCase("k=v")]
    [TestCase("ä")]
    [TestCase("k:v")]
    public void BadKeys(string key) => Assert.That(VolumeLabels.IsValidKey(key, out _), Is.False);

    [Test]
    public void KeyAndValueLengthAndCountLimits()
    {
        Assert.That(VolumeLabels.IsValidKey(new string('k', 63), out _), Is.True);
        Assert.That(VolumeLabels.IsValidKey(new string('k', 64), out string? error), Is.False);
        Assert.That(error, Does.Contain("63"));
        Assert.That(VolumeLabels.IsValid(new Dictionary<string, string> { ["k"] = new string('v', 256) }, out _), Is.True);
        Assert.That(VolumeLabels.IsValid(new Dictionary<string, string> { ["k"] = new string('v', 257) }, out _), Is.False);
        Assert.That(VolumeLabels.IsValid(Enumerable.Range(0, 32).ToDictionary(i => $"k{i}", _ => ""), out _), Is.True);
        Assert.That(VolumeLabels.IsValid(Enumerable.Range(0, 33).ToDictionary(i => $"k{i}", _ => ""), out error), Is.False);
        Assert.That(error, Does.Contain("32"));
        Assert.That(VolumeLabels.IsValid(null, out _), Is.True);
    }

    [Test]
    public void ParsingKeyEqualsValue()
    {
        Assert.That(VolumeLabels.TryParse("a=b=c", out string key, out string value, out _), Is.True);
        Assert.That((key, value), Is.EqualTo(("a", "b=c")));
        Assert.That(VolumeLabels.TryParse("a=", out key, out value, out _), Is.True);
        Assert.That((key, value), Is.EqualTo(("a", "")));
        Assert.That(VolumeLabels.TryParse("novalue", out _, out _, out _), Is.False);
        Assert.That(VolumeLabels.TryParse("=v", out _, out _, out _), Is.False);
    }
}
