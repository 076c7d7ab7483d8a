using CsiNvme.Api.V1;
using CsiNvme.TestSupport;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>A storage server child process with its own data directory, which survives restarts.</summary>
internal sealed class ServerUnderTest : IAsyncDisposable
{
    private readonly TempDirectory _directory;

    private readonly string[] _extraArgs;

    private ServerUnderTest(TempDirectory directory, ServerProcess server, string[] extraArgs)
    {
        _directory = directory;
        Server = server;
        _extraArgs = extraArgs;
    }

    public ServerProcess Server { get; private set; }

    public string DataDirectory => _directory.Path;

    /// <summary>The NVMe/TCP port as the guest sees it (at <see cref="LinuxGuest.HostAddress"/>).</summary>
    public int NvmePort => Server.NvmeEndpoint.Port;

    public static async Task<ServerUnderTest> StartAsync(params string[] extraArgs)
    {
        var directory = new TempDirectory("csinvme-e2e");
        try
        {
            return new ServerUnderTest(directory, await ServerProcess.StartAsync(directory.Path, extraArgs), extraArgs);
        }
        catch
        {
            directory.Dispose();
            throw;
        }
    }

    public async Task<Volume> CreateVolumeAsync(string name, ulong sizeBytes, bool allowAnyHost, params NvmeHostIdentity[] hosts)
    {
        var request = new CreateVolumeRequest { Name = name, SizeBytes = sizeBytes, AllowAnyHost = allowAnyHost };
        request.AllowedHosts.AddRange(hosts.Select(h => h.Nqn));
        return await Server.Volumes.CreateVolumeAsync(request);
    }

    /// <summary>Graceful stop, then a fresh process on the same data directory (new ports).</summary>
    public async Task RestartAsync()
    {
        var exitCode = await Server.StopAsync();
        var output = Server.OutputTail();
        await Server.DisposeAsync();
        if (exitCode != 0)
        {
            throw new InvalidOperationException($"server exited with {exitCode} on SIGTERM\n{output}");
        }

        Server = await ServerProcess.StartAsync(_directory.Path, _extraArgs);
    }

    /// <summary>Guest output plus the server's output tail, for assertion messages.</summary>
    public string Describe(GuestResult result) =>
        $"{result.Describe()}\n----- server output (tail) -----\n{Server.OutputTail()}\n-----";

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        _directory.Dispose();
    }
}
