using System.Text.RegularExpressions;
using System.Xml.Linq;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// The Dockerfile cannot be built here (no container daemon), so what it depends on is checked instead:
/// the projects it restores and publishes, the assemblies its launchers start, the tools the node plugin runs.
/// </summary>
[TestFixture]
public sealed partial class DockerfileTests
{
    private static string Dockerfile => File.ReadAllText(Path.Combine(RepoPaths.Root, "Dockerfile"));

    /// <summary>The Dockerfile with continuation lines joined and every `&&` command on a line of its own.</summary>
    private static string Commands => Dockerfile.Replace("\\\n", " ", StringComparison.Ordinal).Replace("&&", "\n", StringComparison.Ordinal);

    private static IReadOnlyList<string> Published => PublishLine().Matches(Commands).Select(m => m.Groups["project"].Value).ToList();

    [Test]
    public void Projects_the_dockerfile_builds_exist_and_are_in_the_solution()
    {
        var solution = File.ReadAllText(Path.Combine(RepoPaths.Root, "CsiNvme.sln")).Replace('\\', '/');
        var referenced = ProjectPath().Matches(Dockerfile).Select(m => m.Value).Distinct().ToList();
        Assert.That(referenced, Is.Not.Empty);
        Assert.Multiple(() =>
        {
            foreach (var project in referenced)
            {
                Assert.That(File.Exists(Path.Combine(RepoPaths.Root, project)), Is.True, $"{project} does not exist");
                Assert.That(solution, Does.Contain($"\"{project}\""), $"{project} is not in CsiNvme.sln, so CI does not build it");
            }
        });
    }

    [Test]
    public void The_server_the_csi_driver_and_the_cli_are_published()
    {
        Assert.That(Published, Is.EquivalentTo(new[]
        {
            "src/CsiNvme.Server/CsiNvme.Server.csproj",
            "src/CsiNvme.Csi/CsiNvme.Csi.csproj",
            "src/CsiNvme.Cli/CsiNvme.Cli.csproj",
        }));
    }

    [Test]
    public void Restore_layer_copies_every_project_the_published_ones_reference()
    {
        // Restore runs before the sources are copied: a missing project file breaks the image build.
        var copied = CopyProjectLine().Matches(Dockerfile).Select(m => m.Groups["project"].Value).ToHashSet(StringComparer.Ordinal);
        var closure = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>(Published);
        while (pending.TryPop(out var project))
        {
            if (!closure.Add(project))
            {
                continue;
            }

            var directory = Path.GetDirectoryName(project)!;
            foreach (var reference in XDocument.Load(Path.Combine(RepoPaths.Root, project)).Descendants("ProjectReference"))
            {
                var relative = Path.GetRelativePath(RepoPaths.Root, Path.GetFullPath(Path.Combine(RepoPaths.Root, directory, reference.Attribute("Include")!.Value.Replace('\\', '/'))));
                pending.Push(relative.Replace('\\', '/'));
            }
        }

        Assert.That(closure, Is.SubsetOf(copied));
    }

    [Test]
    public void Launchers_start_the_assemblies_the_projects_produce()
    {
        var output = PublishLine().Matches(Commands).ToDictionary(m => m.Groups["project"].Value, m => m.Groups["out"].Value);
        Assert.Multiple(() =>
        {
            foreach (var (project, directory) in output)
            {
                var assembly = XDocument.Load(Path.Combine(RepoPaths.Root, project)).Descendants("AssemblyName").SingleOrDefault()?.Value
                               ?? Path.GetFileNameWithoutExtension(project);
                var target = $"/opt/csinvme/{Path.GetFileName(directory)}/{assembly}.dll";
                Assert.That(Dockerfile, Does.Contain($"COPY --from=build {directory}"), project);
                Assert.That(Dockerfile, Does.Contain($"exec dotnet {target}"), $"{project} is published as {target}");
            }
        });
    }

    [Test]
    public void Workloads_start_programs_the_entrypoint_knows()
    {
        var programs = EntrypointCase().Matches(Dockerfile).Select(m => m.Groups["word"].Value).ToHashSet(StringComparer.Ordinal);
        var first = Manifests.Load(Kustomize.Render("deploy"))
            .SelectMany(o => o switch
            {
                k8s.Models.V1Deployment d => d.Spec.Template.Spec.Containers,
                k8s.Models.V1DaemonSet d => d.Spec.Template.Spec.Containers,
                k8s.Models.V1StatefulSet s => s.Spec.Template.Spec.Containers,
                _ => [],
            })
            .Where(c => c.Image.StartsWith("csinvme:", StringComparison.Ordinal))
            .Select(c => c.Args[0])
            .Distinct()
            .ToList();
        Assert.That(programs, Is.EquivalentTo(new[] { "server", "csi", "cli" }));
        Assert.That(first, Is.Not.Empty.And.SubsetOf(programs));
    }

    [Test]
    public void Runtime_image_installs_the_tools_the_node_plugin_runs()
    {
        // mkfs.ext4/resize2fs, mkfs.xfs/xfs_growfs, blkid, and modprobe for the node's init container.
        var install = Regex.Match(Dockerfile, @"apt-get install[^&]*").Value;
        Assert.That(install.Split([' ', '\\', '\n'], StringSplitOptions.RemoveEmptyEntries), Is.SupersetOf(new[] { "e2fsprogs", "xfsprogs", "util-linux", "kmod", "nvme-cli" }));
    }

    [TestCase("--backend memory", "--data-dir /var/lib/csinvme --backend memory")]
    [TestCase("--nvme-listen 0.0.0.0:4420 --data-dir /srv/csinvme", "--nvme-listen 0.0.0.0:4420 --data-dir /srv/csinvme")]
    [TestCase("--data-dir=/srv/csinvme", "--data-dir=/srv/csinvme")]
    public void Server_launcher_keeps_the_data_on_the_image_volume_unless_given_a_data_dir(string arguments, string expected)
    {
        // The server's own default data directory is relative to the working directory.
        var launcher = Heredocs().Matches(Dockerfile).Single(m => m.Groups["path"].Value == "/usr/local/bin/csinvme-server").Groups["body"].Value;
        using var temp = new TempDirectory("server-launcher");
        // A dotnet that prints its arguments stands in for the runtime.
        File.WriteAllText(temp.Combine("dotnet"), "#!/bin/sh\necho \"$@\"\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(temp.Combine("dotnet"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        File.WriteAllText(temp.Combine("csinvme-server"), launcher + "\n");
        var (exitCode, output, errors) = RequiredTool.Run("/usr/bin/env",
            ["PATH=" + temp.Path + ":/usr/bin:/bin", "/bin/sh", temp.Combine("csinvme-server"), .. arguments.Split(' ')]);
        Assert.Multiple(() =>
        {
            Assert.That(exitCode, Is.Zero, errors);
            Assert.That(output.Trim(), Is.EqualTo("/opt/csinvme/server/CsiNvme.Server.dll " + expected));
            Assert.That(Dockerfile, Does.Contain("\nVOLUME /var/lib/csinvme\n"));
        });
    }

    [GeneratedRegex(@"^COPY --chmod=0755 <<'EOF' (?<path>\S+)\n(?<body>.*?)\nEOF$", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex Heredocs();

    [GeneratedRegex(@"src/[A-Za-z.]+/[A-Za-z.]+\.csproj")]
    private static partial Regex ProjectPath();

    [GeneratedRegex(@"dotnet publish (?<project>src/\S+\.csproj)[^\n]*? -o (?<out>/out/\w+)")]
    private static partial Regex PublishLine();

    [GeneratedRegex(@"^COPY (?<project>src/\S+\.csproj)\s", RegexOptions.Multiline)]
    private static partial Regex CopyProjectLine();

    [GeneratedRegex(@"^\s+(?<word>[a-z]+)\)\s+shift;", RegexOptions.Multiline)]
    private static partial Regex EntrypointCase();
}
