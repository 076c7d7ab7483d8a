using CsiNvme.Protocol.Authentication;

namespace CsiNvme.Csi.Authentication;

/// <summary>
/// DH-HMAC-CHAP credentials of a volume as the CO hands them over in a CSI request's <c>secrets</c> map: the Kubernetes
/// Secret a StorageClass names in <c>csi.storage.k8s.io/controller-publish-secret-*</c> (ControllerPublishVolume: the
/// controller requires them of the node's host NQN on the volume) and <c>csi.storage.k8s.io/node-stage-secret-*</c>
/// (NodeStageVolume: the node connects with them). One Secret serves both; its keys are defined here only.
/// </summary>
/// <remarks>
/// The secrets never leave this type as text except into the SetHostSecret request and the kernel's connect string:
/// <see cref="ToString"/> is redacted (records print every property), validation errors name the key, never the value.
/// </remarks>
public sealed record DhchapCsiSecrets
{
    /// <summary>The host secret in DHHC-1 form (nvme gen-dhchap-key); its presence turns authentication on.</summary>
    public const string HostSecretKey = "dhchapHostSecret";

    /// <summary>Optional controller secret in DHHC-1 form: the host authenticates the volume too (bidirectional).</summary>
    public const string CtrlSecretKey = "dhchapCtrlSecret";

    /// <summary>Optional hash the target uses: sha256 (default), sha384 or sha512.</summary>
    public const string HashKey = "dhchapHash";

    /// <summary>Optional Diffie-Hellman group: ffdhe2048 (default), null, ffdhe3072, ffdhe4096, ffdhe6144, ffdhe8192.</summary>
    public const string DhGroupKey = "dhchapDhGroup";

    private static readonly string[] _hashes = ["sha256", "sha384", "sha512"];
    private static readonly string[] _dhGroups = ["null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"];

    public required string HostSecret { get; init; }

    /// <summary>Empty for unidirectional authentication.</summary>
    public string CtrlSecret { get; init; } = string.Empty;

    /// <summary>Empty for the server's default.</summary>
    public string Hash { get; init; } = string.Empty;

    /// <summary>Empty for the server's default.</summary>
    public string DhGroup { get; init; } = string.Empty;

    public bool IsBidirectional => CtrlSecret.Length > 0;

    /// <summary>
    /// The credentials in <paramref name="secrets"/>, or null when it holds no host secret (the volume is used without
    /// authentication). Throws <see cref="FormatException"/> naming the bad key, never quoting a secret.
    /// </summary>
    public static DhchapCsiSecrets? From(IReadOnlyDictionary<string, string> secrets)
    {
        var host = Value(secrets, HostSecretKey);
        var ctrl = Value(secrets, CtrlSecretKey);
        var hash = Value(secrets, HashKey).ToLowerInvariant();
        var group = Value(secrets, DhGroupKey).ToLowerInvariant();
        if (host.Length == 0)
        {
            if (ctrl.Length > 0)
            {
                throw new FormatException($"secret {CtrlSecretKey} is set without {HostSecretKey}: bidirectional authentication needs the host secret too");
            }

            return null;
        }

        if (!DhchapSecret.TryParse(host, out _, out var hostError))
        {
            throw new FormatException($"secret {HostSecretKey} is not a DHHC-1 secret: {hostError}");
        }

        if (ctrl.Length > 0 && !DhchapSecret.TryParse(ctrl, out _, out var ctrlError))
        {
            throw new FormatException($"secret {CtrlSecretKey} is not a DHHC-1 secret: {ctrlError}");
        }

        if (ctrl.Length > 0 && ctrl == host)
        {
            // One key both ways would let anyone in the middle answer the host's challenge with the host's own response.
            throw new FormatException($"secrets {HostSecretKey} and {CtrlSecretKey} must differ");
        }

        if (hash.Length > 0 && !_hashes.Contains(hash))
        {
            throw new FormatException($"secret {HashKey}='{hash}' is not one of {string.Join(", ", _hashes)}");
        }

        if (group.Length > 0 && !_dhGroups.Contains(group))
        {
            throw new FormatException($"secret {DhGroupKey}='{group}' is not one of {string.Join(", ", _dhGroups)}");
        }

        return new DhchapCsiSecrets { HostSecret = host, CtrlSecret = ctrl, Hash = hash, DhGroup = group };
    }

    public override string ToString() => $"DH-HMAC-CHAP ({(IsBidirectional ? "bidirectional" : "host")} secret, redacted)";

    private static string Value(IReadOnlyDictionary<string, string> secrets, string key) =>
        secrets.TryGetValue(key, out var value) ? value.Trim() : string.Empty;
}
