namespace CsiNvme.TestSupport;

/// <summary>
/// A host NQN and host identifier as nvme-cli would generate them
/// (the UUID-based form of NVMe Base Specification 2.0, §4.5).
/// </summary>
public sealed record NvmeHostIdentity(string Nqn, Guid Id)
{
    public static NvmeHostIdentity Create()
    {
        var id = Guid.NewGuid();
        return new NvmeHostIdentity($"nqn.2014-08.org.nvmexpress:uuid:{id:D}", id);
    }

    /// <summary>The nvme-cli options naming this host: <c>--hostnqn=... --hostid=...</c>.</summary>
    public string CliArgs => $"--hostnqn={Nqn} --hostid={Id:D}";

    /// <summary>The same in the option syntax of the kernel's /dev/nvme-fabrics interface.</summary>
    public string FabricsOptions => $"hostnqn={Nqn},hostid={Id:D}";
}
