using System.Diagnostics;
using CsiNvme.Storage.CrashWorker;
using CsiNvme.Storage.Thin;

namespace CsiNvme.Storage.Tests.Thin;

/// <summary>
/// Runs <c>CsiNvme.Storage.CrashWorker</c> on one pool, kills it with SIGKILL at a random point, reopens the pool here
/// and checks it against what the worker acknowledged; the next iteration continues on the recovered pool, so
/// recovery from a recovered (and compacted) journal is exercised as well.
/// </summary>
[Category("Crash")]
public sealed class CrashTests
{
    private const long PoolSize = 256L << 20;
    // Small, so compactions happen during the workload and some kills land in one.
    private const long CompactThreshold = 256 * 1024;
    private const int Block = CrashOp.BlockSize;

    /// <summary>What an image may read as, block by block, and which lifecycle states it may be in, given what was acknowledged.</summary>
    private sealed class ImageModel
    {
        public ImageModel(bool isSnapshot, long sizeBytes, string annotation)
        {
            IsSnapshot = isSnapshot;
            Annotation = annotation;
            Durable = new long[sizeBytes / Block];
            Latest = new long[sizeBytes / Block];
        }

        public ImageModel(bool isSnapshot, long sizeBytes, string annotation, long[] content)
            : this(isSnapshot, sizeBytes, annotation)
        {
            content.AsSpan(0, Math.Min(content.Length, Durable.Length)).CopyTo(Durable);
            content.AsSpan(0, Math.Min(content.Length, Latest.Length)).CopyTo(Latest);
        }

        public bool IsSnapshot { get; }

        /// <summary>Given at creation, in the same commit as the image.</summary>
        public string Annotation { get; }

        /// <summary>
        /// Acknowledged creations are committed; an interrupted creation may have stopped before its state change, an
        /// interrupted delete after its own.
        /// </summary>
        public HashSet<ThinImageState> States { get; init; } = [ThinImageState.Committed];

        public long SizeBytes => Durable.LongLength * Block;

        /// <summary>Generation each block holds durably (0: zeros).</summary>
        public long[] Durable { get; private set; }

        /// <summary>The last generation written, acknowledged or not.</summary>
        public long[] Latest { get; private set; }

        /// <summary>Generations written after the last durable point, any of which may be what survived.</summary>
        public Dictionary<int, List<long>> Pending { get; } = new();

        /// <summary>A size the image may also have (a resize that was in flight).</summary>
        public long? AlternativeSize { get; set; }

        public void Write(int block, long generation)
        {
            Latest[block] = generation;
            if (!Pending.TryGetValue(block, out var list))
            {
                Pending[block] = list = new List<long>();
            }

            list.Add(generation);
        }

        public void MakeDurable(int block)
        {
            Durable[block] = Latest[block];
            Pending.Remove(block);
        }

        public void MakeAllDurable()
        {
            Latest.CopyTo(Durable, 0);
            Pending.Clear();
        }

        public void Grow(long sizeBytes)
        {
            var blocks = sizeBytes / Block;
            Durable = Durable.Concat(new long[blocks - Durable.Length]).ToArray();
            Latest = Latest.Concat(new long[blocks - Latest.Length]).ToArray();
        }

        public bool Accepts(int block, long generation) =>
            Durable[block] == generation || (Pending.TryGetValue(block, out var list) && list.Contains(generation));
    }

    /// <summary>The model of the pool plus images whose existence depends on the operation the kill interrupted.</summary>
    private sealed class PoolModel
    {
        public Dictionary<Guid, ImageModel> Images { get; } = new();

        public Dictionary<Guid, ImageModel> Optional { get; } = new();

        /// <summary>Writer of every generation, to check the stamp names the right volume.</summary>
        public Dictionary<long, Guid> Writers { get; } = new();
    }

    private sealed record IterationResult(int Acknowledged, int Executed, string Interrupted, long LeakedClusters);

    [Test]
    public void SigkillAtRandomPointsLosesNoAcknowledgedWriteAndNoSnapshot()
    {
        var iterations = Environment.GetEnvironmentVariable("CSINVME_CRASH_ITERATIONS") is { Length: > 0 } configured ? int.Parse(configured) : 30;
        var baseSeed = Environment.GetEnvironmentVariable("CSINVME_CRASH_SEED") is { Length: > 0 } seedText ? int.Parse(seedText) : Random.Shared.Next(1, 1_000_000);
        TestContext.Out.WriteLine($"crash test: {iterations} iterations, seed {baseSeed} (CSINVME_CRASH_SEED to repeat)");
        using var dir = new TempDirectory("csinvme-crash");
        var dataPath = dir.Combine("pool.img");
        ThinPool.Open(PoolOptions(dataPath, PoolSize)).Dispose();

        var model = new PoolModel();
        var listing = Array.Empty<CrashImage>();
        long acknowledged = 0;
        long executed = 0;
        long leaked = 0;
        var interrupted = new Dictionary<string, int>();
        var total = Stopwatch.StartNew();
        for (var iteration = 0; iteration < iterations; iteration++)
        {
            var seed = baseSeed + iteration;
            var context = $"iteration {iteration} (seed {seed}, base seed {baseSeed})";
            var result = RunIteration(dir, dataPath, seed, (iteration + 1) * 100_000_000L, model, ref listing, context);
            acknowledged += result.Acknowledged;
            executed += result.Executed;
            leaked += result.LeakedClusters;
            interrupted[result.Interrupted] = interrupted.GetValueOrDefault(result.Interrupted) + 1;
        }

        TestContext.Out.WriteLine(
            $"crash test: {iterations} kills in {total.Elapsed.TotalSeconds:F1} s, {executed} operations run up to the kill, {acknowledged} durable operations acknowledged, " +
            $"{leaked} leaked clusters reclaimed by Check(); interrupted operations: {string.Join(", ", interrupted.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}"))}");
    }

    private static ThinPoolOptions PoolOptions(string dataPath, long? size = null) => new()
    {
        DataPath = dataPath,
        SizeBytes = size,
        CompactThresholdBytes = CompactThreshold,
        CommitInterval = TimeSpan.FromHours(1),
    };

    private static string WorkerDll()
    {
        // Built by the project reference; run from its own output directory, which has its runtimeconfig and deps.
        var dll = Path.Combine(RepoPaths.Root, "tests", "CsiNvme.Storage.CrashWorker", "bin", RepoPaths.Configuration, "net10.0", "CsiNvme.Storage.CrashWorker.dll");
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"crash worker not built: {dll}", dll);
        }

        return dll;
    }

    private static IterationResult RunIteration(TempDirectory dir, string dataPath, int seed, long generationBase, PoolModel model, ref CrashImage[] listing, string context)
    {
        var random = new Random(seed);
        // Background commits on a short interval too, so kills also land in a commit nobody asked for.
        var commitIntervalMs = random.Next(2) == 0 ? 1000 : random.Next(5, 50);
        var lines = new List<string>();
        using var ready = new ManualResetEventSlim();
        var startInfo = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[]
        {
            WorkerDll(), "--data", dataPath, "--seed", seed.ToString(), "--generation-base", generationBase.ToString(),
            "--compact-threshold", CompactThreshold.ToString(), "--commit-interval-ms", commitIntervalMs.ToString(), "--max-seconds", "30",
        })
        {
            startInfo.ArgumentList.Add(argument);
        }

        var stderr = new List<string>();
        using var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (lines)
            {
                lines.Add(e.Data);
            }

            if (e.Data == "ready")
            {
                ready.Set();
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (stderr)
                {
                    stderr.Add(e.Data);
                }
            }
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            if (!ready.Wait(TimeSpan.FromSeconds(30)))
            {
                Assert.Fail($"{context}: the worker did not open the pool; stderr: {string.Join('\n', stderr)}");
            }

            Thread.Sleep(random.Next(20, 401));
            Assert.That(process.HasExited, Is.False, $"{context}: the worker exited on its own (code {(process.HasExited ? process.ExitCode : 0)}); stderr: {string.Join('\n', stderr)}");
            process.Kill();
            Assert.That(process.WaitForExit(30_000), Is.True, $"{context}: the worker did not die");
            process.WaitForExit();
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }

        // The workload depends only on the seed and the starting images: regenerate it and match the acknowledgements.
        var workload = new CrashWorkload(seed, generationBase, listing);
        var ops = new List<CrashOp>();
        CrashOp NextOp()
        {
            var op = workload.Next();
            ops.Add(op);
            return op;
        }

        CrashOp NextDurable()
        {
            CrashOp op;
            do
            {
                op = NextOp();
            }
            while (!op.IsDurable);
            return op;
        }

        List<string> acks;
        lock (lines)
        {
            acks = lines.Skip(1).ToList();
        }

        var acknowledged = -1;
        CrashOp? interrupted = null;
        for (var i = 0; i < acks.Count && interrupted is null; i++)
        {
            var op = NextDurable();
            if (acks[i] == op.AckLine)
            {
                acknowledged = op.Index;
                continue;
            }

            // Only the very last line may be cut short by the kill; that operation then counts as interrupted.
            Assert.That(i, Is.EqualTo(acks.Count - 1), $"{context}: acknowledgement {i} is '{acks[i]}', the regenerated workload says '{op.AckLine}'");
            Assert.That(op.AckLine, Does.StartWith(acks[i]), $"{context}: the last acknowledgement is not a prefix of the expected one");
            interrupted = op;
        }

        // Operations after the last acknowledged one all returned, up to the next durable one, which the kill interrupted.
        interrupted ??= NextDurable();

        foreach (var op in ops)
        {
            Apply(model, op, done: op.Index <= acknowledged);
        }

        var journalBefore = new FileInfo(dataPath + ".journal").Length;
        string History(Guid id, int block)
        {
            // The operations of this iteration that concern the image or the block, for the failure message.
            var relevant = ops.Where(o => o.Target == id || o.Source == id || o.Kind == CrashOpKind.Flush
                || (o.Kind is CrashOpKind.Write or CrashOpKind.Deallocate && o.Target == id && o.Offset / Block <= block && block < (o.Offset + o.Length) / Block));
            return $"last acknowledged {acknowledged}, interrupted {interrupted.Index} {interrupted.Kind}, commit interval {commitIntervalMs} ms, journal {journalBefore} bytes at reopen; " +
                string.Join(" | ", relevant.Where(o => o.Target == id || o.Source == id).Select(o => $"{o.Index}{(o.Index <= acknowledged ? "" : "?")} {o.Kind} {o.Target:N}<-{o.Source:N} [{o.Offset / Block},+{o.Blocks}) gen {o.Generation}{(o.Fua ? " fua" : "")}"));
        }

        var report = Verify(dataPath, model, context, History, out listing);
        return new IterationResult(ops.Count(o => o.Index <= acknowledged && o.IsDurable), ops.Count, interrupted.Kind.ToString(), report.LeakedClustersReclaimed);
    }

    /// <summary>
    /// Applies one operation to the model: <paramref name="done"/> ones happened; the others may or may not have
    /// durably (their writes become possible values; the interrupted durable one may or may not have taken effect).
    /// </summary>
    private static void Apply(PoolModel pool, CrashOp op, bool done)
    {
        var images = pool.Images;
        switch (op.Kind)
        {
            case CrashOpKind.Write:
                {
                    var image = images[op.Target];
                    for (var b = 0; b < op.Blocks; b++)
                    {
                        var block = (int)(op.Offset / Block) + b;
                        pool.Writers[op.Generation + b] = op.Target;
                        image.Write(block, op.Generation + b);
                        if (done && op.Fua)
                        {
                            image.MakeDurable(block);
                        }
                    }

                    break;
                }

            case CrashOpKind.Deallocate:
                {
                    var image = images[op.Target];
                    for (var b = 0; b < op.Blocks; b++)
                    {
                        image.Write((int)(op.Offset / Block) + b, 0);
                    }

                    break;
                }

            case CrashOpKind.Flush:
                if (done)
                {
                    images[op.Target].MakeAllDurable();
                }

                break;
            case CrashOpKind.CreateVolume:
                Add(pool, op.Target, new ImageModel(false, op.Length, op.Annotation), done);
                break;
            case CrashOpKind.Snapshot:
                {
                    // A snapshot holds every write completed before it, so the volume is durable up to here as well.
                    var volume = images[op.Source];
                    var snapshot = new ImageModel(true, volume.SizeBytes, op.Annotation, volume.Latest);
                    if (done)
                    {
                        volume.MakeAllDurable();
                    }

                    Add(pool, op.Target, snapshot, done);
                    break;
                }

            case CrashOpKind.CloneFromSnapshot:
            case CrashOpKind.CloneFromVolume:
                {
                    var source = images[op.Source];
                    if (done && op.Kind == CrashOpKind.CloneFromVolume)
                    {
                        source.MakeAllDurable();
                    }

                    Add(pool, op.Target, new ImageModel(false, op.Length, op.Annotation, source.Latest), done);
                    break;
                }

            case CrashOpKind.DeleteVolume:
            case CrashOpKind.DeleteSnapshot:
                if (images.Remove(op.Target, out var deleted) && !done)
                {
                    deleted.States.Add(ThinImageState.Deleting);
                    pool.Optional[op.Target] = deleted;
                }

                break;
            case CrashOpKind.Resize:
                {
                    var image = images[op.Target];
                    var oldSize = image.SizeBytes;
                    image.Grow(op.Length);
                    if (!done && oldSize != op.Length)
                    {
                        image.AlternativeSize = oldSize;
                    }

                    break;
                }

            default:
                throw new InvalidOperationException($"unknown operation {op.Kind}");
        }
    }

    private static void Add(PoolModel pool, Guid id, ImageModel image, bool done)
    {
        if (done)
        {
            pool.Images[id] = image;
        }
        else
        {
            image.States.Add(ThinImageState.Pending);
            pool.Optional[id] = image;
        }
    }

    /// <summary>Reopens the pool, checks it against the model, and pins the model to what was found for the next round.</summary>
    private static ThinPoolCheckReport Verify(string dataPath, PoolModel model, string context, Func<Guid, int, string> history, out CrashImage[] listing)
    {
        using var pool = ThinPool.Open(PoolOptions(dataPath));
        var report = pool.Check();
        Assert.That(report.Errors, Is.Empty, $"{context}: Check() after reopen");
        var live = pool.ListImages().Where(i => !i.Deleted).ToDictionary(i => i.Id);
        foreach (var id in live.Keys)
        {
            Assert.That(model.Images.ContainsKey(id) || model.Optional.ContainsKey(id), Is.True, $"{context}: image {id} exists but was never created or was deleted durably");
        }

        foreach (var (id, optional) in model.Optional)
        {
            if (live.ContainsKey(id))
            {
                model.Images[id] = optional;
            }
        }

        model.Optional.Clear();
        foreach (var (id, image) in model.Images.ToArray())
        {
            if (!live.TryGetValue(id, out var info))
            {
                throw new AssertionException($"{context}: {(image.IsSnapshot ? "snapshot" : "volume")} {id} is missing after the crash");
            }

            Assert.That(info.Kind == ThinImageKind.Snapshot, Is.EqualTo(image.IsSnapshot), $"{context}: kind of {id}");
            Assert.That(info.Annotation, Is.EqualTo(image.Annotation), $"{context}: annotation of {id}");
            Assert.That(image.States, Does.Contain(info.State), $"{context}: state of {id}");
            if (info.SizeBytes != image.SizeBytes)
            {
                Assert.That(info.SizeBytes, Is.EqualTo(image.AlternativeSize), $"{context}: size of {id}");
            }

            var content = new byte[info.SizeBytes];
            Assert.That(pool.ReadImage(id, 0, content), Is.EqualTo(StorageStatus.Success), $"{context}: read of {id}");
            var found = new long[info.SizeBytes / Block];
            for (var block = 0; block < found.Length; block++)
            {
                var data = content.AsSpan(block * Block, Block);
                var offset = (long)block * Block;
                long generation = 0;
                if (!BlockStamp.IsZero(data))
                {
                    Assert.That(BlockStamp.TryRead(data, out var writer, out var stampedOffset, out generation), Is.True, $"{context}: block {block} of {id} is neither zeros nor a whole stamped block");
                    Assert.That(stampedOffset, Is.EqualTo(offset), $"{context}: block {block} of {id} holds data written at another offset (generation {generation})");
                    Assert.That(model.Writers.TryGetValue(generation, out var expectedWriter) && expectedWriter == writer, Is.True, $"{context}: block {block} of {id} holds generation {generation} stamped by {writer}");
                }

                found[block] = generation;
                if (!image.Accepts(block, generation))
                {
                    var pending = image.Pending.TryGetValue(block, out var list) ? string.Join(",", list) : "none";
                    Assert.Fail($"{context}: {(image.IsSnapshot ? "snapshot" : "volume")} {id} block {block} (byte {offset}) reads generation {generation}; durable {image.Durable[block]}, possible later {pending}; {history(id, block)}");
                }
            }

            model.Images[id] = new ImageModel(image.IsSnapshot, info.SizeBytes, image.Annotation, found) { States = [info.State] };
        }

        listing = live.Values.Select(i => new CrashImage(i.Id, i.Kind == ThinImageKind.Snapshot, i.SizeBytes)).ToArray();
        return report;
    }
}
