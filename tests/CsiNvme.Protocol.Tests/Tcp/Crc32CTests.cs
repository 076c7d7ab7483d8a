using System.Text;
using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Protocol.Tests.Tcp;

/// <summary>CRC32C digests: the check value of the Castagnoli polynomial and the iSCSI vectors of RFC 3720, B.4.</summary>
public sealed class Crc32CTests
{
    [Test]
    public void CheckValueOfTheStandardString() =>
        Assert.That(Crc32C.Compute(Encoding.ASCII.GetBytes("123456789")), Is.EqualTo(0xE3069283u));

    [Test]
    public void Rfc3720ThirtyTwoZeroBytes() =>
        Assert.That(Crc32C.Compute(new byte[32]), Is.EqualTo(0x8A9136AAu));

    [Test]
    public void Rfc3720ThirtyTwoBytesOfOnes() =>
        Assert.That(Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()), Is.EqualTo(0x62A8AB43u));

    [Test]
    public void Rfc3720Ascending() =>
        Assert.That(Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()), Is.EqualTo(0x46DD794Eu));

    [Test]
    public void Rfc3720Descending() =>
        Assert.That(Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)(31 - i)).ToArray()), Is.EqualTo(0x113FDB5Cu));

    [Test]
    public void EmptyInputDigestsToZero() =>
        Assert.That(Crc32C.Compute([]), Is.EqualTo(0u));

    [Test]
    public void DigestIsStoredLittleEndian()
    {
        // RFC 3720 shows the zero-bytes digest on the wire as aa 36 91 8a.
        var digest = new byte[4];
        Crc32C.ComputeInto(new byte[32], digest);
        Assert.That(digest, Is.EqualTo(new byte[] { 0xAA, 0x36, 0x91, 0x8A }));
    }

    [Test]
    public void VerifyAcceptsTheRightDigestAndRejectsAnyFlippedBit()
    {
        var data = Enumerable.Range(0, 72).Select(i => (byte)(i * 7)).ToArray();
        var digest = new byte[4];
        Crc32C.ComputeInto(data, digest);
        Assert.That(Crc32C.Verify(data, digest), Is.True);

        for (var bit = 0; bit < 32; bit++)
        {
            var bad = (byte[])digest.Clone();
            bad[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.That(Crc32C.Verify(data, bad), Is.False, $"digest bit {bit}");
        }

        data[40] ^= 0x10;
        Assert.That(Crc32C.Verify(data, digest), Is.False, "data changed");
    }

    [Test]
    public void HeaderDigestOfAnICReqCoversTheHeaderOnly()
    {
        // A digest covers exactly the bytes given: computing over a slice equals computing over a copy.
        var pdu = new byte[128 + 4];
        new ICReq(0, 0, true, true, 0).Write(pdu);
        Crc32C.ComputeInto(pdu.AsSpan(0, 128), pdu.AsSpan(128));
        Assert.That(Crc32C.Verify(pdu.AsSpan(0, 128).ToArray(), pdu.AsSpan(128, 4)), Is.True);
    }
}
