namespace CsiNvme.Target.Tests;

/// <summary>
/// Connection threads and the accept loop: a thread that cannot be started (a pod's pids limit) or any other failure
/// while taking a connection neither stops the listener nor leaks a connection.
/// </summary>
public sealed class ConnectionThreadTests
{
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(10);

    /// <summary>A host's admin queue and one I/O queue, a write and its read back.</summary>
    internal static void ServeOneHost(TargetHarness harness, int seed)
    {
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var data = new byte[4096];
        new Random(seed).NextBytes(data);
        var lba = (ulong)(seed * 8);
        Assert.That(io.WriteInCapsule(1, lba, data, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Read(1, lba, data.Length, TargetHarness.BlockSize).Data, Is.EqualTo(data));
    }

    [Test]
    public async Task ThreadsThatCannotStartLeaveHostsServedAndTheListenerAccepting()
    {
        var failuresLeft = 6;
        await using var harness = TargetHarness.Start(o =>
        {
            // This test is about the threaded model, whichever model the rest of the suite runs.
            o.DedicatedConnectionThreads = true;
            var start = o.StartConnectionThread;
            o.StartConnectionThread = body =>
            {
                if (Interlocked.Decrement(ref failuresLeft) >= 0)
                {
                    // What Thread.Start throws when pthread_create fails (EAGAIN under RLIMIT_NPROC or pids.max).
                    throw new OutOfMemoryException("Thread failed to start.");
                }

                start(body);
            };
        });

        // Three hosts (an admin and an I/O queue each) while no thread can start, then one more with threads again.
        for (var host = 1; host <= 4; host++)
        {
            ServeOneHost(harness, host);
        }

        Assert.That(failuresLeft, Is.LessThan(0), "every failure was used up");
        Assert.That(harness.WaitForConnectionCount(0, Settle), Is.True, $"no connection leaked: {harness.Target.ConnectionCount} left");
        Assert.That(harness.Logs.Matching("Starting a thread for the NVMe/TCP connection"), Has.Count.EqualTo(1), "one warning for the run of failures");
        Assert.That(harness.Logs.Matching("connection threads start again after 6 failed"), Has.Count.EqualTo(1));
        Assert.That(harness.Logs.Errors, Is.Empty);
    }

    [Test]
    public async Task ReadinessIsFalseAfterAThreadFailedToStartAndTrueAgainLater()
    {
        var fail = 1;
        await using var harness = TargetHarness.Start(o =>
        {
            o.DedicatedConnectionThreads = true;
            o.UnreadyAfterFailure = TimeSpan.FromMilliseconds(500);
            var start = o.StartConnectionThread;
            o.StartConnectionThread = body =>
            {
                if (Volatile.Read(ref fail) != 0)
                {
                    throw new OutOfMemoryException("Thread failed to start.");
                }

                start(body);
            };
        });
        Assert.That(harness.Target.Readiness, Is.EqualTo(Listening.TargetReadiness.Ready));

        ServeOneHost(harness, 1);
        var readiness = harness.Target.Readiness;
        Assert.That(readiness.IsReady, Is.False);
        Assert.That(readiness.Reason, Does.Contain("a connection thread failed to start").And.Contain("Thread failed to start."));

        Volatile.Write(ref fail, 0);
        var deadline = DateTime.UtcNow + Settle;
        while (!harness.Target.Readiness.IsReady)
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "ready again once the failure is older than UnreadyAfterFailure");
            Thread.Sleep(20);
        }

        ServeOneHost(harness, 2);
        Assert.That(harness.Target.Readiness.IsReady, Is.True);
    }

    [Test]
    public async Task ConnectionsBeyondTheThreadBudgetRunOnTheThreadPool()
    {
        await using var harness = TargetHarness.Start(o =>
        {
            o.DedicatedConnectionThreads = true;
            o.MaxConnectionThreads = 2;
        });

        // Three hosts with two queues each, all open at once: two connections get threads, four run on the pool.
        var queues = new List<TestHost>();
        try
        {
            for (var host = 0; host < 3; host++)
            {
                var admin = harness.ConnectAdmin();
                queues.Add(admin);
                queues.Add(harness.ConnectIo(admin, 1));
            }

            Assert.That(harness.Target.DedicatedThreadCount, Is.EqualTo(2));
            for (var i = 1; i < queues.Count; i += 2)
            {
                var data = new byte[4096];
                new Random(i).NextBytes(data);
                Assert.That(queues[i].WriteInCapsule(1, (ulong)i * 8, data, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.Success));
                Assert.That(queues[i].Read(1, (ulong)i * 8, data.Length, TargetHarness.BlockSize).Data, Is.EqualTo(data));
            }

            Assert.That(harness.Logs.Matching("All 2 NVMe/TCP connection threads are in use"), Has.Count.EqualTo(1), "logged once, not per connection");
        }
        finally
        {
            queues.ForEach(q => q.Dispose());
        }

        Assert.That(harness.WaitForConnectionCount(0, Settle), Is.True);
        var deadline = DateTime.UtcNow + Settle;
        while (harness.Target.DedicatedThreadCount != 0)
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "the threads end with their connections");
            Thread.Sleep(10);
        }

        Assert.That(harness.Logs.WaitFor(Settle, 1, "connection threads are free again"), Is.True);
        ServeOneHost(harness, 9);
    }

    [Test]
    public async Task AFailureWhileTakingAConnectionIsLoggedAndTheListenerGoesOn()
    {
        // The observer (the server's metrics) throws for the first three connections: any failure in one turn of the
        // accept loop must end only that connection.
        var observer = new ThrowingObserver(failures: 3);
        var logs = new RecordingLoggerFactory();
        var options = new NvmeTargetOptions { UnreadyAfterFailure = TimeSpan.FromMilliseconds(300) };
        options.Listen.Add(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        options.DedicatedConnectionThreads = TestContext.Parameters.Get("TargetIoModel", "threads") != "async";
        await using var target = new NvmeTarget(options, logs, observer);
        var endpoint = target.Start()[0];

        for (var i = 0; i < 3; i++)
        {
            using var refused = TestHost.Open(endpoint);
            Assert.That(refused.WaitClosed(Settle), Is.True, "the connection whose set-up failed is closed");
        }

        Assert.That(logs.WaitFor(Settle, 3, "Accepting an NVMe/TCP connection on"), Is.True, "each failure is logged");
        using (var host = TestHost.Initialize(endpoint))
        {
            var discovery = host.ConnectAdmin(NvmeTarget.DiscoveryNqn, "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001", Guid.NewGuid());
            Assert.That(discovery.Status, Is.EqualTo(NvmeStatus.Success), "the listener still accepts");
            Assert.That(target.ConnectionCount, Is.EqualTo(1), "the failed connections are not counted");
        }

        var deadline = DateTime.UtcNow + Settle;
        while (target.ConnectionCount != 0 || !target.Readiness.IsReady)
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), $"{target.ConnectionCount} connections, readiness: {target.Readiness.Reason}");
            Thread.Sleep(10);
        }

        Assert.That(observer.Open, Is.Zero, "every connection the observer saw open it saw closed");
    }

    private sealed class ThrowingObserver(int failures) : Subsystems.ITargetObserver
    {
        private int _failuresLeft = failures;
        private int _open;

        public int Open => Volatile.Read(ref _open);

        public void ConnectionOpened()
        {
            if (Interlocked.Decrement(ref _failuresLeft) >= 0)
            {
                throw new InvalidOperationException("observer failure (test)");
            }

            Interlocked.Increment(ref _open);
        }

        public void ConnectionClosed() => Interlocked.Decrement(ref _open);
    }
}
