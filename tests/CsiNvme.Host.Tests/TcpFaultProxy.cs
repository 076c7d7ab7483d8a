using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Host.Tests;

/// <summary>
/// A TCP relay between the host and a real target that can stop forwarding host bytes (so commands stay outstanding) and
/// cut every connection (so the host sees the network fail), the way a broken path behaves. It also counts the PDUs the
/// target sends by type, so a test can see what went over the wire and not only what the host made of it.
/// </summary>
internal sealed class TcpFaultProxy : IAsyncDisposable
{
    private readonly IPEndPoint _upstream;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _sockets = new();
    private readonly Task _acceptLoop;
    private volatile bool _frozen;
    private long _capsuleResponses;
    private long _c2hData;
    private long _c2hDataWithSuccess;

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

    /// <summary>CapsuleResp PDUs relayed from the target, on every connection.</summary>
    public long CapsuleResponses => Interlocked.Read(ref _capsuleResponses);

    /// <summary>C2HData PDUs relayed from the target.</summary>
    public long C2HDataPdus => Interlocked.Read(ref _c2hData);

    /// <summary>C2HData PDUs with the SUCCESS flag, each of which stands in for a CapsuleResp (TCP 1.0, 3.6.2.8).</summary>
    public long C2HDataWithSuccess => Interlocked.Read(ref _c2hDataWithSuccess);

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
        var counter = fromHost ? null : new PduCounter(this);
        try
        {
            while (true)
            {
                var received = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (received == 0)
                {
                    break;
                }

                counter?.Feed(buffer.AsSpan(0, received));
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

    /// <summary>Follows PDU boundaries of one byte stream by the common header's PLEN (TCP 1.0, 3.6.1).</summary>
    private sealed class PduCounter(TcpFaultProxy proxy)
    {
        private const int CommonHeaderLength = 8;
        private readonly byte[] _header = new byte[CommonHeaderLength];
        private int _headerFill;
        private long _skip;

        public void Feed(ReadOnlySpan<byte> bytes)
        {
            while (!bytes.IsEmpty)
            {
                if (_skip > 0)
                {
                    var skipped = (int)Math.Min(_skip, bytes.Length);
                    _skip -= skipped;
                    bytes = bytes[skipped..];
                    continue;
                }

                var take = Math.Min(CommonHeaderLength - _headerFill, bytes.Length);
                bytes[..take].CopyTo(_header.AsSpan(_headerFill));
                _headerFill += take;
                bytes = bytes[take..];
                if (_headerFill < CommonHeaderLength)
                {
                    return;
                }

                _headerFill = 0;
                _skip = BinaryPrimitives.ReadUInt32LittleEndian(_header.AsSpan(4)) - CommonHeaderLength;
                switch ((PduType)_header[0])
                {
                    case PduType.CapsuleResp:
                        Interlocked.Increment(ref proxy._capsuleResponses);
                        break;
                    case PduType.C2HData:
                        Interlocked.Increment(ref proxy._c2hData);
                        if ((((PduFlags)_header[1]) & PduFlags.Success) != 0)
                        {
                            Interlocked.Increment(ref proxy._c2hDataWithSuccess);
                        }

                        break;
                }
            }
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
