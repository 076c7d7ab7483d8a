using ControllerBase = Csi.V1.Controller.ControllerBase;

namespace CsiNvme.Csi.Controller;

/// <summary>CSI Controller service backed by the storage server's management API.</summary>
internal sealed class ControllerService : ControllerBase
{
}
