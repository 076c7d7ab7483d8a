using System.Security.Cryptography;

namespace CsiNvme.Protocol.Authentication;

/// <summary>
/// The host's side of one DH-HMAC-CHAP transaction on one queue (NVMe base 2.0, 8.13.5): it builds the messages the
/// host sends with Authentication Send and checks those it reads with Authentication Receive; the caller moves them.
/// Bidirectional when a controller secret is given: the host then challenges the controller and checks its response.
/// </summary>
public sealed class DhchapHostTransaction
{
    private static readonly byte[] AllHashes = [(byte)DhchapHash.Sha256, (byte)DhchapHash.Sha384, (byte)DhchapHash.Sha512];
    private static readonly byte[] AllGroups =
    [
        (byte)DhchapDhGroup.Null, (byte)DhchapDhGroup.Ffdhe2048, (byte)DhchapDhGroup.Ffdhe3072,
        (byte)DhchapDhGroup.Ffdhe4096, (byte)DhchapDhGroup.Ffdhe6144, (byte)DhchapDhGroup.Ffdhe8192,
    ];

    private readonly string _hostNqn;
    private readonly string _subsystemNqn;
    private readonly DhchapSecret _hostSecret;
    private readonly DhchapSecret? _controllerSecret;
    private readonly byte[] _hashes;
    private readonly byte[] _groups;
    private byte[]? _controllerChallenge;
    private byte[]? _sessionKey;
    private uint _controllerSequence;

    /// <param name="hashes">Hash functions to offer, all three when null (as the Linux host does).</param>
    /// <param name="groups">DH groups to offer, all (null included) when null.</param>
    public DhchapHostTransaction(string hostNqn, string subsystemNqn, ushort transactionId, DhchapSecret hostSecret, DhchapSecret? controllerSecret = null,
        IEnumerable<DhchapHash>? hashes = null, IEnumerable<DhchapDhGroup>? groups = null)
    {
        _hostNqn = hostNqn;
        _subsystemNqn = subsystemNqn;
        TransactionId = transactionId;
        _hostSecret = hostSecret;
        _controllerSecret = controllerSecret;
        _hashes = hashes?.Select(h => (byte)h).ToArray() ?? AllHashes;
        _groups = groups?.Select(g => (byte)g).ToArray() ?? AllGroups;
    }

    public ushort TransactionId { get; }

    /// <summary>What the controller chose, once its challenge was read.</summary>
    public DhchapHash? Hash { get; private set; }

    public DhchapDhGroup? DhGroup { get; private set; }

    /// <summary>Why the transaction failed, for the caller's error.</summary>
    public string? Error { get; private set; }

    /// <summary>The controller proved it holds the controller secret (bidirectional transactions only).</summary>
    public bool ControllerAuthenticated { get; private set; }

    /// <summary>Room to read any controller message: the Linux host reads into 4 KiB, enough for ffdhe8192.</summary>
    public const int ReceiveBufferSize = 4096;

    /// <summary>AUTH_Negotiate, the first message.</summary>
    public byte[] Negotiate()
    {
        var message = new byte[DhchapNegotiate.Size];
        new DhchapNegotiate(TransactionId, 0, _hashes, _groups).Write(message);
        return message;
    }

    /// <summary>
    /// Reads the controller's challenge: true with the DH-HMAC-CHAP_Reply to send, false with <see cref="Error"/> and
    /// the AUTH_Failure2 to send (or null after an AUTH_Failure1, which needs no answer).
    /// </summary>
    public bool TryAnswerChallenge(ReadOnlySpan<byte> received, out byte[]? send)
    {
        if (IsFailure1(received, "challenge"))
        {
            send = null;
            return false;
        }

        if (!DhchapChallenge.TryRead(received, out var challenge) || challenge.TransactionId != TransactionId)
        {
            return Fail(DhchapFailureReason.IncorrectProtocolMessage, "the controller sent no valid DH-HMAC-CHAP_Challenge", out send);
        }

        if (Array.IndexOf(_hashes, (byte)challenge.Hash) < 0 || challenge.Challenge.Length != DhchapHashes.Length(challenge.Hash))
        {
            return Fail(DhchapFailureReason.HashUnusable, $"the controller chose hash {challenge.Hash}, which was not offered or has the wrong length", out send);
        }

        if (Array.IndexOf(_groups, (byte)challenge.DhGroup) < 0 || (challenge.DhGroup == DhchapDhGroup.Null) != (challenge.DhValue.Length == 0))
        {
            return Fail(DhchapFailureReason.DhGroupUnusable, $"the controller chose DH group {challenge.DhGroup}, which was not offered or does not match its DH value", out send);
        }

        Hash = challenge.Hash;
        DhGroup = challenge.DhGroup;
        var hash = challenge.Hash;
        byte[] dhValue = [];
        var c1 = challenge.Challenge;
        if (challenge.DhGroup != DhchapDhGroup.Null)
        {
            var group = FfdheGroup.Get(challenge.DhGroup);
            var keys = group.GenerateKeyPair();
            _sessionKey = group.SharedValue(keys, challenge.DhValue);
            if (_sessionKey is null)
            {
                return Fail(DhchapFailureReason.DhGroupUnusable, "the controller's DH value is not a valid group element", out send);
            }

            dhValue = keys.PublicValue;
            c1 = DhchapResponses.AugmentChallenge(hash, _sessionKey, c1);
        }

        var hostKey = _hostSecret.TransformFor(_hostNqn);
        var response = DhchapResponses.HostResponse(hash, hostKey, c1, challenge.SequenceNumber, TransactionId, _hostNqn, _subsystemNqn);
        CryptographicOperations.ZeroMemory(hostKey);
        if (_controllerSecret is not null)
        {
            _controllerChallenge = RandomNumberGenerator.GetBytes(DhchapHashes.Length(hash));
            _controllerSequence = DhchapResponses.NewSequenceNumber();
        }

        var reply = new DhchapReply(TransactionId, response, _controllerChallenge, _controllerSequence, dhValue);
        send = new byte[reply.Length];
        reply.Write(send);
        return true;
    }

    /// <summary>
    /// Reads DH-HMAC-CHAP_Success1: true when authenticated, with the DH-HMAC-CHAP_Success2 to send for a bidirectional
    /// transaction (null otherwise); false with <see cref="Error"/> and the AUTH_Failure2 to send (null after an AUTH_Failure1).
    /// </summary>
    public bool TryCompleteSuccess1(ReadOnlySpan<byte> received, out byte[]? send)
    {
        if (IsFailure1(received, "response"))
        {
            send = null;
            return false;
        }

        if (Hash is not { } hash || !DhchapSuccess1.TryRead(received, out var success) || success.TransactionId != TransactionId
            || success.HashLength != DhchapHashes.Length(hash))
        {
            return Fail(DhchapFailureReason.IncorrectProtocolMessage, "the controller sent no valid DH-HMAC-CHAP_Success1", out send);
        }

        if (_controllerSecret is null)
        {
            send = null;
            return true;
        }

        if (success.Response is null)
        {
            return Fail(DhchapFailureReason.Failed, "the controller did not answer the host's challenge", out send);
        }

        var c2 = _sessionKey is null ? _controllerChallenge! : DhchapResponses.AugmentChallenge(hash, _sessionKey, _controllerChallenge!);
        var controllerKey = _controllerSecret.TransformFor(_subsystemNqn);
        var expected = DhchapResponses.ControllerResponse(hash, controllerKey, c2, _controllerSequence, TransactionId, _subsystemNqn, _hostNqn);
        CryptographicOperations.ZeroMemory(controllerKey);
        if (!CryptographicOperations.FixedTimeEquals(expected, success.Response))
        {
            return Fail(DhchapFailureReason.Failed, "the controller's response does not match the controller secret", out send);
        }

        ControllerAuthenticated = true;
        send = new byte[DhchapSuccess2.Size];
        new DhchapSuccess2(TransactionId).Write(send);
        return true;
    }

    private bool IsFailure1(ReadOnlySpan<byte> received, string step)
    {
        if (!DhchapFailure.TryRead(received, out var failure) || failure.Id != AuthMessageId.Failure1)
        {
            return false;
        }

        Error = $"the controller refused the authentication before its {step} (AUTH_Failure1, {failure.Explanation})";
        return true;
    }

    private bool Fail(DhchapFailureReason reason, string error, out byte[]? send)
    {
        Error = error;
        send = new byte[DhchapFailure.Size];
        new DhchapFailure(AuthMessageId.Failure2, TransactionId, reason).Write(send);
        return false;
    }
}
