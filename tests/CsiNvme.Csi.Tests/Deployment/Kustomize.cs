using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>Runs `kubectl kustomize` on a folder of deploy/ and returns the rendered YAML.</summary>
internal static class Kustomize
{
    private static readonly Dictionary<string, string> _cache = new(StringComparer.Ordinal);
    private static readonly Lock _gate = new();

    /// <summary>
    /// Renders <paramref name="directory"/> (relative to the repository root). Ignores the test when kubectl is not
    /// installed (fails it under CI); any kustomize error fails it.
    /// </summary>
    public static string Render(string directory)
    {
        lock (_gate)
        {
            if (_cache.TryGetValue(directory, out var cached))
            {
                return cached;
            }
        }

        var kubectl = RequiredTool.Find("kubectl");
        if (kubectl is null)
        {
            // Debian 12 packages kubectl as "kubernetes-client".
            RequiredTool.Missing("kubectl is not installed (on Debian: apt-get install kubernetes-client); deploy/ cannot be rendered");
        }

        var (exitCode, output, errors) = RequiredTool.Run(kubectl!, ["kustomize", Path.Combine(CsiNvme.TestSupport.RepoPaths.Root, directory)]);
        Assert.That(exitCode, Is.Zero, $"kubectl kustomize {directory} failed: {errors}");
        lock (_gate)
        {
            _cache[directory] = output;
        }

        return output;
    }
}
