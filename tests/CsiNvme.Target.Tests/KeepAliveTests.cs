using System.Diagnostics;

namespace CsiNvme.Target.Tests;

/// <summary>Keep Alive Timeout (NVMe base 2.0, 3.9): a silent host loses its controller, a chatty one keeps it.</summary>
public sealed class KeepAliveTests
{
    [Test]
    public async Task SilentHostIsDisconnectedAfterKato()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin(keepAliveMs: 1000);
        using var io = harness.ConnectIo(admin, 1);
        var silence = Stopwatch.StartNew();

        Assert.That(admin.WaitClosed(TimeSpan.FromSeconds(5)), Is.True, "admin queue closed after KATO");
        Assert.That(silence.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(900)), "not before KATO");
        Assert.That(io.WaitClosed(TimeSpan.FromSeconds(2)), Is.True, "its I/O queues go with it");
        Assert.That(harness.Subsystem.ControllerCount, Is.Zero);
    }

    [Test]
    public async Task HostSendingKeepAliveStaysConnected()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin(keepAliveMs: 1000);
        using var io = harness.ConnectIo(admin, 1);
        var elapsed = Stopwatch.StartNew();
        while (elapsed.Elapsed < TimeSpan.FromSeconds(3))
        {
            Thread.Sleep(300);
            Assert.That(admin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success));
        }

        Assert.That(harness.Subsystem.ControllerCount, Is.EqualTo(1));
        Assert.That(io.Read(1, 0, 512, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.Success), "the I/O queue still works");
    }

    [Test]
    public async Task ZeroKatoNeverExpires()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin(keepAliveMs: 0);
        Assert.That(admin.WaitClosed(TimeSpan.FromMilliseconds(1500)), Is.False);
        Assert.That(admin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success));
    }
}
