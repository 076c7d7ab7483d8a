using CsiNvme.Api.V1;
using CsiNvme.Metadata;
using CsiNvme.Protocol.Tls;
using CsiNvme.Target.Subsystems;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Volumes.Local;

/// <summary>
/// The NVMe/TCP TLS settings of a volume: hosts' pre-shared keys, validated and sealed into the record
/// (<see cref="Seal"/>), opened and applied with the TLS requirement to the volume's subsystem wherever it is served
/// (<see cref="Apply"/>), and described without the keys.
/// </summary>
public static class HostTlsPsks
{
    private const string Purpose = "tls-psk";

    /// <summary>A host's entry for the record, key sealed; INVALID_ARGUMENT for a malformed key.</summary>
    public static TlsPskRecord Seal(SecretSealer? sealer, Guid volumeId, string hostNqn, string psk)
    {
        VolumeRules.ValidateHostNqn(hostNqn);
        if (!TlsPsk.TryParse(psk, out var parsed, out var error))
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"TLS PSK: {error}");
        }

        if (sealer is null)
        {
            throw new VolumeException(VolumeError.FailedPrecondition, "this server has no secret key to store keys with (--secret-key-file)");
        }

        return new TlsPskRecord(hostNqn, sealer.Seal(parsed.Format(), volumeId, hostNqn, Purpose));
    }

    public static IReadOnlyList<TlsPskRecord> With(IReadOnlyList<TlsPskRecord> entries, TlsPskRecord entry) =>
        [.. entries.Where(e => e.HostNqn != entry.HostNqn).Append(entry).OrderBy(e => e.HostNqn, StringComparer.Ordinal)];

    public static IReadOnlyList<TlsPskRecord> Without(IReadOnlyList<TlsPskRecord> entries, string hostNqn) =>
        [.. entries.Where(e => e.HostNqn != hostNqn)];

    /// <summary>
    /// Gives the subsystem exactly the record's keys, opened here, and its TLS requirement. A key that does not open
    /// (another node key, lost in a recovery) is left out and logged without the key: that host's handshakes fail.
    /// </summary>
    public static void Apply(Subsystem subsystem, VolumeRecord record, SecretSealer? sealer, ILogger logger)
    {
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in record.TlsPsks)
        {
            wanted.Add(entry.HostNqn);
            string problem;
            if (entry.SealedPsk.Length == 0)
            {
                problem = "the key was lost (the record was rebuilt from the pool); set it again";
            }
            else if (sealer is null)
            {
                problem = "this node has no secret key (--secret-key-file)";
            }
            else if (sealer.TryUnseal(entry.SealedPsk, record.Id, entry.HostNqn, Purpose, out var text, out problem)
                && TlsPsk.TryParse(text, out var psk, out problem))
            {
                subsystem.SetHostTlsPsk(entry.HostNqn, psk);
                continue;
            }

            // Apply runs when the record changes (and when the volume starts being served), so this is no periodic log.
            VolumeLog.TlsPskUnavailable(logger, record.Name, entry.HostNqn, problem);
            subsystem.SetHostTlsPsk(entry.HostNqn, null);
        }

        foreach (var host in subsystem.HostsWithTlsPsk.Where(h => !wanted.Contains(h)).ToArray())
        {
            subsystem.SetHostTlsPsk(host, null);
        }

        if (subsystem.TlsRequired != record.TlsRequired)
        {
            subsystem.SetTlsRequired(record.TlsRequired);
        }
    }

    /// <summary>The TLS requirement and the hosts with a key, for the API's volume views: never a key.</summary>
    public static void Describe(Volume volume, VolumeRecord record)
    {
        volume.TlsRequired = record.TlsRequired;
        volume.TlsHosts.AddRange(record.TlsPsks.Select(t => t.HostNqn));
    }
}
