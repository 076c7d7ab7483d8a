using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace CsiNvme.TestSupport;

/// <summary>What one shell command run by the guest agent produced.</summary>
public sealed record GuestCommandResult(string Command, int ExitCode, string Output)
{
    public bool Succeeded => ExitCode == 0;

    public override string ToString() => $"$ {Command}\n{Output}[exit {ExitCode}]";
}

/// <summary>
/// Lets a test drive a running guest step by step: a tiny HTTP server on the host's loopback that the guest's
/// <see cref="GuestLoop"/> polls (busybox wget to 10.0.2.2) for the next shell command, and to which it posts
/// the command's output and exit code. The guest stays up between commands, so the test can interleave
/// calls to servers in the guest with inspections of the guest's state. The loop ends on
/// <see cref="QuitAsync"/> (or when the host side is gone), and the guest then powers off.
/// </summary>
public sealed class GuestAgent : IAsyncDisposable
{
    private const string QuitId = "quit";
    private const string IdleId = "idle";

    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private readonly Channel _commands = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource<GuestCommandResult>> _pending = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _commandText = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _firstPoll = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _nextId;

    public GuestAgent()
    {
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = AcceptLoopAsync();
    }

    /// <summary>The loopback port, reached from the guest as <see cref="LinuxGuest.HostAddress"/>:Port.</summary>
    public int Port { get; }

    /// <summary>Commands run so far with their results, for failure messages.</summary>
    public ConcurrentQueue<GuestCommandResult> History { get; } = new();

    /// <summary>
    /// The shell function <c>agent_loop</c> for the guest script (busybox sh): fetch a command, run it with
    /// sh, post the output back; at most <paramref name="maxCommands"/> commands, and it gives up after
    /// 60 consecutive failed polls (about half a minute without the host).
    /// </summary>
    public string GuestLoop(int maxCommands = 2000) => $$"""
        agent_loop() {
            { set +x; } 2>/dev/null
            agent_url=http://{{LinuxGuest.HostAddress}}:{{Port}}
            agent_done=0
            agent_failures=0
            echo "CSINVME-AGENT-READY"
            while [ $agent_done -lt {{maxCommands}} ] && [ $agent_failures -lt 60 ]; do
                if ! wget -q -O /tmp/agent.cmd "$agent_url/next" 2>/dev/null; then
                    agent_failures=$((agent_failures + 1))
                    sleep 0.5
                    continue
                fi
                agent_failures=0
                agent_id=$(head -n 1 /tmp/agent.cmd)
                [ "$agent_id" = {{QuitId}} ] && break
                [ "$agent_id" = {{IdleId}} ] && continue
                tail -n +2 /tmp/agent.cmd > /tmp/agent.sh
                agent_rc=0
                sh /tmp/agent.sh > /tmp/agent.out 2>&1 < /dev/null || agent_rc=$?
                wget -q -O /dev/null --post-file=/tmp/agent.out "$agent_url/result?id=$agent_id&rc=$agent_rc" 2>/dev/null || true
                agent_done=$((agent_done + 1))
            done
            echo "CSINVME-AGENT-DONE commands=$agent_done failures=$agent_failures"
        }

        """;

    /// <summary>Completes when the guest first asks for a command (it has booted and run its setup).</summary>
    public Task WaitForGuestAsync(TimeSpan timeout, Task? guestRun = null)
    {
        var poll = _firstPoll.Task.WaitAsync(timeout);
        return guestRun is null ? poll : WaitOrFailAsync(poll, guestRun);
    }

    /// <summary>Runs <paramref name="command"/> (a shell script, may span lines) in the guest and returns its output.</summary>
    public async Task<GuestCommandResult> RunAsync(string command, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var id = Interlocked.Increment(ref _nextId).ToString(CultureInfo.InvariantCulture);
        var completion = new TaskCompletionSource<GuestCommandResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = completion;
        _commandText[id] = command;
        _commands.Post(id + "\n" + command + "\n");
        try
        {
            var result = await completion.Task.WaitAsync(timeout ?? TimeSpan.FromMinutes(2), cancellationToken).ConfigureAwait(false);
            History.Enqueue(result);
            return result;
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"the guest did not finish within {(timeout ?? TimeSpan.FromMinutes(2)).TotalSeconds:F0} s: {command}");
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    /// <summary>Like <see cref="RunAsync"/> but fails with the output when the exit code is not 0.</summary>
    public async Task<string> CheckAsync(string command, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var result = await RunAsync(command, timeout, cancellationToken).ConfigureAwait(false);
        return result.Succeeded ? result.Output : throw new InvalidOperationException("guest command failed:\n" + result);
    }

    /// <summary>Ends the guest's loop; the guest script goes on after agent_loop (and then powers off).</summary>
    public void Quit() => _commands.Post(QuitId + "\n");


    public string DescribeHistory(int last = 12) =>
        string.Join("\n", History.Skip(Math.Max(0, History.Count - last)).Select(r => r.ToString()));

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }

        foreach (var pending in _pending.Values)
        {
            pending.TrySetCanceled();
        }

        _stop.Dispose();
    }

    private static async Task WaitOrFailAsync(Task poll, Task guestRun)
    {
        var first = await Task.WhenAny(poll, guestRun).ConfigureAwait(false);
        if (first == guestRun)
        {
            await guestRun.ConfigureAwait(false);
            throw new InvalidOperationException("the guest stopped before its agent asked for a command");
        }

        await poll.ConfigureAwait(false);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var (method, target, body) = await ReadRequestAsync(stream).ConfigureAwait(false);
                string reply;
                if (method == "GET" && target.StartsWith("/next", StringComparison.Ordinal))
                {
                    _firstPoll.TrySetResult();
                    // Long poll: hold the request up to a few seconds so commands start without delay.
                    reply = await _commands.TakeAsync(TimeSpan.FromSeconds(5), _stop.Token).ConfigureAwait(false) ?? IdleId + "\n";
                }
                else if (method == "POST" && target.StartsWith("/result", StringComparison.Ordinal))
                {
                    var query = ParseQuery(target);
                    var id = query.GetValueOrDefault("id", string.Empty);
                    var rc = int.TryParse(query.GetValueOrDefault("rc"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) ? parsed : -1;
                    if (_pending.TryGetValue(id, out var completion))
                    {
                        completion.TrySetResult(new GuestCommandResult(_commandText.GetValueOrDefault(id, string.Empty), rc, Encoding.UTF8.GetString(body)));
                    }

                    reply = "ok\n";
                }
                else
                {
                    reply = "unknown\n";
                }

                var payload = Encoding.UTF8.GetBytes(reply);
                var header = Encoding.ASCII.GetBytes(
                    $"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {payload.Length}\r\nConnection: close\r\n\r\n");
                await stream.WriteAsync(header, _stop.Token).ConfigureAwait(false);
                await stream.WriteAsync(payload, _stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or FormatException)
            {
                // A guest that went away mid-request; the command (if any) is reported by its timeout.
            }
        }
    }

    private static async Task<(string Method, string Target, byte[] Body)> ReadRequestAsync(NetworkStream stream)
    {
        var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int headerEnd;
        while (true)
        {
            var read = await stream.ReadAsync(chunk).ConfigureAwait(false);
            if (read == 0)
            {
                throw new IOException("connection closed before the request header ended");
            }

            buffer.Write(chunk, 0, read);
            headerEnd = IndexOfHeaderEnd(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
            if (headerEnd >= 0)
            {
                break;
            }

            if (buffer.Length > 64 * 1024)
            {
                throw new FormatException("request header too long");
            }
        }

        var all = buffer.ToArray();
        var header = Encoding.ASCII.GetString(all, 0, headerEnd);
        var lines = header.Split("\r\n");
        var requestLine = lines[0].Split(' ');
        if (requestLine.Length < 2)
        {
            throw new FormatException("bad request line");
        }

        var length = 0;
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':');
            if (colon > 0 && line[..colon].Trim().Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                length = int.Parse(line[(colon + 1)..].Trim(), CultureInfo.InvariantCulture);
            }
        }

        var body = new MemoryStream();
        body.Write(all, headerEnd + 4, all.Length - headerEnd - 4);
        while (body.Length < length)
        {
            var read = await stream.ReadAsync(chunk).ConfigureAwait(false);
            if (read == 0)
            {
                break;
            }

            body.Write(chunk, 0, read);
        }

        return (requestLine[0], requestLine[1], body.ToArray());
    }

    private static int IndexOfHeaderEnd(ReadOnlySpan<byte> data) => data.IndexOf("\r\n\r\n"u8);

    private static Dictionary<string, string> ParseQuery(string target)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var question = target.IndexOf('?');
        if (question < 0)
        {
            return result;
        }

        foreach (var pair in target[(question + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=');
            if (eq > 0)
            {
                result[Uri.UnescapeDataString(pair[..eq])] = Uri.UnescapeDataString(pair[(eq + 1)..]);
            }
        }

        return result;
    }

    /// <summary>A queue of command texts that one long-polling request at a time takes from.</summary>
    private sealed class Channel
    {
        private readonly System.Threading.Channels.Channel<string> _queue = System.Threading.Channels.Channel.CreateUnbounded<string>();

        public void Post(string text) => _queue.Writer.TryWrite(text);

        public async Task<string?> TakeAsync(TimeSpan wait, CancellationToken cancellationToken)
        {
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            limit.CancelAfter(wait);
            try
            {
                return await _queue.Reader.ReadAsync(limit.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return null;
            }
        }
    }
}
