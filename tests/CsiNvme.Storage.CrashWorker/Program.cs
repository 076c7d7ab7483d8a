using System.Diagnostics;
using CsiNvme.Storage;
using CsiNvme.Storage.CrashWorker;
using CsiNvme.Storage.Thin;

// Usage: CsiNvme.Storage.CrashWorker --data POOL --seed N --generation-base G
//          [--size BYTES (creates the pool)] [--cluster-size BYTES] [--compact-threshold BYTES] [--commit-interval-ms MS] [--max-seconds S]
// Prints "ready" once the pool is open, then "ack ..." (CrashOp.AckLine) after every operation that returned
// durably, and "done" if it runs out of time. Any failed operation is an error (exit code 3): the workload never
// fills the pool. Images are created and deleted as the storage server does: created pending with an annotation,
// then committed; marked deleting before the delete.
var options = new Dictionary<string, string>(StringComparer.Ordinal);
for (var i = 0; i + 1 < args.Length; i += 2)
{
    options[args[i]] = args[i + 1];
}

string Required(string name) => options.TryGetValue(name, out var value) ? value : throw new ArgumentException($"missing {name}");
long Optional(string name, long fallback) => options.TryGetValue(name, out var value) ? long.Parse(value) : fallback;

var stdout = Console.Out;
using var pool = ThinPool.Open(new ThinPoolOptions
{
    DataPath = Required("--data"),
    SizeBytes = options.TryGetValue("--size", out var size) ? long.Parse(size) : null,
    ClusterSize = (int)Optional("--cluster-size", 64 * 1024),
    CompactThresholdBytes = Optional("--compact-threshold", 64L * 1024 * 1024),
    CommitInterval = TimeSpan.FromMilliseconds(Optional("--commit-interval-ms", 1000)),
});
var workload = new CrashWorkload(
    int.Parse(Required("--seed")),
    long.Parse(Required("--generation-base")),
    pool.ListImages().Where(i => !i.Deleted).Select(i => new CrashImage(i.Id, i.Kind == ThinImageKind.Snapshot, i.SizeBytes)));
stdout.WriteLine("ready");
stdout.Flush();

var deadline = Stopwatch.StartNew();
var maxTime = TimeSpan.FromSeconds(Optional("--max-seconds", 60));
var buffer = new byte[24 * CrashOp.BlockSize];
while (deadline.Elapsed < maxTime)
{
    var op = workload.Next();
    Run(op);
    if (op.IsDurable)
    {
        stdout.WriteLine(op.AckLine);
        stdout.Flush();
    }
}

stdout.WriteLine("done");
return 0;

void Run(CrashOp op)
{
    switch (op.Kind)
    {
        case CrashOpKind.CreateVolume:
            pool.CreateVolume(op.Target, $"v-{op.Index}", op.Length, CrashOp.BlockSize, ThinImageState.Pending, op.Annotation);
            pool.SetImageState(op.Target, ThinImageState.Committed);
            break;
        case CrashOpKind.Write:
            {
                var data = buffer.AsSpan(0, (int)op.Length);
                for (var b = 0; b < op.Blocks; b++)
                {
                    var offset = op.Offset + ((long)b * CrashOp.BlockSize);
                    BlockStamp.Write(data.Slice(b * CrashOp.BlockSize, CrashOp.BlockSize), op.Target, offset, op.Generation + b);
                }

                Expect(pool.OpenVolume(op.Target).Write(op.Offset, data, op.Fua), op);
                break;
            }

        case CrashOpKind.Deallocate:
            // Alternate the two ways a host zeroes a range; both go through the same unmap/zero path.
            var volume = pool.OpenVolume(op.Target);
            Expect(op.Index % 2 == 0 ? volume.Deallocate(op.Offset, op.Length) : volume.WriteZeroes(op.Offset, op.Length), op);
            break;
        case CrashOpKind.Flush:
            Expect(pool.OpenVolume(op.Target).Flush(), op);
            break;
        case CrashOpKind.Snapshot:
            pool.CreateSnapshot(op.Source, op.Target, $"s-{op.Index}", ThinImageState.Pending, op.Annotation);
            pool.SetImageState(op.Target, ThinImageState.Committed);
            break;
        case CrashOpKind.CloneFromSnapshot:
            pool.CloneFromSnapshot(op.Target, $"c-{op.Index}", op.Source, op.Length, CrashOp.BlockSize, ThinImageState.Pending, op.Annotation);
            pool.SetImageState(op.Target, ThinImageState.Committed);
            break;
        case CrashOpKind.CloneFromVolume:
            pool.CloneFromVolume(op.Target, $"c-{op.Index}", op.Source, op.Length, CrashOp.BlockSize, ThinImageState.Pending, op.Annotation);
            pool.SetImageState(op.Target, ThinImageState.Committed);
            break;
        case CrashOpKind.DeleteVolume:
            pool.SetImageState(op.Target, ThinImageState.Deleting);
            pool.DeleteVolume(op.Target);
            break;
        case CrashOpKind.DeleteSnapshot:
            pool.SetImageState(op.Target, ThinImageState.Deleting);
            pool.DeleteSnapshot(op.Target);
            break;
        case CrashOpKind.Resize:
            pool.OpenVolume(op.Target).Resize(op.Length);
            break;
        default:
            throw new InvalidOperationException($"unknown operation {op.Kind}");
    }
}

static void Expect(StorageStatus status, CrashOp op)
{
    if (status != StorageStatus.Success)
    {
        Console.Error.WriteLine($"operation {op.Index} {op.Kind} failed with {status}");
        Environment.Exit(3);
    }
}
