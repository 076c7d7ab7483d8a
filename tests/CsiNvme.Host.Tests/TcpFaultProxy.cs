using System.Net;
using System.Net.Sockets;

namespace CsiNvme.Host.Tests;

/// <summary>
/// A TCP relay between the host and a real target that can stop forwarding host bytes (so commands stay outstanding) and
/// cut every connection (so the host sees the network fail), the way a broken path behaves.
/// </summary>
internal sealed class TcpFaultProxy : IAsyncDisposable
{
    private readonly IPEndPoint _upstream;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _sockets = new();
    private readonly Task _acceptLoop;
    private volatile bool _frozen;

    public TcpFaultProxy(IPEndPoint upstream)
    {
        _upstream = upstream;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(64);
        Endpoint = (IPEndPoint)_listener.LocalEndPoint!;
        _acceptLoop = AcceptLoopAsync();
    }

    public IPEndPoint Endpoint { get; }

    public int Connections { get; private set; }

    /// <summary>Host-to-target bytes are held back while frozen.</summary>
    public bool Frozen
    {
        get => _frozen;
        set => _frozen = value;
    }

    /// <summary>Resets every relayed connection in both directions.</summary>
    public void CutAll()
    {
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                try
                {
                    // Linger 0 makes the close a reset, like a path that fails rather than one that ends politely.
                    socket.LingerState = new LingerOption(true, 0);
                }
                catch (ObjectDisposedException)
                {
                }

                socket.Dispose();
            }

            _sockets.Clear();
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket host;
            try
            {
                host = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            var target = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            host.NoDelay = true;
            try
            {
                await target.ConnectAsync(_upstream);
            }
            catch (SocketException)
            {
                host.Dispose();
                target.Dispose();
                continue;
            }

            lock (_sockets)
            {
                _sockets.Add(host);
                _sockets.Add(target);
                Connections++;
            }

            _ = PumpAsync(host, target, fromHost: true);
            _ = PumpAsync(target, host, fromHost: false);
        }
    }

    private async Task PumpAsync(Socket from, Socket to, bool fromHost)
    {
        var buffer = new byte[256 * 1024];
        try
        {
            while (true)
            {
                var received = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (received == 0)
                {
                    break;
                }

                while (fromHost && _frozen)
                {
                    await Task.Delay(10, _stop.Token);
                }

                var sent = 0;
                while (sent < received)
                {
                    sent += await to.SendAsync(buffer.AsMemory(sent, received - sent), SocketFlags.None, _stop.Token);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
        finally
        {
            from.Dispose();
            to.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        CutAll();
        await _acceptLoop;
        _stop.Dispose();
    }
}
