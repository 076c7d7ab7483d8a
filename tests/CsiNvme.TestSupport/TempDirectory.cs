namespace CsiNvme.TestSupport;

/// <summary>A fresh directory under the system temp directory, removed with everything in it on Dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory(string? prefix = null)
    {
        var name = $"{prefix ?? "csinvme"}-{Environment.ProcessId}-{Guid.NewGuid():N}";
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), name);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    /// <summary>Full path of <paramref name="relative"/> inside the directory.</summary>
    public string Combine(params string[] relative) => System.IO.Path.Combine([Path, .. relative]);

    /// <summary>Creates (if needed) and returns a subdirectory.</summary>
    public string CreateSubdirectory(string relative) => Directory.CreateDirectory(Combine(relative)).FullName;

    public override string ToString() => Path;

    public void Dispose()
    {
        // A child process that is still shutting down may briefly hold files open; retry a few
        // times rather than leaving test data behind.
        for (var attempt = 0; attempt < 5; attempt++)
        {
            try
            {
                if (Directory.Exists(Path))
                {
                    Directory.Delete(Path, recursive: true);
                }

                return;
            }
            catch (IOException) when (attempt < 4)
            {
                Thread.Sleep(100);
            }
            catch (UnauthorizedAccessException) when (attempt < 4)
            {
                Thread.Sleep(100);
            }
        }
    }
}
