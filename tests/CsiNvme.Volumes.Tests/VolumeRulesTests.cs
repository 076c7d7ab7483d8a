using CsCheck;
using NUnit.Framework;

namespace CsiNvme.Volumes.Tests;

/// <summary>The rules every volume follows whoever stores it (single server or cluster): sizes, block sizes, hosts.</summary>
[TestFixture]
public sealed class VolumeRulesTests
{
    [Test]
    public void A_size_rounds_up_to_whole_4_KiB_blocks_and_never_shrinks() =>
        Gen.ULong[1, (ulong)VolumeRules.MaxVolumeSizeBytes].Sample(requested =>
        {
            var rounded = VolumeRules.RoundSize(requested);
            return rounded % VolumeRules.SizeGranularity == 0
                && (ulong)rounded >= requested
                && (ulong)rounded - requested < VolumeRules.SizeGranularity
                && rounded <= VolumeRules.MaxVolumeSizeBytes;
        });

    [TestCase(0UL, "greater than zero")]
    [TestCase((ulong)(64L << 40) + 1, "larger than the maximum")]
    [TestCase(ulong.MaxValue, "larger than the maximum")]
    public void Sizes_out_of_range_are_invalid_arguments_that_say_why(ulong requested, string reason)
    {
        var refused = Assert.Throws<VolumeException>(() => VolumeRules.RoundSize(requested))!;
        Assert.That(refused.Error, Is.EqualTo(VolumeError.InvalidArgument));
        Assert.That(refused.Message, Does.Contain(reason));
    }

    [TestCase(0u, 512)]
    [TestCase(512u, 512)]
    [TestCase(4096u, 4096)]
    public void Block_sizes_are_512_by_default_or_4096(uint requested, int expected) =>
        Assert.That(VolumeRules.ValidateBlockSize(requested), Is.EqualTo(expected));

    [TestCase(1u)]
    [TestCase(1024u)]
    [TestCase(8192u)]
    public void Other_block_sizes_are_refused(uint requested) =>
        Assert.That(Assert.Throws<VolumeException>(() => VolumeRules.ValidateBlockSize(requested))!.Error, Is.EqualTo(VolumeError.InvalidArgument));

    [Test]
    public void Allowed_hosts_are_validated_sorted_and_without_duplicates()
    {
        var hosts = VolumeRules.ValidateHosts(["nqn.2024-01.com.example:b", "nqn.2024-01.com.example:a", "nqn.2024-01.com.example:b"]);
        Assert.That(hosts, Is.EqualTo(new[] { "nqn.2024-01.com.example:a", "nqn.2024-01.com.example:b" }));
        var refused = Assert.Throws<VolumeException>(() => VolumeRules.ValidateHosts(["nqn.2024-01.com.example:a", "not an nqn"]))!;
        Assert.That(refused.Error, Is.EqualTo(VolumeError.InvalidArgument));
        Assert.That(refused.Message, Does.StartWith("host NQN: "));
    }

    [Test]
    public void The_serial_number_is_20_hex_digits_of_the_volume_id() =>
        Gen.Guid.Sample(id =>
        {
            var serial = VolumeRules.SerialNumberOf(id);
            return serial.Length == 20 && serial.All(Uri.IsHexDigit) && id.ToString("N").StartsWith(serial, StringComparison.Ordinal);
        });
}
