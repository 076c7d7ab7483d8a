using System.Numerics;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Identify;
using CsiNvme.Target.Transport;

namespace CsiNvme.Target.Controllers;

internal sealed partial class Controller
{
    /// <summary>Highest namespace id a subsystem may hold (NN, MNAN).</summary>
    internal const uint MaxNamespaces = 32;

    /// <summary>
    /// Highest ANA group id (ANAGRPMAX, NANAGRPID): one group per storage node, the node's ordinal + 1. The ANA log a
    /// Linux host sizes from it (header + ANAGRPMAX descriptors + NN NSIDs) stays far below MDTS.
    /// </summary>
    internal const uint MaxAnaGroups = 256;

    private const byte RecommendedArbitrationBurst = 6;
    private const byte CmicMultiPort = 0x01;
    private const byte CmicMultiController = 0x02;
    private const byte CmicAnaReporting = 0x08;
    private const uint OaesNamespaceAttribute = 1u << 8;
    private const uint OaesAnaChange = 1u << 11;
    private const uint CtrattHostId128 = 1u << 0;
    private const uint CtrattTrafficBasedKeepAlive = 1u << 6;
    private const ushort OncsDatasetManagement = 1 << 2;
    private const ushort OncsWriteZeroes = 1 << 3;
    private const ushort OncsReservations = 1 << 5;
    // VWC bit 0: cache present; bits 2:1 = 11b: Flush with NSID FFFFFFFFh is supported (NVMe base 2.0, Figure 275).
    private const byte VwcPresentWithBroadcastFlush = 0x07;
    // SGLS: bits 1:0 = 01b SGLs supported; bit 20: the address of a Data Block descriptor may be an offset (in-capsule data).
    private const uint SglsSupportedWithOffsets = 0x0010_0001;
    // ANACAP: optimized, non-optimized, inaccessible, persistent loss and change states reported; bit 6: ANAGRPID fixed.
    private const byte AnaCapabilities = 0x5F;
    private const byte AnaTransitionSeconds = 10;
    private const byte NsfeatIdentifiersNeverReused = 1 << 3;
    private const byte NmicShared = 0x01;
    // DLFEAT bits 2:0 = 001b: deallocated blocks read as zeros; bit 3: Write Zeroes may deallocate.
    private const byte DeallocateReadsZeroes = 0x09;

    private void Identify(NvmeTcpConnection connection, in SubmissionQueueEntry sqe)
    {
        Span<byte> page = stackalloc byte[IdentifyController.Size];
        page.Clear();
        var cns = (IdentifyCns)(byte)sqe.Cdw10;
        switch (cns)
        {
            case IdentifyCns.Controller:
                BuildIdentifyController(connection).Write(page);
                break;
            case IdentifyCns.Namespace when !IsDiscovery:
                {
                    if (!ValidNamespaceId(sqe.NamespaceId, allowBroadcast: true))
                    {
                        connection.Complete(sqe.CommandId, NvmeStatus.InvalidNamespaceOrFormat);
                        return;
                    }

                    // An allocated-but-inactive or broadcast NSID reads as zeros (NVMe base 2.0, 5.17.2.1).
                    if (Subsystem.FindNamespace(sqe.NamespaceId) is { } ns)
                    {
                        BuildIdentifyNamespace(ns, Subsystem.AnaGroupId).Write(page);
                    }

                    break;
                }

            case IdentifyCns.ActiveNamespaceList when !IsDiscovery:
                if (sqe.NamespaceId >= 0xFFFF_FFFE)
                {
                    connection.Complete(sqe.CommandId, NvmeStatus.InvalidNamespaceOrFormat);
                    return;
                }

                ActiveNamespaceList.Write(page, Subsystem.Namespaces.Select(n => n.NamespaceId), sqe.NamespaceId);
                break;
            case IdentifyCns.NamespaceIdDescriptorList when !IsDiscovery:
                {
                    if (Subsystem.FindNamespace(sqe.NamespaceId) is not { } ns)
                    {
                        connection.Complete(sqe.CommandId, NvmeStatus.InvalidNamespaceOrFormat);
                        return;
                    }

                    NamespaceIdDescriptor.WriteList(page,
                    [
                        new NamespaceIdDescriptor(NamespaceIdType.Nguid, ns.Nguid.ToArray()),
                        new NamespaceIdDescriptor(NamespaceIdType.Uuid, ns.Uuid.ToByteArray(bigEndian: true)),
                    ]);
                    break;
                }

            default:
                connection.Complete(sqe.CommandId, NvmeStatus.InvalidField);
                return;
        }

        SendAdminData(connection, sqe, page);
    }

    private static bool ValidNamespaceId(uint nsid, bool allowBroadcast) =>
        (nsid >= 1 && nsid <= MaxNamespaces) || (allowBroadcast && nsid == 0xFFFF_FFFF);

    internal IdentifyController BuildIdentifyController(NvmeTcpConnection connection)
    {
        var options = _target.Options;
        var mdtsExponent = (byte)BitOperations.Log2((uint)(options.MaxDataTransferSize / 4096));
        return new IdentifyController
        {
            SerialNumber = IsDiscovery ? _target.DiscoverySerialNumber : Subsystem.SerialNumber,
            ModelNumber = options.ModelNumber,
            FirmwareRevision = options.FirmwareRevision,
            RecommendedArbitrationBurst = RecommendedArbitrationBurst,
            MultiPathCapabilities = IsDiscovery ? (byte)0 : (byte)(CmicMultiPort | CmicMultiController | CmicAnaReporting),
            MaxDataTransferSizeExponent = mdtsExponent,
            ControllerId = ControllerId,
            Version = SpecVersion,
            OptionalAsyncEvents = IsDiscovery ? 0 : OaesNamespaceAttribute | OaesAnaChange,
            ControllerAttributes = CtrattHostId128 | CtrattTrafficBasedKeepAlive,
            ControllerType = IsDiscovery ? ControllerType.Discovery : ControllerType.Io,
            AbortCommandLimit = 3,
            AsyncEventRequestLimit = AsyncEventRequestLimit,
            FirmwareUpdates = 0x03,
            LogPageAttributes = 0x04,
            ErrorLogPageEntries = 0,
            WarningTemperature = 343,
            CriticalTemperature = 373,
            KeepAliveSupport = (ushort)options.KeepAliveGranularity100Ms,
            AnaTransitionTime = IsDiscovery ? (byte)0 : AnaTransitionSeconds,
            AnaCapabilities = IsDiscovery ? (byte)0 : AnaCapabilities,
            AnaGroupIdMax = IsDiscovery ? 0 : MaxAnaGroups,
            AnaGroupCount = IsDiscovery ? 0 : MaxAnaGroups,
            MaxOutstandingCommands = (ushort)options.MaxQueueEntries,
            NamespaceCount = IsDiscovery ? 0 : MaxNamespaces,
            OptionalNvmCommands = IsDiscovery ? (ushort)0 : (ushort)(OncsDatasetManagement | OncsWriteZeroes | OncsReservations),
            VolatileWriteCache = IsDiscovery ? (byte)0 : VwcPresentWithBroadcastFlush,
            SglSupport = SglsSupportedWithOffsets,
            MaxAllowedNamespaces = IsDiscovery ? 0 : MaxNamespaces,
            SubsystemNqn = Subsystem.Nqn,
            IoQueueCommandCapsuleSize = IsDiscovery ? 0 : (uint)((64 + options.InCapsuleDataSize) / 16),
            IoQueueResponseCapsuleSize = IsDiscovery ? 0 : 1u,
            InCapsuleDataOffset = 0,
            FabricsControllerAttributes = 0,
            MaxSglDataBlockDescriptors = 1,
            OptionalFabricsCommands = 0x0001,
            PowerState0MaxPower = 2500,
        };
    }

    internal static IdentifyNamespace BuildIdentifyNamespace(Subsystems.TargetNamespace ns, uint anaGroupId)
    {
        var volume = ns.Volume;
        var blocks = (ulong)(volume.SizeBytes / volume.BlockSize);
        return new IdentifyNamespace
        {
            SizeBlocks = blocks,
            CapacityBlocks = blocks,
            UtilizationBlocks = blocks,
            Features = NsfeatIdentifiersNeverReused,
            FormattedLbaSize = 0,
            MultiPathCapabilities = NmicShared,
            ReservationCapabilities = ns.Reservations.Capabilities,
            DeallocateFeatures = DeallocateReadsZeroes,
            AnaGroupId = anaGroupId,
            Nguid = ns.Nguid.ToArray(),
            LbaDataSizeExponent = (byte)BitOperations.Log2((uint)volume.BlockSize),
        };
    }
}
