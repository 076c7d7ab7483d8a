using System.Diagnostics;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>The command-line tools the packaging tests run (kubectl, helm), found on PATH, and how they are run.</summary>
internal static class RequiredTool
{
    /// <summary>The first executable <paramref name="name"/> in <paramref name="extraDirectories"/> or on PATH, or null.</summary>
    public static string? Find(string name, params string[] extraDirectories)
    {
        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        foreach (var dir in extraDirectories.Concat(path))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>
    /// Ends the test for a missing tool: ignored on a developer's machine, failed under CI (CI set), where
    /// .ci/run installs the tool and a missing one would otherwise pass the packaging checks silently.
    /// </summary>
    public static void Missing(string reason)
    {
        if (Environment.GetEnvironmentVariable("CI") is { Length: > 0 })
        {
            Assert.Fail(reason + " (under CI, .ci/run installs it)");
        }

        Assert.Ignore(reason);
    }

    /// <summary>Runs <paramref name="executable"/> and returns its exit code and output; fails the test after 120 s.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(string executable, IEnumerable<string> arguments)
    {
        var startInfo = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = Process.Start(startInfo)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{Path.GetFileName(executable)} {string.Join(' ', startInfo.ArgumentList)} did not finish in 120 s");
        }

        return (process.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }
}
