using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using CsiNvme.Csi.Node;

namespace CsiNvme.Csi.Tests.Node;

/// <summary>
/// The node's platform over a <see cref="FakeSysfs"/>, with a stand-in for the kernel's fabrics connect: a connect
/// first reaches the listener over TCP (a real target in the test, so a stopped one refuses as it would refuse the
/// kernel), then lays out what native multipath makes of it: controller nvmeK, the subsystem's shared device nvmeSn1 on
/// its first controller, and the path device nvmeScKn1 with the ANA state the test gives the listener. Everything
/// else is the real <see cref="LinuxNodePlatform"/> on the fake roots. The real kernel is the guest suite's.
/// </summary>
internal sealed class FakeKernelPlatform(FakeSysfs sys) : INodePlatform
{
    private readonly LinuxNodePlatform _inner = new(sys.SysRoot, sys.DevRoot);
    private readonly ConcurrentDictionary<string, string> _uuids = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _subsystems = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, string> _anaStates = new();

    /// <summary>Every option string written to the fabrics device, in order.</summary>
    public ConcurrentQueue<string> Connects { get; } = new();

    /// <summary>The namespace (one per subsystem, NSID 1) a connect to <paramref name="nqn"/> attaches.</summary>
    public void AddSubsystem(string nqn, string uuid) => _uuids[nqn] = uuid;

    /// <summary>The ANA state the path through the listener on <paramref name="port"/> reports (default optimized).</summary>
    public void SetAnaState(int port, string state) => _anaStates[port] = state;

    public NvmeSysfs Sysfs => _inner.Sysfs;

    public string DeviceDirectory => _inner.DeviceDirectory;

    public string FabricsDevice => _inner.FabricsDevice;

    public string ConnectFabrics(string options)
    {
        Connects.Enqueue(options);
        var fields = options.Split(',').Select(f => f.Split('=', 2)).Where(f => f.Length == 2).ToDictionary(f => f[0], f => f[1], StringComparer.Ordinal);
        var address = fields["traddr"];
        var port = int.Parse(fields["trsvcid"], CultureInfo.InvariantCulture);
        var nqn = fields["nqn"];
        try
        {
            using var socket = new TcpClient();
            if (!socket.ConnectAsync(address, port).Wait(TimeSpan.FromSeconds(5)))
            {
                throw new NodeSystemException("connect through " + FabricsDevice, 110, "Connection timed out");
            }
        }
        catch (AggregateException e) when (e.InnerException is SocketException)
        {
            // The kernel fails the write() with the socket's errno (nvme_tcp_alloc_queue).
            throw new NodeSystemException("connect through " + FabricsDevice, 111, "Connection refused");
        }

        lock (_subsystems)
        {
            var instance = 0;
            while (Directory.Exists(Path.Combine(sys.SysRoot, "class", "nvme", $"nvme{instance}")))
            {
                instance++;
            }

            var name = $"nvme{instance}";
            var subsystem = _subsystems.GetOrAdd(nqn, _ => _subsystems.Count);
            var uuid = _uuids[nqn];
            sys.AddController(name, nqn, fields["hostnqn"], $"traddr={address},trsvcid={port},src_addr=127.0.0.1");
            File.WriteAllText(Path.Combine(sys.SysRoot, "class", "nvme", name, "ctrl_loss_tmo"),
                fields["ctrl_loss_tmo"] == "-1" ? "off\n" : fields["ctrl_loss_tmo"] + "\n");

            // As the kernel shows them (core.c, nvme_ctrl_dhchap_secret_show): the key, or "none".
            foreach (var secret in (string[])["dhchap_secret", "dhchap_ctrl_secret"])
            {
                File.WriteAllText(Path.Combine(sys.SysRoot, "class", "nvme", name, secret),
                    (fields.TryGetValue(secret, out var key) ? key : "none") + "\n");
            }
            var head = $"nvme{subsystem}n1";
            if (!Directory.Exists(Path.Combine(sys.SysRoot, "block", head)))
            {
                sys.AddNamespace(head, uuid, null, 259, subsystem, 2048);
            }

            sys.AddPath(name, $"nvme{subsystem}c{instance}n1", uuid, _anaStates.TryGetValue(port, out var state) ? state : "optimized");
            return name;
        }
    }

    public IReadOnlyList<MountEntry> Mounts() => _inner.Mounts();

    public void Mount(string? source, string target, string? fsType, ulong flags, string? data) => _inner.Mount(source, target, fsType, flags, data);

    public bool Unmount(string target) => _inner.Unmount(target);

    public void MakeBlockDeviceNode(string path, int major, int minor) => _inner.MakeBlockDeviceNode(path, major, minor);

    public NodeFileStatus Stat(string path) => _inner.Stat(path);

    public FilesystemUsage StatFs(string path) => _inner.StatFs(path);

    public string? WhyNotWritable(string path) => _inner.WhyNotWritable(path);

    public string? FindTool(string name) => _inner.FindTool(name);

    public Task<ToolResult> RunToolAsync(string tool, IReadOnlyList<string> arguments, TimeSpan timeout, CancellationToken cancellationToken) =>
        _inner.RunToolAsync(tool, arguments, timeout, cancellationToken);
}
