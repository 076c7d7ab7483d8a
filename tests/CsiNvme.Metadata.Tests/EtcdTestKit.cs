using System.Diagnostics;
using System.Threading.Channels;
using CsiNvme.Metadata.Etcd;
using dotnet_etcd;
using Grpc.Net.Client;

namespace CsiNvme.Metadata.Tests;

/// <summary>Helpers shared by the etcd tests: records, a raw etcd client, a watch collector, bounded waits.</summary>
internal static class EtcdTestKit
{
    /// <summary>etcd's minimum lease TTL with its default election timeout (1 s): 1.5 s, granted as 2 s.</summary>
    public static readonly TimeSpan ShortTtl = TimeSpan.FromSeconds(2);

    /// <summary>
    /// For tests that need a lease to stay valid: a keep-alive may then be late by 3 s (TTL minus the 0.8 s margin)
    /// without losing it, which a busy machine does not reach, while <see cref="ShortTtl"/> tests expiry.
    /// </summary>
    public static readonly TimeSpan StableTtl = TimeSpan.FromSeconds(4);

    /// <summary>Waits for events far longer than they should take, so a busy machine does not fail the tests.</summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    public static string NewPrefix() => $"/csinvme-test/{Guid.NewGuid():N}/";

    public static Task<EtcdMetadataStore> ConnectAsync(string url, string prefix, EtcdStoreOptions? options = null) =>
        EtcdMetadataStore.ConnectAsync([url], prefix, options);

    public static NodeRecord Node(string name, int ordinal, long freeBytes = 100L << 30) => new(
        name,
        ordinal,
        [$"127.0.0.1:{4420 + ordinal}"],
        $"127.0.0.1:{9000 + ordinal}",
        [new NodePoolRecord("default", 200L << 30, freeBytes)],
        DateTimeOffset.FromUnixTimeMilliseconds(1_750_000_000_000 + ordinal),
        "test");

    public static VolumeRecord Volume(string name) => MetadataStoreTests.Volume(name) with
    {
        ReplicaCount = 2,
        Replicas = [new ReplicaRecord("n0", "default", ReplicaState.InSync, 1), new ReplicaRecord("n1", "default", ReplicaState.InSync, 1)],
        Primary = "n0",
        Epoch = 1,
    };

    /// <summary>A plain dotnet-etcd client straight to etcd, to look at or change what the store wrote.</summary>
    public static RawEtcd Raw(string url) => new(url);

    /// <summary>Polls <paramref name="condition"/> until it holds; fails the test after <see cref="Patience"/>.</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > Patience)
            {
                Assert.Fail($"not within {Patience.TotalSeconds:F0}s: {what}");
            }

            await Task.Delay(50);
        }
    }

    public static double Seconds(long stopwatchTicks) => stopwatchTicks / (double)Stopwatch.Frequency;

    internal sealed class RawEtcd : IDisposable
    {
        private readonly GrpcChannel _channel;

        public RawEtcd(string url)
        {
            _channel = GrpcChannel.ForAddress(url);
            Client = new EtcdClient(_channel.CreateCallInvoker());
        }

        public EtcdClient Client { get; }

        public void Dispose()
        {
            Client.Dispose();
            _channel.Dispose();
        }
    }
}

/// <summary>Reads a store's change feed in the background into a queue the test takes changes from, in order.</summary>
internal sealed class ChangeCollector : IAsyncDisposable
{
    private readonly Channel<ClusterChange> _changes = Channel.CreateUnbounded<ClusterChange>();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reading;

    public ChangeCollector(IClusterStore store, long afterRevision)
    {
        _reading = Task.Run(async () =>
        {
            try
            {
                await foreach (ClusterChange change in store.WatchAsync(afterRevision, _stop.Token))
                {
                    await _changes.Writer.WriteAsync(change);
                }

                _changes.Writer.TryComplete();
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                _changes.Writer.TryComplete();
            }
            catch (Exception e)
            {
                _changes.Writer.TryComplete(e);
            }
        });
    }

    /// <summary>The next change; fails the test when none comes within the patience.</summary>
    public async Task<ClusterChange> NextAsync()
    {
        using var limit = new CancellationTokenSource(EtcdTestKit.Patience);
        try
        {
            return await _changes.Reader.ReadAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"no change within {EtcdTestKit.Patience.TotalSeconds:F0}s");
            throw;
        }
    }

    public async Task<T> NextAsync<T>()
        where T : ClusterChange
    {
        ClusterChange change = await NextAsync();
        Assert.That(change, Is.InstanceOf<T>(), $"expected a {typeof(T).Name}, got {change}");
        return (T)change;
    }

    /// <summary>True when no further change arrives within <paramref name="quiet"/>.</summary>
    public async Task<ClusterChange?> NextOrNullAsync(TimeSpan quiet)
    {
        using var limit = new CancellationTokenSource(quiet);
        try
        {
            return await _changes.Reader.ReadAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>Completes when the feed itself ended (after <see cref="ResyncRequired"/>).</summary>
    public Task Completion => _changes.Reader.Completion;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _reading;
        _stop.Dispose();
    }
}
