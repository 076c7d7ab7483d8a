using System.Security.Cryptography;
using CsiNvme.Protocol.Authentication;
using CsiNvme.Target.Subsystems;

namespace CsiNvme.Target.Fabrics;

/// <summary>
/// The controller's side of DH-HMAC-CHAP on one queue (NVMe base 2.0, 8.13.5): AUTH_Negotiate, then the challenge, the
/// host's reply, Success1 and, when the host authenticates the controller too, Success2. Authentication Send hands it
/// the host's messages; Authentication Receive asks it for the next controller message. A protocol error is answered
/// with AUTH_Failure1 at the next Authentication Receive, as the Linux host expects; the queue's owner tears the
/// association down once the transaction <see cref="IsFailed"/>.
/// </summary>
/// <remarks>
/// An I/O subsystem checks one set of credentials. The discovery controller checks every set the host has on this
/// target (<see cref="Candidate"/>): a host that proves one secret sees the subsystems that secret opens.
/// </remarks>
internal sealed class DhchapControllerTransaction
{
    private enum Step
    {
        Negotiate,
        SendChallenge,
        Reply,
        SendSuccess1,
        Success2,
        SendFailure1,
        Done,
        Failed,
    }

    /// <summary>One set of credentials the host may prove, and what proving it grants (a subsystem NQN for discovery).</summary>
    internal sealed record Candidate(DhchapCredentials Credentials, string Grants);

    private readonly string _hostNqn;
    private readonly string _subsystemNqn;
    private readonly IReadOnlyList<Candidate> _candidates;
    private readonly Func<DhchapDhGroup, FfdheKeyPair> _keyPairOf;
    private Step _step = Step.Negotiate;
    private ushort _transactionId;
    private DhchapHash _hash;
    private DhchapDhGroup _group;
    private FfdheKeyPair? _keyPair;
    private byte[]? _challenge;
    private uint _sequenceNumber;
    private byte[]? _sessionKey;
    private byte[]? _controllerResponse;
    private DhchapFailureReason _failure;

    /// <param name="keyPairOf">The controller's DH key pair for a group, shared by its queues (as nvmet does).</param>
    public DhchapControllerTransaction(string hostNqn, string subsystemNqn, IReadOnlyList<Candidate> candidates, Func<DhchapDhGroup, FfdheKeyPair> keyPairOf)
    {
        _hostNqn = hostNqn;
        _subsystemNqn = subsystemNqn;
        _candidates = candidates;
        _keyPairOf = keyPairOf;
    }

    /// <summary>The host authenticated (and, when it asked, the controller answered its challenge).</summary>
    public bool IsAuthenticated => _step == Step.Done;

    /// <summary>Authentication failed: the association is to be torn down once the last answer is sent.</summary>
    public bool IsFailed => _step == Step.Failed;

    /// <summary>Why it failed, for the log (never a secret).</summary>
    public string? FailureReason { get; private set; }

    /// <summary>After success: what the secrets the host proved grant (every candidate whose host secret matched).</summary>
    public IReadOnlyList<string> Granted { get; private set; } = [];

    public DhchapHash Hash => _hash;

    public DhchapDhGroup DhGroup => _group;

    public bool Bidirectional => _controllerResponse is not null;

    /// <summary>A message from the host (Authentication Send).</summary>
    public void Receive(ReadOnlySpan<byte> message)
    {
        if (!AuthMessageHeader.TryRead(message, out var header))
        {
            Refuse(DhchapFailureReason.IncorrectPayload, "an authentication message shorter than its header");
            return;
        }

        if (header.Type == AuthMessageType.Common && header.Id == AuthMessageId.Negotiate)
        {
            // A negotiate starts a transaction at any point: the first one, a restart, or a re-authentication.
            Negotiate(message);
            return;
        }

        if (header.Type == AuthMessageType.Common && header.Id == AuthMessageId.Failure2)
        {
            DhchapFailure.TryRead(message, out var failure);
            Fail($"the host ended the authentication (AUTH_Failure2, {failure?.Explanation})");
            return;
        }

        if (_step is Step.Failed)
        {
            return;
        }

        if (header.TransactionId != _transactionId)
        {
            Refuse(DhchapFailureReason.IncorrectPayload, $"transaction {header.TransactionId} instead of {_transactionId}");
            return;
        }

        switch (_step, header.Type, header.Id)
        {
            case (Step.Reply, AuthMessageType.Dhchap, AuthMessageId.Reply):
                Reply(message);
                return;
            case (Step.Success2, AuthMessageType.Dhchap, AuthMessageId.Success2):
                _step = Step.Done;
                return;
            default:
                Refuse(DhchapFailureReason.IncorrectProtocolMessage, $"message {header.Type}/{header.Id} while expecting the {_step} step");
                return;
        }
    }

    /// <summary>The controller's next message (Authentication Receive); null when none is due and the host asked anyway.</summary>
    public byte[] Produce()
    {
        switch (_step)
        {
            case Step.SendChallenge:
                return Challenge();
            case Step.SendSuccess1:
                {
                    var success = new DhchapSuccess1(_transactionId, (byte)DhchapHashes.Length(_hash), _controllerResponse);
                    var message = new byte[success.Length];
                    success.Write(message);
                    _step = _controllerResponse is null ? Step.Done : Step.Success2;
                    return message;
                }

            case Step.SendFailure1:
                {
                    var message = new byte[DhchapFailure.Size];
                    new DhchapFailure(AuthMessageId.Failure1, _transactionId, _failure).Write(message);
                    _step = Step.Failed;
                    return message;
                }

            default:
                {
                    // Nothing is due: the host is out of step. Like nvmet, answer with a failure and end the transaction.
                    FailureReason ??= $"Authentication Receive while expecting the {_step} step";
                    var message = new byte[DhchapFailure.Size];
                    new DhchapFailure(AuthMessageId.Failure1, _transactionId, DhchapFailureReason.IncorrectProtocolMessage).Write(message);
                    _step = Step.Failed;
                    return message;
                }
        }
    }

    private void Negotiate(ReadOnlySpan<byte> message)
    {
        Reset();
        if (!DhchapNegotiate.TryRead(message, out var negotiate, out var failure))
        {
            Refuse(failure, "a malformed AUTH_Negotiate");
            return;
        }

        _transactionId = negotiate.TransactionId;
        if (negotiate.SecureChannelConcatenation != 0)
        {
            // Secure channel concatenation generates a TLS PSK; TLS is not offered on this port.
            Refuse(DhchapFailureReason.SecureChannelConcatenationMismatch, "secure channel concatenation asked for");
            return;
        }

        var usable = _candidates.FirstOrDefault(c => c.Credentials.HostSecret is not null);
        if (usable is null)
        {
            Refuse(DhchapFailureReason.Failed, _candidates.Count == 0
                ? "the host has no DH-HMAC-CHAP secret here"
                : _candidates[0].Credentials.UnavailableReason ?? "the host's secret is unavailable");
            return;
        }

        var preferred = usable.Credentials;
        if (!TryChoose(negotiate.HashIds, (byte)preferred.Hash, id => DhchapHashes.IsDefined(id), out var hash))
        {
            Refuse(DhchapFailureReason.HashUnusable, $"the host does not offer {DhchapHashes.Name(preferred.Hash)}");
            return;
        }

        if (!TryChoose(negotiate.DhGroupIds, (byte)preferred.DhGroup, id => DhchapDhGroups.IsDefined(id), out var group))
        {
            Refuse(DhchapFailureReason.DhGroupUnusable, $"the host does not offer DH group {DhchapDhGroups.Name(preferred.DhGroup)}");
            return;
        }

        _hash = (DhchapHash)hash;
        _group = (DhchapDhGroup)group;
        _step = Step.SendChallenge;
    }

    /// <summary>
    /// The volume's setting when the host offers it. With several candidates (discovery) any offered id does when the
    /// first candidate's is not offered; an I/O subsystem insists on its own, so a downgrade cannot be forced on it.
    /// </summary>
    private bool TryChoose(byte[] offered, byte preferred, Func<byte, bool> known, out byte chosen)
    {
        if (Array.IndexOf(offered, preferred) >= 0)
        {
            chosen = preferred;
            return true;
        }

        if (_candidates.Count > 1)
        {
            foreach (var id in offered)
            {
                if (known(id))
                {
                    chosen = id;
                    return true;
                }
            }
        }

        chosen = 0;
        return false;
    }

    private byte[] Challenge()
    {
        _challenge = RandomNumberGenerator.GetBytes(DhchapHashes.Length(_hash));
        _sequenceNumber = DhchapResponses.NewSequenceNumber();
        byte[] dhValue = [];
        if (_group != DhchapDhGroup.Null)
        {
            _keyPair = _keyPairOf(_group);
            dhValue = _keyPair.PublicValue;
        }

        var challenge = new DhchapChallenge(_transactionId, _hash, _group, _sequenceNumber, _challenge, dhValue);
        var message = new byte[challenge.Length];
        challenge.Write(message);
        _step = Step.Reply;
        return message;
    }

    private void Reply(ReadOnlySpan<byte> message)
    {
        var hashLength = DhchapHashes.Length(_hash);
        if (!DhchapReply.TryRead(message, out var reply) || reply.Response.Length != hashLength)
        {
            Refuse(DhchapFailureReason.IncorrectPayload, "a malformed DH-HMAC-CHAP_Reply");
            return;
        }

        var challenge = _challenge!;
        if (_group == DhchapDhGroup.Null)
        {
            if (reply.DhValue.Length != 0)
            {
                Refuse(DhchapFailureReason.IncorrectPayload, "a DH value without a DH group");
                return;
            }
        }
        else
        {
            _sessionKey = _keyPair!.Group.SharedValue(_keyPair, reply.DhValue);
            if (_sessionKey is null)
            {
                Refuse(DhchapFailureReason.DhGroupUnusable, "the host's DH value is not a valid group element");
                return;
            }

            challenge = DhchapResponses.AugmentChallenge(_hash, _sessionKey, challenge);
        }

        var granted = new List<string>();
        DhchapCredentials? matched = null;
        foreach (var candidate in _candidates)
        {
            if (candidate.Credentials.HostSecret is not { } secret)
            {
                continue;
            }

            var key = secret.TransformFor(_hostNqn);
            var expected = DhchapResponses.HostResponse(_hash, key, challenge, _sequenceNumber, _transactionId, _hostNqn, _subsystemNqn);
            CryptographicOperations.ZeroMemory(key);
            if (CryptographicOperations.FixedTimeEquals(expected, reply.Response))
            {
                granted.Add(candidate.Grants);
                if (matched?.ControllerSecret is null)
                {
                    matched = candidate.Credentials;
                }
            }
        }

        if (matched is null)
        {
            Refuse(DhchapFailureReason.Failed, "the host's response does not match its secret");
            return;
        }

        // SEQNUM 0 with a challenge asks for no controller authentication (it only feeds a TLS PSK, NVMe base 2.0, 8.13.5.5).
        if (reply.ControllerChallenge is { } c2 && reply.SequenceNumber != 0)
        {
            if (c2.Length != hashLength || matched.ControllerSecret is not { } controllerSecret)
            {
                Refuse(DhchapFailureReason.Failed, "the host asks the controller to authenticate, and no controller secret is set for it");
                return;
            }

            var augmented = _sessionKey is null ? c2 : DhchapResponses.AugmentChallenge(_hash, _sessionKey, c2);
            var key = controllerSecret.TransformFor(_subsystemNqn);
            _controllerResponse = DhchapResponses.ControllerResponse(_hash, key, augmented, reply.SequenceNumber, _transactionId, _subsystemNqn, _hostNqn);
            CryptographicOperations.ZeroMemory(key);
        }

        Granted = granted;
        _step = Step.SendSuccess1;
    }

    private void Refuse(DhchapFailureReason reason, string why)
    {
        _failure = reason;
        FailureReason = why;
        _step = Step.SendFailure1;
    }

    private void Fail(string why)
    {
        FailureReason = why;
        _step = Step.Failed;
    }

    private void Reset()
    {
        if (_sessionKey is not null)
        {
            CryptographicOperations.ZeroMemory(_sessionKey);
        }

        _step = Step.Negotiate;
        _challenge = null;
        _sessionKey = null;
        _controllerResponse = null;
        _keyPair = null;
        FailureReason = null;
        Granted = [];
    }
}
