using System.Buffers.Binary;

namespace CsiNvme.Protocol.Authentication;

/// <summary>AUTH-TYPE of an authentication message (NVMe base 2.0, 8.13.5.1): common messages or DH-HMAC-CHAP ones.</summary>
public enum AuthMessageType : byte
{
    Common = 0x00,
    Dhchap = 0x01,
}

/// <summary>AUTH-ID of an authentication message (NVMe base 2.0, 8.13.5.1, 8.13.5.2 ... 8.13.5.7).</summary>
public enum AuthMessageId : byte
{
    Negotiate = 0x00,
    Challenge = 0x01,
    Reply = 0x02,
    Success1 = 0x03,
    Success2 = 0x04,
    Failure2 = 0xF0,
    Failure1 = 0xF1,
}

/// <summary>Reason Code Explanation of AUTH_Failure1/2 (NVMe base 2.0, 8.13.5.3); the reason code itself is always 01h.</summary>
public enum DhchapFailureReason : byte
{
    None = 0x00,
    Failed = 0x01,
    ProtocolNotUsable = 0x02,
    SecureChannelConcatenationMismatch = 0x03,
    HashUnusable = 0x04,
    DhGroupUnusable = 0x05,
    IncorrectPayload = 0x06,
    IncorrectProtocolMessage = 0x07,
}

/// <summary>The first six bytes every authentication message starts with: AUTH-TYPE@0, AUTH-ID@1, T_ID@4.</summary>
public readonly record struct AuthMessageHeader(AuthMessageType Type, AuthMessageId Id, ushort TransactionId)
{
    public const int Size = 6;

    public static bool TryRead(ReadOnlySpan<byte> data, out AuthMessageHeader header)
    {
        if (data.Length < Size)
        {
            header = default;
            return false;
        }

        header = new AuthMessageHeader((AuthMessageType)data[0], (AuthMessageId)data[1], BinaryPrimitives.ReadUInt16LittleEndian(data[4..]));
        return true;
    }

    internal void Write(Span<byte> data)
    {
        data[0] = (byte)Type;
        data[1] = (byte)Id;
        data[2] = 0;
        data[3] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(data[4..], TransactionId);
    }
}

/// <summary>
/// AUTH_Negotiate (NVMe base 2.0, 8.13.5.2), host to controller: SC_C@6, NAPD@7, then NAPD 64-byte protocol
/// descriptors; the DH-HMAC-CHAP descriptor (AUTHID 01h) lists HALEN hash ids at IDLIST[0..] and DHLEN group ids at
/// IDLIST[30..]. The ids are kept as sent, unknown ones included, so the controller can choose among the known.
/// </summary>
public sealed record DhchapNegotiate(ushort TransactionId, byte SecureChannelConcatenation, byte[] HashIds, byte[] DhGroupIds)
{
    public const int HeaderSize = 8;
    public const int DescriptorSize = 64;
    public const int Size = HeaderSize + DescriptorSize;
    private const byte DhchapAuthId = 0x01;
    private const int MaxIds = 30;

    public int Write(Span<byte> data)
    {
        if (HashIds.Length > MaxIds || DhGroupIds.Length > MaxIds)
        {
            throw new InvalidOperationException($"at most {MaxIds} hash and {MaxIds} group ids fit a descriptor");
        }

        data[..Size].Clear();
        new AuthMessageHeader(AuthMessageType.Common, AuthMessageId.Negotiate, TransactionId).Write(data);
        data[6] = SecureChannelConcatenation;
        data[7] = 1;
        var descriptor = data[HeaderSize..];
        descriptor[0] = DhchapAuthId;
        descriptor[2] = (byte)HashIds.Length;
        descriptor[3] = (byte)DhGroupIds.Length;
        HashIds.CopyTo(descriptor[4..]);
        DhGroupIds.CopyTo(descriptor[(4 + MaxIds)..]);
        return Size;
    }

    /// <summary>Reads the message; a failure says which AUTH_Failure1 explanation answers it.</summary>
    public static bool TryRead(ReadOnlySpan<byte> data, out DhchapNegotiate message, out DhchapFailureReason failure)
    {
        message = null!;
        failure = DhchapFailureReason.IncorrectPayload;
        if (!AuthMessageHeader.TryRead(data, out var header) || data.Length < Size || header.Type != AuthMessageType.Common || header.Id != AuthMessageId.Negotiate)
        {
            return false;
        }

        var count = data[7];
        for (var i = 0; i < count && HeaderSize + (i + 1) * DescriptorSize <= data.Length; i++)
        {
            var descriptor = data.Slice(HeaderSize + i * DescriptorSize, DescriptorSize);
            if (descriptor[0] != DhchapAuthId)
            {
                continue;
            }

            var hashCount = descriptor[2];
            var groupCount = descriptor[3];
            if (hashCount > MaxIds || groupCount > MaxIds)
            {
                return false;
            }

            message = new DhchapNegotiate(header.TransactionId, data[6],
                descriptor.Slice(4, hashCount).ToArray(), descriptor.Slice(4 + MaxIds, groupCount).ToArray());
            failure = DhchapFailureReason.None;
            return true;
        }

        // No descriptor of the one protocol defined: the host offers nothing this controller can use.
        failure = DhchapFailureReason.ProtocolNotUsable;
        return false;
    }
}

/// <summary>
/// DH-HMAC-CHAP_Challenge (NVMe base 2.0, 8.13.5.4), controller to host: HL@6, HASHID@8, DHGID@9, DHVLEN@10,
/// SEQNUM@12, then the challenge C1 (HL bytes) and the controller's DH exponential (DHVLEN bytes).
/// </summary>
public sealed record DhchapChallenge(ushort TransactionId, DhchapHash Hash, DhchapDhGroup DhGroup, uint SequenceNumber, byte[] Challenge, byte[] DhValue)
{
    public const int HeaderSize = 16;

    public int Length => HeaderSize + Challenge.Length + DhValue.Length;

    public int Write(Span<byte> data)
    {
        data[..HeaderSize].Clear();
        new AuthMessageHeader(AuthMessageType.Dhchap, AuthMessageId.Challenge, TransactionId).Write(data);
        data[6] = (byte)Challenge.Length;
        data[8] = (byte)Hash;
        data[9] = (byte)DhGroup;
        BinaryPrimitives.WriteUInt16LittleEndian(data[10..], (ushort)DhValue.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(data[12..], SequenceNumber);
        Challenge.CopyTo(data[HeaderSize..]);
        DhValue.CopyTo(data[(HeaderSize + Challenge.Length)..]);
        return Length;
    }

    public static bool TryRead(ReadOnlySpan<byte> data, out DhchapChallenge message)
    {
        message = null!;
        if (!AuthMessageHeader.TryRead(data, out var header) || data.Length < HeaderSize
            || header.Type != AuthMessageType.Dhchap || header.Id != AuthMessageId.Challenge)
        {
            return false;
        }

        var hashLength = data[6];
        var dhLength = BinaryPrimitives.ReadUInt16LittleEndian(data[10..]);
        if (!DhchapHashes.IsDefined(data[8]) || !DhchapDhGroups.IsDefined(data[9]) || HeaderSize + hashLength + dhLength > data.Length)
        {
            return false;
        }

        message = new DhchapChallenge(header.TransactionId, (DhchapHash)data[8], (DhchapDhGroup)data[9],
            BinaryPrimitives.ReadUInt32LittleEndian(data[12..]),
            data.Slice(HeaderSize, hashLength).ToArray(), data.Slice(HeaderSize + hashLength, dhLength).ToArray());
        return true;
    }
}

/// <summary>
/// DH-HMAC-CHAP_Reply (NVMe base 2.0, 8.13.5.5), host to controller: HL@6, CVALID@8, DHVLEN@10, SEQNUM@12 (S2, 0 when
/// the host does not authenticate the controller), then the response R1, the challenge C2 (HL bytes, zeros unless
/// CVALID) and the host's DH exponential.
/// </summary>
public sealed record DhchapReply(ushort TransactionId, byte[] Response, byte[]? ControllerChallenge, uint SequenceNumber, byte[] DhValue)
{
    public const int HeaderSize = 16;

    public int Length => HeaderSize + 2 * Response.Length + DhValue.Length;

    public int Write(Span<byte> data)
    {
        var hashLength = Response.Length;
        data[..Length].Clear();
        new AuthMessageHeader(AuthMessageType.Dhchap, AuthMessageId.Reply, TransactionId).Write(data);
        data[6] = (byte)hashLength;
        data[8] = ControllerChallenge is null ? (byte)0 : (byte)1;
        BinaryPrimitives.WriteUInt16LittleEndian(data[10..], (ushort)DhValue.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(data[12..], SequenceNumber);
        Response.CopyTo(data[HeaderSize..]);
        ControllerChallenge?.CopyTo(data[(HeaderSize + hashLength)..]);
        DhValue.CopyTo(data[(HeaderSize + 2 * hashLength)..]);
        return Length;
    }

    public static bool TryRead(ReadOnlySpan<byte> data, out DhchapReply message)
    {
        message = null!;
        if (!AuthMessageHeader.TryRead(data, out var header) || data.Length < HeaderSize
            || header.Type != AuthMessageType.Dhchap || header.Id != AuthMessageId.Reply)
        {
            return false;
        }

        var hashLength = data[6];
        var dhLength = BinaryPrimitives.ReadUInt16LittleEndian(data[10..]);
        if (HeaderSize + 2 * hashLength + dhLength > data.Length)
        {
            return false;
        }

        var valid = (data[8] & 1) != 0;
        message = new DhchapReply(header.TransactionId,
            data.Slice(HeaderSize, hashLength).ToArray(),
            valid ? data.Slice(HeaderSize + hashLength, hashLength).ToArray() : null,
            BinaryPrimitives.ReadUInt32LittleEndian(data[12..]),
            data.Slice(HeaderSize + 2 * hashLength, dhLength).ToArray());
        return true;
    }
}

/// <summary>
/// DH-HMAC-CHAP_Success1 (NVMe base 2.0, 8.13.5.6), controller to host: HL@6, RVALID@8, then the controller's response
/// R2 (HL bytes) when RVALID.
/// </summary>
public sealed record DhchapSuccess1(ushort TransactionId, byte HashLength, byte[]? Response)
{
    public const int HeaderSize = 16;

    public int Length => HeaderSize + (Response?.Length ?? 0);

    public int Write(Span<byte> data)
    {
        data[..HeaderSize].Clear();
        new AuthMessageHeader(AuthMessageType.Dhchap, AuthMessageId.Success1, TransactionId).Write(data);
        data[6] = HashLength;
        data[8] = Response is null ? (byte)0 : (byte)1;
        Response?.CopyTo(data[HeaderSize..]);
        return Length;
    }

    public static bool TryRead(ReadOnlySpan<byte> data, out DhchapSuccess1 message)
    {
        message = null!;
        if (!AuthMessageHeader.TryRead(data, out var header) || data.Length < HeaderSize
            || header.Type != AuthMessageType.Dhchap || header.Id != AuthMessageId.Success1)
        {
            return false;
        }

        var hashLength = data[6];
        var valid = (data[8] & 1) != 0;
        if (valid && HeaderSize + hashLength > data.Length)
        {
            return false;
        }

        message = new DhchapSuccess1(header.TransactionId, hashLength, valid ? data.Slice(HeaderSize, hashLength).ToArray() : null);
        return true;
    }
}

/// <summary>DH-HMAC-CHAP_Success2 (NVMe base 2.0, 8.13.5.7), host to controller: the controller's response checked out.</summary>
public sealed record DhchapSuccess2(ushort TransactionId)
{
    public const int Size = 16;

    public int Write(Span<byte> data)
    {
        data[..Size].Clear();
        new AuthMessageHeader(AuthMessageType.Dhchap, AuthMessageId.Success2, TransactionId).Write(data);
        return Size;
    }

    public static bool TryRead(ReadOnlySpan<byte> data, out DhchapSuccess2 message)
    {
        message = null!;
        if (!AuthMessageHeader.TryRead(data, out var header) || data.Length < Size
            || header.Type != AuthMessageType.Dhchap || header.Id != AuthMessageId.Success2)
        {
            return false;
        }

        message = new DhchapSuccess2(header.TransactionId);
        return true;
    }
}

/// <summary>
/// AUTH_Failure1 (controller to host) and AUTH_Failure2 (host to controller) (NVMe base 2.0, 8.13.5.3): REASON CODE@6
/// (01h: authentication failure) and its explanation@7.
/// </summary>
public sealed record DhchapFailure(AuthMessageId Id, ushort TransactionId, DhchapFailureReason Explanation)
{
    public const int Size = 8;
    public const byte ReasonAuthenticationFailure = 0x01;

    public int Write(Span<byte> data)
    {
        new AuthMessageHeader(AuthMessageType.Common, Id, TransactionId).Write(data);
        data[6] = ReasonAuthenticationFailure;
        data[7] = (byte)Explanation;
        return Size;
    }

    public static bool TryRead(ReadOnlySpan<byte> data, out DhchapFailure message)
    {
        message = null!;
        if (!AuthMessageHeader.TryRead(data, out var header) || data.Length < Size || header.Type != AuthMessageType.Common
            || header.Id is not (AuthMessageId.Failure1 or AuthMessageId.Failure2))
        {
            return false;
        }

        message = new DhchapFailure(header.Id, header.TransactionId, (DhchapFailureReason)data[7]);
        return true;
    }
}
