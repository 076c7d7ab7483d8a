using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Csi.V1;
using CsiNvme.TestSupport;
using Grpc.Core;
using Grpc.Net.Client;
using NUnit.Framework;
using IdentityClient = Csi.V1.Identity.IdentityClient;
using NodeClient = Csi.V1.Node.NodeClient;

namespace CsiNvme.Csi.Tests.EndToEnd;

/// <summary>
/// A Linux guest running the published driver in node mode next to its kernel, reached from the test
/// through a QEMU port forward, and a <see cref="GuestAgent"/> to run shell commands in it meanwhile.
/// </summary>
internal sealed class GuestNode : IAsyncDisposable
{
    public const int GuestCsiPort = 9100;

    private readonly GuestAgent _agent;
    private readonly Task<GuestResult> _run;
    private readonly GrpcChannel _channel;
    private readonly Stopwatch _started;

    private GuestNode(string name, GuestAgent agent, Task<GuestResult> run, GrpcChannel channel, Stopwatch started)
    {
        Name = name;
        _agent = agent;
        _run = run;
        _channel = channel;
        _started = started;
        Node = new NodeClient(channel);
        Identity = new IdentityClient(channel);
    }

    public string Name { get; }

    public NodeClient Node { get; }

    public IdentityClient Identity { get; }

    public GuestAgent Agent => _agent;

    /// <summary>From starting QEMU until the guest's node service answered.</summary>
    public TimeSpan StartupTime { get; private set; }

    public TimeSpan BootTime { get; private set; }

    public GuestResult? Result { get; private set; }

    /// <summary>
    /// Boots a guest running the node service; <paramref name="nodeArguments"/> are added to its command line, and
    /// <paramref name="hostCpu"/> pins its QEMU to one host CPU.
    /// </summary>
    public static async Task<GuestNode> StartAsync(string name, TimeSpan lifetime, string nodeArguments = "", GuestImage image = GuestImage.Default, int? hostCpu = null)
    {
        var files = await GuestCsiBinary.FilesAsync();
        var agent = new GuestAgent();
        var hostPort = FreeLoopbackPort();
        var script = agent.GuestLoop() + $"""
            # The driver logs to the console, so its lines show up in the guest output.
            {GuestCsiBinary.GuestExecutable} --mode node --endpoint tcp://0.0.0.0:{GuestCsiPort} --node-id {name} --log-level debug {nodeArguments} &
            csi_pid=$!
            agent_loop
            kill $csi_pid 2>/dev/null || true
            wait $csi_pid 2>/dev/null || true
            echo "GUEST-MOUNTS-AT-END"
            grep -E 'nvme|/csi/' /proc/mounts || true
            """;
        var options = new GuestOptions
        {
            Image = image,
            Timeout = lifetime,
            // The .NET runtime and the driver's ~100 MB of files live in the initramfs (RAM).
            MemoryMiB = 1024,
            Cpus = 1,
            Files = files,
            HostForwards = new Dictionary<int, int> { [hostPort] = GuestCsiPort },
            HostCpu = hostCpu,
            OutputLine = line => TestContext.Progress.WriteLine($"[{name}] {line}"),
        };

        var started = Stopwatch.StartNew();
        var run = LinuxGuest.RunAsync(script, options);
        var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{hostPort}");
        var node = new GuestNode(name, agent, run, channel, started);
        try
        {
            await agent.WaitForGuestAsync(TimeSpan.FromMinutes(3), run);
            node.BootTime = started.Elapsed;
            await node.WaitForDriverAsync(TimeSpan.FromMinutes(3));
            node.StartupTime = started.Elapsed;
            return node;
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            await node.DisposeAsync();
            throw new InvalidOperationException($"guest {name} did not come up: {e.Message}\n{node.Describe()}", e);
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs a shell command in the guest; fails with its output when it exits non-zero.</summary>
    public Task<string> ShellAsync(string command, TimeSpan? timeout = null) => _agent.CheckAsync(command, timeout);

    public Task<GuestCommandResult> TryShellAsync(string command, TimeSpan? timeout = null) => _agent.RunAsync(command, timeout);

    /// <summary>The guest's recent commands and output, for assertion messages.</summary>
    public string Describe() =>
        $"----- {Name}: last guest commands -----\n{_agent.DescribeHistory()}\n" +
        (Result is null ? string.Empty : $"----- {Name}: guest output -----\n{Result.Describe(200)}");

    /// <summary>Ends the agent loop and waits for the guest to power off.</summary>
    public async Task<GuestResult> StopAsync()
    {
        if (Result is not null)
        {
            return Result;
        }

        _agent.Quit();
        Result = await _run;
        return Result;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (Result is null && !_run.IsCompleted)
            {
                _agent.Quit();
            }

            Result ??= await _run;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException)
        {
            TestContext.Progress.WriteLine($"[{Name}] guest run failed: {e.Message}");
        }
        finally
        {
            _channel.Dispose();
            await _agent.DisposeAsync();
        }
    }

    private async Task WaitForDriverAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        RpcException? last = null;
        while (DateTime.UtcNow < deadline)
        {
            if (_run.IsCompleted)
            {
                Result = await _run;
                throw new InvalidOperationException($"guest {Name} stopped before its node service answered\n{Result.Describe()}");
            }

            try
            {
                await Identity.GetPluginInfoAsync(new GetPluginInfoRequest(), deadline: DateTime.UtcNow.AddSeconds(20));
                return;
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal)
            {
                last = e;
                await Task.Delay(500);
            }
        }

        throw new TimeoutException($"the node service in guest {Name} did not answer within {timeout.TotalSeconds:F0} s: {last?.Status.Detail}");
    }

    /// <summary>
    /// QEMU's hostfwd needs a concrete port: the OS picks a free one, released just before QEMU binds it.
    /// </summary>
    private static int FreeLoopbackPort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
