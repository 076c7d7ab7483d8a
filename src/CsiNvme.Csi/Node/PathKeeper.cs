using System.Globalization;
using CsiNvme.Csi.Authentication;
using CsiNvme.Csi.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Csi.Node;

/// <summary>What one pass of the path keeper did for one volume.</summary>
public sealed record PathKeeperOutcome(string VolumeId, PathPlan Plan, IReadOnlyList<PathConnectResult> Connected, VolumePathReport Report);

/// <summary>
/// Keeps the paths of every staged volume whole while it stays staged, without a restage or a pod restart: every
/// <see cref="NodeOptions.PathKeeperPeriod"/> (and right after each stage) it reads the discovery logs of the volumes'
/// listeners as this node's host, connects the paths the kernel dropped (after ctrl_loss_tmo) and the listeners of
/// replicas added since, lets go of listeners no discovery log lists any more, holds the last paths of a replicated
/// volume while none is live (<see cref="PathPlan.Decide"/>), and exports each volume's paths as metrics.
/// </summary>
internal sealed class PathKeeper(
    NodeOptions options,
    INodePlatform platform,
    NodeStateStore state,
    FabricsPaths paths,
    PathDiscovery discovery,
    NodePathMetrics metrics,
    [FromKeyedServices(NodeModule.VolumeLocksKey)] KeyedAsyncLock volumeLocks,
    ILogger<PathKeeper> logger) : BackgroundService
{
    // Rounds of discovery in one pass: the listeners the node knows, then those their logs named.
    private const int DiscoveryRounds = 3;

    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly SemaphoreSlim _pass = new(1, 1);
    private readonly Dictionary<(string Volume, FabricsTarget Target), (int Failures, DateTime NextAttempt)> _backoff = new();
    private readonly Dictionary<string, bool> _degraded = new(StringComparer.Ordinal);

    private string HostNqn => options.Identity.HostNqn;

    /// <summary>Starts a pass soon (after a stage) instead of at the end of the period.</summary>
    public void Trigger()
    {
        try
        {
            _wake.Release();
        }
        catch (SemaphoreFullException)
        {
            // A pass is already due.
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.PathKeeperPeriod <= TimeSpan.Zero)
        {
            return;
        }

        // The first pass (after a driver restart: metrics and lost paths of volumes staged before) must not hold up the host's start.
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await RunOnceAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                NodeLog.PathKeeperFailed(logger, e.Message, e);
            }

            try
            {
                await _wake.WaitAsync(options.PathKeeperPeriod, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>One pass over every staged volume; passes never overlap.</summary>
    public async Task<IReadOnlyList<PathKeeperOutcome>> RunOnceAsync(CancellationToken cancellationToken)
    {
        await _pass.WaitAsync(cancellationToken);
        try
        {
            var volumes = state.All();
            if (volumes.Count == 0)
            {
                return [];
            }

            var answers = await DiscoverAsync(volumes, cancellationToken);
            var outcomes = new List<PathKeeperOutcome>();
            foreach (var volume in volumes)
            {
                using var held = await volumeLocks.AcquireAsync(volume.VolumeId, cancellationToken);
                // Unstaged (or restaged) while discovery ran: the record is the truth.
                if (state.Load(volume.VolumeId) is { } current)
                {
                    outcomes.Add(await KeepAsync(current, answers, cancellationToken));
                }
            }

            var staged = volumes.Select(v => v.VolumeId).ToHashSet(StringComparer.Ordinal);
            foreach (var gone in _degraded.Keys.Where(v => !staged.Contains(v)).ToList())
            {
                _degraded.Remove(gone);
            }

            foreach (var gone in _backoff.Keys.Where(k => !staged.Contains(k.Volume)).ToList())
            {
                _backoff.Remove(gone);
            }

            return outcomes;
        }
        finally
        {
            _pass.Release();
        }
    }

    /// <summary>Reads the discovery log of every known listener, then of the listeners those logs name, in parallel.</summary>
    private async Task<IReadOnlyDictionary<FabricsTarget, DiscoveryAnswer>> DiscoverAsync(IReadOnlyList<StagedVolume> volumes, CancellationToken cancellationToken)
    {
        var nqns = volumes.Select(v => v.SubsystemNqn).ToHashSet(StringComparer.Ordinal);
        var answers = new Dictionary<FabricsTarget, DiscoveryAnswer>();
        var next = volumes
            .SelectMany(v => v.Targets)
            .Select(t => FabricsTarget.TryParse(t, out var target) ? target : null)
            .OfType<FabricsTarget>()
            .Distinct()
            .ToList();
        for (var round = 0; round < DiscoveryRounds && next.Count > 0; round++)
        {
            foreach (var answer in await Task.WhenAll(next.Select(t => discovery.ReadAsync(t, cancellationToken))))
            {
                answers[answer.Source] = answer;
                if (!answer.Answered)
                {
                    NodeLog.DiscoveryUnanswered(logger, answer.Source.ToString(), answer.Error ?? "");
                }
            }

            next = answers.Values
                .SelectMany(a => a.Listeners ?? [])
                .Where(l => nqns.Contains(l.SubsystemNqn) && !answers.ContainsKey(l.Target))
                .Select(l => l.Target)
                .Distinct()
                .ToList();
        }

        return answers;
    }

    /// <summary>
    /// The DH-HMAC-CHAP secrets a live controller of the volume was connected (or last re-authenticated) with, read from
    /// its sysfs attributes (root only): NodeStageVolume's secrets are kept nowhere else on the node, so a path the
    /// keeper adds uses what the kernel holds. Null when no controller has them (the new path is then refused).
    /// </summary>
    private DhchapCsiSecrets? SecretsOfLiveController(IReadOnlyList<NvmeControllerInfo> controllers)
    {
        foreach (var controller in controllers.Where(c => c.IsLive))
        {
            var host = platform.Sysfs.ReadControllerAttribute(controller.Name, "dhchap_secret");
            if (host is null || !host.StartsWith("DHHC-1:", StringComparison.Ordinal))
            {
                continue;
            }

            var ctrl = platform.Sysfs.ReadControllerAttribute(controller.Name, "dhchap_ctrl_secret");
            return new DhchapCsiSecrets
            {
                HostSecret = host,
                CtrlSecret = ctrl is not null && ctrl.StartsWith("DHHC-1:", StringComparison.Ordinal) ? ctrl : string.Empty,
            };
        }

        return null;
    }

    private async Task<PathKeeperOutcome> KeepAsync(StagedVolume volume, IReadOnlyDictionary<FabricsTarget, DiscoveryAnswer> answers, CancellationToken cancellationToken)
    {
        var id = volume.VolumeId;
        var settings = volume.ConnectSettings ?? options.ConnectDefaults.For(volume.Replicas);
        var controllers = platform.Sysfs.ControllersOf(volume.SubsystemNqn, HostNqn);
        var ctrlLossTmo = controllers.ToDictionary(c => c.Name, c => platform.Sysfs.ReadControllerAttribute(c.Name, "ctrl_loss_tmo"), StringComparer.Ordinal);
        var plan = PathPlan.Decide(volume, controllers, answers, ctrlLossTmo, settings, severalPaths: platform.Sysfs.NativeMultipath != false);

        foreach (var target in plan.Learned)
        {
            NodeLog.PathLearned(logger, id, target.ToString(), volume.SubsystemNqn);
        }

        foreach (var target in plan.Forgotten)
        {
            NodeLog.PathForgotten(logger, id, target.ToString(), volume.SubsystemNqn);
            _backoff.Remove((id, target));
        }

        if (plan.Replicas != volume.Replicas)
        {
            NodeLog.ReplicaCountFollowed(logger, id, volume.Replicas, plan.Replicas);
        }

        if (!plan.Targets.SequenceEqual(volume.Targets, StringComparer.Ordinal) || plan.Replicas != volume.Replicas)
        {
            volume = volume with { Targets = plan.Targets, Replicas = plan.Replicas };
            state.Save(volume);
        }

        foreach (var controller in plan.Delete)
        {
            await paths.DeleteControllerAsync(id, controller, volume.SubsystemNqn, cancellationToken);
        }

        foreach (var target in plan.Unreachable)
        {
            NodeLog.PathUnreachable(logger, id, target.ToString());
        }

        var now = DateTime.UtcNow;
        var due = plan.Connect.Where(t => !_backoff.TryGetValue((id, t), out var b) || b.NextAttempt <= now).ToList();
        if (due.Count > 0 && volume.Authenticated && settings.Dhchap is null)
        {
            settings = settings with { Dhchap = SecretsOfLiveController(controllers) };
        }

        IReadOnlyList<PathConnectResult> results = due.Count == 0 ? [] : await paths.ConnectAsync(id, volume.SubsystemNqn, due, settings, cancellationToken);
        foreach (var result in results)
        {
            if (result.IsNew)
            {
                _backoff.Remove((id, result.Target));
                metrics.Reconnected(id);
                if (plan.Learned.Contains(result.Target))
                {
                    NodeLog.PathAdded(logger, id, result.Target.ToString(), result.Controller!);
                }
                else
                {
                    NodeLog.PathReconnected(logger, id, result.Target.ToString(), result.Controller!);
                }
            }
            else if (result.Controller is null)
            {
                // The listener answered discovery, yet the kernel's connect failed (e.g. this host is not allowed on that
                // node yet): try again later, backing off up to 16 periods.
                var failures = _backoff.TryGetValue((id, result.Target), out var previous) ? previous.Failures + 1 : 1;
                var delay = options.PathKeeperPeriod * Math.Min(16, 1 << Math.Min(failures - 1, 4));
                _backoff[(id, result.Target)] = (failures, now + delay);
                metrics.ConnectFailed(id);
                NodeLog.PathConnectFailed(logger, id, result.Target.ToString(), result.Error ?? "", delay.TotalSeconds);
            }
        }

        foreach (var change in plan.CtrlLossTmo)
        {
            try
            {
                platform.Sysfs.WriteControllerAttribute(change.Controller, "ctrl_loss_tmo", change.Seconds.ToString(CultureInfo.InvariantCulture));
                if (change.Seconds < 0)
                {
                    NodeLog.LastPathHeld(logger, id, change.Controller);
                }
                else
                {
                    NodeLog.LastPathReleased(logger, id, change.Controller, change.Seconds);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone meanwhile, or a kernel without a writable ctrl_loss_tmo (before 5.13).
                NodeLog.CtrlLossTmoUnwritable(logger, id, change.Controller, e.Message);
            }
        }

        var report = VolumePathReport.Read(platform.Sysfs, HostNqn, volume);
        metrics.Update(id, report);
        var degraded = report.IsDegraded;
        if (!_degraded.TryGetValue(id, out var was) || was != degraded)
        {
            if (degraded)
            {
                NodeLog.PathsDegraded(logger, id, report.Describe());
            }
            else if (_degraded.ContainsKey(id))
            {
                NodeLog.PathsWhole(logger, id, report.Describe());
            }

            _degraded[id] = degraded;
        }

        return new PathKeeperOutcome(id, plan, results, report);
    }

    public override void Dispose()
    {
        base.Dispose();
        _wake.Dispose();
        _pass.Dispose();
    }
}
