using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Protocol.Tests.Tcp;

/// <summary>The MSG_DONTWAIT calls and the polling receive on a real loopback connection of blocking sockets.</summary>
public sealed class SocketCallsTests
{
    [Test]
    public void NonBlockingReceiveSaysWouldBlockOnAnEmptySocketAndReturnsDataLater()
    {
        var (left, right) = ConnectedPair();
        using (left)
        using (right)
        {
            var buffer = new byte[64];
            var received = SocketCalls.ReceiveNonBlocking(right.SafeHandle, buffer, out var error);
            Assert.Multiple(() =>
            {
                Assert.That(error, Is.EqualTo(SocketError.WouldBlock));
                Assert.That(received, Is.Zero);
                Assert.That(right.Blocking, Is.True, "the socket itself stays blocking");
            });

            left.Send("hello"u8);
            var got = ReceiveWithin(right, buffer, TimeSpan.FromSeconds(5));
            Assert.That(buffer.AsSpan(0, got).ToArray(), Is.EqualTo("hello"u8.ToArray()));
        }
    }

    [Test]
    public void NonBlockingSendSaysWouldBlockWhenTheBuffersAreFullInsteadOfWaiting()
    {
        var (left, right) = ConnectedPair();
        using (left)
        using (right)
        {
            left.SendBufferSize = 64 * 1024;
            right.ReceiveBufferSize = 64 * 1024;
            var chunk = new byte[64 * 1024];
            long total = 0;
            var error = SocketError.Success;
            // Nobody reads the other end: the kernel buffers fill within a few MiB.
            for (var i = 0; i < 10_000 && error == SocketError.Success; i++)
            {
                total += SocketCalls.SendNonBlocking(left.SafeHandle, chunk, out error);
            }

            Assert.Multiple(() =>
            {
                Assert.That(error, Is.EqualTo(SocketError.WouldBlock));
                Assert.That(total, Is.GreaterThan(0));
            });

            // Everything that was accepted arrives in order.
            var buffer = new byte[256 * 1024];
            long drained = 0;
            while (drained < total)
            {
                drained += right.Receive(buffer);
            }

            Assert.That(drained, Is.EqualTo(total));
        }
    }

    [Test]
    public void PollingReceiveGetsDataThatArrivesWhilePolling()
    {
        var (left, right) = ConnectedPair();
        using (left)
        using (right)
        {
            var sender = Task.Run(async () =>
            {
                await Task.Delay(2);
                left.Send("polled"u8);
            });
            var buffer = new byte[64];
            var received = SocketCalls.ReceivePolling(right, right.SafeHandle, buffer, SocketCalls.ToTicks(TimeSpan.FromSeconds(5)));
            sender.Wait();
            Assert.That(buffer.AsSpan(0, received).ToArray(), Is.EqualTo("polled"u8.ToArray()));
        }
    }

    [Test]
    public void PollingReceiveSleepsInABlockingReceiveAfterThePollTime()
    {
        var (left, right) = ConnectedPair();
        using (left)
        using (right)
        {
            var started = Stopwatch.StartNew();
            var sender = Task.Run(async () =>
            {
                await Task.Delay(200);
                left.Send("late"u8);
            });
            var buffer = new byte[64];
            var received = SocketCalls.ReceivePolling(right, right.SafeHandle, buffer, SocketCalls.ToTicks(TimeSpan.FromMicroseconds(10)));
            sender.Wait();
            Assert.Multiple(() =>
            {
                Assert.That(buffer.AsSpan(0, received).ToArray(), Is.EqualTo("late"u8.ToArray()));
                Assert.That(started.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(150)), "it waited for the data");
            });
        }
    }

    [Test]
    public void PollingReceiveReturnsZeroWhenThePeerCloses()
    {
        var (left, right) = ConnectedPair();
        using (right)
        {
            left.Shutdown(SocketShutdown.Send);
            var received = SocketCalls.ReceivePolling(right, right.SafeHandle, new byte[16], SocketCalls.ToTicks(TimeSpan.FromMilliseconds(1)));
            left.Dispose();
            Assert.That(received, Is.Zero);
        }
    }

    [Test]
    public void PollingReceiveReportsAResetAsASocketError()
    {
        var (left, right) = ConnectedPair();
        using (right)
        {
            // An abortive close sends RST; the next receive must fail rather than report data or a clean end.
            left.LingerState = new LingerOption(true, 0);
            left.Dispose();
            var error = Assert.Throws<SocketException>(() =>
            {
                for (var i = 0; i < 1000; i++)
                {
                    SocketCalls.ReceivePolling(right, right.SafeHandle, new byte[16], SocketCalls.ToTicks(TimeSpan.FromMilliseconds(1)));
                }
            });
            Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionReset));
        }
    }

    [Test]
    public void TheCallsAllocateNothing()
    {
        var (left, right) = ConnectedPair();
        using (left)
        using (right)
        {
            var payload = new byte[512];
            var buffer = new byte[4096];
            var handle = right.SafeHandle;
            var leftHandle = left.SafeHandle;
            for (var i = 0; i < 100; i++)
            {
                RoundTrip(leftHandle, right, handle, payload, buffer);
            }

            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 1000; i++)
            {
                RoundTrip(leftHandle, right, handle, payload, buffer);
            }

            Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
        }
    }

    private static void RoundTrip(System.Runtime.InteropServices.SafeHandle sender, Socket receiver, System.Runtime.InteropServices.SafeHandle receiverHandle, byte[] payload, byte[] buffer)
    {
        var sent = SocketCalls.SendNonBlocking(sender, payload, out var error);
        if (error != SocketError.Success || sent != payload.Length)
        {
            throw new InvalidOperationException($"send: {error} {sent}");
        }

        var got = 0;
        while (got < payload.Length)
        {
            got += SocketCalls.ReceivePolling(receiver, receiverHandle, buffer.AsSpan(got), SocketCalls.ToTicks(TimeSpan.FromSeconds(1)));
        }

        SocketCalls.ReceiveNonBlocking(receiverHandle, buffer, out _);
    }

    private static int ReceiveWithin(Socket socket, byte[] buffer, TimeSpan limit)
    {
        var elapsed = Stopwatch.StartNew();
        while (elapsed.Elapsed < limit)
        {
            var received = SocketCalls.ReceiveNonBlocking(socket.SafeHandle, buffer, out var error);
            if (error == SocketError.Success)
            {
                return received;
            }

            Assert.That(error, Is.EqualTo(SocketError.WouldBlock));
            Thread.Sleep(1);
        }

        throw new TimeoutException("no data arrived");
    }

    /// <summary>A connected pair of blocking loopback sockets made with synchronous calls only.</summary>
    private static (Socket Left, Socket Right) ConnectedPair()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var left = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        left.Connect(listener.LocalEndPoint!);
        var right = listener.Accept();
        right.NoDelay = true;
        return (left, right);
    }
}
