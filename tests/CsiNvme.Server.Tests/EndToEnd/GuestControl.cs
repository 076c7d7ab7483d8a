using System.Net;
using System.Net.Sockets;
using System.Text;

namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>
/// A one-line request/response channel for the guest: it connects to 10.0.2.2:PORT (the host's loopback),
/// sends a command line, and reads the answer line before the connection closes.
/// </summary>
internal sealed class GuestControl : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    private GuestControl(TcpListener listener, Func<string, Task<string>> handler)
    {
        _listener = listener;
        _loop = AcceptLoopAsync(handler);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public static GuestControl Start(Func<string, Task<string>> handler)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return new GuestControl(listener, handler);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync(Func<string, Task<string>> handler)
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            using (client)
            {
                // One guest step at a time: the script waits for each answer before going on.
                var stream = client.GetStream();
                using var reader = new StreamReader(stream, Encoding.ASCII, leaveOpen: true);
                string answer;
                try
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                    timeout.CancelAfter(TimeSpan.FromSeconds(30));
                    var command = (await reader.ReadLineAsync(timeout.Token))?.Trim() ?? "";
                    answer = await handler(command);
                }
                catch (Exception e) when (e is not OperationCanceledException || !_stop.IsCancellationRequested)
                {
                    answer = "error: " + e.Message.ReplaceLineEndings(" ");
                }

                var bytes = Encoding.ASCII.GetBytes(answer + "\n");
                try
                {
                    await stream.WriteAsync(bytes, _stop.Token);
                }
                catch (IOException)
                {
                    // The guest gave up on this step; its script reports that.
                }
            }
        }
    }
}
