using System.Net;
using System.Net.Sockets;
using CsiNvme.Protocol.Fabrics;
using CsiNvme.Protocol.Tls;

namespace CsiNvme.Target.Tests;

/// <summary>One PDU as received: the whole wire image plus where its data sits.</summary>
internal sealed record Pdu(PduHeader Header, byte[] Bytes, int DataStart, int DataLength)
{
    public PduType Type => Header.Type;

    public ReadOnlySpan<byte> Data => Bytes.AsSpan(DataStart, DataLength);

    public TermReq AsTermReq() => TermReq.Read(Bytes);

    public DataTransferHeader AsDataTransfer() => DataTransferHeader.Read(Bytes);

    public CompletionQueueEntry AsCompletion() => CompletionQueueEntry.Read(Bytes.AsSpan(PduHeader.Size));
}

/// <summary>The completion of one command with the C2H data that preceded it.</summary>
internal sealed record Completion(CompletionQueueEntry Entry, byte[] Data, int DataPdus)
{
    public NvmeStatus Status => Entry.Status;

    public uint Dw0 => Entry.Dw0;
}

/// <summary>
/// A raw NVMe/TCP host (TCP 1.0) over a blocking socket: it speaks the wire format byte by byte so tests can send
/// exactly what a real or a hostile host would, and it checks every digest the target sends. Every read has a
/// timeout, so a target that stops answering fails the test instead of hanging it.
/// </summary>
internal sealed class TestHost : IDisposable
{
    public static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _socket;
    private ushort _nextCommandId = 1;
    private TlsChannel? _tls;

    private TestHost(Socket socket)
    {
        _socket = socket;
    }

    public bool HeaderDigest { get; private set; }

    public bool DataDigest { get; private set; }

    public ICResp Negotiated { get; private set; }

    /// <summary>CNTLID returned by this queue's Connect.</summary>
    public ushort ControllerId { get; set; }

    public Socket Socket => _socket;

    /// <summary>Opens a TCP connection without sending anything.</summary>
    public static TestHost Open(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
        {
            NoDelay = true,
            ReceiveTimeout = (int)ReadTimeout.TotalMilliseconds,
            SendTimeout = (int)ReadTimeout.TotalMilliseconds,
        };
        try
        {
            socket.Connect(endpoint);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new TestHost(socket);
    }

    /// <summary>
    /// Opens a TCP connection and the NVMe/TCP TLS secure channel over it (TLS 1.3 with the TLS PSK that
    /// <paramref name="psk"/> gives <paramref name="identity"/>); every later byte goes through the channel.
    /// </summary>
    public static TestHost OpenTls(IPEndPoint endpoint, TlsPsk psk, TlsPskIdentity identity)
    {
        var host = Open(endpoint);
        try
        {
            host._tls = TlsChannel.ForClient(host._socket, psk, identity);
            host._tls.Handshake();
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    /// <summary>Opens a connection and completes IC negotiation.</summary>
    public static TestHost Initialize(IPEndPoint endpoint, bool headerDigest = false, bool dataDigest = false)
    {
        var host = Open(endpoint);
        try
        {
            host.Negotiate(headerDigest, dataDigest);
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    public ICResp Negotiate(bool headerDigest, bool dataDigest)
    {
        var icreq = new byte[ICReq.Length];
        new ICReq(0, 0, headerDigest, dataDigest, 0).Write(icreq);
        Send(icreq);
        var pdu = ReceivePdu();
        Assert.That(pdu.Type, Is.EqualTo(PduType.ICResp), "the answer to ICReq");
        Assert.That(pdu.Header.HeaderLength, Is.EqualTo(ICResp.Length));
        Assert.That(pdu.Header.PduLength, Is.EqualTo(ICResp.Length));
        Negotiated = ICResp.Read(pdu.Bytes);
        HeaderDigest = Negotiated.HeaderDigest;
        DataDigest = Negotiated.DataDigest;
        return Negotiated;
    }

    public void Dispose()
    {
        _socket.Dispose();
        _tls?.Dispose();
    }

    public ushort NextCommandId() => _nextCommandId++;

    // ---- raw bytes ----

    public void Send(ReadOnlySpan<byte> bytes)
    {
        if (_tls is not null)
        {
            _tls.Send(bytes);
            return;
        }

        while (!bytes.IsEmpty)
        {
            bytes = bytes[_socket.Send(bytes)..];
        }
    }

    /// <summary>Fills <paramref name="buffer"/>; throws <see cref="EndOfStreamException"/> when the target closes first.</summary>
    public void ReceiveExactly(Span<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            var received = _tls is null ? _socket.Receive(buffer) : _tls.Receive(buffer, _socket.SafeHandle, 0);
            if (received == 0)
            {
                throw new EndOfStreamException("the target closed the connection");
            }

            buffer = buffer[received..];
        }
    }

    /// <summary>Reads one PDU and checks the digests negotiated for it (IC and Term PDUs never carry digests).</summary>
    public Pdu ReceivePdu()
    {
        Span<byte> common = stackalloc byte[PduHeader.Size];
        ReceiveExactly(common);
        var header = PduHeader.Read(common);
        Assert.That(header.PduLength, Is.InRange((uint)PduHeader.Size, 16u << 20), "PLEN of a PDU from the target");
        Assert.That((int)header.HeaderLength, Is.InRange(PduHeader.Size, (int)header.PduLength), "HLEN of a PDU from the target");
        var bytes = new byte[header.PduLength];
        common.CopyTo(bytes);
        ReceiveExactly(bytes.AsSpan(PduHeader.Size));

        var digestable = header.Type is not (PduType.ICResp or PduType.C2HTermReq);
        var headerDigest = digestable && HeaderDigest;
        var headerEnd = header.HeaderLength + (headerDigest ? PduHeader.DigestSize : 0);
        if (headerDigest)
        {
            Assert.That(header.Flags & PduFlags.HeaderDigest, Is.EqualTo(PduFlags.HeaderDigest), $"HDGSTF on {header.Type}");
            Assert.That(Crc32C.Verify(bytes.AsSpan(0, header.HeaderLength), bytes.AsSpan(header.HeaderLength, 4)), Is.True, $"header digest of {header.Type}");
        }
        else if (digestable)
        {
            Assert.That(header.Flags & PduFlags.HeaderDigest, Is.EqualTo(PduFlags.None), $"no HDGSTF on {header.Type}");
        }

        if (header.Type == PduType.C2HTermReq)
        {
            return new Pdu(header, bytes, TermReq.HeaderLength, bytes.Length - TermReq.HeaderLength);
        }

        if (bytes.Length <= headerEnd)
        {
            return new Pdu(header, bytes, bytes.Length, 0);
        }

        var dataDigest = digestable && DataDigest;
        Assert.That((int)header.DataOffset, Is.GreaterThanOrEqualTo(headerEnd), $"PDO of {header.Type}");
        var dataLength = bytes.Length - header.DataOffset - (dataDigest ? PduHeader.DigestSize : 0);
        if (dataDigest)
        {
            Assert.That(header.Flags & PduFlags.DataDigest, Is.EqualTo(PduFlags.DataDigest), $"DDGSTF on {header.Type}");
            Assert.That(Crc32C.Verify(bytes.AsSpan(header.DataOffset, dataLength), bytes.AsSpan(bytes.Length - 4)), Is.True, $"data digest of {header.Type}");
        }

        return new Pdu(header, bytes, header.DataOffset, dataLength);
    }

    /// <summary>
    /// True once the target has closed the connection (EOF or reset) within <paramref name="within"/>; anything it
    /// sends before closing is discarded.
    /// </summary>
    public bool WaitClosed(TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        var scratch = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero)
                {
                    return false;
                }

                _socket.ReceiveTimeout = Math.Max(1, (int)left.TotalMilliseconds);
                if (_socket.Receive(scratch) == 0)
                {
                    return true;
                }
            }
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
        {
            return true;
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            return false;
        }
        finally
        {
            _socket.ReceiveTimeout = (int)ReadTimeout.TotalMilliseconds;
        }
    }

    /// <summary>Expects a C2HTermReq next and the connection closed right after it.</summary>
    public TermReq ExpectTermination()
    {
        var pdu = ReceivePdu();
        Assert.That(pdu.Type, Is.EqualTo(PduType.C2HTermReq), "a fatal error ends with C2HTermReq");
        Assert.That(pdu.Header.HeaderLength, Is.EqualTo(TermReq.HeaderLength));
        Assert.That(pdu.Header.PduLength, Is.InRange(24u, 152u));
        Assert.That(WaitClosed(TimeSpan.FromSeconds(5)), Is.True, "the target closes the connection after C2HTermReq");
        return pdu.AsTermReq();
    }

    // ---- building PDUs ----

    public static SubmissionQueueEntry Command(byte opcode, ushort commandId, uint namespaceId, SglDescriptor data,
        uint cdw10 = 0, uint cdw11 = 0, uint cdw12 = 0, uint cdw13 = 0, uint cdw14 = 0, uint cdw15 = 0) =>
        new(opcode, 0x40, commandId, namespaceId, data, cdw10, cdw11, cdw12, cdw13, cdw14, cdw15);

    public static SglDescriptor InCapsule(int length) => new(0, (uint)length, SglDescriptor.InCapsuleDataBlock);

    public static SglDescriptor Transport(int length) => new(0, (uint)length, SglDescriptor.TransportDataBlock);

    /// <summary>A CapsuleCmd PDU (TCP 1.0, 3.6.2.5) with digests as negotiated; the corrupt flags flip a digest bit.</summary>
    public byte[] BuildCapsule(in SubmissionQueueEntry sqe, ReadOnlySpan<byte> data = default, bool corruptHeaderDigest = false, bool corruptDataDigest = false)
    {
        const int hlen = 72;
        var hd = HeaderDigest ? PduHeader.DigestSize : 0;
        var dd = DataDigest && !data.IsEmpty ? PduHeader.DigestSize : 0;
        var pdo = data.IsEmpty ? 0 : hlen + hd;
        var plen = hlen + hd + data.Length + dd;
        var flags = (hd != 0 ? PduFlags.HeaderDigest : 0) | (dd != 0 ? PduFlags.DataDigest : 0);
        var pdu = new byte[plen];
        new PduHeader(PduType.CapsuleCmd, flags, hlen, (byte)pdo, (uint)plen).Write(pdu);
        sqe.Write(pdu.AsSpan(PduHeader.Size));
        if (hd != 0)
        {
            Crc32C.ComputeInto(pdu.AsSpan(0, hlen), pdu.AsSpan(hlen));
            if (corruptHeaderDigest)
            {
                pdu[hlen] ^= 0x01;
            }
        }

        data.CopyTo(pdu.AsSpan(hlen + hd));
        if (dd != 0)
        {
            Crc32C.ComputeInto(data, pdu.AsSpan(plen - 4));
            if (corruptDataDigest)
            {
                pdu[plen - 1] ^= 0x80;
            }
        }

        return pdu;
    }

    /// <summary>An H2CData PDU (TCP 1.0, 3.6.2.7) for the transfer named by <paramref name="transferTag"/>.</summary>
    public byte[] BuildH2CData(ushort commandId, ushort transferTag, uint offset, ReadOnlySpan<byte> data, bool last, bool corruptDataDigest = false)
    {
        var hd = HeaderDigest ? PduHeader.DigestSize : 0;
        var dd = DataDigest ? PduHeader.DigestSize : 0;
        var pdo = 24 + hd;
        var plen = pdo + data.Length + dd;
        var flags = (hd != 0 ? PduFlags.HeaderDigest : 0) | (dd != 0 ? PduFlags.DataDigest : 0) | (last ? PduFlags.LastPdu : 0);
        var pdu = new byte[plen];
        new DataTransferHeader(commandId, transferTag, offset, (uint)data.Length).Write(pdu, PduType.H2CData, flags, (byte)pdo, (uint)plen);
        if (hd != 0)
        {
            Crc32C.ComputeInto(pdu.AsSpan(0, 24), pdu.AsSpan(24));
        }

        data.CopyTo(pdu.AsSpan(pdo));
        if (dd != 0)
        {
            Crc32C.ComputeInto(data, pdu.AsSpan(plen - 4));
            if (corruptDataDigest)
            {
                pdu[plen - 1] ^= 0x80;
            }
        }

        return pdu;
    }

    public void SendCapsule(in SubmissionQueueEntry sqe, ReadOnlySpan<byte> data = default) => Send(BuildCapsule(sqe, data));

    // ---- commands ----

    /// <summary>Collects C2HData PDUs of <paramref name="commandId"/> until its CapsuleResp.</summary>
    public Completion ReceiveCompletion(ushort commandId)
    {
        using var data = new MemoryStream();
        var pdus = 0;
        var sawLast = false;
        while (true)
        {
            var pdu = ReceivePdu();
            switch (pdu.Type)
            {
                case PduType.C2HData:
                    {
                        var header = pdu.AsDataTransfer();
                        Assert.That(header.CommandId, Is.EqualTo(commandId), "CCCID of C2HData");
                        Assert.That(sawLast, Is.False, "no C2HData after the LAST one");
                        Assert.That(header.Offset, Is.EqualTo((uint)data.Length), "C2HData arrives in order");
                        Assert.That(header.Length, Is.EqualTo((uint)pdu.DataLength), "DATAL equals the PDU's data");
                        var flags = pdu.Header.Flags;
                        Assert.That((flags & PduFlags.Success) == 0 || (flags & PduFlags.LastPdu) != 0, Is.True, "SUCCESS only with LAST_PDU");
                        Assert.That(flags & PduFlags.Success, Is.EqualTo(PduFlags.None), "SQ flow control is on, so a CapsuleResp follows");
                        sawLast = (flags & PduFlags.LastPdu) != 0;
                        data.Write(pdu.Data);
                        pdus++;
                        break;
                    }

                case PduType.CapsuleResp:
                    {
                        Assert.That(pdu.Header.HeaderLength, Is.EqualTo(24));
                        var cqe = pdu.AsCompletion();
                        Assert.That(cqe.CommandId, Is.EqualTo(commandId), "the CID is echoed exactly");
                        Assert.That(pdus == 0 || sawLast, Is.True, "the last C2HData carries LAST_PDU");
                        return new Completion(cqe, data.ToArray(), pdus);
                    }

                default:
                    Assert.Fail($"unexpected {pdu.Type} while waiting for command {commandId:X4}");
                    return null!;
            }
        }
    }

    /// <summary>Sends a command (with optional in-capsule data) and waits for its completion.</summary>
    public Completion Execute(in SubmissionQueueEntry sqe, ReadOnlySpan<byte> inCapsuleData = default)
    {
        SendCapsule(sqe, inCapsuleData);
        return ReceiveCompletion(sqe.CommandId);
    }

    public Completion Connect(ushort queueId, ushort sqSize, uint keepAliveMs, ConnectData data, byte attributes = 0)
    {
        var payload = new byte[ConnectData.Size];
        data.Write(payload);
        var sqe = new ConnectCommand(0, queueId, sqSize, attributes, keepAliveMs).ToSubmissionQueueEntry(NextCommandId(), InCapsule(payload.Length));
        var completion = Execute(sqe, payload);
        if (completion.Status.IsSuccess)
        {
            ControllerId = (ushort)completion.Dw0;
        }

        return completion;
    }

    public Completion ConnectAdmin(string subsystemNqn, string hostNqn, Guid hostId, uint keepAliveMs = 0, ushort sqSize = 31) =>
        Connect(0, sqSize, keepAliveMs, new ConnectData(hostId, ConnectData.DynamicControllerId, subsystemNqn, hostNqn));

    public Completion ConnectIo(ushort queueId, ushort controllerId, string subsystemNqn, string hostNqn, Guid hostId, ushort sqSize = 127) =>
        Connect(queueId, sqSize, 0, new ConnectData(hostId, controllerId, subsystemNqn, hostNqn));

    public Completion GetProperty(uint offset, bool eightBytes = true) =>
        Execute(Command((byte)AdminOpcode.Fabrics, NextCommandId(), (uint)FabricsCommandType.PropertyGet, default, eightBytes ? 1u : 0u, offset));

    public Completion SetProperty(uint offset, uint value) =>
        Execute(Command((byte)AdminOpcode.Fabrics, NextCommandId(), (uint)FabricsCommandType.PropertySet, default, 0, offset, value));

    /// <summary>What every host does after the admin Connect: program CC (64-byte SQEs, 16-byte CQEs), enable, wait for RDY.</summary>
    public void Enable()
    {
        const uint cc = 1 | (6u << 16) | (4u << 20);
        Assert.That(SetProperty(PropertyOffset.ControllerConfiguration, cc).Status, Is.EqualTo(NvmeStatus.Success));
        var csts = GetProperty(PropertyOffset.ControllerStatus, eightBytes: false);
        Assert.That(csts.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(csts.Dw0 & 1, Is.EqualTo(1u), "CSTS.RDY after CC.EN");
    }

    public Completion Identify(byte cns, uint namespaceId = 0, int length = 4096) =>
        Execute(Command((byte)AdminOpcode.Identify, NextCommandId(), namespaceId, Transport(length), cns));

    public Completion GetLogPage(byte logId, int length, ulong offset = 0, bool retainEvent = false, uint namespaceId = 0xFFFF_FFFF)
    {
        var dwords = (uint)(length / 4 - 1);
        var cdw10 = logId | (retainEvent ? 0x8000u : 0) | ((dwords & 0xFFFF) << 16);
        return Execute(Command((byte)AdminOpcode.GetLogPage, NextCommandId(), namespaceId, Transport(length), cdw10, dwords >> 16, (uint)offset, (uint)(offset >> 32)));
    }

    public Completion SetFeatures(byte featureId, uint cdw11) =>
        Execute(Command((byte)AdminOpcode.SetFeatures, NextCommandId(), 0, default, featureId, cdw11));

    public Completion GetFeatures(byte featureId, uint cdw11 = 0, int dataLength = 0) =>
        Execute(Command((byte)AdminOpcode.GetFeatures, NextCommandId(), 0, dataLength == 0 ? default : Transport(dataLength), featureId, cdw11));

    public Completion KeepAlive() => Execute(Command((byte)AdminOpcode.KeepAlive, NextCommandId(), 0, default));

    // ---- I/O ----

    public static uint BlockCountField(int bytes, int blockSize, bool fua = false) => (uint)(bytes / blockSize - 1) | (fua ? 1u << 30 : 0);

    public Completion WriteInCapsule(uint namespaceId, ulong lba, ReadOnlySpan<byte> data, int blockSize, bool fua = false, ushort? commandId = null) =>
        Execute(Command((byte)IoOpcode.Write, commandId ?? NextCommandId(), namespaceId, InCapsule(data.Length),
            (uint)lba, (uint)(lba >> 32), BlockCountField(data.Length, blockSize, fua)), data);

    /// <summary>A write the target must pull with R2T: data moves in H2CData PDUs of at most <paramref name="chunk"/> bytes.</summary>
    public Completion WriteWithR2T(uint namespaceId, ulong lba, ReadOnlySpan<byte> data, int blockSize, int chunk, bool fua = false, ushort? commandId = null)
    {
        var cid = commandId ?? NextCommandId();
        SendCapsule(Command((byte)IoOpcode.Write, cid, namespaceId, Transport(data.Length),
            (uint)lba, (uint)(lba >> 32), BlockCountField(data.Length, blockSize, fua)));
        var r2t = ReceivePdu();
        if (r2t.Type == PduType.CapsuleResp)
        {
            // Refused before any data moved (e.g. LBA out of range).
            return new Completion(r2t.AsCompletion(), [], 0);
        }

        Assert.That(r2t.Type, Is.EqualTo(PduType.R2T), "a write beyond the in-capsule size waits for R2T");
        var request = r2t.AsDataTransfer();
        Assert.That(request.CommandId, Is.EqualTo(cid), "CCCID of R2T");
        Assert.That(request.Offset, Is.Zero, "R2TO");
        Assert.That(request.Length, Is.EqualTo((uint)data.Length), "R2TL");
        for (var offset = 0; offset < data.Length; offset += chunk)
        {
            var length = Math.Min(chunk, data.Length - offset);
            Send(BuildH2CData(cid, request.TransferTag, (uint)offset, data.Slice(offset, length), last: offset + length == data.Length));
        }

        return ReceiveCompletion(cid);
    }

    public Completion Read(uint namespaceId, ulong lba, int bytes, int blockSize, ushort? commandId = null) =>
        Execute(Command((byte)IoOpcode.Read, commandId ?? NextCommandId(), namespaceId, Transport(bytes),
            (uint)lba, (uint)(lba >> 32), BlockCountField(bytes, blockSize)));
}
