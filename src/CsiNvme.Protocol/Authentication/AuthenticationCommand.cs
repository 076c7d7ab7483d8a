using CsiNvme.Protocol.Commands;

namespace CsiNvme.Protocol.Authentication;

/// <summary>
/// Authentication Send (FCTYPE 05h) and Authentication Receive (06h) (NVMe-oF 1.1 with TP 8006, NVMe base 2.0, 6.2 and
/// 6.3): SPSP0@41, SPSP1@42, SECP@43 and the transfer (TL) or allocation (AL) length@44. DH-HMAC-CHAP uses SECP E9h
/// with SPSP0 = SPSP1 = 01h.
/// </summary>
public readonly record struct AuthenticationCommand(byte SecurityProtocol, byte SpecificField0, byte SpecificField1, uint Length)
{
    public const byte DhchapSecurityProtocol = 0xE9;

    public bool IsDhchap => SecurityProtocol == DhchapSecurityProtocol && SpecificField0 == 0x01 && SpecificField1 == 0x01;

    public static AuthenticationCommand Dhchap(uint length) => new(DhchapSecurityProtocol, 0x01, 0x01, length);

    public static AuthenticationCommand From(in SubmissionQueueEntry sqe) => new(
        (byte)(sqe.Cdw10 >> 24),
        (byte)(sqe.Cdw10 >> 8),
        (byte)(sqe.Cdw10 >> 16),
        sqe.Cdw11);

    public SubmissionQueueEntry ToSubmissionQueueEntry(ushort commandId, bool send, SglDescriptor data) => new(
        (byte)AdminOpcode.Fabrics, 0x40, commandId,
        (uint)(send ? FabricsCommandType.AuthenticationSend : FabricsCommandType.AuthenticationReceive), data,
        ((uint)SpecificField0 << 8) | ((uint)SpecificField1 << 16) | ((uint)SecurityProtocol << 24),
        Length, 0, 0, 0, 0);
}
