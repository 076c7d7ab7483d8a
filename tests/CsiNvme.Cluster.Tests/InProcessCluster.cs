using System.Net;
using CsiNvme.Api.Security;
using CsiNvme.Api.V1;
using CsiNvme.Server;
using CsiNvme.TestSupport;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster.Tests;

/// <summary>
/// A cluster of storage servers in this process, each on free loopback ports with its own data directory and a small
/// thin pool, sharing a real etcd.
/// </summary>
internal sealed class InProcessCluster : IAsyncDisposable
{
    private readonly TempDirectory _root = new("csinvme-cluster");
    private readonly List<GrpcChannel> _channels = new();

    private InProcessCluster(EtcdServer etcd, bool mutualTls)
    {
        Etcd = etcd;
        if (mutualTls)
        {
            Certificates = new TestCertificates(_root.Combine("tls"));
            var admin = Certificates.Issue("admin:test");
            _admin = new ManagementClientTls(Certificates.CaFile, admin.CertificateFile, admin.KeyFile);
        }
    }

    private readonly ManagementClientTls? _admin;

    public EtcdServer Etcd { get; }

    /// <summary>The cluster's CA when its management listeners use mutual TLS; each node holds a node:NAME certificate.</summary>
    public TestCertificates? Certificates { get; }

    public Dictionary<string, StorageServer?> Nodes { get; } = new(StringComparer.Ordinal);

    /// <summary>The nodes' --handover-host-wait, for nodes started after it is set; null for the server's default.</summary>
    public TimeSpan? HandoverHostWait { get; set; }

    /// <summary>Nodes' --host-address, for nodes started after it is set (none: hosts use the listeners as bound).</summary>
    public Dictionary<string, IPAddress[]> HostAddresses { get; } = new(StringComparer.Ordinal);

    /// <param name="mutualTls">Management listeners with mutual TLS: the nodes call each other with their node certificates, the tests as admin.</param>
    public static async Task<InProcessCluster> StartAsync(int nodes, TimeSpan? leaseTtl = null, bool mutualTls = false)
    {
        EtcdServer.Require();
        var cluster = new InProcessCluster(await EtcdServer.StartAsync(), mutualTls);
        for (var i = 0; i < nodes; i++)
        {
            await cluster.StartNodeAsync($"node-{(char)('a' + i)}", leaseTtl);
        }

        return cluster;
    }

    public StorageServerOptions Options(string name, TimeSpan? leaseTtl) => new()
    {
        DataDirectory = _root.Combine(name),
        NvmeListen = [new IPEndPoint(IPAddress.Loopback, 0)],
        ManagementListen = new IPEndPoint(IPAddress.Loopback, 0),
        MetricsListen = new IPEndPoint(IPAddress.Loopback, 0),
        Backend = StorageBackend.Thin,
        Pools = [new CsiNvme.Volumes.Backends.PoolDefinition(Path.Combine(_root.Combine(name), "pool0.pool"), 256L << 20)],
        EtcdEndpoints = [Etcd.ClientUrl],
        NodeName = name,
        LeaseTtl = leaseTtl ?? TimeSpan.FromSeconds(2),
        LogLevel = LogLevel.Information,
        ConfigureLogging = logging => logging.AddProvider(new ProgressLoggerProvider(name)),
        ManagementTls = Certificates is null ? null : NodeTls(name),
        HandoverHostWait = HandoverHostWait ?? new StorageServerOptions().HandoverHostWait,
        HostAddresses = HostAddresses.TryGetValue(name, out var hostAddresses) ? [.. hostAddresses] : [],
    };

    private ManagementTlsFiles NodeTls(string name)
    {
        var pair = Certificates!.Issue($"node:{name}");
        return new ManagementTlsFiles(pair.CertificateFile, pair.KeyFile, Certificates.CaFile);
    }

    public async Task<StorageServer> StartNodeAsync(string name, TimeSpan? leaseTtl = null)
    {
        var server = await StorageServer.StartAsync(Options(name, leaseTtl));
        Nodes[name] = server;
        return server;
    }

    public async Task StopNodeAsync(string name)
    {
        if (Nodes[name] is { } server)
        {
            await server.DisposeAsync();
            Nodes[name] = null;
        }
    }

    public StorageServer Node(string name) => Nodes[name] ?? throw new InvalidOperationException($"{name} is stopped");

    public VolumeService.VolumeServiceClient Volumes(string name) => new(Channel(name));

    public NodeService.NodeServiceClient NodeApi(string name) => new(Channel(name));

    private GrpcChannel Channel(string name)
    {
        var channel = ManagementClientTls.CreateChannel(Node(name).ManagementEndpoint.ToString(), _admin);
        _channels.Add(channel);
        return channel;
    }

    /// <summary>Waits (bounded) until <paramref name="condition"/> holds.</summary>
    public static async Task<bool> WaitAsync(Func<Task<bool>> condition, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return true;
            }

            await Task.Delay(50);
        }

        return await condition();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var channel in _channels)
        {
            channel.Dispose();
        }

        foreach (var name in Nodes.Keys.ToArray())
        {
            await StopNodeAsync(name);
        }

        await Etcd.DisposeAsync();
        _root.Dispose();
    }
}

/// <summary>Node log lines to the NUnit progress output, prefixed with the node's name.</summary>
internal sealed class ProgressLoggerProvider(string node) : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new Logger(node, categoryName[(categoryName.LastIndexOf('.') + 1)..]);

    public void Dispose()
    {
    }

    private sealed class Logger(string node, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                TestContext.Progress.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {node} [{logLevel}] {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception.Message)}");
            }
        }
    }
}
