using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using NUnit.Framework;

namespace CsiNvme.TestSupport;

/// <summary>
/// A single-member etcd (Debian's etcd-server, /usr/bin/etcd) as a child process on free loopback ports with its
/// own data directory. It can be paused (SIGSTOP) and resumed to make leases expire under a client, and stopped and
/// started again on the same data and ports to test reconnection. Dispose kills it by PID and removes its data.
/// </summary>
public sealed partial class EtcdServer : IAsyncDisposable
{
    public const string DefaultBinary = "/usr/bin/etcd";

    private const int SIGKILL = 9;
    private const int SIGCONT = 18;
    private const int SIGSTOP = 19;
    private const int OutputLimit = 1 << 20;
    private const int PortAttempts = 5;

    private static readonly HttpClient s_health = new() { Timeout = TimeSpan.FromSeconds(2) };

    private readonly TempDirectory _directory;
    private readonly StringBuilder _output = new();
    private readonly string _binary;
    private readonly string _name;
    private Process? _process;
    private bool _paused;

    private EtcdServer(string binary, TempDirectory directory, string name, int clientPort, int peerPort)
    {
        _binary = binary;
        _directory = directory;
        _name = name;
        ClientPort = clientPort;
        PeerPort = peerPort;
    }

    /// <summary>Why etcd cannot run here, or null when it can.</summary>
    public static string? UnavailableReason(string binary = DefaultBinary) =>
        !OperatingSystem.IsLinux() ? "the etcd tests need a Linux host"
        : File.Exists(binary) ? null
        : $"{binary} is not installed (apt-get install etcd-server; .ci/run installs it)";

    /// <summary>Ignores the calling test when etcd is missing, except under CI (CI env variable set), where that fails it.</summary>
    public static void Require(string binary = DefaultBinary)
    {
        if (UnavailableReason(binary) is { } reason)
        {
            if (Environment.GetEnvironmentVariable("CI") is { Length: > 0 })
            {
                Assert.Fail("etcd unavailable under CI: " + reason);
            }

            Assert.Ignore("etcd unavailable: " + reason);
        }
    }

    public int ClientPort { get; }

    public int PeerPort { get; }

    /// <summary>The URL clients connect to, e.g. http://127.0.0.1:40123.</summary>
    public string ClientUrl => $"http://127.0.0.1:{ClientPort}";

    public string DataDirectory => _directory.Combine("data");

    public int ProcessId => _process?.Id ?? throw new InvalidOperationException("etcd is not running");

    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Combined stdout and stderr of every run so far (the last megabyte at most).</summary>
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

    /// <summary>
    /// Starts etcd on two free loopback ports and waits until it answers its health endpoint (it has elected itself
    /// leader). A port taken between reserving and binding it makes etcd exit; that is retried with new ports.
    /// </summary>
    public static async Task<EtcdServer> StartAsync(string binary = DefaultBinary, TimeSpan? readyTimeout = null, CancellationToken cancellationToken = default)
    {
        Require(binary);
        var failures = new StringBuilder();
        for (int attempt = 0; attempt < PortAttempts; attempt++)
        {
            var directory = new TempDirectory("csinvme-etcd");
            (int client, int peer) = ReservePorts();
            var server = new EtcdServer(binary, directory, "csinvme-test", client, peer);
            try
            {
                await server.StartProcessAsync(readyTimeout ?? TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
                return server;
            }
            catch (EtcdStartException e) when (e.PortClash && attempt < PortAttempts - 1)
            {
                failures.AppendLine(e.Message);
                await server.DisposeAsync().ConfigureAwait(false);
            }
            catch
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        throw new InvalidOperationException("etcd did not start:\n" + failures);
    }

    /// <summary>Stops the process with SIGSTOP: it keeps its sockets but answers nothing and expires no lease.</summary>
    public void Pause()
    {
        Signal(SIGSTOP);
        _paused = true;
    }

    /// <summary>Resumes a paused process (SIGCONT).</summary>
    public void Resume()
    {
        Signal(SIGCONT);
        _paused = false;
    }

    /// <summary>Ends the process abruptly (SIGKILL), as a crash would, and waits for it; the data directory stays.</summary>
    public async Task StopAsync()
    {
        if (_process is not { } process)
        {
            return;
        }

        if (!process.HasExited)
        {
            _ = Kill(process.Id, SIGKILL);
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        }

        process.WaitForExit();
        process.Dispose();
        _process = null;
        _paused = false;
    }

    /// <summary>Starts etcd again after <see cref="StopAsync"/>, on the same data directory and ports.</summary>
    public Task RestartAsync(TimeSpan? readyTimeout = null, CancellationToken cancellationToken = default)
    {
        if (IsRunning)
        {
            throw new InvalidOperationException("etcd is still running: stop it first");
        }

        return StartProcessAsync(readyTimeout ?? TimeSpan.FromSeconds(30), cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (_paused && _process is { HasExited: false } process)
        {
            // A stopped process still dies from SIGKILL, but resume it first so nothing is left half-stopped if the
            // kill were to fail.
            _ = Kill(process.Id, SIGCONT);
        }

        await StopAsync().ConfigureAwait(false);
        _directory.Dispose();
    }

    public override string ToString() => $"etcd pid={_process?.Id} client={ClientUrl} data={DataDirectory}";

    /// <summary>The output tail, for assertion messages.</summary>
    public string OutputTail(int lines = 40)
    {
        var all = Output.TrimEnd('\n').Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    private async Task StartProcessAsync(TimeSpan readyTimeout, CancellationToken cancellationToken)
    {
        string peerUrl = $"http://127.0.0.1:{PeerPort}";
        var startInfo = new ProcessStartInfo(_binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[]
                 {
                     "--name", _name,
                     "--data-dir", DataDirectory,
                     "--listen-client-urls", ClientUrl,
                     "--advertise-client-urls", ClientUrl,
                     "--listen-peer-urls", peerUrl,
                     "--initial-advertise-peer-urls", peerUrl,
                     "--initial-cluster", $"{_name}={peerUrl}",
                     "--initial-cluster-state", "new",
                     "--initial-cluster-token", $"csinvme-test-{ClientPort}",
                     "--logger", "zap",
                     "--log-outputs", "stderr",
                     "--log-level", "warn",
                 })
        {
            startInfo.ArgumentList.Add(arg);
        }

        // Debian's package reads ETCD_* variables; none from the environment may change this instance.
        foreach (var key in startInfo.Environment.Keys.Where(k => k.StartsWith("ETCD_", StringComparison.Ordinal)).ToArray())
        {
            startInfo.Environment.Remove(key);
        }

        var process = new Process { StartInfo = startInfo, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        var deadline = Stopwatch.GetTimestamp() + (long)(readyTimeout.TotalSeconds * Stopwatch.Frequency);
        string lastProblem = "no answer yet";
        while (Stopwatch.GetTimestamp() < deadline)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (process.HasExited)
            {
                process.WaitForExit();
                string output = Output;
                bool clash = output.Contains("address already in use", StringComparison.Ordinal);
                throw new EtcdStartException($"etcd exited with code {process.ExitCode} before it was ready\n----- etcd output -----\n{OutputTail()}\n-----", clash);
            }

            try
            {
                string health = await s_health.GetStringAsync($"{ClientUrl}/health", cancellationToken).ConfigureAwait(false);
                if (health.Contains("\"health\":\"true\"", StringComparison.Ordinal))
                {
                    return;
                }

                lastProblem = health;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                lastProblem = e.Message;
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }

        throw new EtcdStartException($"etcd not healthy within {readyTimeout.TotalSeconds:F0}s ({lastProblem})\n----- etcd output -----\n{OutputTail()}\n-----", portClash: false);
    }

    private void Signal(int signal)
    {
        if (Kill(ProcessId, signal) != 0)
        {
            throw new InvalidOperationException($"kill({ProcessId}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    private void Append(string? line)
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

            _output.Append(line).Append('\n');
        }
    }

    /// <summary>
    /// Two distinct free ports, found by binding port 0. They are released before etcd binds them, so another process
    /// may take one in between; the caller retries on a clash.
    /// </summary>
    private static (int Client, int Peer) ReservePorts()
    {
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return (((IPEndPoint)client.LocalEndPoint!).Port, ((IPEndPoint)peer.LocalEndPoint!).Port);
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    private sealed class EtcdStartException(string message, bool portClash) : Exception(message)
    {
        public bool PortClash { get; } = portClash;
    }
}
