using CsiNvme.Metadata;
using CsiNvme.Server.Metrics;
using CsiNvme.Storage;
using CsiNvme.Target.Subsystems;

namespace CsiNvme.Server.Volumes;

/// <summary>A served volume: its persisted record and the live objects built from it.</summary>
internal sealed class ManagedVolume(VolumeRecord record, IBlockVolume storage, Subsystem subsystem, TargetNamespace ns, VolumeIoMetrics metrics)
{
    private VolumeRecord _record = record;

    /// <summary>The record as last persisted; replaced (never mutated) under the manager's mutation lock.</summary>
    public VolumeRecord Record
    {
        get => Volatile.Read(ref _record);
        set => Volatile.Write(ref _record, value);
    }

    public IBlockVolume Storage { get; } = storage;

    public Subsystem Subsystem { get; } = subsystem;

    public TargetNamespace Namespace { get; } = ns;

    public VolumeIoMetrics Metrics { get; } = metrics;
}
