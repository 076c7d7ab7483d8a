using System.Net;
using Csi.V1;
using CsiNvme.Api.V1;
using CsiNvme.Csi;
using CsiNvme.Csi.Hosting;
using CsiNvme.Server;
using CsiNvme.TestSupport;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using IdentityClient = Csi.V1.Identity.IdentityClient;

namespace CsiNvme.Csi.Tests;

/// <summary>
/// A real storage server and a real CSI driver in this process: the driver serves on a Unix socket in a temp
/// directory and reaches the server's management API on a loopback port, both on ports picked by the OS.
/// </summary>
internal sealed class CsiHarness : IAsyncDisposable
{
    private readonly TempDirectory _temp;
    private readonly GrpcChannel _channel;
    private readonly GrpcChannel? _managementChannel;

    private CsiHarness(TempDirectory temp, StorageServer? server, CsiDriver driver)
    {
        _temp = temp;
        StorageServer = server;
        Driver = driver;
        _channel = driver.Endpoint.CreateChannel();
        Identity = new IdentityClient(_channel);
        Controller = new ControllerClient(_channel);
        if (server is not null)
        {
            _managementChannel = GrpcChannel.ForAddress($"http://{server.ManagementEndpoint}");
            Management = new VolumeService.VolumeServiceClient(_managementChannel);
            ServerManagement = new ServerService.ServerServiceClient(_managementChannel);
        }
    }

    /// <summary>The storage server's own API, to check what the driver did there.</summary>
    public VolumeService.VolumeServiceClient Management { get; } = null!;

    public ServerService.ServerServiceClient ServerManagement { get; } = null!;

    public StorageServer? StorageServer { get; }

    public CsiDriver Driver { get; }

    public string Directory => _temp.Path;

    public GrpcChannel Channel => _channel;

    public IdentityClient Identity { get; }

    public ControllerClient Controller { get; }

    public static StorageServerOptions ServerOptions(string dataDirectory, StorageBackend backend) => new()
    {
        DataDirectory = dataDirectory,
        NvmeListen = [new IPEndPoint(IPAddress.Loopback, 0)],
        ManagementListen = new IPEndPoint(IPAddress.Loopback, 0),
        MetricsListen = new IPEndPoint(IPAddress.Loopback, 0),
        Backend = backend,
        LogLevel = LogLevel.Warning,
        ConfigureLogging = logging => logging.AddProvider(new TestContextLoggerProvider()),
    };

    public static CsiDriverOptions DriverOptions(string socketPath, string? server, DriverMode mode = DriverMode.Controller) => new()
    {
        Mode = mode,
        Endpoint = $"unix://{socketPath}",
        Server = server,
        NodeId = "test-node",
        LogLevel = LogLevel.Information,
        ProbeTimeout = TimeSpan.FromSeconds(2),
        ConfigureLogging = logging => logging.AddProvider(new TestContextLoggerProvider()),
    };

    /// <summary>Size of the thin pool of the harness' storage server (a sparse file in the temp directory).</summary>
    public const long PoolBytes = 1L << 30;

    /// <summary>
    /// Storage server with the given backend (thin: one 1 GiB pool named "pool0", with snapshots and clones),
    /// driver in controller mode pointed at it.
    /// </summary>
    public static async Task<CsiHarness> StartAsync(
        StorageBackend backend = StorageBackend.Thin,
        Action<StorageServerOptions>? configureServer = null,
        Action<CsiDriverOptions>? configureDriver = null)
    {
        var temp = new TempDirectory("csi");
        StorageServer? server = null;
        try
        {
            var serverOptions = ServerOptions(temp.CreateSubdirectory("server"), backend);
            if (backend == StorageBackend.Thin)
            {
                serverOptions.Pools = [new PoolDefinition(temp.Combine("server", "pool0.pool"), PoolBytes)];
            }

            configureServer?.Invoke(serverOptions);
            server = await StorageServer.StartAsync(serverOptions);
            var driverOptions = DriverOptions(temp.Combine("csi.sock"), server.ManagementEndpoint.ToString());
            configureDriver?.Invoke(driverOptions);
            var driver = await CsiDriver.StartAsync(driverOptions);
            return new CsiHarness(temp, server, driver);
        }
        catch
        {
            if (server is not null)
            {
                await server.DisposeAsync();
            }

            temp.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        _managementChannel?.Dispose();
        await Driver.DisposeAsync();
        if (StorageServer is not null)
        {
            await StorageServer.DisposeAsync();
        }

        _temp.Dispose();
    }

    public static async Task<RpcException> FailureOf(Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await call());
        return e!;
    }

    public static async Task<StatusCode> CodeOf(Func<Task> call) => (await FailureOf(call)).StatusCode;
}

/// <summary>Sends log lines at Warning and above to the NUnit progress output.</summary>
internal sealed class TestContextLoggerProvider : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new TestContextLogger(categoryName);

    public void Dispose()
    {
    }

    private sealed class TestContextLogger(string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                TestContext.Progress.WriteLine($"[{logLevel}] {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
            }
        }
    }
}
