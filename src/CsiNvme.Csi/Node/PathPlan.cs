namespace CsiNvme.Csi.Node;

/// <summary>A ctrl_loss_tmo the path keeper writes to a controller: "-1" holds a last path, seconds release it.</summary>
public sealed record CtrlLossTmoChange(string Controller, int Seconds);

/// <summary>
/// What the path keeper does for one staged volume in one pass, decided from the kernel's controllers of the volume's
/// subsystem and the discovery logs read in that pass. Pure: the keeper carries it out.
/// </summary>
/// <param name="Targets">The listeners the node knows after the pass (persisted in the staged-volume record).</param>
/// <param name="Connect">Known listeners without an active controller that answered discovery: connected now.</param>
/// <param name="Learned">Listeners of the volume's subsystem a discovery log lists that the node did not know.</param>
/// <param name="Forgotten">Known listeners that discovery logs listing the volume no longer list, dropped while another path is live.</param>
/// <param name="Delete">Controllers of forgotten listeners that are not live: the kernel would keep reconnecting them.</param>
/// <param name="Unreachable">Known listeners without an active controller that did not answer: tried again next pass.</param>
/// <param name="CtrlLossTmo">ctrl_loss_tmo changes of the last-path guard.</param>
/// <param name="Replicas">The replicas the volume has after the pass: the live paths it should have.</param>
public sealed record PathPlan(
    IReadOnlyList<string> Targets,
    IReadOnlyList<FabricsTarget> Connect,
    IReadOnlyList<FabricsTarget> Learned,
    IReadOnlyList<FabricsTarget> Forgotten,
    IReadOnlyList<string> Delete,
    IReadOnlyList<FabricsTarget> Unreachable,
    IReadOnlyList<CtrlLossTmoChange> CtrlLossTmo,
    int Replicas)
{
    private const int MaxReplicas = Controller.VolumeParameters.MaxReplicas;

    /// <summary>
    /// Decides the pass for <paramref name="volume"/>:
    /// <list type="bullet">
    /// <item>a known listener without an active controller (the kernel dropped it after ctrl_loss_tmo, or it never
    /// connected) is connected again once it answers discovery;</item>
    /// <item>a listener of the volume's subsystem in any discovery log is learned and connected (a replica added later);</item>
    /// <item>a known listener that the logs listing the subsystem no longer list is left alone while its path is live, and
    /// forgotten (its dead controller deleted) only while another path is live: a log that does not list the subsystem at all
    /// (a node still loading, or not holding a replica) says nothing;</item>
    /// <item>without native multipath (<paramref name="severalPaths"/> false) only one path is ever connected;</item>
    /// <item>the replica count follows a change of the volume's (ControllerModifyVolume) while it stays staged: up to the
    /// listeners the logs list, down by each known listener that answered discovery with a log that lists the volume nowhere,
    /// its own included, while no other log lists it either (a node that no longer holds a replica; a node's log may leave
    /// out its own listener, when that is on loopback). A listener that does not answer is a node down, still a replica the
    /// volume should have a path to, whether or not it is forgotten meanwhile. A node that answers before it has rejoined the cluster looks
    /// like a removed replica until it does (the pass after, it is listed again);</item>
    /// <item>for a volume with several replicas, the last-path guard: while no path is live, every controller reconnects
    /// forever (ctrl_loss_tmo -1), so the kernel never removes the multipath device under a running VM; once a path is
    /// live again they get the volume's ctrl_loss_tmo back, so dead paths can go.</item>
    /// </list>
    /// </summary>
    /// <param name="controllers">The controllers this host has to the volume's subsystem.</param>
    /// <param name="answers">The pass's discovery answers by listener read.</param>
    /// <param name="ctrlLossTmo">Each controller's ctrl_loss_tmo attribute as sysfs prints it ("off" or seconds).</param>
    public static PathPlan Decide(
        StagedVolume volume,
        IReadOnlyList<NvmeControllerInfo> controllers,
        IReadOnlyDictionary<FabricsTarget, DiscoveryAnswer> answers,
        IReadOnlyDictionary<string, string?> ctrlLossTmo,
        FabricsConnectSettings settings,
        bool severalPaths)
    {
        var known = new List<FabricsTarget>();
        foreach (var text in volume.Targets)
        {
            if (FabricsTarget.TryParse(text, out var target) && !known.Contains(target))
            {
                known.Add(target);
            }
        }

        var listed = new List<FabricsTarget>();
        var authoritative = false;
        foreach (var answer in answers.Values)
        {
            foreach (var listener in answer.Listeners ?? [])
            {
                if (listener.SubsystemNqn != volume.SubsystemNqn)
                {
                    continue;
                }

                authoritative = true;
                if (!listed.Contains(listener.Target))
                {
                    listed.Add(listener.Target);
                }
            }
        }

        bool HasLive(FabricsTarget target) => controllers.Any(c => c.IsLive && c.Matches(target));
        bool HasActive(FabricsTarget target) => controllers.Any(c => c.IsActive && c.Matches(target));

        var learned = listed.Where(t => !known.Contains(t)).ToList();
        var forgotten = new List<FabricsTarget>();
        if (authoritative)
        {
            foreach (var target in known.Where(t => !listed.Contains(t) && !HasLive(t)))
            {
                if (controllers.Any(c => c.IsLive && !c.Matches(target)))
                {
                    forgotten.Add(target);
                }
            }
        }

        var kept = known.Where(t => !forgotten.Contains(t)).Concat(learned).ToList();
        var delete = controllers
            .Where(c => !c.IsLive && c.State is not ("deleting" or "deleting (no IO)") && forgotten.Any(c.Matches))
            .Select(c => c.Name)
            .ToList();

        var connect = new List<FabricsTarget>();
        var unreachable = new List<FabricsTarget>();
        var anyActive = controllers.Any(c => c.IsActive && !delete.Contains(c.Name));
        foreach (var target in kept.Where(t => !HasActive(t)))
        {
            if (!answers.TryGetValue(target, out var answer) || !answer.Answered)
            {
                unreachable.Add(target);
            }
            else if (severalPaths || (!anyActive && connect.Count == 0))
            {
                connect.Add(target);
            }
        }

        var replicas = Math.Max(1, volume.Replicas);
        if (authoritative)
        {
            var removed = known.Count(t => !listed.Contains(t) && answers.TryGetValue(t, out var answer) && answer.Answered &&
                                           !answer.Listeners!.Any(l => l.SubsystemNqn == volume.SubsystemNqn));
            replicas = Math.Clamp(Math.Max(listed.Count, replicas - removed), 1, MaxReplicas);
        }

        var changes = new List<CtrlLossTmoChange>();
        if (replicas > 1 && severalPaths)
        {
            var noneLive = !controllers.Any(c => c.IsLive);
            foreach (var controller in controllers.Where(c => c.IsActive && !delete.Contains(c.Name)))
            {
                var current = ctrlLossTmo.TryGetValue(controller.Name, out var value) ? value : null;
                if (current is null)
                {
                    continue;
                }

                if (noneLive && current != "off")
                {
                    changes.Add(new CtrlLossTmoChange(controller.Name, -1));
                }
                else if (!noneLive && current == "off" && settings.CtrlLossTmo >= 0)
                {
                    changes.Add(new CtrlLossTmoChange(controller.Name, settings.CtrlLossTmo));
                }
            }
        }

        return new PathPlan(kept.Select(t => t.ToString()).ToList(), connect, learned, forgotten, delete, unreachable, changes, replicas);
    }
}
