using CsiNvme.Protocol.Authentication;

namespace CsiNvme.Target.Subsystems;

/// <summary>
/// What a subsystem requires of one host with DH-HMAC-CHAP (NVMe base 2.0, 8.13): the host secret it must prove, the
/// controller secret it may challenge the controller with (bidirectional authentication), and the hash function and DH
/// group the controller picks when the host offers them (the Linux host offers every one). A subsystem that has
/// credentials for a host answers that host's Connect with "authentication required" and serves it nothing before it
/// authenticated.
/// </summary>
public sealed class DhchapCredentials
{
    private DhchapCredentials(DhchapSecret? hostSecret, DhchapSecret? controllerSecret, DhchapHash hash, DhchapDhGroup dhGroup, string? unavailableReason)
    {
        HostSecret = hostSecret;
        ControllerSecret = controllerSecret;
        Hash = hash;
        DhGroup = dhGroup;
        UnavailableReason = unavailableReason;
    }

    /// <summary>The secret the host proves it holds; null when <see cref="UnavailableReason"/> says why it is not known here.</summary>
    public DhchapSecret? HostSecret { get; }

    public DhchapSecret? ControllerSecret { get; }

    public DhchapHash Hash { get; }

    public DhchapDhGroup DhGroup { get; }

    /// <summary>
    /// Set when the host must authenticate but this target cannot check it (its stored secret could not be decrypted):
    /// every authentication then fails, so the host is locked out rather than let in without one.
    /// </summary>
    public string? UnavailableReason { get; }

    public static DhchapCredentials Create(DhchapSecret hostSecret, DhchapSecret? controllerSecret = null,
        DhchapHash hash = DhchapHash.Sha256, DhchapDhGroup dhGroup = DhchapDhGroup.Ffdhe2048) =>
        new(hostSecret, controllerSecret, hash, dhGroup, null);

    public static DhchapCredentials Unavailable(string reason) => new(null, null, DhchapHash.Sha256, DhchapDhGroup.Null, reason);

    public override string ToString() => UnavailableReason is { } reason
        ? $"DH-HMAC-CHAP required, secret unavailable ({reason})"
        : $"DH-HMAC-CHAP {DhchapHashes.Name(Hash)}/{DhchapDhGroups.Name(DhGroup)}{(ControllerSecret is null ? "" : ", bidirectional")}";
}
