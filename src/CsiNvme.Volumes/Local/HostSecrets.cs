using CsiNvme.Api.V1;
using CsiNvme.Metadata;
using CsiNvme.Protocol.Authentication;
using CsiNvme.Target.Subsystems;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Volumes.Local;

/// <summary>
/// The DH-HMAC-CHAP secrets of a volume's hosts: validated and sealed into the record (<see cref="Seal"/>), opened and
/// applied to the volume's subsystem wherever it is served (<see cref="Apply"/>), and described without the secrets.
/// </summary>
public static class HostSecrets
{
    private const string HostPurpose = "host";
    private const string ControllerPurpose = "ctrl";

    /// <summary>A host's entry for the record, secrets sealed; INVALID_ARGUMENT for a malformed secret, hash or group.</summary>
    public static HostSecretRecord Seal(SecretSealer? sealer, Guid volumeId, string hostNqn, string secret, string controllerSecret, string hash, string dhGroup)
    {
        VolumeRules.ValidateHostNqn(hostNqn);
        if (!DhchapSecret.TryParse(secret, out var hostSecret, out var error))
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"host secret: {error}");
        }

        DhchapSecret? ctrl = null;
        if (!string.IsNullOrWhiteSpace(controllerSecret))
        {
            if (!DhchapSecret.TryParse(controllerSecret, out ctrl, out error))
            {
                throw new VolumeException(VolumeError.InvalidArgument, $"controller secret: {error}");
            }

            // With one secret for both directions a host's own challenge could be reflected back at it (NVMe base 2.0, 8.13.5.9).
            if (ctrl.Equals(hostSecret))
            {
                throw new VolumeException(VolumeError.InvalidArgument, "the controller secret must differ from the host secret");
            }
        }

        var hashId = DhchapHash.Sha256;
        if (!string.IsNullOrWhiteSpace(hash) && !DhchapHashes.TryParse(hash, out hashId))
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"hash {hash}: use sha256, sha384 or sha512");
        }

        var group = DhchapDhGroup.Ffdhe2048;
        if (!string.IsNullOrWhiteSpace(dhGroup) && !DhchapDhGroups.TryParse(dhGroup, out group))
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"DH group {dhGroup}: use null, ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144 or ffdhe8192");
        }

        if (sealer is null)
        {
            throw new VolumeException(VolumeError.FailedPrecondition, "this server has no secret key to store secrets with (--secret-key-file)");
        }

        return new HostSecretRecord(
            hostNqn,
            sealer.Seal(hostSecret.Format(), volumeId, hostNqn, HostPurpose),
            ctrl is null ? "" : sealer.Seal(ctrl.Format(), volumeId, hostNqn, ControllerPurpose),
            DhchapHashes.Name(hashId),
            DhchapDhGroups.Name(group));
    }

    /// <summary>The record's entries with <paramref name="entry"/> replacing any of the same host.</summary>
    public static IReadOnlyList<HostSecretRecord> With(IReadOnlyList<HostSecretRecord> entries, HostSecretRecord entry) =>
        [.. entries.Where(e => e.HostNqn != entry.HostNqn).Append(entry).OrderBy(e => e.HostNqn, StringComparer.Ordinal)];

    public static IReadOnlyList<HostSecretRecord> Without(IReadOnlyList<HostSecretRecord> entries, string hostNqn) =>
        [.. entries.Where(e => e.HostNqn != hostNqn)];

    /// <summary>
    /// Makes the subsystem require exactly the record's hosts to authenticate, with the secrets opened here. A secret
    /// that does not open (another node key, damage, lost in a recovery) locks its host out rather than letting it in
    /// on its NQN, and is logged without the secret.
    /// </summary>
    public static void Apply(Subsystem subsystem, VolumeRecord record, SecretSealer? sealer, ILogger logger)
    {
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in record.HostSecrets)
        {
            wanted.Add(entry.HostNqn);
            var credentials = Open(entry, record.Id, sealer, out var problem);
            if (credentials.UnavailableReason is not null && subsystem.FindHostCredentials(entry.HostNqn)?.UnavailableReason != problem)
            {
                VolumeLog.HostSecretUnavailable(logger, record.Name, entry.HostNqn, problem);
            }

            subsystem.SetHostCredentials(entry.HostNqn, credentials);
        }

        foreach (var host in subsystem.HostsRequiringAuthentication.Where(h => !wanted.Contains(h)).ToArray())
        {
            subsystem.SetHostCredentials(host, null);
        }
    }

    /// <summary>"authentication: required" per host, for the API's volume views: settings only, never a secret.</summary>
    public static void Describe(Volume volume, VolumeRecord record, Subsystem? subsystem)
    {
        foreach (var entry in record.HostSecrets)
        {
            volume.Authentication.Add(new HostAuthentication
            {
                HostNqn = entry.HostNqn,
                Hash = entry.Hash,
                DhGroup = entry.DhGroup,
                Bidirectional = entry.SealedControllerSecret.Length > 0,
                Problem = subsystem?.FindHostCredentials(entry.HostNqn)?.UnavailableReason ?? "",
            });
        }
    }

    private static DhchapCredentials Open(HostSecretRecord entry, Guid volumeId, SecretSealer? sealer, out string problem)
    {
        if (entry.SealedSecret.Length == 0)
        {
            problem = "the secret was lost (the record was rebuilt from the pool); set it again";
            return DhchapCredentials.Unavailable(problem);
        }

        if (sealer is null)
        {
            problem = "this node has no secret key (--secret-key-file)";
            return DhchapCredentials.Unavailable(problem);
        }

        if (!sealer.TryUnseal(entry.SealedSecret, volumeId, entry.HostNqn, HostPurpose, out var hostText, out problem)
            || !DhchapSecret.TryParse(hostText, out var hostSecret, out problem))
        {
            return DhchapCredentials.Unavailable(problem);
        }

        DhchapSecret? controllerSecret = null;
        if (entry.SealedControllerSecret.Length > 0
            && (!sealer.TryUnseal(entry.SealedControllerSecret, volumeId, entry.HostNqn, ControllerPurpose, out var ctrlText, out problem)
                || !DhchapSecret.TryParse(ctrlText, out controllerSecret, out problem)))
        {
            return DhchapCredentials.Unavailable(problem);
        }

        if (!DhchapHashes.TryParse(entry.Hash, out var hash) || !DhchapDhGroups.TryParse(entry.DhGroup, out var group))
        {
            problem = $"unknown hash {entry.Hash} or DH group {entry.DhGroup} in the record";
            return DhchapCredentials.Unavailable(problem);
        }

        problem = "";
        return DhchapCredentials.Create(hostSecret, controllerSecret, hash, group);
    }
}
