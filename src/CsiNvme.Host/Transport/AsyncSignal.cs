using System.Threading.Tasks.Sources;

namespace CsiNvme.Host.Transport;

/// <summary>
/// An auto-reset event with one waiter and no allocation per wait: wakes the send worker when a send would block. The
/// waiter is asynchronous (<see cref="WaitAsync"/>) or, on a dedicated thread, blocking (<see cref="Wait"/>). A
/// <see cref="Set"/> without a waiter is remembered for the next wait.
/// </summary>
internal sealed class AsyncSignal : IValueTaskSource
{
    private readonly object _gate = new();
    private ManualResetValueTaskSourceCore<bool> _core;
    private bool _signaled;
    private bool _waiting;

    public AsyncSignal()
    {
        // The waiter does blocking-free but long work (sending); it must not run on the thread that signals.
        _core.RunContinuationsAsynchronously = true;
    }

    public void Set()
    {
        lock (_gate)
        {
            if (_waiting)
            {
                _waiting = false;
                _core.SetResult(true);
            }
            else
            {
                _signaled = true;
                Monitor.Pulse(_gate);
            }
        }
    }

    public void Wait()
    {
        lock (_gate)
        {
            while (!_signaled)
            {
                Monitor.Wait(_gate);
            }

            _signaled = false;
        }
    }

    public ValueTask WaitAsync()
    {
        lock (_gate)
        {
            if (_signaled)
            {
                _signaled = false;
                return ValueTask.CompletedTask;
            }

            _core.Reset();
            _waiting = true;
            return new ValueTask(this, _core.Version);
        }
    }

    public void GetResult(short token) => _core.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
