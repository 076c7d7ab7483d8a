namespace CsiNvme.Protocol.Commands;

/// <summary>Status Code Type (NVMe base 2.0, 4.6.1.2, Figure 93).</summary>
public enum StatusCodeType : byte
{
    Generic = 0,
    CommandSpecific = 1,
    MediaAndDataIntegrity = 2,
    PathRelated = 3,
}

/// <summary>
/// An NVMe completion status as a value (SCT, SC, DNR), so the I/O path reports errors without exceptions.
/// Encodes into CQE DW3 bits 31:17 (NVMe base 2.0, 4.6.1, Figure 92): SC at bit 1, SCT at bit 9, DNR at bit 15.
/// </summary>
/// <remarks>
/// Held as one 32-bit value (SC in bits 7:0, SCT in 15:8, DNR at bit 16), not as three byte fields: the JIT spilled the
/// three-byte struct with a 16-bit and an 8-bit store and read it back with one 32-bit load, which the CPU cannot
/// forward from its store buffer, so that load waited for every older store to reach the cache. On the write path
/// those are the stores of the 4 KiB just copied into the volume, which miss: each write command stalled there for
/// the whole copy instead of going on to the next command.
/// </remarks>
public readonly struct NvmeStatus : IEquatable<NvmeStatus>
{
    private const uint DoNotRetryBit = 1u << 16;

    private readonly uint _value;

    public NvmeStatus(StatusCodeType type, byte code, bool doNotRetry)
    {
        _value = code | (uint)type << 8 | (doNotRetry ? DoNotRetryBit : 0);
    }

    public static readonly NvmeStatus Success = new(StatusCodeType.Generic, 0x00, false);

    // Generic command status (Figure 94).
    public static readonly NvmeStatus InvalidOpcode = Generic(0x01);
    public static readonly NvmeStatus InvalidField = Generic(0x02);
    public static readonly NvmeStatus CommandIdConflict = Generic(0x03);
    public static readonly NvmeStatus DataTransferError = Generic(0x04);
    public static readonly NvmeStatus InternalError = Generic(0x06);
    public static readonly NvmeStatus AbortRequested = Generic(0x07);
    public static readonly NvmeStatus InvalidNamespaceOrFormat = Generic(0x0B);
    public static readonly NvmeStatus CommandSequenceError = Generic(0x0C);
    public static readonly NvmeStatus InvalidSglSegmentDescriptor = Generic(0x0D);
    public static readonly NvmeStatus DataSglLengthInvalid = Generic(0x0F);
    public static readonly NvmeStatus SglDescriptorTypeInvalid = Generic(0x11);
    public static readonly NvmeStatus SglOffsetInvalid = Generic(0x16);
    public static readonly NvmeStatus HostIdentifierInconsistentFormat = Generic(0x18);
    public static readonly NvmeStatus KeepAliveTimerExpired = Generic(0x19);
    public static readonly NvmeStatus TransientTransportError = new(StatusCodeType.Generic, 0x22, false);
    public static readonly NvmeStatus LbaOutOfRange = Generic(0x80);
    public static readonly NvmeStatus CapacityExceeded = Generic(0x81);
    public static readonly NvmeStatus NamespaceNotReady = new(StatusCodeType.Generic, 0x82, false);
    public static readonly NvmeStatus ReservationConflict = Generic(0x83);

    // Command specific (Figure 95 and NVMe-oF 1.1, Figure 19 for Connect).
    public static readonly NvmeStatus InvalidQueueIdentifier = Specific(0x01);
    public static readonly NvmeStatus InvalidQueueSize = Specific(0x02);
    public static readonly NvmeStatus AsyncEventRequestLimitExceeded = Specific(0x05);
    public static readonly NvmeStatus InvalidLogPage = Specific(0x09);
    public static readonly NvmeStatus FeatureIdNotSaveable = Specific(0x0D);
    public static readonly NvmeStatus FeatureNotChangeable = Specific(0x0E);
    public static readonly NvmeStatus ConnectIncompatibleFormat = Specific(0x80);
    public static readonly NvmeStatus ConnectControllerBusy = Specific(0x81);
    public static readonly NvmeStatus ConnectInvalidParameters = Specific(0x82);
    public static readonly NvmeStatus ConnectRestartDiscovery = Specific(0x83);
    public static readonly NvmeStatus ConnectInvalidHost = Specific(0x84);

    /// <summary>
    /// Authentication Required (NVMe base 2.0, Figure 101, 91h): the queue must complete in-band authentication before it
    /// is served anything but Authentication Send/Receive.
    /// </summary>
    public static readonly NvmeStatus AuthenticationRequired = Specific(0x91);

    // Media and data integrity (Figure 96).
    public static readonly NvmeStatus WriteFault = new(StatusCodeType.MediaAndDataIntegrity, 0x80, false);
    public static readonly NvmeStatus UnrecoveredReadError = new(StatusCodeType.MediaAndDataIntegrity, 0x81, false);

    // Path related (Figure 97): a multipath host fails over on these instead of failing the I/O.
    public static readonly NvmeStatus AsymmetricAccessPersistentLoss = new(StatusCodeType.PathRelated, 0x01, false);
    public static readonly NvmeStatus AsymmetricAccessInaccessible = new(StatusCodeType.PathRelated, 0x02, false);
    public static readonly NvmeStatus AsymmetricAccessTransition = new(StatusCodeType.PathRelated, 0x03, false);

    /// <summary>Status Code Type (SCT).</summary>
    public StatusCodeType Type => (StatusCodeType)(byte)(_value >> 8);

    /// <summary>Status Code (SC), meaning per <see cref="Type"/>.</summary>
    public byte Code => (byte)_value;

    /// <summary>Do Not Retry (DNR): the same command would fail again.</summary>
    public bool DoNotRetry => (_value & DoNotRetryBit) != 0;

    public bool IsSuccess => (ushort)_value == 0;

    public static bool operator ==(NvmeStatus left, NvmeStatus right) => left._value == right._value;

    public static bool operator !=(NvmeStatus left, NvmeStatus right) => left._value != right._value;

    public bool Equals(NvmeStatus other) => _value == other._value;

    public override bool Equals(object? obj) => obj is NvmeStatus other && Equals(other);

    public override int GetHashCode() => (int)_value;

    /// <summary>The 16-bit CQE status field (bytes 14–15) with the phase tag clear.</summary>
    public ushort ToStatusField() => (ushort)((Code << 1) | ((byte)Type << 9) | (DoNotRetry ? 0x8000 : 0));

    public static NvmeStatus FromStatusField(ushort field) =>
        new((StatusCodeType)((field >> 9) & 0x7), (byte)(field >> 1), (field & 0x8000) != 0);

    public override string ToString() => $"SCT {(byte)Type:X} SC {Code:X2}{(DoNotRetry ? " DNR" : "")}";

    private static NvmeStatus Generic(byte code) => new(StatusCodeType.Generic, code, true);

    private static NvmeStatus Specific(byte code) => new(StatusCodeType.CommandSpecific, code, true);
}
