namespace CsiNvme.Api;

/// <summary>How many copies a volume may keep: one rule for the storage server, the CLI and the CSI driver.</summary>
public static class VolumeReplicas
{
    /// <summary>Most replicas a volume keeps, each on its own storage node.</summary>
    public const int Max = 3;

    /// <summary>Every count a volume may keep, 1 to <see cref="Max"/>.</summary>
    public static int[] Counts => [.. Enumerable.Range(1, Max)];
}
