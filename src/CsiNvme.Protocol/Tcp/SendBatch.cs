namespace CsiNvme.Protocol.Tcp;

/// <summary>A queue whose socket send was put off until the end of the current thread's <see cref="SendBatch"/>.</summary>
public interface IDeferredSend
{
    /// <summary>Sends what the queue holds (thread-safe; nothing to send is a no-op).</summary>
    void SendDeferred();
}

/// <summary>
/// A receive loop's batch on one thread. While a target connection runs the commands of one received batch, or a host
/// queue the completions of one, the queues it writes to on other connections (a replicated write's commands to its
/// replicas; the completions a replica's answers finish on the primary's host connection) put off their socket send to
/// the batch's end: N commands then cost one send per queue instead of N, which on loopback is most of a small
/// command's CPU.
/// </summary>
/// <remarks>
/// Only for code that runs on one thread from <see cref="Begin"/> to <see cref="End"/> (no await in between). A thread
/// that blocks inside a batch waiting for a command it sent must call <see cref="SendNow"/> first, or the command
/// would wait for the end of its own batch.
/// </remarks>
public static class SendBatch
{
    [ThreadStatic]
    private static IDeferredSend?[]? t_deferred;

    [ThreadStatic]
    private static int t_count;

    [ThreadStatic]
    private static int t_depth;

    /// <summary>Opens the thread's batch (batches nest: only the outermost end sends).</summary>
    public static void Begin() => t_depth++;

    /// <summary>Closes the thread's batch; the outermost end sends everything put off during it.</summary>
    public static void End()
    {
        if (--t_depth == 0)
        {
            SendNow();
        }
    }

    /// <summary>
    /// Puts off <paramref name="queue"/>'s send until the end of the thread's batch; false when the thread has no batch
    /// open, and the caller sends at once.
    /// </summary>
    public static bool TryDefer(IDeferredSend queue)
    {
        if (t_depth == 0)
        {
            return false;
        }

        var deferred = t_deferred ??= new IDeferredSend?[8];
        for (var i = 0; i < t_count; i++)
        {
            if (ReferenceEquals(deferred[i], queue))
            {
                return true;
            }
        }

        if (t_count == deferred.Length)
        {
            Array.Resize(ref t_deferred, deferred.Length * 2);
            deferred = t_deferred;
        }

        deferred[t_count++] = queue;
        return true;
    }

    /// <summary>Sends everything put off so far on this thread, batch open or not.</summary>
    public static void SendNow()
    {
        var deferred = t_deferred;
        while (t_count > 0)
        {
            var queue = deferred![--t_count]!;
            deferred[t_count] = null;
            queue.SendDeferred();
        }
    }
}
