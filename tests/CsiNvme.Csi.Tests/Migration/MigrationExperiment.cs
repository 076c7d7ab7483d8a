using System.Diagnostics;
using Csi.V1;
using CsiNvme.Api.V1;
using CsiNvme.Csi.Tests.EndToEnd;
using NUnit.Framework;
using static CsiNvme.Csi.Tests.EndToEnd.CsiWalk;
using CsiVolume = Csi.V1.Volume;

namespace CsiNvme.Csi.Tests.Migration;

/// <summary>What a storage node does during a run.</summary>
internal enum StorageEvent
{
    None,

    /// <summary>The primary of the first disk (or another node but the controller's) is killed with SIGKILL during pre-copy.</summary>
    KillNodeDuringPrecopy,

    /// <summary>The primary of the first disk is drained (its primaries handed over) during pre-copy.</summary>
    DrainPrimaryDuringPrecopy,
}

/// <summary>How long each phase lasts and where the results go.</summary>
internal sealed record MigrationPlan(string Name, TimeSpan Before, TimeSpan Precopy, TimeSpan After, int DiskMiB, StorageEvent Event = StorageEvent.None)
{
    /// <summary>The CI run: 20 s on each side, a short pre-copy.</summary>
    public static MigrationPlan Short(string name, StorageEvent storageEvent = StorageEvent.None) =>
        new(name, TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(20), 32, storageEvent);

    /// <summary>The experiment run by hand: 60 s before, 20 s of pre-copy, 60 s after.</summary>
    public static MigrationPlan Full(string name, StorageEvent storageEvent = StorageEvent.None) =>
        new(name, TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(60), 64, storageEvent);
}

/// <summary>
/// A VM's live migration as Kubernetes and KubeVirt drive the CSI driver, with two Linux guests as the source and the
/// destination node (each running the node plugin next to its kernel) and the storage on the host: three RWX block
/// disks staged and published on the source and written by fio; ControllerPublish, NodeStage, NodePublish of each
/// disk on the destination while the source keeps writing (pre-copy); the switchover (the source stops its I/O and
/// flushes; both nodes read a checksum of every disk, which must agree; the destination's workload, started during
/// pre-copy and waiting, is let go);
/// then NodeUnpublish, NodeUnstage and ControllerUnpublish of the source while the destination writes.
/// </summary>
internal sealed class MigrationExperiment(MigrationStorage storage, GuestNode source, GuestNode destination, MigrationPlan plan)
{
    public static readonly string[] DiskNames = ["os", "data1", "data2"];
    private const string Devices = "/csi-e2e/pods/vm/volumeDevices";
    private static readonly VolumeCapability _capability = Block(VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeMultiWriter);

    private readonly Stopwatch _clock = new();
    private readonly FioWorkload _fio = new(DiskNames, Devices, plan.DiskMiB);
    private MigrationRecord _record = null!;

    private double Now => _clock.Elapsed.TotalSeconds;

    public async Task<MigrationReport> RunAsync()
    {
        var sourceId = (await source.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
        var destinationId = (await destination.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
        var volumes = new List<CsiVolume>();
        foreach (var disk in DiskNames)
        {
            var request = Create($"{plan.Name}-{disk}", plan.DiskMiB * MiB, _capability);
            request.Parameters.Clear();
            request.Parameters.Add(storage.VolumeParameters);
            volumes.Add((await storage.Controller.CreateVolumeAsync(request)).Volume);
        }

        foreach (var guest in new[] { source, destination })
        {
            await guest.ShellAsync($"mkdir -p {Devices} /csi-e2e/staging");
        }

        // The VM runs on the source: its disks attached there and filled once.
        var discard = new MigrationRecord { Setup = "", Disks = DiskNames, DiskMiB = 0, Workload = "", StartedAt = DateTimeOffset.UtcNow };
        _record = discard;
        _clock.Start();
        for (var i = 0; i < DiskNames.Length; i++)
        {
            await AttachAsync(source, sourceId, DiskNames[i], volumes[i], "source");
        }

        await source.ShellAsync(_fio.PrefillCommand(), TimeSpan.FromMinutes(5));
        var clocks = new Dictionary<MigrationSide, (double, double)>
        {
            [MigrationSide.Source] = await FioWorkload.ClockOffsetAsync(source),
            [MigrationSide.Destination] = await FioWorkload.ClockOffsetAsync(destination),
        };

        _record = new MigrationRecord
        {
            Setup = storage.Name,
            Disks = DiskNames,
            DiskMiB = plan.DiskMiB,
            Workload = _fio.Description,
            StartedAt = DateTimeOffset.UtcNow,
        };
        _clock.Restart();
        foreach (var (side, offset) in clocks)
        {
            _record.Clocks[side] = offset;
        }

        // ---- Before: the VM runs on the source ----
        await source.ShellAsync(_fio.StartCommand(MigrationSide.Source));
        _record.Mark(Now, "* source workload started");
        await Task.Delay(plan.Before);

        // ---- Pre-copy: the destination pod is scheduled and its volumes attached while the source keeps writing ----
        _record.PrecopyStart = Now;
        _record.Mark(Now, "* pre-copy: destination ControllerPublish, NodeStage, NodePublish");
        var staging = Stopwatch.StartNew();
        for (var i = 0; i < DiskNames.Length; i++)
        {
            await AttachAsync(destination, destinationId, DiskNames[i], volumes[i], "destination");
        }

        _record.Mark(Now, $"* destination has the {DiskNames.Length} disks", staging.Elapsed.TotalSeconds);
        // The destination's workload is ready, its disks open, and waits for the switchover, as the destination's QEMU
        // waits paused for the VM's state.
        await destination.ShellAsync(_fio.StartCommand(MigrationSide.Destination, waitForGo: true));
        _record.Mark(Now, "* destination workload ready, waiting for the switchover");
        await StorageEventAsync();
        var remaining = plan.Precopy - TimeSpan.FromSeconds(Now - _record.PrecopyStart);
        if (remaining > TimeSpan.Zero)
        {
            await Task.Delay(remaining);
        }

        // ---- Switchover: the source stops issuing I/O and flushes, both sides read what the disks hold, the destination runs on ----
        _record.SwitchoverStart = Now;
        _record.Mark(Now, "* switchover: source stops");
        var stopped = await source.ShellAsync(_fio.StopCommand(MigrationSide.Source));
        Assert.That(Value(stopped, "STOPPED"), Is.EqualTo("yes"), "fio on the source stopped");
        _record.SourceFlush = (FioWorkload.RunSeconds(Value(stopped, "FLUSH_START"), MigrationSide.Source, _record),
            FioWorkload.RunSeconds(Value(stopped, "FLUSH_END"), MigrationSide.Source, _record));
        _record.Mark(_record.SourceFlush.Start, "* source flushed its disks", _record.SourceFlush.End - _record.SourceFlush.Start);
        var verification = Stopwatch.StartNew();
        var sums = await Task.WhenAll(source.ShellAsync(_fio.ChecksumCommand()), destination.ShellAsync(_fio.ChecksumCommand()));
        _record.VerificationSeconds = verification.Elapsed.TotalSeconds;
        var (sourceSums, destinationSums) = (FioWorkload.ParseChecksums(sums[0]), FioWorkload.ParseChecksums(sums[1]));
        foreach (var disk in DiskNames)
        {
            _record.Handover[disk] = (sourceSums.GetValueOrDefault(disk, ""), destinationSums.GetValueOrDefault(disk, ""));
        }

        _record.Mark(Now, "* both nodes read every disk's checksum", _record.VerificationSeconds);
        _record.DestinationStart = Now;
        var go = await destination.ShellAsync(_fio.GoCommand(MigrationSide.Destination));
        _record.DestinationGoAt = FioWorkload.RunSeconds(Value(go, "GO_AT"), MigrationSide.Destination, _record);
        _record.Mark(_record.DestinationGoAt, "* destination workload resumed");

        // ---- After: the source pod ends, its volumes are detached while the destination runs ----
        await Task.Delay(TimeSpan.FromSeconds(2));
        _record.Mark(Now, "* source NodeUnpublish, NodeUnstage, ControllerUnpublish");
        var cleanup = Stopwatch.StartNew();
        for (var i = 0; i < DiskNames.Length; i++)
        {
            await DetachAsync(source, sourceId, DiskNames[i], volumes[i], "source");
        }

        _record.Mark(Now, "* source has no disk left", cleanup.Elapsed.TotalSeconds);
        var afterRemaining = plan.After - TimeSpan.FromSeconds(Now - _record.DestinationStart);
        if (afterRemaining > TimeSpan.Zero)
        {
            await Task.Delay(afterRemaining);
        }

        var destinationStopped = await destination.ShellAsync(_fio.StopCommand(MigrationSide.Destination));
        _record.End = Now;
        _record.Mark(Now, "* destination workload stopped");
        Assert.That(Value(destinationStopped, "STOPPED"), Is.EqualTo("yes"), "fio on the destination stopped");

        _fio.Collect(await source.ShellAsync(_fio.CollectCommand(MigrationSide.Source), TimeSpan.FromMinutes(5)), MigrationSide.Source, _record);
        _fio.Collect(await destination.ShellAsync(_fio.CollectCommand(MigrationSide.Destination), TimeSpan.FromMinutes(5)), MigrationSide.Destination, _record);

        // The VM is gone: the destination lets go of the disks and they are deleted.
        for (var i = 0; i < DiskNames.Length; i++)
        {
            await DetachAsync(destination, destinationId, DiskNames[i], volumes[i], "destination");
            await storage.Controller.DeleteVolumeAsync(new global::Csi.V1.DeleteVolumeRequest { VolumeId = volumes[i].VolumeId });
        }

        return new MigrationReport(_record);
    }

    private async Task AttachAsync(GuestNode guest, string nodeId, string disk, CsiVolume volume, string side)
    {
        var published = await TimedAsync($"{side} ControllerPublish {disk}", async () => await storage.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = volume.VolumeId, NodeId = nodeId, VolumeCapability = _capability, VolumeContext = { volume.VolumeContext },
        }));
        var context = ForGuest(published.PublishContext);
        await TimedAsync($"{side} NodeStage {disk}", async () => await guest.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest
        {
            VolumeId = volume.VolumeId, PublishContext = { context }, StagingTargetPath = Staging(volume), VolumeCapability = _capability,
            VolumeContext = { volume.VolumeContext },
        }));
        await TimedAsync($"{side} NodePublish {disk}", async () => await guest.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
        {
            VolumeId = volume.VolumeId, PublishContext = { context }, StagingTargetPath = Staging(volume), TargetPath = $"{Devices}/{disk}",
            VolumeCapability = _capability, VolumeContext = { volume.VolumeContext },
        }));
    }

    private async Task DetachAsync(GuestNode guest, string nodeId, string disk, CsiVolume volume, string side)
    {
        await TimedAsync($"{side} NodeUnpublish {disk}", async () => await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = $"{Devices}/{disk}" }));
        await TimedAsync($"{side} NodeUnstage {disk}", async () => await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = Staging(volume) }));
        await TimedAsync($"{side} ControllerUnpublish {disk}", async () => await storage.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = nodeId }));
    }

    private async Task StorageEventAsync()
    {
        if (plan.Event == StorageEvent.None)
        {
            return;
        }

        // The node serving the first disk, unless the CSI controller depends on it (then the primary of another disk).
        var primaries = new List<string>();
        foreach (var disk in DiskNames)
        {
            primaries.Add(await storage.PrimaryOfAsync($"{plan.Name}-{disk}"));
        }

        if (plan.Event == StorageEvent.KillNodeDuringPrecopy)
        {
            var victim = primaries.FirstOrDefault(p => p != storage.ControllerNode) ?? storage.Nodes.Keys.First(n => n != storage.ControllerNode);
            _record.StorageEvent = $"kill -9 of {victim} (primary of {string.Join(", ", DiskNames.Where((_, i) => primaries[i] == victim).DefaultIfEmpty("no disk"))}) during pre-copy";
            _record.Mark(Now, $"* kill -9 {victim}");
            storage.Kill(victim);
        }
        else
        {
            var drained = primaries[0];
            _record.StorageEvent = $"drain of {drained} (primary of {string.Join(", ", DiskNames.Where((_, i) => primaries[i] == drained))}) during pre-copy";
            _record.Mark(Now, $"* node drain {drained}");
            var watch = Stopwatch.StartNew();
            await storage.NodeApi.DrainNodeAsync(new NodeRequest { Name = drained });
            _record.Mark(Now, $"* drain of {drained} returned", watch.Elapsed.TotalSeconds);
        }
    }

    private async Task<T> TimedAsync<T>(string what, Func<Task<T>> call)
    {
        var at = Now;
        var watch = Stopwatch.StartNew();
        var result = await call();
        _record.Mark(at, what, watch.Elapsed.TotalSeconds);
        return result;
    }

    private static string Staging(CsiVolume volume) => $"/csi-e2e/staging/{volume.VolumeId}";
}
