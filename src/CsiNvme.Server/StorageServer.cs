using System.Net;
using System.Reflection;
using System.Security.Cryptography;
using CsiNvme.Api.V1;
using CsiNvme.Metadata;
using CsiNvme.Server.Management;
using CsiNvme.Server.Hosting;
using CsiNvme.Server.Metrics;
using CsiNvme.Cluster;
using CsiNvme.Metadata.Etcd;
using CsiNvme.Replication;
using CsiNvme.Volumes;
using CsiNvme.Volumes.Backends;
using CsiNvme.Volumes.Catalog;
using CsiNvme.Volumes.Local;
using CsiNvme.Target;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Prometheus;

namespace CsiNvme.Server;

/// <summary>
/// One storage server: the NVMe/TCP target exporting every volume, the management gRPC API and the
/// Prometheus endpoint, sharing one volume manager.
/// </summary>
public sealed class StorageServer : CsiNvme.Api.Hosting.IRunningService
{
    public const string MetadataFileName = "metadata.db";

    /// <summary>The default key sealing DH-HMAC-CHAP secrets (--secret-key-file), made at the first start.</summary>
    public const string SecretKeyFileName = "secret.key";
    public const string VolumesDirectoryName = "volumes";
    public const string LockFileName = "csinvme.lock";

    private static readonly TimeSpan _shutdownTimeout = TimeSpan.FromSeconds(10);

    private readonly WebApplication _app;
    private readonly IMetadataStore _store;
    private readonly FileStream? _dataDirectoryLock;
    private readonly ILogger _logger;
    private int _disposed;

    private StorageServer(
        StorageServerOptions options,
        string dataDirectory,
        WebApplication app,
        IMetadataStore store,
        FileStream? dataDirectoryLock,
        NvmeTarget target,
        LocalVolumes local,
        IVolumeCatalog catalog,
        ServerMetrics metrics,
        ILogger logger)
    {
        Options = options;
        DataDirectory = dataDirectory;
        _app = app;
        _store = store;
        _dataDirectoryLock = dataDirectoryLock;
        Target = target;
        Local = local;
        Catalog = catalog;
        Metrics = metrics;
        _logger = logger;
    }

    public StorageServerOptions Options { get; }

    /// <summary>Absolute data directory (unused by the memory backend); the thin backend's default pool lives in it.</summary>
    public string DataDirectory { get; }

    public NvmeTarget Target { get; }

    /// <summary>The volumes this node serves (storage, subsystems).</summary>
    public LocalVolumes Local { get; }

    /// <summary>The volumes behind the management API.</summary>
    public IVolumeCatalog Catalog { get; }

    /// <summary>The storage nodes behind the management API's NodeService (this server alone when not in a cluster).</summary>
    public INodeCatalog Nodes { get; private set; } = null!;

    /// <summary>This server's part in its cluster; null for a single server.</summary>
    public ClusterNode? Node { get; private init; }

    public ServerMetrics Metrics { get; }

    /// <summary>NVMe/TCP listeners with their real ports.</summary>
    public IReadOnlyList<IPEndPoint> NvmeEndpoints { get; private set; } = [];

    public IPEndPoint ManagementEndpoint { get; private set; } = new(IPAddress.None, 0);

    public IPEndPoint MetricsEndpoint { get; private set; } = new(IPAddress.None, 0);

    public DateTimeOffset StartedAt { get; private set; }

    public static string Version { get; } =
        typeof(StorageServer).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    /// <summary>The single stdout line announcing readiness, with the real bound ports.</summary>
    public string ReadyLine =>
        $"CSINVME-READY nvme={string.Join(',', NvmeEndpoints)} mgmt={ManagementEndpoint} metrics={MetricsEndpoint}";

    public static async Task<StorageServer> StartAsync(StorageServerOptions options, CancellationToken cancellationToken = default)
    {
        if (options.NvmeListen.Count == 0)
        {
            throw new ArgumentException("at least one NVMe/TCP listen endpoint is required", nameof(options));
        }

        ManagementTlsPolicy.Check(options);
        var managementTls = options.ManagementTls is { } tlsFiles ? new ManagementServerTls(tlsFiles, options.IsClusterNode) : null;
        var dataDirectory = Path.GetFullPath(options.DataDirectory);
        FileStream? dataDirectoryLock = null;
        if (options.Backend != StorageBackend.Thin && options.Pools.Count > 0)
        {
            throw new ArgumentException($"pools need the thin backend, not --backend {options.Backend.ToString().ToLowerInvariant()}", nameof(options));
        }

        if (options.Backend != StorageBackend.Memory)
        {
            Directory.CreateDirectory(dataDirectory);
            dataDirectoryLock = LockDataDirectory(dataDirectory);
        }

        var metrics = new ServerMetrics();
        ListenOptions? managementListen = null;
        ListenOptions? metricsListen = null;
        StorageServer? server = null;

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ContentRootPath = AppContext.BaseDirectory,
            EnvironmentName = Environments.Production,
        });

        // The server is configured only through StorageServerOptions: no appsettings, no ASPNETCORE_* surprises.
        builder.Configuration.Sources.Clear();
        builder.Services.AddSingleton<IHostLifetime, EmbeddedHostLifetime>();
        ConfigureLogging(builder.Logging, options);
        builder.Services.AddGrpc(grpc =>
        {
            // Outermost first: nothing runs for a caller that may not make the call.
            grpc.Interceptors.Add<RoleAuthorizationInterceptor>();
            grpc.Interceptors.Add<ErrorMappingInterceptor>();
        });
        builder.Services.AddSingleton(_ => server ?? throw new InvalidOperationException("server not constructed"));
        builder.Services.AddSingleton(sp => sp.GetRequiredService<StorageServer>().Catalog);
        builder.Services.AddSingleton(sp => sp.GetRequiredService<StorageServer>().Nodes);
        builder.Services.AddSingleton(sp => sp.GetRequiredService<StorageServer>().Node ?? throw new InvalidOperationException("not a cluster node"));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(options.ManagementListen, listen =>
            {
                // gRPC over HTTP/2 only: with TLS negotiated by ALPN, without it prior-knowledge cleartext HTTP/2 (h2c).
                listen.Protocols = HttpProtocols.Http2;
                listen.Use(ListenerRoles.Tag(ListenerRole.Management));
                managementTls?.Apply(listen);
                managementListen = listen;
            });
            kestrel.Listen(options.MetricsListen, listen =>
            {
                listen.Protocols = HttpProtocols.Http1;
                listen.Use(ListenerRoles.Tag(ListenerRole.Metrics));
                metricsListen = listen;
            });
        });

        var app = builder.Build();
        var loggerFactory = app.Services.GetRequiredService<ILoggerFactory>();
        var logger = loggerFactory.CreateLogger<StorageServer>();
        managementTls?.UseLogger(logger);
        app.Use(RouteByListener);
        app.MapGrpcService<VolumeGrpcService>();
        app.MapGrpcService<ServerGrpcService>();
        app.MapGrpcService<NodeGrpcService>();
        if (options.IsClusterNode)
        {
            app.MapGrpcService<NodeAgentGrpcService>();
        }
        app.MapMetrics("/metrics", metrics.Registry);
        HealthEndpoints.Map(app);

        IMetadataStore? store = null;
        IVolumeBackend? backend = null;
        NvmeTarget? target = null;
        LocalVolumes? local = null;
        try
        {
            EtcdMetadataStore? etcd = null;
            var ordinal = 0;
            if (options.IsClusterNode)
            {
                etcd = await EtcdMetadataStore.ConnectAsync(options.EtcdEndpoints, logger: loggerFactory.CreateLogger<EtcdMetadataStore>(), cancellationToken: cancellationToken);
                store = etcd;
                etcd.BindingScope = options.NodeName!;
                ordinal = await etcd.ReserveOrdinalAsync(options.NodeName!, cancellationToken);
            }
            else
            {
                store = options.Backend == StorageBackend.Memory
                    ? new InMemoryMetadataStore()
                    : await SqliteMetadataStore.OpenAsync(Path.Combine(dataDirectory, MetadataFileName), cancellationToken);
            }

            backend = options.Backend switch
            {
                StorageBackend.Thin => ThinVolumeBackend.Open(options.Pools, dataDirectory, options.PoolReserves, loggerFactory.CreateLogger<ThinVolumeBackend>()),
                StorageBackend.File => new FileVolumeBackend(Path.Combine(dataDirectory, VolumesDirectoryName)),
                _ => new MemoryVolumeBackend(),
            };
            foreach (var pool in backend.GetPools())
            {
                VolumeLog.PoolOpened(logger, pool.Name, pool.DataPath, pool.Id, pool.CapacityBytes, pool.UsedBytes, pool.ClusterSize, pool.ReserveBytes);
            }

            metrics.ObservePools(backend.GetPools);

            var targetOptions = options.ToTargetOptions();
            if (etcd is not null)
            {
                // Every node exports the same subsystems: controller and port ids come from ranges of the node's own.
                targetOptions.ControllerIdBase = ClusterNodeOptions.ControllerIdBaseOf(ordinal);
                targetOptions.ControllerIdCount = ClusterNodeOptions.ControllerIdsPerNode - 1;
                targetOptions.PortIdBase = ClusterNodeOptions.PortIdBaseOf(ordinal);
            }

            target = new NvmeTarget(targetOptions, loggerFactory, metrics);
            // The memory backend keeps its metadata in memory too: a key of this process seals what dies with it, and
            // the data directory stays untouched.
            var secrets = options.SecretKeyFile is null && options.Backend == StorageBackend.Memory
                ? new SecretSealer(RandomNumberGenerator.GetBytes(SecretSealer.KeyLength)) { Source = "this process (memory backend)" }
                : SecretSealer.FromFile(options.SecretKeyFile ?? Path.Combine(dataDirectory, SecretKeyFileName), createIfMissing: options.SecretKeyFile is null);
            ServerLog.SecretKeyLoaded(logger, secrets.KeyId, secrets.Source);
            local = new LocalVolumes(backend, target, metrics, loggerFactory.CreateLogger<LocalVolumes>()) { Secrets = secrets };
            ClusterNode? node = null;
            IVolumeCatalog catalog;
            INodeCatalog? nodes = null;
            if (etcd is not null)
            {
                await ClusterNode.CheckPoolsAsync(etcd, backend, options.NodeName!, logger, cancellationToken);
                var clusterOptions = new ClusterNodeOptions
                {
                    NodeName = options.NodeName!,
                    LeaseTtl = options.LeaseTtl,
                    LinkPollTime = options.NvmePollTime,
                    Replication = new ReplicationOptions { RecordTimeout = options.ReplicaRecordTimeout },
                    Rebuild = new RebuildOptions { BytesPerSecond = options.RebuildBytesPerSecond },
                    HandoverHostWait = options.HandoverHostWait,
                };
                node = new ClusterNode(etcd, local, ordinal, clusterOptions, new NodeAgentClients(clusterOptions.AgentCallTimeout, managementTls?.NodeChannelFactory), loggerFactory);
                var clusterCatalog = new ClusterCatalog(node, loggerFactory.CreateLogger<ClusterCatalog>());
                (catalog, nodes) = (clusterCatalog, clusterCatalog);
                metrics.ObserveCluster(node);
            }
            else
            {
                var single = new VolumeCatalog(store, local, loggerFactory.CreateLogger<VolumeCatalog>());
                await single.LoadAsync(options.RecoverMetadata, cancellationToken);
                catalog = single;
            }

            server = new StorageServer(options, dataDirectory, app, store, dataDirectoryLock, target, local, catalog, metrics, logger) { Node = node };
            server.Nodes = nodes ?? new SingleNodeCatalog(server);
            server.NvmeEndpoints = target.Start();
            var advertised = AdvertisedEndpoints.For(server.NvmeEndpoints, options.AdvertiseAddresses, AdvertisedEndpoints.HostIPv4Addresses);
            var hostFacing = AdvertisedEndpoints.ForHosts(server.NvmeEndpoints, options.HostAddresses, advertised);
            local.SetListenAddresses(hostFacing);
            await app.StartAsync(cancellationToken);

            // Kestrel rewrites each ListenOptions endpoint with the bound one, so port 0 becomes the real port.
            server.ManagementEndpoint = managementListen!.IPEndPoint!;
            server.MetricsEndpoint = metricsListen!.IPEndPoint!;
            server.StartedAt = DateTimeOffset.UtcNow;
            if (managementTls is not null)
            {
                var certificate = managementTls.Certificate.Current;
                ServerLog.ManagementTlsEnabled(logger, server.ManagementEndpoint.ToString(), certificate.Subject, certificate.NotAfter.ToUniversalTime(), managementTls.ClientCa.File);
            }
            else if (!IPAddress.IsLoopback(server.ManagementEndpoint.Address))
            {
                ServerLog.ManagementInsecure(logger, server.ManagementEndpoint.ToString());
            }

            if (node is not null)
            {
                var management = AdvertisedEndpoints.For([server.ManagementEndpoint], options.AdvertiseAddresses, AdvertisedEndpoints.HostIPv4Addresses).First();
                await node.StartAsync(
                    new NodeRecord(options.NodeName!, ordinal, advertised.Select(e => e.ToString()).ToArray(), management.ToString(), [], server.StartedAt, Version)
                    {
                        HostNvmeListeners = options.HostAddresses.Count > 0 ? hostFacing.Select(e => e.ToString()).ToArray() : [],
                    },
                    cancellationToken);
            }

            ServerLog.ServerStarted(
                logger,
                backend.Name,
                dataDirectory,
                store.Description,
                local.Count,
                string.Join(',', server.NvmeEndpoints),
                server.ManagementEndpoint.ToString(),
                server.MetricsEndpoint.ToString());
            return server;
        }
        catch
        {
            if (server is not null)
            {
                await server.DisposeAsync();
            }
            else
            {
                await DisposeQuietly(target);
                if (local is not null)
                {
                    // It closes the backend too.
                    await DisposeQuietly(local);
                }
                else
                {
                    try
                    {
                        backend?.Dispose();
                    }
                    catch (Exception)
                    {
                        // Startup already failed; that error is the one worth reporting.
                    }
                }

                await DisposeQuietly(store);
                await app.DisposeAsync();
                dataDirectoryLock?.Dispose();
            }

            throw;
        }
    }

    public ServerInfo GetInfo()
    {
        var info = new ServerInfo
        {
            Version = Version,
            DiscoveryNqn = NvmeTarget.DiscoveryNqn,
            ManagementAddress = ManagementEndpoint.ToString(),
            Backend = Local.BackendName,
            DataDir = Options.Backend == StorageBackend.Memory ? "" : DataDirectory,
            MetadataStore = _store.Description,
            VolumeCount = (uint)Local.Count,
            ConnectionCount = (uint)Math.Max(0, Target.ConnectionCount),
            StartedUnixMs = StartedAt.ToUnixTimeMilliseconds(),
            NodeName = Node?.Name ?? "",
            ClusterId = Node?.Store.ClusterId ?? "",
        };
        info.NvmeListenAddresses.AddRange(NvmeEndpoints.Select(e => e.ToString()));
        return info;
    }

    /// <summary>
    /// Graceful shutdown: stop taking management calls, close NVMe connections, flush and close volumes,
    /// close the metadata store. Each step runs even if an earlier one failed.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        ServerLog.ServerStopping(_logger);
        using (var timeout = new CancellationTokenSource(_shutdownTimeout))
        {
            await Step("stop management and metrics endpoints", () => _app.StopAsync(timeout.Token));
        }

        if (Node is not null)
        {
            // Primaries step down and the lease is revoked: the other nodes take over at once instead of after the lease time.
            await Step("leave the cluster", () => Node.DisposeAsync().AsTask());
        }

        await Step("close NVMe/TCP connections", () => Target.DisposeAsync().AsTask());
        await Step("flush and close volumes", () => Local.DisposeAsync().AsTask());
        await Step("close metadata store", () => _store.DisposeAsync().AsTask());
        ServerLog.ServerStopped(_logger);
        await Step("dispose host", () => _app.DisposeAsync().AsTask());
        _dataDirectoryLock?.Dispose();
    }

    private async Task Step(string name, Func<Task> step)
    {
        try
        {
            await step();
        }
        catch (Exception e)
        {
            ServerLog.ShutdownStepFailed(_logger, e, name);
        }
    }

    private static async Task DisposeQuietly(IAsyncDisposable? disposable)
    {
        if (disposable is null)
        {
            return;
        }

        try
        {
            await disposable.DisposeAsync();
        }
        catch (Exception)
        {
            // Startup already failed; that error is the one worth reporting.
        }
    }

    private static FileStream LockDataDirectory(string dataDirectory)
    {
        var path = Path.Combine(dataDirectory, LockFileName);
        try
        {
            // FileShare.None takes an exclusive advisory lock (flock) that the kernel drops when the process dies.
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new IOException($"data directory {dataDirectory} is in use by another storage server ({e.Message})", e);
        }
    }

    private static void ConfigureLogging(ILoggingBuilder logging, StorageServerOptions options)
    {
        logging.ClearProviders();
        logging.SetMinimumLevel(options.LogLevel);
        if (options.LogLevel > LogLevel.Debug)
        {
            // Kestrel and routing chatter at Information would drown the volume lifecycle messages.
            logging.AddFilter("Microsoft", LogLevel.Warning);
            logging.AddFilter("Grpc", LogLevel.Warning);
        }

        if (options.ConfigureLogging is not null)
        {
            options.ConfigureLogging(logging);
            return;
        }

        logging.AddSimpleConsole(console =>
        {
            console.SingleLine = true;
            console.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            console.UseUtcTimestamp = true;
        });
        // stdout carries only the CSINVME-READY line that scripts wait for; every log line goes to stderr.
        logging.Services.Configure<ConsoleLoggerOptions>(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
    }

    private static Task RouteByListener(HttpContext context, RequestDelegate next)
    {
        var role = ListenerRoles.Of(context);
        var isMetrics = context.Request.Path.Equals("/metrics", StringComparison.Ordinal) || HealthEndpoints.Serves(context.Request.Path);
        var allowed = role switch
        {
            ListenerRole.Metrics => isMetrics,
            ListenerRole.Management => !isMetrics,
            _ => false,
        };
        if (!allowed)
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }

        return next(context);
    }
}
