using System.Buffers.Binary;

namespace CsiNvme.Protocol.Identify;

/// <summary>Controller type, CNTRLTYPE@111 (NVMe base 2.0, Figure 275).</summary>
public enum ControllerType : byte
{
    Unspecified = 0,
    Io = 1,
    Discovery = 2,
    Administrative = 3,
}

/// <summary>
/// Identify Controller data structure, CNS 01h (NVMe base 2.0, 5.17.2.1, Figure 275; NVMe-oF 1.1, 4.1 for the
/// fabrics fields at 1792). Only the fields a fabrics target fills are modelled; everything else is zero.
/// </summary>
public sealed record IdentifyController
{
    public const int Size = 4096;

    public ushort VendorId { get; init; }
    public string SerialNumber { get; init; } = "";
    public string ModelNumber { get; init; } = "";
    public string FirmwareRevision { get; init; } = "";
    /// <summary>RAB@72: recommended arbitration burst (power of two).</summary>
    public byte RecommendedArbitrationBurst { get; init; }
    /// <summary>IEEE OUI@73 (3 bytes, LE).</summary>
    public uint IeeeOui { get; init; }
    /// <summary>CMIC@76: bit 0 multi-port, bit 1 multi-controller, bit 3 ANA reporting.</summary>
    public byte MultiPathCapabilities { get; init; }
    /// <summary>MDTS@77: 2^n units of CAP.MPSMIN (4 KiB); 0 means unlimited.</summary>
    public byte MaxDataTransferSizeExponent { get; init; }
    public ushort ControllerId { get; init; }
    /// <summary>VER@80, e.g. 0x00010400 for 1.4.</summary>
    public uint Version { get; init; }
    /// <summary>OAES@92: bit 8 namespace attribute notices, bit 11 ANA change notices, bit 31 discovery log change.</summary>
    public uint OptionalAsyncEvents { get; init; }
    /// <summary>CTRATT@96.</summary>
    public uint ControllerAttributes { get; init; }
    public ControllerType ControllerType { get; init; }
    /// <summary>ACL@258, 0-based.</summary>
    public byte AbortCommandLimit { get; init; }
    /// <summary>AERL@259, 0-based.</summary>
    public byte AsyncEventRequestLimit { get; init; }
    /// <summary>FRMW@260.</summary>
    public byte FirmwareUpdates { get; init; }
    /// <summary>LPA@261: bit 2 extended data for Get Log Page (NUMDU, LPO).</summary>
    public byte LogPageAttributes { get; init; }
    /// <summary>ELPE@262, 0-based.</summary>
    public byte ErrorLogPageEntries { get; init; }
    /// <summary>WCTEMP@266 and CCTEMP@268 in kelvin.</summary>
    public ushort WarningTemperature { get; init; }
    public ushort CriticalTemperature { get; init; }
    /// <summary>KAS@320 in 100 ms units; must be non-zero for Linux to run keep-alive.</summary>
    public ushort KeepAliveSupport { get; init; }
    /// <summary>
    /// ANATT@342 seconds, ANACAP@343, ANAGRPMAX@344, NANAGRPID@348 (NVMe base 2.0, Figure 275: NSETIDMAX@338 and
    /// ENDGIDMAX@340 come first).
    /// </summary>
    public byte AnaTransitionTime { get; init; }
    public byte AnaCapabilities { get; init; }
    public uint AnaGroupIdMax { get; init; }
    public uint AnaGroupCount { get; init; }
    /// <summary>SQES@512 (0x66) and CQES@513 (0x44).</summary>
    public byte SubmissionQueueEntrySize { get; init; } = 0x66;
    public byte CompletionQueueEntrySize { get; init; } = 0x44;
    /// <summary>MAXCMD@514: outstanding commands per queue.</summary>
    public ushort MaxOutstandingCommands { get; init; }
    /// <summary>NN@516: highest namespace id.</summary>
    public uint NamespaceCount { get; init; }
    /// <summary>ONCS@520: bit 2 DSM, bit 3 Write Zeroes.</summary>
    public ushort OptionalNvmCommands { get; init; }
    /// <summary>FUSES@522, FNA@524.</summary>
    public ushort FusedOperations { get; init; }
    public byte FormatNvmAttributes { get; init; }
    /// <summary>VWC@525: bit 0 a volatile write cache is present (enables Flush and FUA on Linux).</summary>
    public byte VolatileWriteCache { get; init; }
    /// <summary>AWUN@526 and AWUPF@528, 0-based logical blocks.</summary>
    public ushort AtomicWriteUnitNormal { get; init; }
    public ushort AtomicWriteUnitPowerFail { get; init; }
    /// <summary>SGLS@536.</summary>
    public uint SglSupport { get; init; }
    /// <summary>MNAN@540.</summary>
    public uint MaxAllowedNamespaces { get; init; }
    /// <summary>SUBNQN@768 (256 bytes, null terminated).</summary>
    public string SubsystemNqn { get; init; } = "";
    /// <summary>IOCCSZ@1792 in 16-byte units (SQE + in-capsule data).</summary>
    public uint IoQueueCommandCapsuleSize { get; init; }
    /// <summary>IORCSZ@1796 in 16-byte units.</summary>
    public uint IoQueueResponseCapsuleSize { get; init; }
    /// <summary>ICDOFF@1800 in 16-byte units; 0 puts in-capsule data right after the SQE.</summary>
    public ushort InCapsuleDataOffset { get; init; }
    /// <summary>FCATT@1802: bit 0 static controller model.</summary>
    public byte FabricsControllerAttributes { get; init; }
    /// <summary>MSDBD@1803: SGL data block descriptors per command.</summary>
    public byte MaxSglDataBlockDescriptors { get; init; }
    /// <summary>OFCS@1804: bit 0 Disconnect command supported.</summary>
    public ushort OptionalFabricsCommands { get; init; }
    /// <summary>Power state 0 maximum power (MP@2048) in 0.01 W.</summary>
    public ushort PowerState0MaxPower { get; init; }

    public void Write(Span<byte> destination)
    {
        var d = destination[..Size];
        d.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(d, VendorId);
        BinaryPrimitives.WriteUInt16LittleEndian(d[2..], VendorId);
        AsciiField.WriteSpacePadded(d.Slice(4, 20), SerialNumber);
        AsciiField.WriteSpacePadded(d.Slice(24, 40), ModelNumber);
        AsciiField.WriteSpacePadded(d.Slice(64, 8), FirmwareRevision);
        d[72] = RecommendedArbitrationBurst;
        d[73] = (byte)IeeeOui;
        d[74] = (byte)(IeeeOui >> 8);
        d[75] = (byte)(IeeeOui >> 16);
        d[76] = MultiPathCapabilities;
        d[77] = MaxDataTransferSizeExponent;
        BinaryPrimitives.WriteUInt16LittleEndian(d[78..], ControllerId);
        BinaryPrimitives.WriteUInt32LittleEndian(d[80..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(d[92..], OptionalAsyncEvents);
        BinaryPrimitives.WriteUInt32LittleEndian(d[96..], ControllerAttributes);
        d[111] = (byte)ControllerType;
        d[258] = AbortCommandLimit;
        d[259] = AsyncEventRequestLimit;
        d[260] = FirmwareUpdates;
        d[261] = LogPageAttributes;
        d[262] = ErrorLogPageEntries;
        BinaryPrimitives.WriteUInt16LittleEndian(d[266..], WarningTemperature);
        BinaryPrimitives.WriteUInt16LittleEndian(d[268..], CriticalTemperature);
        BinaryPrimitives.WriteUInt16LittleEndian(d[320..], KeepAliveSupport);
        d[342] = AnaTransitionTime;
        d[343] = AnaCapabilities;
        BinaryPrimitives.WriteUInt32LittleEndian(d[344..], AnaGroupIdMax);
        BinaryPrimitives.WriteUInt32LittleEndian(d[348..], AnaGroupCount);
        d[512] = SubmissionQueueEntrySize;
        d[513] = CompletionQueueEntrySize;
        BinaryPrimitives.WriteUInt16LittleEndian(d[514..], MaxOutstandingCommands);
        BinaryPrimitives.WriteUInt32LittleEndian(d[516..], NamespaceCount);
        BinaryPrimitives.WriteUInt16LittleEndian(d[520..], OptionalNvmCommands);
        BinaryPrimitives.WriteUInt16LittleEndian(d[522..], FusedOperations);
        d[524] = FormatNvmAttributes;
        d[525] = VolatileWriteCache;
        BinaryPrimitives.WriteUInt16LittleEndian(d[526..], AtomicWriteUnitNormal);
        BinaryPrimitives.WriteUInt16LittleEndian(d[528..], AtomicWriteUnitPowerFail);
        BinaryPrimitives.WriteUInt32LittleEndian(d[536..], SglSupport);
        BinaryPrimitives.WriteUInt32LittleEndian(d[540..], MaxAllowedNamespaces);
        AsciiField.WriteNullPadded(d.Slice(768, 256), SubsystemNqn);
        BinaryPrimitives.WriteUInt32LittleEndian(d[1792..], IoQueueCommandCapsuleSize);
        BinaryPrimitives.WriteUInt32LittleEndian(d[1796..], IoQueueResponseCapsuleSize);
        BinaryPrimitives.WriteUInt16LittleEndian(d[1800..], InCapsuleDataOffset);
        d[1802] = FabricsControllerAttributes;
        d[1803] = MaxSglDataBlockDescriptors;
        BinaryPrimitives.WriteUInt16LittleEndian(d[1804..], OptionalFabricsCommands);
        BinaryPrimitives.WriteUInt16LittleEndian(d[2048..], PowerState0MaxPower);
    }

    public static IdentifyController Read(ReadOnlySpan<byte> s) => new()
    {
        VendorId = BinaryPrimitives.ReadUInt16LittleEndian(s),
        SerialNumber = AsciiField.ReadSpacePadded(s.Slice(4, 20)),
        ModelNumber = AsciiField.ReadSpacePadded(s.Slice(24, 40)),
        FirmwareRevision = AsciiField.ReadSpacePadded(s.Slice(64, 8)),
        RecommendedArbitrationBurst = s[72],
        IeeeOui = (uint)(s[73] | (s[74] << 8) | (s[75] << 16)),
        MultiPathCapabilities = s[76],
        MaxDataTransferSizeExponent = s[77],
        ControllerId = BinaryPrimitives.ReadUInt16LittleEndian(s[78..]),
        Version = BinaryPrimitives.ReadUInt32LittleEndian(s[80..]),
        OptionalAsyncEvents = BinaryPrimitives.ReadUInt32LittleEndian(s[92..]),
        ControllerAttributes = BinaryPrimitives.ReadUInt32LittleEndian(s[96..]),
        ControllerType = (ControllerType)s[111],
        AbortCommandLimit = s[258],
        AsyncEventRequestLimit = s[259],
        FirmwareUpdates = s[260],
        LogPageAttributes = s[261],
        ErrorLogPageEntries = s[262],
        WarningTemperature = BinaryPrimitives.ReadUInt16LittleEndian(s[266..]),
        CriticalTemperature = BinaryPrimitives.ReadUInt16LittleEndian(s[268..]),
        KeepAliveSupport = BinaryPrimitives.ReadUInt16LittleEndian(s[320..]),
        AnaTransitionTime = s[342],
        AnaCapabilities = s[343],
        AnaGroupIdMax = BinaryPrimitives.ReadUInt32LittleEndian(s[344..]),
        AnaGroupCount = BinaryPrimitives.ReadUInt32LittleEndian(s[348..]),
        SubmissionQueueEntrySize = s[512],
        CompletionQueueEntrySize = s[513],
        MaxOutstandingCommands = BinaryPrimitives.ReadUInt16LittleEndian(s[514..]),
        NamespaceCount = BinaryPrimitives.ReadUInt32LittleEndian(s[516..]),
        OptionalNvmCommands = BinaryPrimitives.ReadUInt16LittleEndian(s[520..]),
        FusedOperations = BinaryPrimitives.ReadUInt16LittleEndian(s[522..]),
        FormatNvmAttributes = s[524],
        VolatileWriteCache = s[525],
        AtomicWriteUnitNormal = BinaryPrimitives.ReadUInt16LittleEndian(s[526..]),
        AtomicWriteUnitPowerFail = BinaryPrimitives.ReadUInt16LittleEndian(s[528..]),
        SglSupport = BinaryPrimitives.ReadUInt32LittleEndian(s[536..]),
        MaxAllowedNamespaces = BinaryPrimitives.ReadUInt32LittleEndian(s[540..]),
        SubsystemNqn = AsciiField.ReadNullTerminated(s.Slice(768, 256)),
        IoQueueCommandCapsuleSize = BinaryPrimitives.ReadUInt32LittleEndian(s[1792..]),
        IoQueueResponseCapsuleSize = BinaryPrimitives.ReadUInt32LittleEndian(s[1796..]),
        InCapsuleDataOffset = BinaryPrimitives.ReadUInt16LittleEndian(s[1800..]),
        FabricsControllerAttributes = s[1802],
        MaxSglDataBlockDescriptors = s[1803],
        OptionalFabricsCommands = BinaryPrimitives.ReadUInt16LittleEndian(s[1804..]),
        PowerState0MaxPower = BinaryPrimitives.ReadUInt16LittleEndian(s[2048..]),
    };
}
