using System.Buffers.Binary;
using CsiNvme.Api.V1;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests;

/// <summary>
/// Host removal fences in a cluster: DenyHost returns once no node exporting the volume has a controller of the host
/// or a command of it still running, so the volume no longer changes from that host's side afterwards.
/// </summary>
[Category("Cluster")]
public sealed class ClusterFencingTests
{
    private const int BlockSize = 512;
    private const int Blocks = 4096;
    private const int Writers = 32;

    [Test]
    public async Task DenyHost_returns_once_the_hosts_replicated_writes_ended_and_nothing_of_it_lands_afterwards()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var writerHost = NvmeHostIdentity.Create();
        var readerHost = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest
        {
            Name = "fenced", SizeBytes = Blocks * BlockSize, Replicas = 3, AllowedHosts = { writerHost.Nqn, readerHost.Nqn },
        });
        await using var writer = await ConnectAsync(cluster, volume.Primary, volume, writerHost);
        await using var reader = await ConnectAsync(cluster, volume.Primary, volume, readerHost);

        // Writers keep the queue full of sequence-numbered blocks until their controller is gone.
        long sequence = 0;
        var lastAcknowledged = new long[Writers];
        var writing = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            var ns = writer.FindNamespace(1)!;
            var data = new byte[BlockSize];
            try
            {
                while (true)
                {
                    var seq = Interlocked.Increment(ref sequence);
                    BinaryPrimitives.WriteInt64LittleEndian(data, seq);
                    var completion = await writer.IoQueues[0].WriteAsync(ns, (ulong)(seq % Blocks), data);
                    if (!completion.Status.IsSuccess)
                    {
                        return;
                    }

                    lastAcknowledged[w] = seq;
                }
            }
            catch (Exception e) when (e is not AssertionException)
            {
                // The connection is gone: the writes this writer had in flight failed.
            }
        })).ToArray();
        Assert.That(await InProcessCluster.WaitAsync(() => Task.FromResult(Interlocked.Read(ref sequence) > 2000), TimeSpan.FromSeconds(60)), Is.True, "writes are flowing");

        var denied = await cluster.Volumes("node-b").DenyHostAsync(new HostAccessRequest { Name = "fenced", HostNqn = writerHost.Nqn });
        var atReturn = await ReadAllAsync(reader);
        await Task.Delay(1000);
        var aSecondLater = await ReadAllAsync(reader);

        Assert.That(await Task.WhenAll(writing).WaitAsync(TimeSpan.FromSeconds(60)).ContinueWith(t => t.IsCompletedSuccessfully), Is.True, "every writer saw its writes fail");
        var changed = Enumerable.Range(0, Blocks).Count(b => Seq(atReturn, b) != Seq(aSecondLater, b));
        var highestOnVolume = Enumerable.Range(0, Blocks).Max(b => Seq(atReturn, b));
        TestContext.Out.WriteLine($"{Interlocked.Read(ref sequence)} writes issued, highest acknowledged {lastAcknowledged.Max()}, highest on the volume {highestOnVolume}");
        Assert.Multiple(() =>
        {
            Assert.That(denied.ConnectedHosts, Is.EqualTo(new[] { readerHost.Nqn }), "no node keeps a controller of the denied host");
            Assert.That(changed, Is.Zero, "no block changed after DenyHost returned");
            Assert.That(highestOnVolume, Is.GreaterThanOrEqualTo(lastAcknowledged.Max()), "every acknowledged write is on the volume");
        });

        // The reader's own writes go on, and the removed host cannot come back.
        var ns = reader.FindNamespace(1)!;
        Assert.That((await reader.IoQueues[0].WriteAsync(ns, 0, new byte[BlockSize])).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(async () => await ConnectAsync(cluster, volume.Primary, volume, writerHost), Throws.Exception, "a reconnect is refused");
    }

    private static long Seq(byte[] image, int block) => BinaryPrimitives.ReadInt64LittleEndian(image.AsSpan(block * BlockSize));

    private static async Task<byte[]> ReadAllAsync(NvmeController reader)
    {
        var ns = reader.FindNamespace(1)!;
        var image = new byte[Blocks * BlockSize];
        const int chunk = 64 * 1024;
        for (var offset = 0; offset < image.Length; offset += chunk)
        {
            var completion = await reader.IoQueues[0].ReadAsync(ns, (ulong)(offset / BlockSize), image.AsMemory(offset, chunk));
            Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success));
        }

        return image;
    }

    private static async Task<NvmeController> ConnectAsync(InProcessCluster cluster, string node, Volume volume, NvmeHostIdentity host) =>
        await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id, Reconnect = false })
            .ConnectAsync(cluster.Node(node).NvmeEndpoints[0], volume.SubsystemNqn);
}
