using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace CsiNvme.Protocol.Authentication;

/// <summary>
/// The DH-HMAC-CHAP computations both ends make (NVMe base 2.0, 8.13.5.5 and 8.13.5.6), with the key already transformed
/// for the NQN it belongs to (<see cref="DhchapSecret.TransformFor"/>):
/// <list type="bullet">
/// <item>with a DH group, each challenge is first augmented: Ca = HMAC(H(g^xy mod p), C);</item>
/// <item>the host's response R1 = HMAC(Kh, C1 ‖ S1 ‖ T_ID ‖ 00h ‖ "HostHost" ‖ NQNh ‖ 00h ‖ NQNc);</item>
/// <item>the controller's response R2 = HMAC(Kc, C2 ‖ S2 ‖ T_ID ‖ 00h ‖ "Controller" ‖ NQNc ‖ 00h ‖ NQNh),</item>
/// </list>
/// with S as 4 and T_ID as 2 little-endian bytes and the NQNs without their terminating null.
/// </summary>
public static class DhchapResponses
{
    /// <summary>A fresh sequence number (S1, S2): random and never 0, which in a reply means "no controller challenge".</summary>
    public static uint NewSequenceNumber()
    {
        Span<byte> bytes = stackalloc byte[4];
        uint value;
        do
        {
            RandomNumberGenerator.Fill(bytes);
            value = BinaryPrimitives.ReadUInt32LittleEndian(bytes);
        }
        while (value == 0);
        return value;
    }

    /// <summary>HMAC(H(sessionKey), challenge): binds the challenge to the Diffie-Hellman exchange.</summary>
    public static byte[] AugmentChallenge(DhchapHash hash, ReadOnlySpan<byte> sessionKey, ReadOnlySpan<byte> challenge) =>
        DhchapHashes.Hmac(hash, DhchapHashes.Digest(hash, sessionKey), challenge);

    public static byte[] HostResponse(DhchapHash hash, ReadOnlySpan<byte> hostKey, ReadOnlySpan<byte> challenge, uint sequenceNumber,
        ushort transactionId, string hostNqn, string subsystemNqn) =>
        Response(hash, hostKey, challenge, sequenceNumber, transactionId, "HostHost"u8, hostNqn, subsystemNqn);

    public static byte[] ControllerResponse(DhchapHash hash, ReadOnlySpan<byte> controllerKey, ReadOnlySpan<byte> challenge, uint sequenceNumber,
        ushort transactionId, string subsystemNqn, string hostNqn) =>
        Response(hash, controllerKey, challenge, sequenceNumber, transactionId, "Controller"u8, subsystemNqn, hostNqn);

    private static byte[] Response(DhchapHash hash, ReadOnlySpan<byte> key, ReadOnlySpan<byte> challenge, uint sequenceNumber,
        ushort transactionId, ReadOnlySpan<byte> label, string firstNqn, string secondNqn)
    {
        using var hmac = DhchapHashes.CreateHmac(hash, key);
        Span<byte> numbers = stackalloc byte[7];
        BinaryPrimitives.WriteUInt32LittleEndian(numbers, sequenceNumber);
        BinaryPrimitives.WriteUInt16LittleEndian(numbers[4..], transactionId);
        numbers[6] = 0;
        hmac.AppendData(challenge);
        hmac.AppendData(numbers);
        hmac.AppendData(label);
        hmac.AppendData(Encoding.UTF8.GetBytes(firstNqn));
        hmac.AppendData(numbers[6..]);
        hmac.AppendData(Encoding.UTF8.GetBytes(secondNqn));
        return hmac.GetHashAndReset();
    }
}
