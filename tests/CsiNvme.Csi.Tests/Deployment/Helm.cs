using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>A set of values charts/csinvme is rendered with: its defaults, or one file of charts/csinvme/ci over them.</summary>
public sealed record ChartValues(string Name, string? File)
{
    public static ChartValues Defaults { get; } = new("default values", null);

    /// <summary>The defaults and every file of charts/csinvme/ci (what `helm lint` and CI installs are run with).</summary>
    public static IReadOnlyList<ChartValues> All { get; } =
    [
        Defaults,
        .. Directory.GetFiles(Path.Combine(Helm.Chart, "ci"), "*.yaml").Order(StringComparer.Ordinal)
            .Select(f => new ChartValues("ci/" + Path.GetFileName(f), f)),
    ];

    public IReadOnlyList<string> Arguments => File is null ? [] : ["--values", File];

    /// <summary>The values the chart is rendered with: values.yaml, merged with the file as Helm merges it.</summary>
    public System.Text.Json.Nodes.JsonNode Values
    {
        get
        {
            var defaults = YamlJson.Parse(System.IO.File.ReadAllText(Path.Combine(Helm.Chart, "values.yaml")))!;
            return File is null ? defaults : YamlJson.Merge(defaults, YamlJson.Parse(System.IO.File.ReadAllText(File)))!;
        }
    }

    public override string ToString() => Name;
}

/// <summary>
/// Runs the real helm (tools/helm/install-helm.sh installs it) on charts/csinvme: release "csinvme" in namespace
/// "csinvme-system", the names deploy/ is rendered for.
/// </summary>
internal static class Helm
{
    public const string Release = "csinvme";
    public const string Namespace = "csinvme-system";

    private static readonly Dictionary<string, string> _templates = new(StringComparer.Ordinal);
    private static readonly Lock _gate = new();

    public static string Chart => Path.Combine(RepoPaths.Root, "charts", "csinvme");

    /// <summary>helm from $HELM, PATH or the repository's .tools/bin; ignores the test without it (fails it under CI).</summary>
    public static string Executable
    {
        get
        {
            var helm = Environment.GetEnvironmentVariable("HELM") is { Length: > 0 } given && File.Exists(given)
                ? given
                : RequiredTool.Find("helm", Path.Combine(RepoPaths.Root, ".tools", "bin"));
            if (helm is null)
            {
                RequiredTool.Missing("helm is not installed (tools/helm/install-helm.sh installs it); the chart cannot be linted or rendered");
            }

            return helm!;
        }
    }

    /// <summary>Runs helm with the chart's directory appended as the last argument.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(string command, IEnumerable<string> arguments) =>
        RequiredTool.Run(Executable, [command, .. arguments, Chart]);

    /// <summary>`helm template` of the release with <paramref name="arguments"/> (values files, --set); fails the test when helm does.</summary>
    public static string Template(params IEnumerable<string> arguments)
    {
        string[] full = ["--namespace", Namespace, "--name-template", Release, .. arguments];
        var key = string.Join('\0', full);
        lock (_gate)
        {
            if (_templates.TryGetValue(key, out var cached))
            {
                return cached;
            }
        }

        var (exitCode, output, errors) = Run("template", full);
        Assert.That(exitCode, Is.Zero, $"helm template {string.Join(' ', arguments)} failed: {errors}");
        lock (_gate)
        {
            _templates[key] = output;
        }

        return output;
    }

    /// <summary>The YAML documents of a rendering keyed "Kind/name", each as helm printed it (after its "# Source:" line).</summary>
    public static IReadOnlyDictionary<string, string> Documents(string rendering)
    {
        var documents = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var document in ("\n" + rendering).Split("\n---\n").Select(d => d.Trim('\n')).Where(d => d.Length > 0 && d != "---"))
        {
            var lines = document.Split('\n');
            var kind = lines.Single(l => l.StartsWith("kind: ", StringComparison.Ordinal))["kind: ".Length..];
            var metadata = Array.IndexOf(lines, "metadata:");
            var name = lines.Skip(metadata + 1).First(l => l.StartsWith("  name: ", StringComparison.Ordinal))["  name: ".Length..];
            documents.Add($"{kind}/{name}", document);
        }

        return documents;
    }
}
