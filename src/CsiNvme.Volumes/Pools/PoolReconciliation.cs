using System.Text;
using CsiNvme.Metadata;
using CsiNvme.Storage.Thin;
using Microsoft.Extensions.Logging;

using CsiNvme.Volumes.Backends;

namespace CsiNvme.Volumes.Pools;

/// <summary>
/// Makes the metadata store and the thin pools agree at server start, never by deleting what a user may still need.
/// <para>
/// A pool image without a record is reclaimed only when the pool says its creation or its deletion never finished
/// (pending: created, record not yet written, so never acknowledged; deleting: its deletion was under way). A committed
/// image without a record, a pool last used with another metadata store, a store that knew another pool under that
/// name, and a record whose image is missing all stop the start with one message naming each of them; nothing is
/// changed then. Such disagreement means a wrong or lost data directory or pool, not a crash, and cleaning it up
/// would delete VM disks. <c>--recover-metadata</c> rebuilds the missing records from what the pools record about their
/// images (<see cref="ImageRecoveryInfo"/>) and adopts the pools, then the start goes on as usual.
/// </para>
/// <para>
/// The pairing: the store keeps the identity of each pool it was used with (<see cref="PoolBinding"/>) and each pool
/// keeps the identity and place of its store (<see cref="PoolOwner"/>), both written once a start has succeeded.
/// </para>
/// </summary>
internal sealed class PoolReconciliation
{
    /// <summary>Images named in the start error per pool; every one of them is logged.</summary>
    private const int ImagesNamedPerPool = 50;

    private readonly IMetadataStore _store;
    private readonly IVolumeBackend _backend;
    private readonly ISnapshotBackend _pools;
    private readonly ILogger _logger;
    private readonly List<(string Pool, PoolImage Image)> _orphans = [];
    private readonly List<(string Pool, PoolImage Image)> _interrupted = [];
    private readonly List<PoolStatus> _toPair = [];
    private int _recovered;

    public PoolReconciliation(IMetadataStore store, IVolumeBackend backend, ISnapshotBackend pools, ILogger logger)
    {
        _store = store;
        _backend = backend;
        _pools = pools;
        _logger = logger;
    }

    /// <summary>Compares (after recovering, when asked); throws without changing anything when store and pools disagree.</summary>
    public async Task PrepareAsync(bool recover, CancellationToken cancellationToken)
    {
        var pools = _backend.GetPools();
        // What points at the wrong (or a lost) store, and what points at the wrong (or a damaged) pool.
        var storeProblems = new List<string>();
        var poolProblems = new List<string>();
        await CheckPairingAsync(pools, recover, storeProblems, poolProblems, cancellationToken);
        if (recover)
        {
            await RecoverAsync(pools, cancellationToken);
        }

        Compare(pools, await _store.ListVolumesAsync(cancellationToken), await _store.ListSnapshotsAsync(cancellationToken), storeProblems, poolProblems);
        if (storeProblems.Count > 0 || poolProblems.Count > 0)
        {
            throw new InvalidOperationException(Refusal(storeProblems, poolProblems));
        }
    }

    /// <summary>
    /// After the volumes are loaded: reclaims the crash orphans, settles interrupted states, brings every image's recovery
    /// annotation up to its record (images from before annotations get theirs here) and pairs store and pools.
    /// </summary>
    public async Task FinishAsync(IReadOnlyList<VolumeRecord> volumes, IReadOnlyList<SnapshotRecord> snapshots, CancellationToken cancellationToken)
    {
        foreach (var (pool, image) in _orphans)
        {
            var operation = image.State == ThinImageState.Pending ? "creation" : "deletion";
            VolumeLog.OrphanImageReclaimed(_logger, pool, image.Kind, image.Name, image.Id, StateName(image.State), operation);
            if (image.IsSnapshot)
            {
                _pools.DeleteSnapshot(pool, image.Id);
            }
            else
            {
                _backend.Delete(pool, image.Id);
            }
        }

        foreach (var (pool, image) in _interrupted)
        {
            // Pending with a record: the crash came between the record and the state change. Deleting with a record:
            // the record was never removed, so the delete was never acknowledged; the volume stays.
            VolumeLog.InterruptedImageKept(_logger, pool, image.Kind, image.Name, image.Id, StateName(image.State));
            _pools.SetImageState(pool, image.Id, ThinImageState.Committed);
        }

        foreach (var volume in volumes)
        {
            var current = _pools.GetImageAnnotation(volume.Pool, volume.Id);
            var expected = ImageRecoveryInfo.Of(volume, ImageRecoveryInfo.Read(current, out _)?.ClonedFrom);
            if (current != expected)
            {
                _pools.SetImageAnnotation(volume.Pool, volume.Id, expected);
            }
        }

        foreach (var snapshot in snapshots)
        {
            var expected = ImageRecoveryInfo.Of(snapshot);
            if (_pools.GetImageAnnotation(snapshot.Pool, snapshot.Id) != expected)
            {
                _pools.SetImageAnnotation(snapshot.Pool, snapshot.Id, expected);
            }
        }

        var owner = new PoolOwner(_store.StoreId, _store.Description).Serialize();
        foreach (var pool in _toPair)
        {
            // The store first: a crash in between leaves a pool that names its old owner, which the next start reports.
            await _store.SetPoolBindingAsync(new PoolBinding(pool.Name, pool.Id), cancellationToken);
            _pools.SetPoolAnnotation(pool.Name, owner);
        }
    }

    private async Task CheckPairingAsync(
        IReadOnlyList<PoolStatus> pools, bool recover, List<string> storeProblems, List<string> poolProblems, CancellationToken cancellationToken)
    {
        var bindings = (await _store.ListPoolBindingsAsync(cancellationToken)).ToDictionary(b => b.Name, StringComparer.Ordinal);
        foreach (var pool in pools)
        {
            var owner = PoolOwner.Read(_pools.GetPoolAnnotation(pool.Name));
            var bound = bindings.GetValueOrDefault(pool.Name);
            var problems = new List<(string Text, List<string> Kind)>();
            if (owner is not null && owner.StoreId != _store.StoreId)
            {
                problems.Add((owner.Store == _store.Description
                    ? $"pool {pool.Name} ({pool.DataPath}, pool id {pool.Id}) was last used with a metadata store at this same place, {owner.Store}, " +
                      $"but that one had store id {owner.StoreId} and this one has {_store.StoreId}: the metadata file was lost and recreated, or replaced"
                    : $"pool {pool.Name} ({pool.DataPath}, pool id {pool.Id}) was last used with metadata store {owner.Store} (store id {owner.StoreId}), " +
                      $"not with this one (store id {_store.StoreId})", storeProblems));
            }

            if (bound is not null && bound.PoolId != pool.Id)
            {
                problems.Add(($"metadata store {_store.Description} was used with a pool {pool.Name} of pool id {bound.PoolId}, but {pool.DataPath} holds pool id {pool.Id}", poolProblems));
            }

            foreach (var (problem, kind) in problems)
            {
                if (recover)
                {
                    VolumeLog.PoolAdopted(_logger, pool.Name, pool.Id, problem, _store.Description, _store.StoreId);
                }
                else
                {
                    kind.Add(problem);
                }
            }

            if (owner?.StoreId != _store.StoreId || owner.Store != _store.Description || bound?.PoolId != pool.Id)
            {
                _toPair.Add(pool);
            }
        }
    }

    /// <summary>
    /// Rebuilds the record of every committed pool image the store does not know. Existing records win: an image whose id
    /// has a record is left alone, and one whose name is taken by another record stops the recovery before it writes
    /// anything.
    /// </summary>
    private async Task RecoverAsync(IReadOnlyList<PoolStatus> pools, CancellationToken cancellationToken)
    {
        var volumes = await _store.ListVolumesAsync(cancellationToken);
        var snapshots = await _store.ListSnapshotsAsync(cancellationToken);
        var known = volumes.Select(v => v.Id).Concat(snapshots.Select(s => s.Id)).ToHashSet();
        var volumeNames = volumes.ToDictionary(v => v.Name, v => $"id {v.Id}, pool {v.Pool}", StringComparer.Ordinal);
        var snapshotNames = snapshots.ToDictionary(s => s.Name, s => $"id {s.Id}, pool {s.Pool}", StringComparer.Ordinal);
        var rebuilt = new List<(string Pool, PoolImage Image, ImageRecoveryInfo? Info, string? Problem)>();
        var conflicts = new List<string>();
        foreach (var pool in pools)
        {
            foreach (var image in _pools.ListImages(pool.Name).Where(i => i.State == ThinImageState.Committed && !known.Contains(i.Id)))
            {
                var names = image.IsSnapshot ? snapshotNames : volumeNames;
                if (!names.TryAdd(image.Name, $"id {image.Id}, pool {pool.Name}"))
                {
                    conflicts.Add($"{image.Kind} {image.Name} (id {image.Id}) in pool {pool.Name}: a {image.Kind} of that name is already recorded ({names[image.Name]})");
                    continue;
                }

                var info = ImageRecoveryInfo.Read(image.Annotation, out var problem);
                rebuilt.Add((pool.Name, image, info, problem));
            }
        }

        if (conflicts.Count > 0)
        {
            throw new InvalidOperationException(
                $"--recover-metadata rebuilt nothing: existing records win, and these pool images have the name of another recorded image:{Lines(conflicts)}" +
                $"{Environment.NewLine}Two images cannot share a name; the pools or the metadata store {_store.Description} are not the ones that belong together (check --pool and --data-dir).");
        }

        foreach (var (pool, image, info, problem) in rebuilt)
        {
            bool created;
            if (image.IsSnapshot)
            {
                var record = ImageRecoveryInfo.RebuildSnapshot(image, pool, info);
                created = await _store.TryCreateSnapshotAsync(record, cancellationToken);
                if (created)
                {
                    var source = record.SourceVolumeName.Length > 0 ? $", of volume {record.SourceVolumeName} (id {record.SourceVolumeId})" : "";
                    VolumeLog.RecordRecovered(
                        _logger, image.Kind, record.Name, pool, _store.Description, record.Id, record.SizeBytes, record.BlockSize, record.CreatedAt, "",
                        FormatLabels(record.Labels), source);
                }
            }
            else
            {
                var record = ImageRecoveryInfo.RebuildVolume(image, pool, info);
                created = await _store.TryCreateVolumeAsync(record, cancellationToken);
                if (created)
                {
                    var access = record.AllowAnyHost ? ", any host allowed" : record.AllowedHosts.Count == 0 ? ", no host allowed" : ", hosts " + string.Join(" ", record.AllowedHosts);
                    var source = info?.ClonedFrom is { } clonedFrom ? $", cloned from {clonedFrom}" : "";
                    VolumeLog.RecordRecovered(
                        _logger, image.Kind, record.Name, pool, _store.Description, record.Id, record.SizeBytes, record.BlockSize, record.CreatedAt, access,
                        FormatLabels(record.Labels), source);
                }
            }

            if (!created)
            {
                throw new InvalidOperationException($"--recover-metadata: recording {image.Kind} {image.Name} (id {image.Id}) of pool {pool} in {_store.Description} failed: the name was taken meanwhile");
            }

            if (info is null)
            {
                VolumeLog.RecoveredWithoutDetails(_logger, pool, image.Kind, image.Name, image.Id, problem!, image.IsSnapshot ? ", no source volume" : "");
            }
        }

        _recovered = rebuilt.Count;
        VolumeLog.RecoveryFinished(_logger, rebuilt.Count, _store.Description, known.Count);
    }

    private void Compare(
        IReadOnlyList<PoolStatus> pools, IReadOnlyList<VolumeRecord> volumes, IReadOnlyList<SnapshotRecord> snapshots, List<string> storeProblems, List<string> poolProblems)
    {
        var records = volumes.Select(v => (v.Id, v.Name, v.Pool, IsSnapshot: false))
            .Concat(snapshots.Select(s => (s.Id, s.Name, s.Pool, IsSnapshot: true)))
            .ToList();
        var recordsById = records.ToDictionary(r => r.Id);
        var configured = pools.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var pool in pools)
        {
            var images = _pools.ListImages(pool.Name);
            var unknown = new List<PoolImage>();
            foreach (var image in images)
            {
                if (recordsById.TryGetValue(image.Id, out var record))
                {
                    if (record.IsSnapshot != image.IsSnapshot || record.Pool != pool.Name)
                    {
                        poolProblems.Add($"{Kind(record.IsSnapshot)} {record.Name} (id {record.Id}) is recorded in pool {record.Pool}, but pool {pool.Name} holds that id as {image.Kind} {image.Name}");
                    }
                    else if (image.State != ThinImageState.Committed)
                    {
                        _interrupted.Add((pool.Name, image));
                    }
                }
                else if (image.State is ThinImageState.Pending or ThinImageState.Deleting)
                {
                    _orphans.Add((pool.Name, image));
                }
                else
                {
                    unknown.Add(image);
                    VolumeLog.UnknownPoolImage(_logger, pool.Name, image.Kind, image.Name, image.Id, image.SizeBytes, image.CreatedAt, _store.Description);
                }
            }

            if (unknown.Count > 0)
            {
                var named = string.Join(", ", unknown.Take(ImagesNamedPerPool).Select(i => $"{i.Kind} {i.Name} (id {i.Id})"));
                var more = unknown.Count > ImagesNamedPerPool ? $" and {unknown.Count - ImagesNamedPerPool} more (each is logged)" : "";
                storeProblems.Add($"pool {pool.Name} ({pool.DataPath}) holds {Count(unknown.Count, "image")} that the metadata store has no record of: {named}{more}");
            }

            var present = images.Select(i => i.Id).ToHashSet();
            foreach (var record in records.Where(r => r.Pool == pool.Name && !present.Contains(r.Id)))
            {
                poolProblems.Add($"{Kind(record.IsSnapshot)} {record.Name} (id {record.Id}) is missing from pool {pool.Name} ({pool.DataPath})");
            }
        }

        foreach (var record in records.Where(r => !configured.Contains(r.Pool)))
        {
            poolProblems.Add(record.Pool.Length == 0
                ? $"{Kind(record.IsSnapshot)} {record.Name} (id {record.Id}) has no pool: it was created by the file backend; start the server with --backend file to serve it"
                : $"{Kind(record.IsSnapshot)} {record.Name} (id {record.Id}) is in pool {record.Pool}, which is not configured (--pool)");
        }
    }

    private string Refusal(List<string> storeProblems, List<string> poolProblems)
    {
        var message = new StringBuilder($"metadata store {_store.Description} and the pools disagree; ");
        message.Append(_recovered == 0
            ? "nothing was changed and every pool image was left in place:"
            : $"the {Count(_recovered, "record")} rebuilt by --recover-metadata were kept, nothing was deleted and every pool image was left in place:");
        message.Append(Lines(storeProblems)).Append(Lines(poolProblems));
        if (storeProblems.Count > 0)
        {
            message.AppendLine().Append(
                "If --data-dir is not the data directory these pools were used with, start with that one. If their metadata is lost, start once with " +
                "--recover-metadata to rebuild the volume and snapshot records from what the pools record about their images.");
        }

        if (poolProblems.Count > 0)
        {
            message.AppendLine().Append(
                "Check --pool: a pool of another identity under a known name, or a record whose image is missing, means a pool is not the one these " +
                "records were written for (or has lost data); --recover-metadata adopts such a pool but cannot bring back a missing image.");
        }

        return message.ToString();
    }

    private static string Lines(IEnumerable<string> items) => string.Concat(items.Select(i => Environment.NewLine + "  - " + i));

    private static string Kind(bool isSnapshot) => isSnapshot ? "snapshot" : "volume";

    private static string Count(int count, string noun) => count == 1 ? $"1 {noun}" : $"{count} {noun}s";

    private static string StateName(ThinImageState state) => state.ToString().ToLowerInvariant();

    private static string FormatLabels(IReadOnlyDictionary<string, string> labels) =>
        labels.Count == 0 ? "none" : string.Join(", ", labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));
}
