using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Perf;

/// <summary>
/// The limit mode: a raw TCP request/response protocol with the NVMe/TCP message sizes and the same structure as our
/// target and host (one receive loop per connection on a thread of its own that polls before it sleeps, run to
/// completion, one send per batch), minus everything NVMe.
/// A read is a 72-byte request (a command capsule) answered by 24 bytes plus the data (C2HData header plus data, the
/// CapsuleResp folded in); a write is a 72-byte request plus the data answered by 24 bytes. The server copies data
/// from or into memory, as the in-memory backend does. Whatever NVMe costs on top shows as the ratio of the two runs.
/// </summary>
public static class TcpBaseline
{
    public const int RequestHeader = 72;

    /// <summary>Default size of the memory the limit server reads and writes: the benchmark volume's size.</summary>
    public const long DefaultStorageBytes = 256L << 20;
    public const int ResponseHeader = 24;
    private const uint Magic = 0x4C425343; // "CSBL"
    private const byte OpRead = 1;
    private const byte OpWrite = 2;

    // ---- server ----

    /// <summary>
    /// Serves baseline clients until <paramref name="cancellationToken"/> fires; returns after binding via
    /// <paramref name="bound"/>. Each connection gets a thread of its own that polls its socket for
    /// <paramref name="pollTime"/> before sleeping, as the target's connections do.
    /// </summary>
    /// <param name="storageBytes">
    /// Memory the requests read and write at their offsets, like a memory-backend volume of that size: random 4 KiB
    /// blocks of a 256 MiB volume miss the CPU caches, and a limit that copied from one cached buffer would count
    /// that memory traffic against the target.
    /// </param>
    public static async Task ServeAsync(IPEndPoint listen, Action<IPEndPoint>? bound, CancellationToken cancellationToken, TimeSpan pollTime = default, long storageBytes = DefaultStorageBytes)
    {
        if (storageBytes is < MaxIo or > int.MaxValue)
        {
            throw new ArgumentException($"the TCP limit server's storage must be between 1 MiB and 2 GiB, not {storageBytes} bytes");
        }

        // Written once, so every page is resident as in a preconditioned volume.
        var storage = GC.AllocateArray<byte>((int)storageBytes, pinned: true);
        storage.AsSpan().Fill(0x5A);
        using var listener = new Socket(listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(listen);
        listener.Listen(64);
        bound?.Invoke((IPEndPoint)listener.LocalEndPoint!);
        var connections = new List<(Socket Socket, Task Ended)>();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var socket = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
                socket.NoDelay = true;
                var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                new Thread(() =>
                {
                    try
                    {
                        ServeConnection(socket, storage, SocketCalls.ToTicks(pollTime));
                    }
                    finally
                    {
                        ended.SetResult();
                    }
                })
                {
                    IsBackground = true,
                    Name = "tcp-baseline-server",
                }.Start();
                connections.Add((socket, ended.Task));
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }

        foreach (var (socket, _) in connections)
        {
            socket.Dispose();
        }

        await Task.WhenAll(connections.Select(c => c.Ended)).ConfigureAwait(false);
    }

    private const int MaxIo = 1 << 20;

    private static void ServeConnection(Socket socket, byte[] storage, long pollTicks)
    {
        var receive = GC.AllocateUninitializedArray<byte>(4 * (MaxIo + RequestHeader), pinned: true);
        var send = GC.AllocateUninitializedArray<byte>(2 * (MaxIo + ResponseHeader) + 64 * 1024, pinned: true);
        int start = 0, end = 0;
        try
        {
            var handle = socket.SafeHandle;
            while (true)
            {
                if (start == end)
                {
                    start = end = 0;
                }
                else if (receive.Length - end < MaxIo + RequestHeader)
                {
                    Buffer.BlockCopy(receive, start, receive, 0, end - start);
                    end -= start;
                    start = 0;
                }

                var received = SocketCalls.ReceivePolling(socket, handle, receive.AsSpan(end), pollTicks);
                if (received == 0)
                {
                    return;
                }

                end += received;
                var sendLength = 0;
                while (end - start >= RequestHeader)
                {
                    var header = receive.AsSpan(start, RequestHeader);
                    var op = header[4];
                    var tag = BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
                    var length = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
                    if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic || length is < 0 or > MaxIo)
                    {
                        throw new InvalidDataException("bad baseline request");
                    }

                    var requestLength = RequestHeader + (op == OpWrite ? length : 0);
                    if (end - start < requestLength)
                    {
                        break;
                    }

                    var responseLength = ResponseHeader + (op == OpRead ? length : 0);
                    if (send.Length - sendLength < responseLength)
                    {
                        SendAll(socket, send.AsSpan(0, sendLength));
                        sendLength = 0;
                    }

                    // Requests carry a byte offset, as commands carry an LBA; kept inside the storage.
                    var at = (int)(BinaryPrimitives.ReadUInt64LittleEndian(header[12..]) % (ulong)(storage.Length - length + 1));
                    var response = send.AsSpan(sendLength, responseLength);
                    BinaryPrimitives.WriteUInt32LittleEndian(response, Magic);
                    response[4] = op;
                    response[5] = 0;
                    BinaryPrimitives.WriteUInt16LittleEndian(response[6..], tag);
                    BinaryPrimitives.WriteInt32LittleEndian(response[8..], length);
                    response[12..ResponseHeader].Clear();
                    if (op == OpRead)
                    {
                        storage.AsSpan(at, length).CopyTo(response[ResponseHeader..]);
                    }
                    else
                    {
                        receive.AsSpan(start + RequestHeader, length).CopyTo(storage.AsSpan(at));
                    }

                    sendLength += responseLength;
                    start += requestLength;
                }

                if (sendLength > 0)
                {
                    SendAll(socket, send.AsSpan(0, sendLength));
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or InvalidDataException)
        {
        }
        finally
        {
            socket.Dispose();
        }
    }

    // ---- client ----

    public static Task<PerfResult> RunAsync(PerfOptions options, CancellationToken cancellationToken = default) =>
        RunAsync(options, new RunState(), cancellationToken);

    internal static async Task<PerfResult> RunAsync(PerfOptions options, RunState run, CancellationToken cancellationToken)
    {
        if (options.QueueDepth is < 1 or > 4096 || options.IoSize is < 1 or > 1 << 20 || options.Connections < 1)
        {
            throw new ArgumentException("--qd 1..4096, --io-size 1..1 MiB and --connections ≥ 1 in TCP baseline mode");
        }

        var clients = new List<Client>();
        try
        {
            for (var i = 0; i < options.Connections; i++)
            {
                var socket = new Socket(options.Target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                clients.Add(new Client(socket, options, run, i));
                // Synchronous, so the socket never enters the socket engine's emulated-blocking mode.
                socket.Connect(options.Target);
            }

            run.Loops = clients.Count;
            run.CountMeasured = () => clients.Sum(c => c.Reads + c.Writes);
            var loops = clients.Select(c => c.Start()).ToArray();
            var measured = await run.MeasureAsync(loops, options.Ramp, options.Duration, "baseline requests", cancellationToken).ConfigureAwait(false);
            var histogram = new LatencyHistogram();
            long reads = 0, writes = 0;
            foreach (var client in clients)
            {
                histogram.Add(client.Histogram);
                reads += client.Reads;
                writes += client.Writes;
            }

            var seconds = measured.TotalSeconds;
            var ios = reads + writes;
            return new PerfResult
            {
                Mode = "tcp-baseline",
                Target = options.Target.ToString(),
                Pattern = PerfOptions.PatternName(options.Pattern),
                ReadPercent = options.EffectiveReadPercent,
                IoSize = options.IoSize,
                QueueDepth = options.QueueDepth,
                Queues = 1,
                Connections = options.Connections,
                TotalDepth = options.Connections * options.QueueDepth,
                Seconds = Math.Round(seconds, 3),
                Ios = ios,
                Reads = reads,
                Writes = writes,
                Bytes = ios * options.IoSize,
                Iops = Math.Round(ios / seconds, 1),
                MiBps = Math.Round(ios * (double)options.IoSize / seconds / (1 << 20), 2),
                Latency = LatencySummary.From(histogram),
            };
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Socket.Dispose();
            }
        }
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            data = data[socket.Send(data, SocketFlags.None)..];
        }
    }

    /// <summary>One connection with <c>depth</c> requests in flight; a response immediately triggers the next request.</summary>
    private sealed class Client
    {
        private readonly PerfOptions _options;
        private readonly RunState _run;
        private readonly long[] _started;
        private readonly byte[] _receive;
        private readonly byte[] _send;
        // A buffer per request in flight, as the NVMe load has a buffer per worker: every read lands in (and every write
        // leaves from) memory of its own, not one buffer that stays in the L1 cache.
        private readonly byte[] _payloads;
        private readonly double _nanosecondsPerTick = 1e9 / Stopwatch.Frequency;
        private readonly long _slots;
        private long _cursor;
        private XorShiftRandom _random;

        public Client(Socket socket, PerfOptions options, RunState run, int index)
        {
            Socket = socket;
            _options = options;
            _run = run;
            _started = new long[options.QueueDepth];
            _receive = GC.AllocateUninitializedArray<byte>(4 * (options.IoSize + ResponseHeader) + 64 * 1024, pinned: true);
            _send = GC.AllocateUninitializedArray<byte>(options.QueueDepth * (RequestHeader + options.IoSize), pinned: true);
            _payloads = GC.AllocateArray<byte>(options.QueueDepth * options.IoSize, pinned: true);
            _random = new XorShiftRandom(0x9E3779B97F4A7C15UL * (ulong)(index + 1));
            var region = options.RegionBytes > 0 ? options.RegionBytes : DefaultStorageBytes;
            _slots = Math.Max(1, region / options.IoSize);
            _cursor = index * (_slots / Math.Max(1, options.Connections));
        }

        public Socket Socket { get; }

        public LatencyHistogram Histogram { get; } = new();

        public long Reads { get; private set; }

        public long Writes { get; private set; }

        /// <summary>Runs the loop on a thread of its own (as the host runs an I/O queue); the task ends with it.</summary>
        public Task Start()
        {
            var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            new Thread(() =>
            {
                try
                {
                    Run();
                    ended.SetResult();
                }
                catch (Exception ex)
                {
                    ended.SetException(ex);
                }
                finally
                {
                    _run.LoopEnded();
                }
            })
            {
                IsBackground = true,
                Name = "tcp-baseline-client",
            }.Start();
            return ended.Task;
        }

        private void Run()
        {
            var handle = Socket.SafeHandle;
            var pollTicks = SocketCalls.ToTicks(_options.ReceivePollTime);
            var outstanding = 0;
            // The host's rule (QueuePair.ProcessReceived), as the limit follows the host's I/O model.
            var earlySend = default(EarlySendRule);
            int start = 0, end = 0;
            while (true)
            {
                if (outstanding == 0)
                {
                    // Nothing in flight: park while a comparison holds this load, end once the run stops, else
                    // put the whole depth in flight.
                    if (Volatile.Read(ref _run.Held))
                    {
                        _run.Park();
                        continue;
                    }

                    if (Volatile.Read(ref _run.Stop))
                    {
                        return;
                    }

                    var primed = 0;
                    for (var tag = 0; tag < _options.QueueDepth; tag++)
                    {
                        primed += AppendRequest(primed, (ushort)tag);
                    }

                    SendAll(Socket, _send.AsSpan(0, primed));
                    outstanding = _options.QueueDepth;
                }

                if (start == end)
                {
                    start = end = 0;
                }
                else if (_receive.Length - end < _options.IoSize + ResponseHeader)
                {
                    Buffer.BlockCopy(_receive, start, _receive, 0, end - start);
                    end -= start;
                    start = 0;
                }

                var received = SocketCalls.ReceivePolling(Socket, handle, _receive.AsSpan(end), pollTicks);
                if (received == 0)
                {
                    throw new IOException("the baseline server closed the connection");
                }

                end += received;
                var sendLength = 0;
                var responses = 0;
                earlySend.BeginBatch(outstanding);
                // Held (by a comparison) drains the load like a stop does, then parks it.
                var stop = Volatile.Read(ref _run.Stop) || Volatile.Read(ref _run.Held);
                while (end - start >= ResponseHeader)
                {
                    var header = _receive.AsSpan(start, ResponseHeader);
                    var op = header[4];
                    var tag = BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
                    var length = ResponseHeader + (op == OpRead ? BinaryPrimitives.ReadInt32LittleEndian(header[8..]) : 0);
                    if (end - start < length)
                    {
                        break;
                    }

                    var now = Stopwatch.GetTimestamp();
                    if (op == OpRead)
                    {
                        // Consume the data as a host would: copy it to the caller's buffer.
                        _receive.AsSpan(start + ResponseHeader, length - ResponseHeader).CopyTo(Payload(tag));
                    }

                    start += length;
                    if (Volatile.Read(ref _run.Measuring) && _started[tag] >= _run.MeasureFrom && !stop)
                    {
                        Histogram.Record((long)((now - _started[tag]) * _nanosecondsPerTick));
                        if (op == OpRead)
                        {
                            Reads++;
                        }
                        else
                        {
                            Writes++;
                        }
                    }

                    if (stop)
                    {
                        outstanding--;
                    }
                    else
                    {
                        sendLength += AppendRequest(sendLength, tag);
                    }

                    responses++;
                    if (sendLength > 0 && earlySend.SendNow(responses, end > start))
                    {
                        SendAll(Socket, _send.AsSpan(0, sendLength));
                        sendLength = 0;
                    }
                }

                earlySend.EndBatch(responses);

                if (sendLength > 0)
                {
                    SendAll(Socket, _send.AsSpan(0, sendLength));
                }
            }
        }

        private int AppendRequest(int at, ushort tag)
        {
            var readPercent = _options.EffectiveReadPercent;
            var isRead = readPercent == 100 || (readPercent != 0 && (int)(Next() % 100) < readPercent);
            var length = RequestHeader + (isRead ? 0 : _options.IoSize);
            var request = _send.AsSpan(at, length);
            BinaryPrimitives.WriteUInt32LittleEndian(request, Magic);
            request[4] = isRead ? OpRead : OpWrite;
            request[5] = 0;
            BinaryPrimitives.WriteUInt16LittleEndian(request[6..], tag);
            BinaryPrimitives.WriteInt32LittleEndian(request[8..], _options.IoSize);
            // A byte offset, as a command carries an LBA: random or sequential I/O-size slots of the region.
            var slot = _options.IsRandom ? (long)(Next() % (ulong)_slots) : _cursor++ % _slots;
            BinaryPrimitives.WriteUInt64LittleEndian(request[12..], (ulong)(slot * _options.IoSize));
            request[20..RequestHeader].Clear();
            if (!isRead)
            {
                Payload(tag).CopyTo(request[RequestHeader..]);
            }

            _started[tag] = Stopwatch.GetTimestamp();
            return length;
        }

        private Span<byte> Payload(ushort tag) => _payloads.AsSpan(tag * _options.IoSize, _options.IoSize);

        private ulong Next() => _random.Next();
    }
}
