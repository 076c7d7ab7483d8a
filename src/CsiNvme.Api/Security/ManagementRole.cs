using System.Security.Cryptography.X509Certificates;

namespace CsiNvme.Api.Security;

/// <summary>
/// What a management API client may do, carried by its certificate (see <see cref="ManagementRoles.TryGetRole"/>).
/// Which calls each role may make is one table in the server (CsiNvme.Server.Management.ManagementAccess).
/// </summary>
[Flags]
public enum ManagementRole
{
    None = 0,

    /// <summary>Every call.</summary>
    Admin = 1,

    /// <summary>Exactly what the CSI controller calls: create/delete/expand/snapshot volumes, publish (host access, secrets), capacity, get/list.</summary>
    CsiController = 2,

    /// <summary>Get and list calls only.</summary>
    ReadOnly = 4,

    /// <summary>A storage node of the cluster: the node-to-node agent calls, and listing, draining and undraining nodes.</summary>
    Node = 8,
}

/// <summary>
/// The role of a client certificate is its subject Common Name, <c>ROLE</c> or <c>ROLE:WHO</c> (CN=admin,
/// CN=csi-controller:kube-system, CN=node:storage-0). The Common Name, not a URI SAN or an OU, because it is the one
/// field Helm's genSignedCert can set, and the chart generates certificates without cert-manager too.
/// </summary>
public static class ManagementRoles
{
    public const string Admin = "admin";
    public const string CsiController = "csi-controller";
    public const string ReadOnly = "read-only";
    public const string Node = "node";

    public static IReadOnlyList<string> Names { get; } = [Admin, CsiController, ReadOnly, Node];

    public static string NameOf(ManagementRole role) => role switch
    {
        ManagementRole.Admin => Admin,
        ManagementRole.CsiController => CsiController,
        ManagementRole.ReadOnly => ReadOnly,
        ManagementRole.Node => Node,
        _ => role.ToString(),
    };

    public static bool TryParse(string name, out ManagementRole role)
    {
        role = name switch
        {
            Admin => ManagementRole.Admin,
            CsiController => ManagementRole.CsiController,
            ReadOnly => ManagementRole.ReadOnly,
            Node => ManagementRole.Node,
            _ => ManagementRole.None,
        };
        return role != ManagementRole.None;
    }

    /// <summary>The role named by the certificate's Common Name (ROLE or ROLE:WHO); false when it names none.</summary>
    public static bool TryGetRole(X509Certificate2 certificate, out ManagementRole role)
    {
        var commonName = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        var colon = commonName.IndexOf(':', StringComparison.Ordinal);
        return TryParse(colon < 0 ? commonName : commonName[..colon], out role);
    }

    /// <summary>The subject's Common Name for a role and an optional holder name: what certificates should carry.</summary>
    public static string CommonName(ManagementRole role, string? who = null) =>
        string.IsNullOrEmpty(who) ? NameOf(role) : $"{NameOf(role)}:{who}";
}
