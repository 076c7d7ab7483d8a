using System.Diagnostics;
using CsiNvme.TestSupport;

namespace CsiNvme.Csi.Tests.EndToEnd;

/// <summary>
/// The driver published self-contained for linux-x64, as it ships, once per test process, plus the host
/// libraries its native parts link against, laid out for <see cref="GuestOptions.Files"/>.
/// </summary>
internal static class GuestCsiBinary
{
    public const string GuestDirectory = "/opt/csi";
    public const string GuestExecutable = GuestDirectory + "/csinvme-csi";

    private static readonly SemaphoreSlim _lock = new(1, 1);
    private static IReadOnlyDictionary<string, string>? _files;
    private static TempDirectory? _work;

    public static TimeSpan PublishTime { get; private set; }

    /// <summary>Guest path to host path for every file of the published driver and the libraries it needs.</summary>
    public static async Task<IReadOnlyDictionary<string, string>> FilesAsync()
    {
        await _lock.WaitAsync();
        try
        {
            return _files ??= await PublishAsync();
        }
        finally
        {
            _lock.Release();
        }
    }

    public static void Cleanup()
    {
        _work?.Dispose();
        _work = null;
        _files = null;
    }

    private static async Task<IReadOnlyDictionary<string, string>> PublishAsync()
    {
        // A private copy of the sources: a RID-specific restore rewrites obj/project.assets.json, which must not
        // race with builds of the working tree.
        var stopwatch = Stopwatch.StartNew();
        _work = new TempDirectory("csi-publish");
        var source = _work.CreateSubdirectory("src");
        foreach (var file in new[] { "Directory.Build.props", "Directory.Packages.props", "nuget.config" })
        {
            File.Copy(Path.Combine(RepoPaths.Root, file), Path.Combine(source, file));
        }

        CopyTree(Path.Combine(RepoPaths.Root, "proto"), Path.Combine(source, "proto"));
        CopyTree(Path.Combine(RepoPaths.Root, "src", "CsiNvme.Csi"), Path.Combine(source, "src", "CsiNvme.Csi"));
        foreach (var project in new[] { "CsiNvme.Api", "CsiNvme.Host", "CsiNvme.Protocol" })
        {
            CopyTree(Path.Combine(RepoPaths.Root, "src", project), Path.Combine(source, "src", project));
        }

        var output = _work.CreateSubdirectory("out");
        var result = await ProcessRunner.RunAsync(
            "dotnet",
            ["publish", Path.Combine(source, "src", "CsiNvme.Csi"), "-r", "linux-x64", "--self-contained", "-c", "Release",
             "-p:PublishTrimmed=false", "-o", output, "-nologo"],
            TimeSpan.FromMinutes(8));
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"dotnet publish of the CSI driver failed ({result.ExitCode}):\n{result.Output}");
        }

        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories))
        {
            if (file.EndsWith(".pdb", StringComparison.Ordinal) || file.EndsWith(".dbg", StringComparison.Ordinal))
            {
                continue;
            }

            files[GuestDirectory + "/" + Path.GetRelativePath(output, file).Replace('\\', '/')] = file;
        }

        // The guest image carries only what its tools link against; .NET's native parts also want glibc's
        // compatibility libraries (libdl, libpthread, librt) and libstdc++: the host's, found with ldd.
        foreach (var (guestPath, hostPath) in await LinkedLibrariesAsync(output))
        {
            files[guestPath] = hostPath;
        }

        PublishTime = stopwatch.Elapsed;
        return files;
    }

    private static async Task<IReadOnlyDictionary<string, string>> LinkedLibrariesAsync(string directory)
    {
        var libraries = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var candidates = Directory.EnumerateFiles(directory, "*.so").Append(Path.Combine(directory, "csinvme-csi"));
        foreach (var binary in candidates)
        {
            var ldd = await ProcessRunner.RunAsync("ldd", [binary], TimeSpan.FromSeconds(30));
            foreach (var line in ldd.Output.Split('\n'))
            {
                // "libdl.so.2 => /lib/x86_64-linux-gnu/libdl.so.2 (0x...)"
                var arrow = line.IndexOf("=> /", StringComparison.Ordinal);
                if (arrow < 0)
                {
                    continue;
                }

                var path = line[(arrow + 3)..].Split(' ')[0];
                if (!path.StartsWith(directory, StringComparison.Ordinal) && File.Exists(path))
                {
                    // The image has merged /usr: /lib is a link to /usr/lib.
                    var guestPath = path.StartsWith("/lib/", StringComparison.Ordinal) ? "/usr" + path : path;
                    libraries[guestPath] = path;
                }
            }
        }

        return libraries;
    }

    private static void CopyTree(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(from, file);
            var parts = relative.Split(Path.DirectorySeparatorChar);
            if (parts.Contains("bin") || parts.Contains("obj"))
            {
                continue;
            }

            var target = Path.Combine(to, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }
}
