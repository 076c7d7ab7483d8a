using System.Diagnostics;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>Runs `kubectl kustomize` on a folder of deploy/ and returns the rendered YAML.</summary>
internal static class Kustomize
{
    private static readonly Dictionary<string, string> _cache = new(StringComparer.Ordinal);
    private static readonly Lock _gate = new();

    /// <summary>kubectl on PATH, or null.</summary>
    public static string? FindKubectl()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, "kubectl");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>
    /// Renders <paramref name="directory"/> (relative to the repository root). Ignores the test only when
    /// kubectl is not installed; any kustomize error fails it.
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

        var kubectl = FindKubectl();
        if (kubectl is null)
        {
            // Debian 12 packages kubectl as "kubernetes-client"; a CI machine without it cannot render.
            Assert.Ignore("kubectl is not installed (on Debian: apt-get install kubernetes-client); deploy/ cannot be rendered");
        }

        var startInfo = new ProcessStartInfo(kubectl!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        startInfo.ArgumentList.Add("kustomize");
        startInfo.ArgumentList.Add(Path.Combine(CsiNvme.TestSupport.RepoPaths.Root, directory));
        using var process = Process.Start(startInfo)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"kubectl kustomize {directory} did not finish in 60 s");
        }

        var output = stdout.GetAwaiter().GetResult();
        Assert.That(process.ExitCode, Is.Zero, $"kubectl kustomize {directory} failed: {stderr.GetAwaiter().GetResult()}");
        lock (_gate)
        {
            _cache[directory] = output;
        }

        return output;
    }
}
