using CsiNvme.Csi.Controller;
using CsiNvme.Server.Hosting;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// What the chart passes to the programs for a storage cluster, named exactly as the cluster's contract names it:
/// csinvme-server's cluster flags and the StorageClass parameter "replicas". The chart was written before the
/// programs of this tree parse them, so the packaging tests strip each one only while its program does not know it
/// yet (a flag with its value, a parameter with its value) and parse the rest as before. Each check switches itself
/// on when the program learns the name; <see cref="ChartTests.The_cluster_flags_and_parameters_of_the_chart_are_known_to_the_programs"/>
/// says which are still pending and fails when the server knows some of its cluster flags but not all (a renamed
/// flag). The CLI commands of the lifecycle hooks (`csinvme node drain NAME --wait --timeout Ns`, `csinvme node
/// undrain NAME`) are checked as text in <see cref="RenderedManifestTests"/>.
/// </summary>
internal static class ClusterContract
{
    /// <summary>
    /// csinvme-server flags of the cluster, each followed by one value: --etcd-endpoints URL[,URL], --node-name NAME,
    /// --lease-ttl SECONDS, --rebuild-rate SIZE (per second), --replica-record-timeout SECONDS, --handover-host-wait SECONDS.
    /// </summary>
    public static readonly string[] ServerFlags = ["--etcd-endpoints", "--node-name", "--lease-ttl", "--rebuild-rate", "--replica-record-timeout", "--handover-host-wait"];

    /// <summary>The StorageClass parameter of the copies of a volume, 1 to 3.</summary>
    public const string ReplicasParameter = "replicas";

    /// <summary>Names csinvme-server's own command line declares.</summary>
    public static IReadOnlySet<string> ServerOptionNames { get; } = ServerCommandLine.Parse([]).ParseResult.RootCommandResult.Command.Options
        .SelectMany(o => o.Aliases.Append(o.Name)).ToHashSet(StringComparer.Ordinal);

    /// <summary>Cluster flags the server's command line does not parse yet.</summary>
    public static IReadOnlyList<string> ServerFlagsPending { get; } = ServerFlags.Where(f => !ServerOptionNames.Contains(f)).ToArray();

    /// <summary>Whether the CSI controller accepts the parameter "replicas" (an unknown key fails CreateVolume).</summary>
    public static bool ControllerParsesReplicas { get; } = Accepts();

    /// <summary><paramref name="args"/> without the cluster flags (and their values) the server cannot parse yet.</summary>
    public static string[] WithoutPendingServerFlags(IReadOnlyList<string> args)
    {
        var kept = new List<string>(args.Count);
        for (var i = 0; i < args.Count; i++)
        {
            var flag = args[i].Split('=', 2)[0];
            if (ServerFlagsPending.Contains(flag))
            {
                i += args[i].Contains('=', StringComparison.Ordinal) ? 0 : 1;
                continue;
            }

            kept.Add(args[i]);
        }

        return [.. kept];
    }

    /// <summary>A class's parameters without "replicas" while the controller refuses it.</summary>
    public static Dictionary<string, string> WithoutPendingParameters(IDictionary<string, string>? parameters)
    {
        var copy = new Dictionary<string, string>(parameters ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        if (!ControllerParsesReplicas)
        {
            copy.Remove(ReplicasParameter);
        }

        return copy;
    }

    private static bool Accepts()
    {
        VolumeParameters.Parse(new Dictionary<string, string> { [ReplicasParameter] = "1" }, out var error);
        return error is null;
    }
}
