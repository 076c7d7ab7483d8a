using System.Text;

namespace CsiNvme.Csi.Node;

/// <summary>
/// One path of a staged volume as the kernel has it now: a controller of the volume's subsystem (<paramref name="Controller"/>
/// null for a listener the node knows but has no controller to), its state (/sys/class/nvme/nvmeK/state, or "missing") and
/// the ANA state of its namespace device ("none" when it has none yet or the subsystem reports no ANA).
/// </summary>
public sealed record VolumePath(string Target, string? Controller, string State, string AnaState)
{
    public const string Missing = "missing";
    public const string NoAnaState = "none";

    /// <summary>A live controller: the path is there, whatever its ANA state says about I/O on it.</summary>
    public bool IsLive => State == "live";

    /// <summary>A live path in an ANA state that serves I/O (a standby is live but inaccessible); without ANA every live path does.</summary>
    public bool CarriesIo => IsLive && AnaState is "optimized" or "non-optimized" or NoAnaState;

    public override string ToString()
    {
        if (Controller is null)
        {
            return $"{Target} (not connected)";
        }

        var ana = AnaState == NoAnaState ? string.Empty : ", " + AnaState;
        return IsLive ? $"{Target} ({Controller}{ana})" : $"{Target} ({Controller} {State}{ana})";
    }
}

/// <summary>
/// The paths of one staged volume against the replicas it should have: what NodeGetVolumeStats reports as its condition
/// and the path keeper exports as metrics.
/// </summary>
public sealed record VolumePathReport(IReadOnlyList<VolumePath> Paths, int Replicas)
{
    public int LiveCount => Paths.Count(p => p.IsLive);

    /// <summary>Fewer live paths than replicas, or none of them serving I/O (every node inaccessible: a failover is due).</summary>
    public bool IsDegraded => LiveCount < Replicas || !Paths.Any(p => p.CarriesIo);

    /// <summary>
    /// Reads the controllers this host (<paramref name="hostNqn"/>) has to the volume's subsystem, each a path, plus the
    /// known listeners without a controller. A listener with several controllers (one being deleted, one new) is one path
    /// per controller.
    /// </summary>
    public static VolumePathReport Read(NvmeSysfs sysfs, string hostNqn, StagedVolume staged)
    {
        var paths = new List<VolumePath>();
        var controllers = sysfs.ControllersOf(staged.SubsystemNqn, hostNqn);
        foreach (var controller in controllers)
        {
            var target = TargetOf(controller);
            var path = sysfs.NamespacePathOf(controller.Name, staged.Uuid, staged.Nguid);
            paths.Add(new VolumePath(target, controller.Name, controller.State, path?.AnaState ?? VolumePath.NoAnaState));
        }

        foreach (var known in staged.Targets)
        {
            if (!FabricsTarget.TryParse(known, out var target) || !controllers.Any(c => c.Matches(target)))
            {
                paths.Add(new VolumePath(known, null, VolumePath.Missing, VolumePath.NoAnaState));
            }
        }

        return new VolumePathReport(paths, Math.Max(1, staged.Replicas));
    }

    /// <summary>
    /// "2 live paths for 3 replicas: A (nvme1, optimized), B (nvme2, inaccessible); not live: C (nvme3 connecting, optimized)", and
    /// what is wrong when the volume is degraded.
    /// </summary>
    public string Describe()
    {
        var text = new StringBuilder();
        var live = Paths.Where(p => p.IsLive).ToList();
        var down = Paths.Where(p => !p.IsLive).ToList();
        text.Append(live.Count).Append(live.Count == 1 ? " live path for " : " live paths for ")
            .Append(Replicas).Append(Replicas == 1 ? " replica" : " replicas");
        if (live.Count > 0)
        {
            text.Append(": ").AppendJoin(", ", live);
        }

        if (down.Count > 0)
        {
            text.Append("; not live: ").AppendJoin(", ", down);
        }

        var unknown = Replicas - live.Count - down.Count;
        if (unknown > 0)
        {
            text.Append("; ").Append(unknown).Append(unknown == 1 ? " replica's listener is" : " replicas' listeners are").Append(" not known to this node");
        }

        if (live.Count > 0 && !live.Any(p => p.CarriesIo))
        {
            text.Append("; no live path serves I/O (ANA), I/O waits for a path to become optimized");
        }

        return text.ToString();
    }

    /// <summary>"ADDR:PORT" of a controller as the targets list writes it; its raw address when that cannot be parsed.</summary>
    public static string TargetOf(NvmeControllerInfo controller) =>
        controller.TransportAddress is { } address && controller.TransportServiceId is { } port &&
        System.Net.IPAddress.TryParse(address.Trim('[', ']'), out var parsed)
            ? FabricsTarget.From(parsed, port).ToString()
            : controller.Address;
}
