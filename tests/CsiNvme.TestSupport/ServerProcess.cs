using System.Diagnostics;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using CsiNvme.Api.V1;
using Grpc.Net.Client;

namespace CsiNvme.TestSupport;

/// <summary>
/// The storage server (src/CsiNvme.Server, built in the tests' configuration) as a child
/// process on loopback ports chosen by the OS. It announces its listeners with one
/// <c>CSINVME-READY nvme=ADDR:PORT[,...] mgmt=ADDR:PORT metrics=ADDR:PORT</c> line on stdout.
/// </summary>
public sealed partial class ServerProcess : IAsyncDisposable
{
    public const string ReadyPrefix = "CSINVME-READY ";

    private const int SIGTERM = 15;
    private const int SIGCONT = 18;
    private const int SIGSTOP = 19;
    private const int OutputLimit = 1 << 20;

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource<string> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Action<string>? _outputLine;
    private GrpcChannel? _channel;
    private bool _paused;

    private ServerProcess(Process process, string dataDirectory)
    {
        _process = process;
        DataDirectory = dataDirectory;
    }

    public string DataDirectory { get; }

    public int ProcessId => _process.Id;

    public IReadOnlyList<IPEndPoint> NvmeEndpoints { get; private set; } = [];

    /// <summary>The first NVMe/TCP listener.</summary>
    public IPEndPoint NvmeEndpoint => NvmeEndpoints[0];

    public IPEndPoint ManagementEndpoint { get; private set; } = new(IPAddress.Loopback, 0);

    public IPEndPoint MetricsEndpoint { get; private set; } = new(IPAddress.Loopback, 0);

    public Uri ManagementUri => new($"http://{ManagementEndpoint}");

    public Uri MetricsUri => new($"http://{MetricsEndpoint}/metrics");

    public bool HasExited => _process.HasExited;

    /// <summary>Combined stdout and stderr so far (the last megabyte at most).</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>gRPC channel to the management API (HTTP/2 without TLS), created on first use.</summary>
    public GrpcChannel Channel => _channel ??= GrpcChannel.ForAddress(ManagementUri);

    public VolumeService.VolumeServiceClient Volumes => new(Channel);

    public ServerService.ServerServiceClient ServerInfo => new(Channel);

    /// <summary>
    /// Starts the server with its data in <paramref name="dataDirectory"/> and waits until it is ready.
    /// <paramref name="launcher"/>, when given, is a command that runs the rest of the command line (for example
    /// <c>setpriv --reuid=65534 ...</c> to run the server as another user); it must exec it, keeping the process ID.
    /// <paramref name="ports"/>, when given, are the loopback ports to listen on (0 for one the OS picks), so a server
    /// can be started again where hosts and peers knew it; <paramref name="outputLine"/> sees every output line.
    /// </summary>
    public static async Task<ServerProcess> StartAsync(
        string dataDirectory,
        IEnumerable<string>? extraArgs = null,
        TimeSpan? readyTimeout = null,
        CancellationToken cancellationToken = default,
        IReadOnlyList<string>? launcher = null,
        ServerPorts? ports = null,
        Action<string>? outputLine = null)
    {
        ports ??= new ServerPorts(0, 0, 0);
        var dll = RepoPaths.ServerDll;
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"server not built: {dll} (dotnet build src/CsiNvme.Server -c {RepoPaths.Configuration})", dll);
        }

        var startInfo = new ProcessStartInfo(launcher is { Count: > 0 } ? launcher[0] : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = dataDirectory,
        };
        if (launcher is { Count: > 0 })
        {
            foreach (var arg in launcher.Skip(1))
            {
                startInfo.ArgumentList.Add(arg);
            }

            startInfo.ArgumentList.Add("dotnet");
        }

        startInfo.ArgumentList.Add(dll);
        foreach (var arg in new[]
                 {
                     "--data-dir", dataDirectory,
                     "--nvme-listen", $"127.0.0.1:{ports.Nvme}",
                     "--mgmt-listen", $"127.0.0.1:{ports.Management}",
                     "--metrics-listen", $"127.0.0.1:{ports.Metrics}",
                 }.Concat(extraArgs ?? []))
        {
            startInfo.ArgumentList.Add(arg);
        }

        startInfo.Environment["DOTNET_NOLOGO"] = "1";
        var process = new Process { StartInfo = startInfo, EnableRaisingEvents = true };
        var server = new ServerProcess(process, dataDirectory) { _outputLine = outputLine };
        process.OutputDataReceived += (_, e) => server.OnLine(e.Data, isError: false);
        process.ErrorDataReceived += (_, e) => server.OnLine(e.Data, isError: true);
        process.Exited += (_, _) => server._ready.TrySetException(
            new InvalidOperationException("server exited before it was ready"));
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var timeout = readyTimeout ?? TimeSpan.FromSeconds(30);
        try
        {
            var line = await server._ready.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            server.ParseReady(line);
            return server;
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException or FormatException)
        {
            server.Kill();
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            process.WaitForExit();
            var reason = e is TimeoutException ? $"not ready within {timeout.TotalSeconds:F0}s" : e.Message;
            var exit = process.HasExited ? $" (exit code {process.ExitCode})" : string.Empty;
            throw new InvalidOperationException(
                $"storage server failed to start: {reason}{exit}\n----- server output -----\n{server.Output}\n-----", e);
        }
        catch
        {
            server.Kill();
            throw;
        }
    }

    /// <summary>Asks the server to shut down (SIGTERM) and waits; kills it if it does not exit in time. Returns the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan? timeout = null)
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, SIGTERM);
            using var limit = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(15));
            try
            {
                await _process.WaitForExitAsync(limit.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                Kill();
                await _process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }

        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>The ports it listens on (the first NVMe/TCP listener), to start it again on the same ones.</summary>
    public ServerPorts Ports => new(NvmeEndpoint.Port, ManagementEndpoint.Port, MetricsEndpoint.Port);

    /// <summary>Freezes the process (SIGSTOP): it keeps its sockets and its state but runs nothing, as a stalled machine.</summary>
    public void Pause()
    {
        Signal(SIGSTOP);
        _paused = true;
    }

    /// <summary>Lets a frozen process run again (SIGCONT).</summary>
    public void Resume()
    {
        Signal(SIGCONT);
        _paused = false;
    }

    /// <summary>Ends the server abruptly (SIGKILL), as a crash would.</summary>
    public void Kill()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
    }

    public async ValueTask DisposeAsync()
    {
        _channel?.Dispose();
        if (!_process.HasExited)
        {
            if (_paused)
            {
                _ = Kill(_process.Id, SIGCONT);
            }

            Kill();
            await _process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        }

        _process.Dispose();
    }

    public override string ToString() =>
        $"server pid={_process.Id} nvme={string.Join(',', NvmeEndpoints)} mgmt={ManagementEndpoint} metrics={MetricsEndpoint}";

    /// <summary>The output tail, for assertion messages.</summary>
    public string OutputTail(int lines = 60)
    {
        var all = Output.TrimEnd('\n').Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    private void OnLine(string? line, bool isError)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            if (_output.Length > OutputLimit)
            {
                _output.Remove(0, _output.Length - (OutputLimit / 2));
            }

            _output.Append(isError ? "[stderr] " : string.Empty).Append(line).Append('\n');
        }

        _outputLine?.Invoke(line);

        if (!isError && line.StartsWith(ReadyPrefix, StringComparison.Ordinal))
        {
            _ready.TrySetResult(line);
        }
    }

    private void ParseReady(string line)
    {
        var fields = line[ReadyPrefix.Length..]
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(f => f.Split('=', 2))
            .Where(kv => kv.Length == 2)
            .ToDictionary(kv => kv[0], kv => kv[1], StringComparer.Ordinal);
        string Field(string name) =>
            fields.TryGetValue(name, out var value) ? value : throw new FormatException($"ready line lacks {name}=: {line}");

        NvmeEndpoints = Field("nvme").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(IPEndPoint.Parse).ToArray();
        if (NvmeEndpoints.Count == 0)
        {
            throw new FormatException($"ready line has no NVMe listener: {line}");
        }

        ManagementEndpoint = IPEndPoint.Parse(Field("mgmt"));
        MetricsEndpoint = IPEndPoint.Parse(Field("metrics"));
    }

    private void Signal(int signal)
    {
        if (Kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

/// <summary>Loopback ports of a storage server: NVMe/TCP, management (gRPC) and metrics; 0 lets the OS pick.</summary>
public sealed record ServerPorts(int Nvme, int Management, int Metrics);
