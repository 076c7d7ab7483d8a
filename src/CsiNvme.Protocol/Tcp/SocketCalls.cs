using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace CsiNvme.Protocol.Tcp;

/// <summary>
/// The socket calls of a connection loop that owns a thread: <c>send(2)</c>/<c>recv(2)</c> with MSG_DONTWAIT on a
/// socket that stays blocking, and a receive that polls before it sleeps. .NET has no per-call non-blocking flag, and
/// switching a socket to non-blocking mode once makes the socket engine emulate every later blocking call through
/// epoll (a wake-up and an allocation per call), so these call libc directly. Linux only.
/// </summary>
public static unsafe partial class SocketCalls
{
    // Linux values (bits/socket.h, asm-generic/errno-base.h, asm-generic/errno.h).
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int EIntr = 4;
    private const int EAgain = 11;
    private const int EPipe = 32;
    private const int EConnReset = 104;
    private const int ENotConn = 107;

    /// <summary>Sends what the socket takes now; <see cref="SocketError.WouldBlock"/> when it takes nothing.</summary>
    public static int SendNonBlocking(SafeHandle socket, ReadOnlySpan<byte> data, out SocketError error)
    {
        fixed (byte* pointer = data)
        {
            return Transfer(socket, pointer, data.Length, MsgDontWait | MsgNoSignal, send: true, out error);
        }
    }

    /// <summary>Receives what is there now; <see cref="SocketError.WouldBlock"/> when nothing is. Zero bytes with success is the peer's FIN.</summary>
    public static int ReceiveNonBlocking(SafeHandle socket, Span<byte> buffer, out SocketError error)
    {
        fixed (byte* pointer = buffer)
        {
            return Transfer(socket, pointer, buffer.Length, MsgDontWait, send: false, out error);
        }
    }

    private static int Transfer(SafeHandle socket, byte* pointer, int length, int flags, bool send, out SocketError error)
    {
        while (true)
        {
            var done = send ? Send(socket, pointer, (nuint)length, flags) : Receive(socket, pointer, (nuint)length, flags);
            if (done >= 0)
            {
                error = SocketError.Success;
                return (int)done;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno != EIntr)
            {
                error = ToSocketError(errno);
                return 0;
            }
        }
    }

    /// <summary>
    /// Receives into <paramref name="buffer"/>: takes what is there, else polls the socket for up to
    /// <paramref name="pollTicks"/> (<see cref="Stopwatch"/> ticks), then receives with
    /// <see cref="Socket.Receive(Span{byte}, SocketFlags)"/>, which sleeps, once the poll time ran out.
    /// Waking a sleeping thread costs tens of microseconds on a virtual machine (an inter-processor interrupt and a
    /// VM exit), about as much as a whole 4 KiB command; a loop that expects the next request within microseconds
    /// keeps its CPU awake instead, as SPDK's pollers do, and still sleeps when the connection goes quiet.
    /// </summary>
    /// <returns>Bytes received; zero when the peer closed its side.</returns>
    public static int ReceivePolling(Socket socket, SafeHandle handle, Span<byte> buffer, long pollTicks)
    {
        if (pollTicks > 0)
        {
            if (TryReceiveNow(handle, buffer, out var received))
            {
                return received;
            }

            // Wait for readability with poll(2), which reads the socket state without the socket lock that recv(2)
            // takes: the peer's CPU delivers our data under that lock, and a tight recv loop made it wait for us
            // (measured: 4 KiB reads at QD32 fell to half their rate in some runs, never with poll).
            var deadline = Stopwatch.GetTimestamp() + pollTicks;
            while (Stopwatch.GetTimestamp() < deadline)
            {
                if (!IsReadable(handle))
                {
                    Thread.SpinWait(8);
                    continue;
                }

                // Take what arrived with the same direct recv(2): Socket.Receive would add its own bookkeeping
                // (about a quarter of a microsecond here) to every request of a connection at low depth.
                if (TryReceiveNow(handle, buffer, out received))
                {
                    return received;
                }
            }
        }

        return socket.Receive(buffer, SocketFlags.None);
    }

    /// <summary>
    /// Takes what the socket holds now: true with the bytes (zero bytes: the peer's FIN), false when it holds nothing;
    /// any other error is thrown.
    /// </summary>
    private static bool TryReceiveNow(SafeHandle handle, Span<byte> buffer, out int received)
    {
        received = ReceiveNonBlocking(handle, buffer, out var error);
        if (error == SocketError.Success)
        {
            return true;
        }

        if (error != SocketError.WouldBlock)
        {
            throw new SocketException((int)error);
        }

        return false;
    }

    /// <summary>poll(2) with a zero timeout: data (or a FIN or an error) is waiting.</summary>
    private static bool IsReadable(SafeHandle handle)
    {
        var added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            var descriptor = new PollDescriptor { Descriptor = (int)handle.DangerousGetHandle(), Events = PollIn };
            while (true)
            {
                var ready = Poll(&descriptor, 1, 0);
                if (ready >= 0)
                {
                    return ready > 0;
                }

                if (Marshal.GetLastPInvokeError() != EIntr)
                {
                    // Let the receive report the problem.
                    return true;
                }
            }
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>Converts a poll time to <see cref="Stopwatch"/> ticks.</summary>
    public static long ToTicks(TimeSpan pollTime) =>
        pollTime <= TimeSpan.Zero ? 0 : (long)(pollTime.TotalSeconds * Stopwatch.Frequency);

    private static SocketError ToSocketError(int errno) => errno switch
    {
        EAgain => SocketError.WouldBlock,
        EPipe => SocketError.Shutdown,
        EConnReset => SocketError.ConnectionReset,
        ENotConn => SocketError.NotConnected,
        _ => SocketError.SocketError,
    };

    private const short PollIn = 0x1;

    /// <summary>struct pollfd (poll(2)).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct PollDescriptor
    {
        public int Descriptor;
        public short Events;
        public short ReturnedEvents;
    }

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(PollDescriptor* descriptors, nuint count, int timeoutMilliseconds);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint Send(SafeHandle socket, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Receive(SafeHandle socket, byte* buffer, nuint length, int flags);
}
