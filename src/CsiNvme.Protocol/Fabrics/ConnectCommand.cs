using System.Buffers.Binary;
using System.Text;
using CsiNvme.Protocol.Commands;

namespace CsiNvme.Protocol.Fabrics;

/// <summary>
/// Connect command fields (NVMe-oF 1.1, 3.3, Figure 20): RECFMT@40, QID@42, SQSIZE@44 (0-based), CATTR@46, KATO@48 (ms).
/// </summary>
public readonly record struct ConnectCommand(ushort RecordFormat, ushort QueueId, ushort SubmissionQueueSize, byte ConnectAttributes, uint KeepAliveTimeoutMs)
{
    /// <summary>CATTR bit 2: the host disables SQ flow control (NVMe-oF 1.1, Figure 20).</summary>
    public bool SqFlowControlDisabled => (ConnectAttributes & 0x04) != 0;

    public static ConnectCommand From(in SubmissionQueueEntry sqe) => new(
        (ushort)sqe.Cdw10,
        (ushort)(sqe.Cdw10 >> 16),
        (ushort)sqe.Cdw11,
        (byte)(sqe.Cdw11 >> 16),
        sqe.Cdw12);

    public SubmissionQueueEntry ToSubmissionQueueEntry(ushort commandId, SglDescriptor data) => new(
        (byte)AdminOpcode.Fabrics, 0x40, commandId, (uint)FabricsCommandType.Connect, data,
        RecordFormat | ((uint)QueueId << 16),
        SubmissionQueueSize | ((uint)ConnectAttributes << 16),
        KeepAliveTimeoutMs, 0, 0, 0);
}

/// <summary>
/// The 1024-byte Connect data (NVMe-oF 1.1, 3.3, Figure 21): HOSTID@0 (16), CNTLID@16, SUBNQN@256, HOSTNQN@512.
/// </summary>
public sealed record ConnectData(Guid HostId, ushort ControllerId, string SubsystemNqn, string HostNqn)
{
    public const int Size = 1024;
    public const int SubsystemNqnOffset = 256;
    public const int HostNqnOffset = 512;
    public const int NqnFieldSize = 256;

    /// <summary>Admin queue Connects ask for a dynamic controller with CNTLID FFFFh.</summary>
    public const ushort DynamicControllerId = 0xFFFF;

    public static ConnectData Read(ReadOnlySpan<byte> data) => new(
        new Guid(data[..16], bigEndian: true),
        BinaryPrimitives.ReadUInt16LittleEndian(data[16..]),
        AsciiField.ReadNullTerminated(data.Slice(SubsystemNqnOffset, NqnFieldSize)),
        AsciiField.ReadNullTerminated(data.Slice(HostNqnOffset, NqnFieldSize)));

    public void Write(Span<byte> data)
    {
        data[..Size].Clear();
        HostId.TryWriteBytes(data[..16], bigEndian: true, out _);
        BinaryPrimitives.WriteUInt16LittleEndian(data[16..], ControllerId);
        Encoding.UTF8.GetBytes(SubsystemNqn, data.Slice(SubsystemNqnOffset, NqnFieldSize - 1));
        Encoding.UTF8.GetBytes(HostNqn, data.Slice(HostNqnOffset, NqnFieldSize - 1));
    }
}

/// <summary>Controller properties reachable with Property Get/Set (NVMe base 2.0, 3.1.3, Figure 33).</summary>
public static class PropertyOffset
{
    public const uint Capabilities = 0x00;
    public const uint Version = 0x08;
    public const uint ControllerConfiguration = 0x14;
    public const uint ControllerStatus = 0x1C;
    public const uint SubsystemReset = 0x20;
}

/// <summary>Property Get (NVMe-oF 1.1, 3.4, Figure 24): ATTRIB@40 bits 2:0 (0 = 4 bytes, 1 = 8 bytes), OFST@44. Property Set adds VALUE@48.</summary>
public readonly record struct PropertyCommand(bool EightBytes, uint Offset, ulong Value)
{
    public static PropertyCommand From(in SubmissionQueueEntry sqe) => new(
        (sqe.Cdw10 & 0x7) == 1,
        sqe.Cdw11,
        sqe.Cdw12 | ((ulong)sqe.Cdw13 << 32));
}
