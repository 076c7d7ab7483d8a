using System.Net;
using CsiNvme.Api.Security;
using CsiNvme.Csi.Controller;
using CsiNvme.Csi.Hosting;
using CsiNvme.Csi.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace CsiNvme.Csi;

/// <summary>
/// The CSI driver process: Identity always, Controller and/or Node by <see cref="CsiDriverOptions.Mode"/>,
/// served as gRPC (HTTP/2 cleartext) on a Unix socket or a TCP endpoint, plus optional Prometheus metrics.
/// </summary>
public sealed class CsiDriver : CsiNvme.Api.Hosting.IRunningService
{
    private readonly WebApplication _app;
    private readonly ILogger _logger;
    private int _disposed;

    private CsiDriver(WebApplication app, CsiDriverOptions options, CsiEndpoint endpoint, IPEndPoint? metricsEndpoint, ILogger logger)
    {
        _app = app;
        Options = options;
        Endpoint = endpoint;
        MetricsEndpoint = metricsEndpoint;
        _logger = logger;
    }

    public CsiDriverOptions Options { get; }

    /// <summary>The endpoint being served; for tcp:// with port 0, the port actually bound.</summary>
    public CsiEndpoint Endpoint { get; }

    public IPEndPoint? MetricsEndpoint { get; }

    public IServiceProvider Services => _app.Services;

    /// <summary>The single stdout line announcing readiness.</summary>
    public string ReadyLine => $"CSINVME-CSI-READY endpoint={Endpoint} mode={Options.Mode.ToString().ToLowerInvariant()}" +
                               (MetricsEndpoint is null ? "" : $" metrics={MetricsEndpoint}");

    /// <summary>
    /// The Node service (src/CsiNvme.Csi/Node/) plugs in here: return its <see cref="ICsiServiceModule"/>.
    /// Until it does, node and all modes refuse to start rather than serve a driver without a Node service.
    /// </summary>
    private static ICsiServiceModule? CreateNodeModule() => new Node.NodeModule();

    public static async Task<CsiDriver> StartAsync(CsiDriverOptions options, CancellationToken cancellationToken = default)
    {
        var endpoint = CsiEndpoint.Parse(options.Endpoint);
        if (options.MaxVolumesPerNode < 0)
        {
            throw new ArgumentException($"--max-volumes-per-node {options.MaxVolumesPerNode} is negative (0 for no limit)", nameof(options));
        }

        var modules = new List<ICsiServiceModule> { new IdentityModule() };
        ManagementClientTls? serverTls = null;
        if (options.Mode.HasFlag(DriverMode.Controller))
        {
            if (string.IsNullOrWhiteSpace(options.Server))
            {
                throw new ArgumentException("the controller needs --server ADDR:PORT (the storage server's management API)", nameof(options));
            }

            if (!StorageServerClient.IsValidAddress(options.Server))
            {
                throw new ArgumentException($"--server '{options.Server}' is not HOST:PORT", nameof(options));
            }

            if (options.ServerTlsCa is not null)
            {
                // Read now: a missing or bad certificate stops the start, not the first volume.
                serverTls = new ManagementClientTls(options.ServerTlsCa, options.ServerTlsCertificate, options.ServerTlsKey);
            }

            modules.Add(new ControllerModule());
        }

        if (options.Mode.HasFlag(DriverMode.Node))
        {
            if (string.IsNullOrWhiteSpace(options.NodeId))
            {
                throw new ArgumentException("the node service needs --node-id NAME", nameof(options));
            }

            modules.Add(CreateNodeModule() ?? throw new NotSupportedException("this build of the driver has no Node service"));
        }

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ContentRootPath = AppContext.BaseDirectory,
            EnvironmentName = Environments.Production,
        });

        // Configured only through CsiDriverOptions: no appsettings, no ASPNETCORE_* surprises.
        builder.Configuration.Sources.Clear();
        builder.Services.AddSingleton<IHostLifetime, EmbeddedHostLifetime>();
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = TimeSpan.FromSeconds(10));
        ConfigureLogging(builder.Logging, options);

        var metrics = new CsiMetrics();
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(metrics);
        builder.Services.AddGrpc(grpc => grpc.Interceptors.Add<CallInterceptor>());
        if (!string.IsNullOrWhiteSpace(options.Server))
        {
            builder.Services.AddSingleton(sp => new StorageServerClient(options.Server!, options.ServerCallTimeout, serverTls));
        }

        foreach (var module in modules)
        {
            module.AddServices(builder.Services, options);
        }

        options.ConfigureServices?.Invoke(builder.Services);

        Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions? csiListen = null;
        Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions? metricsListen = null;
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            if (endpoint.IsUnix)
            {
                kestrel.ListenUnixSocket(endpoint.UnixSocketPath!, listen =>
                {
                    listen.Protocols = HttpProtocols.Http2;
                    csiListen = listen;
                });
            }
            else
            {
                kestrel.Listen(endpoint.TcpEndPoint!, listen =>
                {
                    listen.Protocols = HttpProtocols.Http2;
                    csiListen = listen;
                });
            }

            if (options.MetricsListen is not null)
            {
                kestrel.Listen(options.MetricsListen, listen =>
                {
                    listen.Protocols = HttpProtocols.Http1;
                    listen.Use(MetricsListener.Tag());
                    metricsListen = listen;
                });
            }
        });

        var app = builder.Build();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<CsiDriver>();
        app.Use(MetricsListener.Route);
        foreach (var module in modules)
        {
            module.MapServices(app);
        }

        if (options.MetricsListen is not null)
        {
            app.MapMetrics("/metrics", metrics.Registry);
        }

        try
        {
            if (endpoint.IsUnix)
            {
                PrepareSocketPath(endpoint.UnixSocketPath!, logger);
            }

            await app.StartAsync(cancellationToken);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        // Kestrel rewrites each ListenOptions endpoint with the bound one, so port 0 becomes the real port.
        var boundEndpoint = endpoint.IsUnix ? endpoint : new CsiEndpoint(null, csiListen!.IPEndPoint);
        var driver = new CsiDriver(app, options, boundEndpoint, metricsListen?.IPEndPoint, logger);
        CsiLog.DriverStarted(
            logger,
            CsiDriverOptions.DriverName,
            CsiDriverOptions.VendorVersion,
            options.Mode,
            boundEndpoint.ToString(),
            options.NodeId,
            options.Server,
            driver.MetricsEndpoint?.ToString() ?? "off",
            options.MaxVolumesPerNode > 0 ? options.MaxVolumesPerNode.ToString(System.Globalization.CultureInfo.InvariantCulture) : "unlimited");
        return driver;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Stops accepting calls, lets in-flight calls finish (HostOptions.ShutdownTimeout), then closes.
        await _app.StopAsync();
        await _app.DisposeAsync();
        if (Endpoint.IsUnix)
        {
            try
            {
                File.Delete(Endpoint.UnixSocketPath!);
            }
            catch (IOException)
            {
                // Left behind, the next start removes it as stale.
            }
        }

        CsiLog.DriverStopped(_logger);
    }

    /// <summary>
    /// A socket file left by a driver that died cannot be bound again, so it is removed. A socket that still
    /// accepts connections belongs to a running driver, and a non-empty file is not a socket: both are refused.
    /// </summary>
    private static void PrepareSocketPath(string path, ILogger logger)
    {
        var directory = Path.GetDirectoryName(path);
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        if (Directory.Exists(path))
        {
            throw new IOException($"{path} is a directory, not a socket");
        }

        var info = new FileInfo(path);
        if (!info.Exists)
        {
            return;
        }

        if (info.Length > 0)
        {
            throw new IOException($"{path} exists and is not a socket; refusing to replace it");
        }

        using (var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            try
            {
                probe.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
                throw new IOException($"another process is serving {path}");
            }
            catch (System.Net.Sockets.SocketException)
            {
                // Nobody listens: the socket is stale.
            }
        }

        File.Delete(path);
        CsiLog.StaleSocketRemoved(logger, path);
    }

    private static void ConfigureLogging(ILoggingBuilder logging, CsiDriverOptions options)
    {
        logging.ClearProviders();
        logging.SetMinimumLevel(options.LogLevel);
        // Kestrel and gRPC chatter (per-request Information lines) would drown the per-call log of the interceptor.
        logging.AddFilter("Microsoft", LogLevel.Warning);
        logging.AddFilter("Grpc", LogLevel.Warning);
        if (options.ConfigureLogging is not null)
        {
            options.ConfigureLogging(logging);
        }
        else
        {
            logging.AddSimpleConsole(console =>
            {
                console.SingleLine = true;
                console.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                console.UseUtcTimestamp = true;
            });
            logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(console =>
                console.LogToStandardErrorThreshold = LogLevel.Trace);
        }
    }
}
