using System.Diagnostics;

namespace CsiNvme.Perf;

/// <summary>
/// The timeline one load (the NVMe workers or the TCP limit clients) shares with whoever times it. On its own, a run
/// ramps unmeasured, is measured for the duration and is told to stop. Under a <see cref="PerfComparison"/> the
/// comparison drives it instead: it holds the load (every loop parks once its I/O in flight has completed), lets it
/// run, and opens and closes measured windows, so two loads can take turns on the same CPUs within one process.
/// </summary>
internal sealed class RunState
{
    public bool Measuring;
    public bool Stop;
    public bool Held;
    public long MeasureFrom;
    public long MeasureUntil;

    private readonly Lock _gate = new();
    private TaskCompletionSource _released = NewRelease();
    private TaskCompletionSource<TimeSpan>? _external;
    private int _loops;
    private int _parked;
    private int _ended;

    /// <summary>A run timed by a comparison: it starts held and ends when the comparison says so.</summary>
    public static RunState Driven() => new() { Held = true, _external = new TaskCompletionSource<TimeSpan>(TaskCreationOptions.RunContinuationsAsynchronously) };

    /// <summary>Number of loops that park when the load is held; set by the load before it starts them.</summary>
    public int Loops
    {
        get => Volatile.Read(ref _loops);
        set => Volatile.Write(ref _loops, value);
    }

    /// <summary>How the comparison counts I/Os measured so far; set by the load.</summary>
    public Func<long>? CountMeasured { get; set; }

    /// <summary>True when every loop of the load is parked or has ended (nothing of it is in flight).</summary>
    public bool AllParked
    {
        get
        {
            lock (_gate)
            {
                return Loops > 0 && _parked + _ended >= Loops;
            }
        }
    }

    /// <summary>Called by each loop when it ends, also when it failed (a dropped connection ends only its loops).</summary>
    public void LoopEnded()
    {
        lock (_gate)
        {
            _ended++;
        }
    }

    /// <summary>
    /// Called by an asynchronous loop that saw <see cref="Held"/> with nothing of its own in flight: the returned task
    /// completes when the load is released (at once if it already was).
    /// </summary>
    public Task ParkAsync()
    {
        lock (_gate)
        {
            if (!Volatile.Read(ref Held))
            {
                return Task.CompletedTask;
            }

            _parked++;
            return _released.Task;
        }
    }

    /// <summary>As <see cref="ParkAsync"/>, for a loop on a thread of its own.</summary>
    public void Park() => ParkAsync().GetAwaiter().GetResult();

    public void Hold()
    {
        lock (_gate)
        {
            Volatile.Write(ref Held, true);
            if (_released.Task.IsCompleted)
            {
                _released = NewRelease();
            }
        }
    }

    public void Release()
    {
        TaskCompletionSource released;
        lock (_gate)
        {
            // Every parked loop waits on this release, so none is parked once it completes.
            Volatile.Write(ref Held, false);
            _parked = 0;
            released = _released;
        }

        released.TrySetResult();
    }

    /// <summary>Ends a driven run: the loops stop and <see cref="MeasureAsync"/> returns <paramref name="measured"/>.</summary>
    public void Finish(TimeSpan measured)
    {
        Volatile.Write(ref Measuring, false);
        Volatile.Write(ref Stop, true);
        Release();
        _external?.TrySetResult(measured);
    }

    /// <summary>Ends a driven run that failed on the other side.</summary>
    public void Abort(Exception error)
    {
        Volatile.Write(ref Stop, true);
        Release();
        _external?.TrySetException(error);
    }

    /// <summary>
    /// The loops run through the ramp unmeasured, are measured for the duration, are told to stop, and must drain
    /// within 30 s; under a comparison, the comparison decides all of that instead. Returns the measured time.
    /// </summary>
    public async Task<TimeSpan> MeasureAsync(IEnumerable<Task> loops, TimeSpan ramp, TimeSpan duration, string what, CancellationToken cancellationToken)
    {
        var all = Task.WhenAll(loops);
        TimeSpan measured;
        if (_external is { } external)
        {
            // A loop that fails (the connection dropped) ends the comparison instead of leaving it waiting.
            var first = await Task.WhenAny(external.Task, all).ConfigureAwait(false);
            if (first == all && !external.Task.IsCompleted)
            {
                await all.ConfigureAwait(false);
                throw new InvalidOperationException($"{what} ended before the comparison did");
            }

            try
            {
                measured = await external.Task.ConfigureAwait(false);
            }
            catch
            {
                // Aborted: the loops were told to stop; let them drain before the connections are closed.
                await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30), CancellationToken.None)).ConfigureAwait(false);
                throw;
            }
        }
        else
        {
            await Task.Delay(ramp, cancellationToken).ConfigureAwait(false);
            var started = Stopwatch.GetTimestamp();
            MeasureFrom = started;
            Volatile.Write(ref Measuring, true);
            try
            {
                await Task.Delay(duration, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                MeasureUntil = Stopwatch.GetTimestamp();
                Volatile.Write(ref Stop, true);
            }

            measured = Stopwatch.GetElapsedTime(started, MeasureUntil);
        }

        if (await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30), CancellationToken.None)).ConfigureAwait(false) != all)
        {
            throw new TimeoutException($"{what} did not drain within 30 s after the run");
        }

        await all.ConfigureAwait(false);
        return measured;
    }

    private static TaskCompletionSource NewRelease() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
