using System.Net;
using CsiNvme.Protocol.Authentication;
using CsiNvme.Protocol.Tls;
using CsiNvme.Target.Controllers;
using CsiNvme.Target.Fabrics;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target;

public sealed partial class NvmeTarget
{
    /// <summary>Every set of DH-HMAC-CHAP credentials a host has on this target's subsystems, each with the subsystem it opens.</summary>
    internal IReadOnlyList<DhchapControllerTransaction.Candidate> CredentialsOf(string hostNqn)
    {
        var candidates = new List<DhchapControllerTransaction.Candidate>();
        foreach (var subsystem in _subsystems.Values.OrderBy(s => s.Nqn, StringComparer.Ordinal))
        {
            if (subsystem.IsHostAllowed(hostNqn) && subsystem.FindHostCredentials(hostNqn) is { } credentials)
            {
                candidates.Add(new DhchapControllerTransaction.Candidate(credentials, subsystem.Nqn));
            }
        }

        return candidates;
    }

    /// <summary>
    /// The TLS PSK for the identity a host presents in its TLS handshake, or null when no subsystem gives that host a
    /// PSK (the handshake then fails). For the discovery subsystem, whose NQN has no keys of its own, the host's PSK
    /// of the first subsystem (by NQN) it has one for.
    /// </summary>
    internal byte[]? TlsKeyFor(TlsPskIdentity identity)
    {
        TlsPsk? psk;
        if (identity.SubsystemNqn == DiscoveryNqn)
        {
            psk = _subsystems.Values.OrderBy(s => s.Nqn, StringComparer.Ordinal)
                .Select(s => s.IsHostAllowed(identity.HostNqn) ? s.FindHostTlsPsk(identity.HostNqn) : null)
                .FirstOrDefault(p => p is not null);
        }
        else
        {
            psk = FindSubsystem(identity.SubsystemNqn) is { } subsystem && subsystem.IsHostAllowed(identity.HostNqn)
                ? subsystem.FindHostTlsPsk(identity.HostNqn)
                : null;
        }

        return psk?.TlsKeyFor(identity);
    }

    internal void LogAuthenticated(IPEndPoint? remote, Controller controller, ushort queueId, DhchapControllerTransaction transaction)
    {
        var hash = DhchapHashes.Name(transaction.Hash);
        var group = DhchapDhGroups.Name(transaction.DhGroup);
        if (queueId == 0)
        {
            LogAdminQueueAuthenticated(_connectionLogger, controller.ControllerId, controller.HostNqn, controller.Subsystem.Nqn, remote, hash, group, transaction.Bidirectional);
        }
        else
        {
            LogIoQueueAuthenticated(_connectionLogger, controller.ControllerId, queueId, hash, group);
        }
    }

    internal void LogAuthenticationFailed(IPEndPoint? remote, Controller controller, ushort queueId, string reason) =>
        LogAuthenticationFailedCore(_connectionLogger, controller.HostNqn, remote, controller.Subsystem.Nqn, controller.ControllerId, queueId, reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Controller {ControllerId} of host {HostNqn} on {SubsystemNqn} ({Remote}) authenticated with DH-HMAC-CHAP ({Hash}, DH group {DhGroup}, controller authenticated too: {Bidirectional})")]
    private static partial void LogAdminQueueAuthenticated(ILogger logger, ushort controllerId, string hostNqn, string subsystemNqn, IPEndPoint? remote, string hash, string dhGroup, bool bidirectional);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Controller {ControllerId} I/O queue {QueueId} authenticated with DH-HMAC-CHAP ({Hash}, DH group {DhGroup})")]
    private static partial void LogIoQueueAuthenticated(ILogger logger, ushort controllerId, ushort queueId, string hash, string dhGroup);

    [LoggerMessage(Level = LogLevel.Warning, Message = "DH-HMAC-CHAP authentication of host {HostNqn} ({Remote}) on {SubsystemNqn} failed on controller {ControllerId} queue {QueueId}: {Reason}; the controller is torn down")]
    private static partial void LogAuthenticationFailedCore(ILogger logger, string hostNqn, IPEndPoint? remote, string subsystemNqn, ushort controllerId, ushort queueId, string reason);
}
