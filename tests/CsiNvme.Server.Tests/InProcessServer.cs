using System.Net;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>A real <see cref="StorageServer"/> in this process on free loopback ports, with gRPC clients.</summary>
internal sealed class InProcessServer : IAsyncDisposable
{
    private readonly GrpcChannel _channel;

    private InProcessServer(StorageServer server)
    {
        Server = server;
        _channel = GrpcChannel.ForAddress($"http://{server.ManagementEndpoint}");
        Volumes = new VolumeService.VolumeServiceClient(_channel);
        Info = new ServerService.ServerServiceClient(_channel);
    }

    public StorageServer Server { get; }

    public VolumeService.VolumeServiceClient Volumes { get; }

    public ServerService.ServerServiceClient Info { get; }

    public static StorageServerOptions Options(string dataDirectory, StorageBackend backend = StorageBackend.File) => new()
    {
        DataDirectory = dataDirectory,
        NvmeListen = [new IPEndPoint(IPAddress.Loopback, 0)],
        ManagementListen = new IPEndPoint(IPAddress.Loopback, 0),
        MetricsListen = new IPEndPoint(IPAddress.Loopback, 0),
        Backend = backend,
        LogLevel = LogLevel.Warning,
        // Warnings and errors reach the test output; the rest would only slow the run down.
        ConfigureLogging = logging => logging.AddProvider(new TestContextLoggerProvider()),
    };

    public static async Task<InProcessServer> StartAsync(string dataDirectory, StorageBackend backend = StorageBackend.File) =>
        await StartAsync(Options(dataDirectory, backend));

    public static async Task<InProcessServer> StartAsync(StorageServerOptions options) =>
        new(await StorageServer.StartAsync(options));

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await Server.DisposeAsync();
    }

    public static async Task<StatusCode> CodeOf(Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await call());
        return e!.StatusCode;
    }
}

/// <summary>Sends server log lines to the NUnit progress output.</summary>
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
