namespace CsiNvme.Api.Tests;

public sealed class VolumeNamingTests
{
    [Test]
    public void SubsystemNqnIsDerivedFromTheVolumeId()
    {
        var id = Guid.Parse("0f8e2f4c-1a2b-4c3d-9e8f-001122334455");
        var nqn = VolumeNaming.SubsystemNqn(id);
        Assert.That(nqn, Is.EqualTo("nqn.2026-11.io.csinvme:volume:0f8e2f4c-1a2b-4c3d-9e8f-001122334455"));
        Assert.That(VolumeNaming.IsValidNqn(nqn, out var error), Is.True, error);
    }

    [TestCase("a")]
    [TestCase("0")]
    [TestCase("data")]
    [TestCase("my-volume_1.img")]
    [TestCase("pvc-3f0c8f6e-8c2a-4b7e-9d7e-2f7a3c1b5d9e")]
    public void AcceptsValidVolumeNames(string name)
    {
        Assert.That(VolumeNaming.IsValidVolumeName(name, out var error), Is.True, error);
        Assert.That(error, Is.Null);
    }

    [Test]
    public void AcceptsAVolumeNameOfExactlyTheMaximumLength()
    {
        Assert.That(VolumeNaming.IsValidVolumeName(new string('a', 128), out _), Is.True);
        Assert.That(VolumeNaming.IsValidVolumeName(new string('a', 129), out var error), Is.False);
        Assert.That(error, Does.Contain("maximum is 128"));
    }

    [TestCase("", "empty")]
    [TestCase(null, "empty")]
    [TestCase("-vol", "must start")]
    [TestCase(".vol", "must start")]
    [TestCase("_vol", "must start")]
    [TestCase("Vol", "must start")]
    [TestCase("vol A", "contains ' '")]
    [TestCase("volA", "contains 'A'")]
    [TestCase("vol/../x", "contains '/'")]
    [TestCase("vol:1", "contains ':'")]
    [TestCase("volé", "contains 'é'")]
    public void RejectsInvalidVolumeNames(string? name, string expectedMessagePart)
    {
        Assert.That(VolumeNaming.IsValidVolumeName(name, out var error), Is.False);
        Assert.That(error, Does.Contain(expectedMessagePart));
    }

    [TestCase("nqn.2014-08.org.nvmexpress.discovery")]
    [TestCase("nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")]
    [TestCase("nqn.2014-08.org.nvmexpress:uuid:F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6")]
    [TestCase("nqn.2026-11.io.csinvme:volume:0f8e2f4c-1a2b-4c3d-9e8f-001122334455")]
    [TestCase("nqn.2016-06.io.spdk:cnode1")]
    [TestCase("nqn.2024-01.com.example:host 1 with spaces")]
    [TestCase("nqn.2024-12.com.example")]
    [TestCase("nqn.2024-12.com.ex-ample:ünïcødé")]
    public void AcceptsValidNqns(string nqn)
    {
        Assert.That(VolumeNaming.IsValidNqn(nqn, out var error), Is.True, error);
        Assert.That(error, Is.Null);
    }

    [TestCase("", "empty")]
    [TestCase(null, "empty")]
    [TestCase("iqn.2014-08.org.example:x", "does not start with 'nqn.'")]
    [TestCase("NQN.2014-08.org.example:x", "does not start with 'nqn.'")]
    [TestCase("nqn.", "no yyyy-mm date")]
    [TestCase("nqn.14-08.org.example", "no yyyy-mm date")]
    [TestCase("nqn.2014-8.org.example", "no yyyy-mm date")]
    [TestCase("nqn.2014-08org.example", "no yyyy-mm date")]
    [TestCase("nqn.2014-13.org.example", "month 13")]
    [TestCase("nqn.2014-00.org.example", "month 00")]
    [TestCase("nqn.2014-08.", "reverse domain")]
    [TestCase("nqn.2014-08.:x", "reverse domain")]
    [TestCase("nqn.2014-08.org..example:x", "reverse domain")]
    [TestCase("nqn.2014-08.org.-example:x", "reverse domain")]
    [TestCase("nqn.2014-08.org.exa_mple:x", "reverse domain")]
    [TestCase("nqn.2014-08.org.example:", "no name after it")]
    [TestCase("nqn.2014-08.org.nvmexpress:uuid:not-a-uuid", "not a UUID")]
    [TestCase("nqn.2014-08.org.nvmexpress:uuid:f81d4fae7dec11d0a76500a0c91e6bf6", "not a UUID")]
    [TestCase("nqn.2014-08.org.example:a\0b", "control character")]
    [TestCase("nqn.2014-08.org.example:a\nb", "control character")]
    public void RejectsInvalidNqns(string? nqn, string expectedMessagePart)
    {
        Assert.That(VolumeNaming.IsValidNqn(nqn, out var error), Is.False);
        Assert.That(error, Does.Contain(expectedMessagePart));
    }

    [Test]
    public void RejectsAnNqnWithAnUnpairedSurrogate()
    {
        // Built at run time: an attribute argument cannot carry a lone surrogate through metadata.
        var nqn = "nqn.2014-08.org.example:" + (char)0xD800 + "x";
        Assert.That(VolumeNaming.IsValidNqn(nqn, out var error), Is.False);
        Assert.That(error, Does.Contain("unpaired surrogate"));
        Assert.That(VolumeNaming.IsValidNqn("nqn.2014-08.org.example:\U0001F600", out error), Is.True, error);
    }

    [Test]
    public void NqnLengthIsCountedInUtf8Bytes()
    {
        const string prefix = "nqn.2024-01.com.example:";
        var ascii = prefix + new string('a', 223 - prefix.Length);
        Assert.That(VolumeNaming.IsValidNqn(ascii, out var error), Is.True, error);
        Assert.That(VolumeNaming.IsValidNqn(ascii + "a", out error), Is.False);
        Assert.That(error, Does.Contain("224 bytes"));

        // 'é' is two bytes of UTF-8: fewer than 223 characters can already be too long.
        var accented = prefix + new string('é', 100);
        Assert.That(accented.Length, Is.LessThan(223));
        Assert.That(VolumeNaming.IsValidNqn(accented, out error), Is.False);
        Assert.That(error, Does.Contain("224 bytes"));
    }
}
