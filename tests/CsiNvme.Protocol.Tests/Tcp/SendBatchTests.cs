using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Protocol.Tests.Tcp;

/// <summary>The thread's send batch: what it puts off, when it sends, and that each queue sends once.</summary>
public sealed class SendBatchTests
{
    [Test]
    public void WithoutABatchNothingIsPutOff()
    {
        var queue = new CountingQueue();
        Assert.That(SendBatch.TryDefer(queue), Is.False);
        Assert.That(queue.Sends, Is.Zero);
    }

    [Test]
    public void AQueueDeferredManyTimesSendsOnceAtTheEnd()
    {
        var first = new CountingQueue();
        var second = new CountingQueue();
        SendBatch.Begin();
        for (var i = 0; i < 32; i++)
        {
            Assert.That(SendBatch.TryDefer(first), Is.True);
            Assert.That(SendBatch.TryDefer(second), Is.True);
        }

        Assert.That(first.Sends + second.Sends, Is.Zero, "nothing is sent before the batch ends");
        SendBatch.End();
        Assert.That((first.Sends, second.Sends), Is.EqualTo((1, 1)));
    }

    [Test]
    public void OnlyTheOutermostEndSends()
    {
        var queue = new CountingQueue();
        SendBatch.Begin();
        SendBatch.Begin();
        SendBatch.TryDefer(queue);
        SendBatch.End();
        Assert.That(queue.Sends, Is.Zero);
        SendBatch.End();
        Assert.That(queue.Sends, Is.EqualTo(1));
        Assert.That(SendBatch.TryDefer(queue), Is.False, "the batch is closed");
    }

    [Test]
    public void SendNowSendsInsideTheBatchAndTheBatchGoesOn()
    {
        var queue = new CountingQueue();
        SendBatch.Begin();
        SendBatch.TryDefer(queue);
        SendBatch.SendNow();
        Assert.That(queue.Sends, Is.EqualTo(1), "a thread about to wait sends what it queued");
        Assert.That(SendBatch.TryDefer(queue), Is.True);
        SendBatch.End();
        Assert.That(queue.Sends, Is.EqualTo(2));
    }

    [Test]
    public void MoreQueuesThanTheFirstArrayHoldsAllSend()
    {
        var queues = Enumerable.Range(0, 50).Select(_ => new CountingQueue()).ToArray();
        SendBatch.Begin();
        foreach (var queue in queues)
        {
            SendBatch.TryDefer(queue);
        }

        SendBatch.End();
        Assert.That(queues.Select(q => q.Sends), Is.All.EqualTo(1));
    }

    [Test]
    public void BatchesAreThreadLocal()
    {
        var queue = new CountingQueue();
        SendBatch.Begin();
        try
        {
            var deferredElsewhere = Task.Run(() => SendBatch.TryDefer(queue)).GetAwaiter().GetResult();
            Assert.That(deferredElsewhere, Is.False, "another thread has no batch open");
        }
        finally
        {
            SendBatch.End();
        }

        Assert.That(queue.Sends, Is.Zero);
    }

    private sealed class CountingQueue : IDeferredSend
    {
        public int Sends { get; private set; }

        public void SendDeferred() => Sends++;
    }
}
