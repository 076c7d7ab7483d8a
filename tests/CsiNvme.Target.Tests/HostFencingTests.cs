using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>
/// Removing a host from a subsystem is a fence: <see cref="Subsystems.Subsystem.DenyHost"/>'s task completes only once
/// every command the host's controllers accepted has finished, so nothing the host sent can land after it. Writes go to
/// an asynchronous volume held by the test, as a replicated volume holds them until its replicas answer. Both
/// connection models (the suite runs under each).
/// </summary>
public sealed class HostFencingTests
{
    private const int Bs = TargetHarness.BlockSize;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(300);

    private static (TargetHarness Harness, DeferredVolume Volume) Start()
    {
        DeferredVolume? deferred = null;
        var harness = TargetHarness.Start(exportAs: memory => deferred = new DeferredVolume(memory));
        return (harness, deferred!);
    }

    private static void SendWrites(TestHost io, int count, byte fill)
    {
        for (var i = 0; i < count; i++)
        {
            var data = Enumerable.Repeat(fill, Bs).ToArray();
            io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, (ushort)i, 1, TestHost.InCapsule(Bs), (uint)i, 0, 0), data);
        }
    }

    [Test]
    public async Task DenyHost_completes_only_after_the_hosts_writes_in_flight_finished()
    {
        var (harness, volume) = Start();
        await using var _ = harness;
        var other = NvmeHostIdentity.Create();
        harness.Subsystem.AllowHost(other.Nqn);
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        using var otherAdmin = harness.ConnectAdmin(host: other);
        using var otherIo = harness.ConnectIo(otherAdmin, 1, host: other);
        SendWrites(io, 8, 0xA5);
        Assert.That(volume.WaitHeld(8, Bound), Is.True, "eight writes are in flight");

        var fenced = harness.Subsystem.DenyHost(harness.Host.Nqn);

        Assert.That(io.WaitClosed(Bound), Is.True, "the host's queues are closed at once");
        Assert.That(harness.Subsystem.ConnectedHosts, Is.EqualTo(new[] { other.Nqn }), "its controller is gone");
        await Task.Delay(Settle);
        Assert.That(fenced.IsCompleted, Is.False, "eight writes the host sent may still land");
        Assert.That(harness.Subsystem.DrainingHosts, Is.EqualTo(new[] { harness.Host.Nqn }));
        Assert.That(harness.Subsystem.WhenHostDrained(harness.Host.Nqn).IsCompleted, Is.False, "asking again waits for the same writes");

        volume.ReleaseAll();
        Assert.That(await Task.WhenAny(fenced, Task.Delay(Bound)), Is.SameAs(fenced), "done once the volume reported them");
        Assert.That(harness.Subsystem.WhenHostDrained(harness.Host.Nqn).IsCompleted, Is.True);
        Assert.That(harness.Subsystem.DrainingHosts, Is.Empty);

        volume.AutoRelease = true;
        Assert.That(otherIo.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.Success), "the other host writes on");
        using var again = harness.Initialize();
        Assert.That(again.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id).Status.Code, Is.EqualTo(0x84), "a reconnect is refused (Connect Invalid Host)");
    }

    [Test]
    public async Task Writes_on_an_io_queue_the_host_closed_before_the_deny_are_waited_for_too()
    {
        var (harness, volume) = Start();
        await using var _ = harness;
        using var admin = harness.ConnectAdmin();
        var io = harness.ConnectIo(admin, 1);
        SendWrites(io, 4, 0x5A);
        Assert.That(volume.WaitHeld(4, Bound), Is.True);
        io.Dispose();
        Assert.That(harness.WaitForConnectionCount(1, Bound), Is.True, "the I/O queue's connection ended, its writes did not");

        var fenced = harness.Subsystem.DenyHost(harness.Host.Nqn);

        await Task.Delay(Settle);
        Assert.That(fenced.IsCompleted, Is.False, "the closed queue's four writes may still land");
        volume.ReleaseAll();
        Assert.That(await Task.WhenAny(fenced, Task.Delay(Bound)), Is.SameAs(fenced));
    }

    [Test]
    public async Task A_controller_lost_before_the_deny_is_waited_for_and_a_host_without_controllers_is_done_at_once()
    {
        var (harness, volume) = Start();
        await using var _ = harness;
        var admin = harness.ConnectAdmin();
        var io = harness.ConnectIo(admin, 1);
        SendWrites(io, 2, 0x11);
        Assert.That(volume.WaitHeld(2, Bound), Is.True);
        // The host vanishes (its controller ends with the admin queue) while two writes are held.
        admin.Dispose();
        io.Dispose();
        Assert.That(harness.WaitForConnectionCount(0, Bound), Is.True);

        var fenced = harness.Subsystem.DenyHost(harness.Host.Nqn);
        await Task.Delay(Settle);
        Assert.That(fenced.IsCompleted, Is.False, "the lost controller's writes may still land");
        volume.ReleaseAll();
        Assert.That(await Task.WhenAny(fenced, Task.Delay(Bound)), Is.SameAs(fenced));

        Assert.That(harness.Subsystem.DenyHost("nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001").IsCompleted, Is.True,
            "a host that never connected has nothing to wait for");
    }
}
