namespace CsiNvme.Target;

public sealed partial class NvmeTarget
{
    /// <summary>Number of open NVMe/TCP connections.</summary>
    public int ConnectionCount => 0;

    /// <summary>Binds every endpoint of <see cref="NvmeTargetOptions.Listen"/> and starts accepting hosts.</summary>
    public IReadOnlyList<System.Net.IPEndPoint> Start() => throw new NotImplementedException("listener under construction");

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
