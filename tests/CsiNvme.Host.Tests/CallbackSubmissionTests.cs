namespace CsiNvme.Host.Tests;

/// <summary>
/// Commands submitted with a completion callback (<see cref="IoQueue.TrySubmitWrite"/>, <see cref="IoQueue.TrySubmitRead"/>)
/// against our own target: data round trips, the callback may submit the next command at once (into the slot it just
/// freed), and a dropped connection reaches every callback as a path error instead of leaving it waiting.
/// </summary>
[TestFixture(true)]
[TestFixture(false)]
public sealed class CallbackSubmissionTests(bool dedicatedQueueThreads)
{
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(20);
    private const int IoSize = 4096;

    [TestCase(1)]
    [TestCase(31)]
    public async Task ChainsWritesThenReadsFromTheCallbacksAtFullDepth(int depth)
    {
        await using var target = TargetFixture.Start(null, dedicatedQueueThreads);
        await using var controller = await target.ConnectAsync(o => o.IoQueueSize = 32);
        var queue = controller.IoQueues[0];
        var ns = controller.Namespaces[0];
        const int perChain = 20;
        var chains = Enumerable.Range(0, depth).Select(i => new Chain(queue, ns, i, perChain)).ToArray();

        foreach (var chain in chains)
        {
            chain.Start();
        }

        var all = Task.WhenAll(chains.Select(c => c.Done));
        Assert.That(await Task.WhenAny(all, Task.Delay(Bounded)), Is.SameAs(all), "every chain finished");
        await all;
        foreach (var chain in chains)
        {
            Assert.That(chain.Failures, Is.Empty, $"chain {chain.Index}");
            for (var step = 0; step < perChain; step++)
            {
                var onTarget = new byte[IoSize];
                target.Volume.Read(chain.ByteOffset(step), onTarget);
                Assert.That(onTarget, Is.EqualTo(Chain.Pattern(chain.Index, step)), $"chain {chain.Index} block {step} on the target");
            }
        }
    }

    [Test]
    public async Task ADroppedConnectionReachesEveryCallbackAsAPathError()
    {
        await using var target = TargetFixture.Start(null, dedicatedQueueThreads);
        await using var proxy = new TcpFaultProxy(target.Endpoint);
        await using var controller = await target.ConnectAsync(o =>
        {
            o.KeepAliveTimeout = TimeSpan.Zero;
            o.ReconnectDelay = TimeSpan.FromSeconds(2);
        }, proxy.Endpoint);
        var queue = controller.IoQueues[0];
        var ns = controller.Namespaces[0];

        proxy.Frozen = true;
        var callbacks = Enumerable.Range(0, 8).Select(_ => new Recorder()).ToArray();
        for (var i = 0; i < callbacks.Length; i++)
        {
            Assert.That(queue.TrySubmitRead(ns, (ulong)i * 8, new byte[IoSize], callbacks[i]), Is.True);
        }

        await Task.Delay(200);
        Assert.That(callbacks.Any(c => c.Completed.IsCompleted), Is.False, "stuck behind the frozen path");

        proxy.CutAll();
        var all = Task.WhenAll(callbacks.Select(c => c.Completed));
        Assert.That(await Task.WhenAny(all, Task.Delay(Bounded)), Is.SameAs(all), "every callback ran instead of hanging");
        foreach (var callback in callbacks)
        {
            Assert.That((await callback.Completed).Status, Is.EqualTo(NvmeCompletion.HostPathError));
            Assert.That(callback.Calls, Is.EqualTo(1), "one callback per command");
        }

        await HostTests.WaitUntil(() => controller.State == ControllerState.Reconnecting);
        var late = new Recorder();
        Assert.That(queue.TrySubmitWrite(ns, 0, new byte[IoSize], late), Is.False, "refused while not connected");
        await Task.Delay(100);
        Assert.That(late.Calls, Is.Zero, "a refused command gets no callback");
    }

    /// <summary>Writes its blocks one after another, each from the previous write's callback, then reads them back the same way.</summary>
    private sealed class Chain(IoQueue queue, NvmeNamespace ns, int index, int steps) : INvmeCompletionCallback
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly byte[] _buffer = new byte[IoSize];
        private int _step;
        private bool _reading;

        public int Index => index;

        public Task Done => _done.Task;

        public List<string> Failures { get; } = [];

        public static byte[] Pattern(int chain, int step)
        {
            var bytes = new byte[IoSize];
            new Random(chain * 1000 + step).NextBytes(bytes);
            return bytes;
        }

        public long ByteOffset(int step) => ((long)index * steps + step) * IoSize;

        public void Start() => Submit();

        public void OnCompleted(NvmeCompletion completion)
        {
            if (!completion.IsSuccess)
            {
                Failures.Add($"{(_reading ? "read" : "write")} {_step}: {completion.Status}");
            }
            else if (_reading && !_buffer.AsSpan().SequenceEqual(Pattern(index, _step)))
            {
                Failures.Add($"read {_step}: data differs");
            }

            if (++_step == steps)
            {
                if (_reading)
                {
                    _done.TrySetResult();
                    return;
                }

                _reading = true;
                _step = 0;
            }

            Submit();
        }

        private void Submit()
        {
            var lba = (ulong)(ByteOffset(_step) / ns.BlockSize);
            bool submitted;
            if (_reading)
            {
                _buffer.AsSpan().Clear();
                submitted = queue.TrySubmitRead(ns, lba, _buffer, this);
            }
            else
            {
                Pattern(index, _step).CopyTo(_buffer, 0);
                submitted = queue.TrySubmitWrite(ns, lba, _buffer, this);
            }

            if (!submitted)
            {
                Failures.Add($"step {_step} refused");
                _done.TrySetResult();
            }
        }
    }

    private sealed class Recorder : INvmeCompletionCallback
    {
        private readonly TaskCompletionSource<NvmeCompletion> _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _calls;

        public Task<NvmeCompletion> Completed => _completed.Task;

        public int Calls => Volatile.Read(ref _calls);

        public void OnCompleted(NvmeCompletion completion)
        {
            Interlocked.Increment(ref _calls);
            _completed.TrySetResult(completion);
        }
    }
}
