using System.Net.Sockets;
using CsiNvme.Protocol.Fabrics;

namespace CsiNvme.Target.Tests;

/// <summary>
/// The listener against hosts that open connections and never use them: the per-listener cap refuses what is beyond
/// it, the Connect timeout closes what idles, and afterwards a real host is served and nothing leaked.
/// </summary>
public sealed class ListenerLimitTests
{
    private const int IdleConnections = 2000;
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    /// <summary>Opens <paramref name="count"/> connections; every other one sends an ICReq and nothing more.</summary>
    private static List<Socket> OpenIdle(TargetHarness harness, int count)
    {
        var icreq = new byte[ICReq.Length];
        new ICReq(0, 0, false, false, 0).Write(icreq);
        var sockets = new List<Socket>(count);
        for (var i = 0; i < count; i++)
        {
            var socket = new Socket(harness.Endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            sockets.Add(socket);
            socket.Connect(harness.Endpoint);
            if (i % 2 == 1)
            {
                try
                {
                    socket.Send(icreq);
                }
                catch (SocketException)
                {
                    // Closed by the cap already; that is one of the outcomes under test.
                }
            }
        }

        return sockets;
    }

    /// <summary>
    /// How many of <paramref name="sockets"/> the target has not closed (EOF or reset) by the end of one shared
    /// <paramref name="within"/>; what the target sent before closing is read and dropped.
    /// </summary>
    private static int CountOpen(IEnumerable<Socket> sockets, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        var scratch = new byte[256];
        var open = 0;
        foreach (var socket in sockets)
        {
            while (true)
            {
                try
                {
                    var wait = DateTime.UtcNow > deadline ? TimeSpan.Zero : TimeSpan.FromMilliseconds(100);
                    if (socket.Poll(wait, SelectMode.SelectRead) && socket.Receive(scratch) == 0)
                    {
                        break;
                    }
                }
                catch (SocketException)
                {
                    break;
                }

                if (DateTime.UtcNow > deadline)
                {
                    open++;
                    break;
                }
            }
        }

        return open;
    }

    private static void WaitUntil(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Generous;
        while (!condition())
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), $"timed out waiting until {what}");
            Thread.Sleep(10);
        }
    }

    [Test]
    public async Task IdleConnectionsBeyondTheCapAreRefusedAndAHostIsServedOnceSomeEnd()
    {
        const int cap = IdleConnections / 2;
        await using var harness = TargetHarness.Start(o =>
        {
            o.MaxConnections = cap;
            o.ConnectTimeout = TimeSpan.FromMinutes(10);
            o.InitializeTimeout = TimeSpan.FromMinutes(10);
        });
        var sockets = OpenIdle(harness, IdleConnections);
        try
        {
            WaitUntil(() => harness.Target.ConnectionsRefusedAtCap + harness.Target.ConnectionCount >= IdleConnections, "every connection was taken or refused");
            Assert.That(harness.Target.ConnectionCount, Is.EqualTo(cap), "the listener holds exactly its cap");
            Assert.That(harness.Target.ConnectionsRefusedAtCap, Is.EqualTo(IdleConnections - cap));
            Assert.That(harness.Logs.Matching("reached its cap of 1000 connections"), Has.Count.EqualTo(1), "one line for the transition, none per refusal");
            Assert.That(harness.Target.Readiness.IsReady, Is.False);
            Assert.That(harness.Target.Readiness.Reason, Does.Contain("holds its cap of 1000 connections"));
            Assert.That(harness.Target.DedicatedThreadCount, Is.LessThanOrEqualTo(harness.Target.Options.MaxConnectionThreads));

            using (var refused = harness.Open())
            {
                Assert.That(refused.WaitClosed(Generous), Is.True, "a connection beyond the cap is closed at once");
            }

            // A tenth of the cap ends: the listener takes connections again, and says so once.
            foreach (var socket in sockets.Take(cap / 10 + 50))
            {
                socket.Dispose();
            }

            WaitUntil(() => harness.Target.ConnectionCount <= cap - cap / 10, "the closed connections are gone");
            Assert.That(harness.Logs.WaitFor(Generous, 1, "accepts new connections again"), Is.True);
            ConnectionThreadTests.ServeOneHost(harness, 1);
            Assert.That(harness.Target.Readiness.IsReady, Is.True, harness.Target.Readiness.Reason);
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }

        Assert.That(harness.WaitForConnectionCount(0, Generous), Is.True, $"{harness.Target.ConnectionCount} connections left");
        Assert.That(harness.Logs.Matching("reached its cap"), Has.Count.EqualTo(1));
        Assert.That(harness.Logs.Errors, Is.Empty);
    }

    [Test]
    public async Task ConnectionsWithoutAConnectAreClosedByTheTimeoutWhileConnectedHostsStay()
    {
        await using var harness = TargetHarness.Start(o =>
        {
            o.ConnectTimeout = TimeSpan.FromSeconds(1);
            // Only the Connect timeout may close the silent connections here.
            o.InitializeTimeout = TimeSpan.FromMinutes(10);
        });

        // A host connected before the flood keeps its controller and queue throughout.
        using var admin = harness.ConnectAdmin(keepAliveMs: 0);
        using var io = harness.ConnectIo(admin, 1);

        // One more that keeps sending Connects the target refuses: refused Connects do not keep a connection open.
        using var refusedHost = harness.Initialize();
        var refusal = refusedHost.ConnectAdmin("nqn.2024-01.io.csinvme:no-such-subsystem", harness.Host.Nqn, harness.Host.Id);
        Assert.That(refusal.Status.IsSuccess, Is.False);

        var sockets = OpenIdle(harness, IdleConnections);
        try
        {
            Assert.That(CountOpen(sockets, Generous), Is.Zero, "every idle connection was closed by the target");
            Assert.That(refusedHost.WaitClosed(Generous), Is.True, "a connection with only refused Connects was closed too");
            Assert.That(harness.WaitForConnectionCount(2, Generous), Is.True, $"only the connected host's two queues are left, not {harness.Target.ConnectionCount}");
            Assert.That(harness.Logs.WaitFor(Generous, IdleConnections + 1, "no ICReq and Connect within 1 s"), Is.True);
            Assert.That(harness.Logs.Matching("no ICReq and Connect within"), Has.Count.EqualTo(IdleConnections + 1), "each closed connection is logged once");

            var data = new byte[4096];
            Random.Shared.NextBytes(data);
            Assert.That(io.WriteInCapsule(1, 0, data, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(io.Read(1, 0, data.Length, TargetHarness.BlockSize).Data, Is.EqualTo(data));
            ConnectionThreadTests.ServeOneHost(harness, 2);
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }

        Assert.That(harness.WaitForConnectionCount(2, Generous), Is.True, $"{harness.Target.ConnectionCount} connections, 2 expected");
        Assert.That(harness.Target.Readiness.IsReady, Is.True, harness.Target.Readiness.Reason);
        Assert.That(harness.Logs.Errors, Is.Empty);
    }
}
