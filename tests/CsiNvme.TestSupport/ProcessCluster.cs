using System.Text;
using CsiNvme.Api.V1;
using Grpc.Core;

namespace CsiNvme.TestSupport;

/// <summary>How a <see cref="ProcessCluster"/> starts its nodes.</summary>
public sealed class ProcessClusterOptions
{
    /// <summary>Membership lease of each node (--lease-ttl, whole seconds, at least 2).</summary>
    public int LeaseTtlSeconds { get; init; } = 2;

    /// <summary>Size of each node's one thin pool.</summary>
    public string PoolSize { get; init; } = "512M";

    /// <summary>More server flags for every node (e.g. --rebuild-rate).</summary>
    public IReadOnlyList<string> ExtraArgs { get; init; } = [];

    /// <summary>Called with each node's output lines, prefixed with its name (e.g. to TestContext.Progress).</summary>
    public Action<string>? OutputLine { get; init; }
}

/// <summary>
/// A storage cluster of real server processes on one machine: an etcd on loopback and N csinvme-server processes
/// (src/CsiNvme.Server), each with its own data directory and thin pool, on loopback ports of its own that stay the same
/// when the node is started again, so hosts and peers find it where they knew it. A node can be killed (SIGKILL),
/// frozen (SIGSTOP) and thawed (SIGCONT), stopped and started again on the same data; every run's output is kept.
/// </summary>
public sealed class ProcessCluster : IAsyncDisposable
{
    private readonly TempDirectory _root;
    private readonly ProcessClusterOptions _options;
    private readonly List<ClusterNodeProcess> _nodes = new();

    private ProcessCluster(EtcdServer etcd, TempDirectory root, ProcessClusterOptions options)
    {
        Etcd = etcd;
        _root = root;
        _options = options;
    }

    public EtcdServer Etcd { get; }

    public IReadOnlyList<ClusterNodeProcess> Nodes => _nodes;

    public ClusterNodeProcess this[string name] =>
        _nodes.FirstOrDefault(n => n.Name == name) ?? throw new ArgumentException($"no node {name} (nodes: {string.Join(", ", _nodes.Select(n => n.Name))})", nameof(name));

    /// <summary>Starts etcd and <paramref name="nodes"/> nodes named node-a, node-b, ... one after the other.</summary>
    public static async Task<ProcessCluster> StartAsync(int nodes, ProcessClusterOptions? options = null)
    {
        EtcdServer.Require();
        var root = new TempDirectory("csinvme-cluster");
        EtcdServer? etcd = null;
        try
        {
            etcd = await EtcdServer.StartAsync();
            var cluster = new ProcessCluster(etcd, root, options ?? new ProcessClusterOptions());
            try
            {
                for (var i = 0; i < nodes; i++)
                {
                    var node = new ClusterNodeProcess(cluster, $"node-{(char)('a' + i)}", Directory.CreateDirectory(root.Combine($"node-{(char)('a' + i)}")).FullName);
                    cluster._nodes.Add(node);
                    await node.StartAsync();
                }

                return cluster;
            }
            catch
            {
                await cluster.DisposeAsync();
                throw;
            }
        }
        catch when (etcd is null)
        {
            root.Dispose();
            throw;
        }
    }

    internal IEnumerable<string> ServerArgs(ClusterNodeProcess node) =>
    [
        "--etcd-endpoints", Etcd.ClientUrl,
        "--node-name", node.Name,
        "--lease-ttl", _options.LeaseTtlSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
        "--backend", "thin",
        "--pool", $"{Path.Combine(node.DataDirectory, "pool0.pool")},{_options.PoolSize}",
        .. _options.ExtraArgs,
    ];

    internal Action<string>? OutputLine => _options.OutputLine;

    /// <summary>The management API of a running node (the first running one unless named); any node answers for the cluster.</summary>
    public VolumeService.VolumeServiceClient Volumes(string? node = null) => new(Serving(node).Server!.Channel);

    public NodeService.NodeServiceClient NodeApi(string? node = null) => new(Serving(node).Server!.Channel);

    private ClusterNodeProcess Serving(string? node) =>
        node is not null ? this[node]
        : _nodes.FirstOrDefault(n => n.IsRunning && !n.IsPaused) ?? throw new InvalidOperationException("no node is running");

    /// <summary>The volume as a running node reports it; a node that is going away is skipped for the next one.</summary>
    public async Task<Volume> GetVolumeAsync(string name)
    {
        RpcException? last = null;
        foreach (var node in _nodes.Where(n => n.IsRunning && !n.IsPaused))
        {
            try
            {
                return await node.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = name }, deadline: DateTime.UtcNow.AddSeconds(20));
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal)
            {
                last = e;
            }
        }

        throw new InvalidOperationException($"no running node answered GetVolume({name})", last);
    }

    /// <summary>Polls the volume (bounded) until <paramref name="condition"/> holds; fails with the last state and the node logs.</summary>
    public async Task<Volume> WaitForVolumeAsync(string name, string what, Func<Volume, bool> condition, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        Volume? last = null;
        Exception? error = null;
        while (true)
        {
            try
            {
                last = await GetVolumeAsync(name);
                if (condition(last))
                {
                    return last;
                }
            }
            catch (InvalidOperationException e)
            {
                error = e;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"volume {name}: {what} not within {within.TotalSeconds:F0} s; last: {last}{(error is null ? "" : "; last error: " + error.Message)}\n{Describe()}");
            }

            await Task.Delay(250);
        }
    }

    /// <summary>Every node's state and output tail, for failure messages.</summary>
    public string Describe(int linesPerNode = 60)
    {
        var text = new StringBuilder();
        foreach (var node in _nodes)
        {
            text.Append($"----- {node.Name} ({node.Describe()}) -----\n").Append(node.LogTail(linesPerNode)).Append('\n');
        }

        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            await node.DisposeAsync();
        }

        await Etcd.DisposeAsync();
        _root.Dispose();
    }
}

/// <summary>One storage node of a <see cref="ProcessCluster"/>: its data directory, its ports and its current process.</summary>
public sealed class ClusterNodeProcess : IAsyncDisposable
{
    private readonly ProcessCluster _cluster;
    private readonly StringBuilder _log = new();
    private int _runs;

    internal ClusterNodeProcess(ProcessCluster cluster, string name, string dataDirectory)
    {
        _cluster = cluster;
        Name = name;
        DataDirectory = dataDirectory;
    }

    public string Name { get; }

    public string DataDirectory { get; }

    /// <summary>The process of the current run; null before the first start and after a stop or a kill.</summary>
    public ServerProcess? Server { get; private set; }

    /// <summary>The ports of the first run, kept for every later one.</summary>
    public ServerPorts? Ports { get; private set; }

    public bool IsRunning => Server is { HasExited: false };

    public bool IsPaused { get; private set; }

    /// <summary>NVMe/TCP port (the guest reaches it at <see cref="LinuxGuest.HostAddress"/>).</summary>
    public int NvmePort => Ports?.Nvme ?? throw new InvalidOperationException($"{Name} never started");

    public VolumeService.VolumeServiceClient Volumes => new(Running.Channel);

    public NodeService.NodeServiceClient NodeApi => new(Running.Channel);

    private ServerProcess Running => Server is { HasExited: false } server ? server : throw new InvalidOperationException($"{Name} is not running");

    /// <summary>The output of every run so far, each run headed by a marker line.</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>Starts the node (again): on the ports of its first run, with the same data directory and pool.</summary>
    public async Task StartAsync()
    {
        if (IsRunning)
        {
            throw new InvalidOperationException($"{Name} is running");
        }

        if (Server is { } old)
        {
            await old.DisposeAsync();
        }

        var run = ++_runs;
        Append($"===== {Name} run {run} starting {DateTime.UtcNow:HH:mm:ss.fff} =====");
        Server = null;
        Server = await ServerProcess.StartAsync(
            DataDirectory,
            _cluster.ServerArgs(this),
            readyTimeout: TimeSpan.FromSeconds(90),
            ports: Ports,
            outputLine: Append);
        Ports ??= Server.Ports;
        IsPaused = false;
    }

    /// <summary>Kills the process (SIGKILL) and waits until it is gone, as a crash would end it.</summary>
    public async Task KillAsync()
    {
        if (Server is not { } server)
        {
            return;
        }

        server.Kill();
        await server.StopAsync(TimeSpan.FromSeconds(30));
        IsPaused = false;
        Append($"===== {Name} killed {DateTime.UtcNow:HH:mm:ss.fff} =====");
    }

    /// <summary>Freezes the process (SIGSTOP).</summary>
    public void Pause()
    {
        Running.Pause();
        IsPaused = true;
        Append($"===== {Name} frozen (SIGSTOP) {DateTime.UtcNow:HH:mm:ss.fff} =====");
    }

    /// <summary>Thaws the process (SIGCONT).</summary>
    public void Resume()
    {
        Running.Resume();
        IsPaused = false;
        Append($"===== {Name} thawed (SIGCONT) {DateTime.UtcNow:HH:mm:ss.fff} =====");
    }

    /// <summary>Graceful stop (SIGTERM); returns the exit code.</summary>
    public async Task<int> StopAsync()
    {
        if (Server is not { } server)
        {
            return 0;
        }

        if (IsPaused)
        {
            Resume();
        }

        var code = await server.StopAsync();
        Append($"===== {Name} stopped with exit code {code} {DateTime.UtcNow:HH:mm:ss.fff} =====");
        return code;
    }

    /// <summary>Kills the node and starts it again on the same data directory and ports.</summary>
    public async Task RestartAfterKillAsync()
    {
        await KillAsync();
        await StartAsync();
    }

    /// <summary>Lines of the log (every run) that contain <paramref name="text"/>.</summary>
    public IReadOnlyList<string> LogLines(string text) =>
        Log.Split('\n').Where(l => l.Contains(text, StringComparison.Ordinal)).ToArray();

    public string LogTail(int lines = 60)
    {
        var all = Log.TrimEnd('\n').Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    public string Describe() =>
        Server is null ? "not started"
        : $"{(IsRunning ? IsPaused ? "frozen" : "running" : "exited")}, pid {Server.ProcessId}, nvme {Ports?.Nvme}, mgmt {Ports?.Management}";

    public async ValueTask DisposeAsync()
    {
        if (Server is { } server)
        {
            await server.DisposeAsync();
        }
    }

    private void Append(string line)
    {
        lock (_log)
        {
            if (_log.Length > 8 << 20)
            {
                _log.Remove(0, _log.Length - (4 << 20));
            }

            _log.Append(line).Append('\n');
        }

        _cluster.OutputLine?.Invoke($"[{Name}] {line}");
    }
}
