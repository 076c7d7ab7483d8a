using System.Reflection;

namespace CsiNvme.TestSupport;

/// <summary>Locations inside the source tree, found from the running test assembly.</summary>
public static class RepoPaths
{
    private static readonly Lazy<string> _root = new(FindRoot);

    /// <summary>The directory holding CsiNvme.sln (or CSINVME_REPO_ROOT when set).</summary>
    public static string Root => _root.Value;

    /// <summary>Debug or Release: the configuration this harness (and so the tests using it) was built in.</summary>
    public static string Configuration { get; } =
        typeof(RepoPaths).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration is { Length: > 0 } c
            ? c
            : "Debug";

    public static string GuestDirectory => Path.Combine(Root, "tests", "guest");

    /// <summary>Where build-guest.sh puts the kernel and initramfs (gitignored).</summary>
    public static string GuestImageDirectory => GuestImageDirectoryOf(GuestImage.Default);

    /// <summary>
    /// Where build-guest.sh puts an image: CSINVME_GUEST_DIR (the default image) or CSINVME_GUEST_TRIXIE_DIR when set,
    /// otherwise .guest or .guest-trixie in the tree.
    /// </summary>
    public static string GuestImageDirectoryOf(GuestImage image) => image switch
    {
        GuestImage.Trixie => Environment.GetEnvironmentVariable("CSINVME_GUEST_TRIXIE_DIR") is { Length: > 0 } trixie ? trixie : Path.Combine(Root, ".guest-trixie"),
        _ => Environment.GetEnvironmentVariable("CSINVME_GUEST_DIR") is { Length: > 0 } dir ? dir : Path.Combine(Root, ".guest"),
    };

    /// <summary>The storage server built in the same configuration as the tests.</summary>
    public static string ServerDll =>
        Path.Combine(Root, "src", "CsiNvme.Server", "bin", Configuration, "net10.0", "CsiNvme.Server.dll");

    private static string FindRoot()
    {
        // Lets a test assembly built outside the tree (or copied elsewhere) still find it.
        if (Environment.GetEnvironmentVariable("CSINVME_REPO_ROOT") is { Length: > 0 } configured)
        {
            return Path.GetFullPath(configured);
        }

        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "CsiNvme.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"CsiNvme.sln not found above {AppContext.BaseDirectory}");
    }
}
