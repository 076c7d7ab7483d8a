using Csi.V1;
using CsiNvme.Csi.Authentication;
using CsiNvme.Csi.Hosting;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using NodeBase = Csi.V1.Node.NodeBase;

namespace CsiNvme.Csi.Node;

/// <summary>
/// CSI Node service: connects volumes through the kernel's NVMe/TCP host, finds their namespace by UUID or
/// NGUID, formats blank filesystem volumes and mounts them, and undoes all of it. Calls for one volume run
/// one at a time; every call is idempotent, and the staged-volume records let a restarted driver finish
/// what a crashed one began.
/// </summary>
internal sealed class NodeService : NodeBase
{
    private static readonly NodeServiceCapability.Types.RPC.Types.Type[] _capabilities =
    [
        NodeServiceCapability.Types.RPC.Types.Type.StageUnstageVolume,
        NodeServiceCapability.Types.RPC.Types.Type.GetVolumeStats,
        NodeServiceCapability.Types.RPC.Types.Type.ExpandVolume,
        NodeServiceCapability.Types.RPC.Types.Type.VolumeCondition,
        NodeServiceCapability.Types.RPC.Types.Type.SingleNodeMultiWriter,
    ];

    private readonly NodeOptions _options;
    private readonly INodePlatform _platform;
    private readonly NodeStateStore _state;
    private readonly NodeTopology _topology;
    private readonly FabricsPaths _paths;
    private readonly PathKeeper _keeper;
    private readonly NodePathMetrics _metrics;
    private readonly ILogger<NodeService> _logger;
    private readonly KeyedAsyncLock _volumeLocks;

    public NodeService(
        NodeOptions options,
        INodePlatform platform,
        NodeStateStore state,
        NodeTopology topology,
        FabricsPaths paths,
        PathKeeper keeper,
        NodePathMetrics metrics,
        [FromKeyedServices(NodeModule.VolumeLocksKey)] KeyedAsyncLock volumeLocks,
        ILogger<NodeService> logger)
    {
        _options = options;
        _platform = platform;
        _state = state;
        _topology = topology;
        _paths = paths;
        _keeper = keeper;
        _metrics = metrics;
        _volumeLocks = volumeLocks;
        _logger = logger;
        NodeLog.Started(logger, options.Identity.NodeName, options.Identity.HostNqn, options.Identity.HostId, state.Directory);
    }

    private string HostNqn => _options.Identity.HostNqn;

    public override Task<NodeGetCapabilitiesResponse> NodeGetCapabilities(NodeGetCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new NodeGetCapabilitiesResponse();
        foreach (var type in _capabilities)
        {
            response.Capabilities.Add(new NodeServiceCapability { Rpc = new NodeServiceCapability.Types.RPC { Type = type } });
        }

        return Task.FromResult(response);
    }

    public override async Task<NodeGetInfoResponse> NodeGetInfo(NodeGetInfoRequest request, ServerCallContext context)
    {
        var topology = new Topology();
        foreach (var (key, value) in await _topology.GetAsync(context.CancellationToken))
        {
            topology.Segments[key] = value;
        }

        return new NodeGetInfoResponse
        {
            NodeId = _options.Identity.NodeId,
            MaxVolumesPerNode = _options.MaxVolumesPerNode,
            AccessibleTopology = topology,
        };
    }

    public override async Task<NodeStageVolumeResponse> NodeStageVolume(NodeStageVolumeRequest request, ServerCallContext context)
    {
        var volumeId = Required(request.VolumeId, "volume_id");
        var stagingPath = RequiredPath(request.StagingTargetPath, "staging_target_path");
        var capability = VolumeAccess.From(request.VolumeCapability);
        var nqn = ContextValue(request.PublishContext, request.VolumeContext, "nqn")
            ?? throw Invalid("publish_context and volume_context lack nqn (was ControllerPublishVolume called?)");
        var targetsText = ContextValue(request.PublishContext, request.VolumeContext, "targets")
            ?? throw Invalid("publish_context lacks targets (was ControllerPublishVolume called?)");
        var uuid = ContextValue(request.PublishContext, request.VolumeContext, "uuid") ?? string.Empty;
        var nguid = ContextValue(request.PublishContext, request.VolumeContext, "nguid") ?? string.Empty;
        if (uuid.Length == 0 && nguid.Length == 0)
        {
            throw Invalid("publish_context and volume_context lack both uuid and nguid: the namespace cannot be identified");
        }

        IReadOnlyList<FabricsTarget> targets;
        FabricsConnectSettings settings;
        int replicas;
        try
        {
            targets = FabricsTarget.ParseList(targetsText);
            replicas = ReplicasOf(request.PublishContext, request.VolumeContext);
            settings = FabricsConnectSettings.FromVolumeContext(request.VolumeContext, _options.ConnectDefaults.For(replicas))
                with { Dhchap = DhchapCsiSecrets.From(request.Secrets) };
        }
        catch (FormatException e)
        {
            throw Invalid(e.Message);
        }

        var multipath = _platform.Sysfs.NativeMultipath;
        if (multipath == false && replicas > 1)
        {
            // Each controller would be a block device of its own, and the node would write through one of them, which
            // goes inaccessible when the volume's primary moves.
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"volume {volumeId} has {replicas} replicas, which needs the kernel's native NVMe multipath, and it is off on this node " +
                "(nvme_core.multipath=N); boot the node with nvme_core.multipath=Y"));
        }

        using var held = await _volumeLocks.AcquireAsync(volumeId, context.CancellationToken);
        var existing = _state.Load(volumeId);
        if (existing is not null &&
            (MountTable.NormalisePath(existing.StagingPath) != MountTable.NormalisePath(stagingPath) ||
             existing.SubsystemNqn != nqn || existing.IsBlock != capability.IsBlock || existing.FsType != capability.FsType))
        {
            throw new RpcException(new Status(StatusCode.AlreadyExists,
                $"volume {volumeId} is already staged at {existing.StagingPath} as {Describe(existing)}; it cannot be staged at {stagingPath} as {capability}"));
        }

        var published = targets.Select(t => t.ToString()).ToList();
        var staged = existing is null
            ? new StagedVolume
            {
                VolumeId = volumeId,
                StagingPath = MountTable.NormalisePath(stagingPath),
                SubsystemNqn = nqn,
                Uuid = uuid,
                Nguid = nguid,
                Targets = published,
                IsBlock = capability.IsBlock,
                FsType = capability.FsType,
            }
            // A repeated stage may name listeners the record lacks (a replica added since): the keeper keeps them all.
            : existing with { Targets = [.. existing.Targets.Union(published, StringComparer.Ordinal)] };
        staged = staged with { Replicas = replicas, ConnectSettings = settings, Authenticated = settings.Dhchap is not null };
        // Recorded before the first kernel action: an unstage after a crash from here on still knows the subsystem.
        _state.Save(staged);

        var results = multipath == false
            ? await ConnectOnePathAsync(volumeId, nqn, targets, settings, context.CancellationToken)
            : await _paths.ConnectAsync(volumeId, nqn, targets, settings, context.CancellationToken);
        if (!results.Any(r => r.Controller is not null))
        {
            throw new RpcException(new Status(StatusCode.Internal,
                $"volume {volumeId}: cannot connect to {nqn}: {string.Join("; ", results.Select(r => $"{r.Target}: {r.Error}"))}"));
        }

        // One path is enough to use the volume; the path keeper connects the others once their listeners answer.
        var device = await WaitForNamespaceAsync(staged, context.CancellationToken);
        var devicePath = EnsureDeviceNode(ref staged, device);
        _keeper.Trigger();
        if (capability.IsBlock)
        {
            return new NodeStageVolumeResponse();
        }

        await MountFilesystemAsync(staged, capability, device, devicePath, context.CancellationToken);
        return new NodeStageVolumeResponse();
    }

    public override async Task<NodeUnstageVolumeResponse> NodeUnstageVolume(NodeUnstageVolumeRequest request, ServerCallContext context)
    {
        var volumeId = Required(request.VolumeId, "volume_id");
        var stagingPath = RequiredPath(request.StagingTargetPath, "staging_target_path");
        using var held = await _volumeLocks.AcquireAsync(volumeId, context.CancellationToken);
        UnmountAll(volumeId, stagingPath);

        var staged = _state.Load(volumeId);
        if (staged is null)
        {
            // Never staged here, or unstaged already: nothing is left to undo.
            return new NodeUnstageVolumeResponse();
        }

        var device = FindNamespace(staged);
        if (device is not null && MountsOf(device).FirstOrDefault() is { } busy)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"volume {volumeId} is still mounted at {busy.MountPoint}: unpublish it first"));
        }

        using (await _paths.LockAsync(context.CancellationToken))
        {
            var others = _state.All().Where(s => s.VolumeId != volumeId && s.SubsystemNqn == staged.SubsystemNqn).Select(s => s.VolumeId).ToList();
            if (others.Count > 0)
            {
                NodeLog.SubsystemStillUsed(_logger, volumeId, staged.SubsystemNqn, string.Join(", ", others));
            }
            else
            {
                await _paths.DisconnectAllLockedAsync(volumeId, staged.SubsystemNqn, context.CancellationToken);
            }
        }

        foreach (var node in staged.CreatedDeviceNodes)
        {
            if (_platform.Stat(node).Kind == NodeFileKind.BlockDevice)
            {
                File.Delete(node);
            }
        }

        _state.Delete(volumeId);
        _metrics.Forget(volumeId);
        return new NodeUnstageVolumeResponse();
    }

    public override async Task<NodePublishVolumeResponse> NodePublishVolume(NodePublishVolumeRequest request, ServerCallContext context)
    {
        var volumeId = Required(request.VolumeId, "volume_id");
        var targetPath = MountTable.NormalisePath(RequiredPath(request.TargetPath, "target_path"));
        var capability = VolumeAccess.From(request.VolumeCapability);
        if (string.IsNullOrWhiteSpace(request.StagingTargetPath))
        {
            // STAGE_UNSTAGE_VOLUME is offered, so the CO must stage first and name the staging path here.
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"volume {volumeId}: staging_target_path is not set; this node stages volumes (NodeStageVolume first)"));
        }

        var stagingPath = RequiredPath(request.StagingTargetPath, "staging_target_path");
        var readOnly = request.Readonly || capability.IsReaderOnly;

        using var held = await _volumeLocks.AcquireAsync(volumeId, context.CancellationToken);
        var staged = _state.Load(volumeId) ?? throw new RpcException(new Status(StatusCode.FailedPrecondition,
            $"volume {volumeId} is not staged on this node (NodeStageVolume first)"));
        if (staged.StagingPath != MountTable.NormalisePath(stagingPath))
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"volume {volumeId} is staged at {staged.StagingPath}, not at {stagingPath}"));
        }

        if (staged.IsBlock != capability.IsBlock)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"volume {volumeId} was staged as {Describe(staged)} and cannot be published as {capability}"));
        }

        var (extraFlags, _) = MountFlags.Parse(capability.MountFlags);
        var remountFlags = extraFlags | (readOnly ? LinuxNodePlatform.MS_RDONLY : 0);
        var mounts = _platform.Mounts();
        if (capability.IsBlock)
        {
            var device = FindNamespace(staged) ?? throw new RpcException(new Status(StatusCode.NotFound,
                $"the namespace of volume {volumeId} (uuid {staged.Uuid}, nguid {staged.Nguid}) is not attached"));
            var devicePath = EnsureDeviceNode(ref staged, device);
            if (MountTable.At(mounts, targetPath).LastOrDefault() is { } current)
            {
                var status = _platform.Stat(targetPath);
                if (status.Kind == NodeFileKind.BlockDevice && status.DeviceNumber == device.DeviceNumber && current.IsReadOnly == readOnly)
                {
                    return new NodePublishVolumeResponse();
                }

                throw new RpcException(new Status(StatusCode.AlreadyExists,
                    $"{targetPath} is already a mount of something else ({current.Source}{current.Root}, {current.MountOptions})"));
            }

            PrepareBlockTarget(targetPath);
            BindMount(volumeId, devicePath, targetPath, remountFlags);
            return new NodePublishVolumeResponse();
        }

        var stagingMount = MountTable.At(mounts, staged.StagingPath).LastOrDefault() ?? throw new RpcException(new Status(
            StatusCode.FailedPrecondition, $"volume {volumeId}: nothing is mounted at the staging path {staged.StagingPath}"));
        if (MountTable.At(mounts, targetPath).LastOrDefault() is { } existing)
        {
            if (existing.Major == stagingMount.Major && existing.Minor == stagingMount.Minor && existing.Root == stagingMount.Root &&
                existing.IsReadOnly == readOnly)
            {
                return new NodePublishVolumeResponse();
            }

            throw new RpcException(new Status(StatusCode.AlreadyExists,
                $"{targetPath} is already a mount of something else ({existing.Source}{existing.Root}, {existing.MountOptions})"));
        }

        Directory.CreateDirectory(targetPath);
        BindMount(volumeId, staged.StagingPath, targetPath, remountFlags);
        return new NodePublishVolumeResponse();
    }

    public override async Task<NodeUnpublishVolumeResponse> NodeUnpublishVolume(NodeUnpublishVolumeRequest request, ServerCallContext context)
    {
        var volumeId = Required(request.VolumeId, "volume_id");
        var targetPath = MountTable.NormalisePath(RequiredPath(request.TargetPath, "target_path"));
        using var held = await _volumeLocks.AcquireAsync(volumeId, context.CancellationToken);
        UnmountAll(volumeId, targetPath);
        switch (_platform.Stat(targetPath).Kind)
        {
            case NodeFileKind.Directory:
                Directory.Delete(targetPath);
                break;
            case NodeFileKind.Missing:
                break;
            default:
                File.Delete(targetPath);
                break;
        }

        return new NodeUnpublishVolumeResponse();
    }

    public override async Task<NodeGetVolumeStatsResponse> NodeGetVolumeStats(NodeGetVolumeStatsRequest request, ServerCallContext context)
    {
        var volumeId = Required(request.VolumeId, "volume_id");
        var volumePath = VolumePath(volumeId, request.VolumePath);
        using var held = await _volumeLocks.AcquireAsync(volumeId, context.CancellationToken);
        var status = _platform.Stat(volumePath);
        if (status.Kind == NodeFileKind.Missing)
        {
            throw NotOnPath(volumeId, volumePath, "it does not exist");
        }

        var staged = _state.Load(volumeId);
        var mounted = MountTable.At(_platform.Mounts(), volumePath).Any();
        if (staged is null && !mounted)
        {
            // Unknown here and nothing mounted there: no volume to report on. A staged volume whose path lost
            // its mount is reported below, as an abnormal condition.
            throw NotOnPath(volumeId, volumePath, "the volume is not staged on this node and nothing is mounted there");
        }

        var response = new NodeGetVolumeStatsResponse();
        var problems = new List<string>();
        var device = staged is null ? null : FindNamespace(staged);
        VolumePathReport? paths = null;
        if (staged is null)
        {
            problems.Add("the volume is not staged on this node");
        }
        else
        {
            if (device is null)
            {
                problems.Add($"its namespace (uuid {staged.Uuid}) is no longer attached");
            }

            paths = VolumePathReport.Read(_platform.Sysfs, HostNqn, staged);
            if (paths.IsDegraded)
            {
                problems.Add(paths.Describe());
            }
        }

        if (status.Kind == NodeFileKind.BlockDevice)
        {
            if (device is not null && status.DeviceNumber == device.DeviceNumber)
            {
                response.Usage.Add(new VolumeUsage { Unit = VolumeUsage.Types.Unit.Bytes, Total = device.SizeBytes });
            }
            else
            {
                problems.Add($"{volumePath} is a block device other than the volume's namespace");
            }
        }
        else if (status.Kind == NodeFileKind.Directory && mounted)
        {
            var usage = _platform.StatFs(volumePath);
            response.Usage.Add(new VolumeUsage { Unit = VolumeUsage.Types.Unit.Bytes, Total = usage.TotalBytes, Available = usage.AvailableBytes, Used = usage.UsedBytes });
            response.Usage.Add(new VolumeUsage { Unit = VolumeUsage.Types.Unit.Inodes, Total = usage.TotalInodes, Available = usage.FreeInodes, Used = usage.UsedInodes });
        }
        else
        {
            problems.Add($"{volumePath} is no longer a mount of the volume");
        }

        response.VolumeCondition = problems.Count == 0
            ? new VolumeCondition { Abnormal = false, Message = "volume is attached; " + paths!.Describe() }
            : new VolumeCondition { Abnormal = true, Message = string.Join("; ", problems) };
        return response;
    }

    public override async Task<NodeExpandVolumeResponse> NodeExpandVolume(NodeExpandVolumeRequest request, ServerCallContext context)
    {
        var volumeId = Required(request.VolumeId, "volume_id");
        var volumePath = VolumePath(volumeId, request.VolumePath);
        if (request.CapacityRange is { } range && (range.RequiredBytes < 0 || range.LimitBytes < 0 ||
            (range.LimitBytes > 0 && range.RequiredBytes > range.LimitBytes)))
        {
            throw Invalid($"capacity_range {range.RequiredBytes}..{range.LimitBytes} is not valid");
        }

        // Optional; when given it must be one the volume was staged with.
        var capability = request.VolumeCapability is null ? null : VolumeAccess.From(request.VolumeCapability);
        using var held = await _volumeLocks.AcquireAsync(volumeId, context.CancellationToken);
        if (_platform.Stat(volumePath).Kind == NodeFileKind.Missing)
        {
            throw NotOnPath(volumeId, volumePath, "it does not exist");
        }

        var staged = _state.Load(volumeId) ?? throw new RpcException(new Status(StatusCode.NotFound,
            $"volume {volumeId} is not staged on this node"));
        if (capability is not null && (capability.IsBlock != staged.IsBlock || (!capability.IsBlock && capability.FsType != staged.FsType)))
        {
            throw Invalid($"volume {volumeId} was staged as {Describe(staged)}; it cannot be expanded as {capability}");
        }

        var device = FindNamespace(staged) ?? throw new RpcException(new Status(StatusCode.NotFound,
            $"the namespace of volume {volumeId} is not attached"));
        if (request.CapacityRange is { LimitBytes: > 0 } limited && device.SizeBytes > limited.LimitBytes)
        {
            throw new RpcException(new Status(StatusCode.OutOfRange,
                $"volume {volumeId} is already {device.SizeBytes} bytes, more than limit_bytes {limited.LimitBytes}; volumes do not shrink"));
        }

        var required = request.CapacityRange?.RequiredBytes ?? 0;
        if (device.SizeBytes < required)
        {
            device = await WaitForGrowthAsync(volumeId, staged, device, required, context.CancellationToken);
        }

        if (staged.IsBlock)
        {
            return new NodeExpandVolumeResponse { CapacityBytes = device.SizeBytes };
        }

        var devicePath = EnsureDeviceNode(ref staged, device);
        var (content, description) = FilesystemSignature.Probe(devicePath);
        var (tool, arguments) = content switch
        {
            DeviceContent.Ext4 => ("resize2fs", new[] { devicePath }),
            DeviceContent.Xfs => ("xfs_growfs", new[] { staged.StagingPath }),
            _ => throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"volume {volumeId}: {devicePath} holds {description}, not a filesystem this driver grows")),
        };
        await RunToolAsync(volumeId, tool, arguments, context.CancellationToken);
        NodeLog.FilesystemGrown(_logger, volumeId, content.ToString().ToLowerInvariant(), devicePath, device.SizeBytes);
        return new NodeExpandVolumeResponse { CapacityBytes = device.SizeBytes };
    }

    /// <summary>Without native multipath every controller is a block device of its own: the first listener that connects, or the connected one.</summary>
    private async Task<IReadOnlyList<PathConnectResult>> ConnectOnePathAsync(
        string volumeId, string nqn, IReadOnlyList<FabricsTarget> targets, FabricsConnectSettings settings, CancellationToken cancellationToken)
    {
        if (_platform.Sysfs.ControllersOf(nqn, HostNqn).FirstOrDefault(c => c.IsActive) is { } connected)
        {
            return [new PathConnectResult(targets[0], connected.Name, true, null)];
        }

        var results = new List<PathConnectResult>();
        foreach (var target in targets)
        {
            var result = (await _paths.ConnectAsync(volumeId, nqn, [target], settings, cancellationToken))[0];
            results.Add(result);
            if (result.Controller is not null)
            {
                break;
            }
        }

        return results;
    }

    private async Task<NvmeBlockDevice> WaitForNamespaceAsync(StagedVolume staged, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + _options.DeviceTimeout;
        while (true)
        {
            var devices = _platform.Sysfs.FindNamespaces(staged.Uuid, staged.Nguid).ToList();
            if (devices.Count > 1)
            {
                // Native multipath did not join the controllers (it is off, or the subsystem does not report several
                // controllers): each is a device of its own, and writing through one of them is not multipath.
                throw new RpcException(new Status(StatusCode.FailedPrecondition,
                    $"volume {staged.VolumeId}: {devices.Count} block devices ({string.Join(", ", devices.Select(d => d.Name))}) carry its namespace " +
                    "instead of one multipath device; the kernel's native NVMe multipath (nvme_core.multipath=Y) is needed for several paths"));
            }

            if (devices.Count == 1)
            {
                var device = devices[0];
                NodeLog.DeviceFound(_logger, staged.VolumeId, device.Name, device.SizeBytes);
                return device;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new RpcException(new Status(StatusCode.NotFound,
                    $"volume {staged.VolumeId}: no namespace with uuid '{staged.Uuid}' or nguid '{staged.Nguid}' appeared within {_options.DeviceTimeout.TotalSeconds:F0} s of connecting to {staged.SubsystemNqn}"));
            }

            await Task.Delay(100, cancellationToken);
        }
    }

    private async Task<NvmeBlockDevice> WaitForGrowthAsync(string volumeId, StagedVolume staged, NvmeBlockDevice device, long required, CancellationToken cancellationToken)
    {
        // The Namespace Attribute Changed event normally updates the size on its own; a rescan covers a
        // missed event (and hosts that mask it).
        var deadline = DateTime.UtcNow + _options.ResizeTimeout;
        var rescanAt = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        var rescanned = false;
        while (true)
        {
            var current = _platform.Sysfs.ReadBlockDevice(device.Name) ?? throw new RpcException(new Status(StatusCode.NotFound,
                $"volume {volumeId}: {device.Name} disappeared while waiting for its new size"));
            if (current.SizeBytes >= required)
            {
                return current;
            }

            if (!rescanned && DateTime.UtcNow >= rescanAt)
            {
                foreach (var controller in _platform.Sysfs.ControllersOf(staged.SubsystemNqn, HostNqn).Where(c => c.IsLive))
                {
                    NodeLog.Rescanning(_logger, volumeId, controller.Name);
                    _platform.Sysfs.WriteControllerAttribute(controller.Name, "rescan_controller", "1");
                }

                rescanned = true;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new RpcException(new Status(StatusCode.Internal,
                    $"volume {volumeId}: {device.Name} is still {current.SizeBytes} bytes, {required} required, after a rescan"));
            }

            await Task.Delay(100, cancellationToken);
        }
    }

    private NvmeBlockDevice? FindNamespace(StagedVolume staged) => _platform.Sysfs.FindNamespace(staged.Uuid, staged.Nguid);

    /// <summary>
    /// The device node of the namespace, created from /sys/block/X/dev when nothing (udev, devtmpfs)
    /// made it; a stale node with other numbers is replaced.
    /// </summary>
    private string EnsureDeviceNode(ref StagedVolume staged, NvmeBlockDevice device)
    {
        var path = Path.Combine(_platform.DeviceDirectory, device.Name);
        var status = _platform.Stat(path);
        if (status.Kind == NodeFileKind.BlockDevice && status.DeviceNumber == device.DeviceNumber)
        {
            return path;
        }

        if (status.Kind != NodeFileKind.Missing)
        {
            File.Delete(path);
        }

        _platform.MakeBlockDeviceNode(path, device.Major, device.Minor);
        NodeLog.DeviceNodeCreated(_logger, staged.VolumeId, path, device.Major, device.Minor);
        if (!staged.CreatedDeviceNodes.Contains(path))
        {
            staged = staged with { CreatedDeviceNodes = [.. staged.CreatedDeviceNodes, path] };
            _state.Save(staged);
        }

        return path;
    }

    private async Task MountFilesystemAsync(StagedVolume staged, VolumeAccess capability, NvmeBlockDevice device, string devicePath, CancellationToken cancellationToken)
    {
        var volumeId = staged.VolumeId;
        if (MountTable.At(_platform.Mounts(), staged.StagingPath).LastOrDefault() is { } current)
        {
            if (current.Major == device.Major && current.Minor == device.Minor)
            {
                return;
            }

            throw new RpcException(new Status(StatusCode.AlreadyExists,
                $"staging path {staged.StagingPath} already has {current.Source} ({current.FsType}) mounted"));
        }

        var (content, description) = await ProbeAsync(devicePath, cancellationToken);
        var wanted = capability.FsType == "xfs" ? DeviceContent.Xfs : DeviceContent.Ext4;
        if (content == DeviceContent.Blank)
        {
            if (capability.IsReaderOnly)
            {
                throw new RpcException(new Status(StatusCode.FailedPrecondition,
                    $"volume {volumeId} has no filesystem and is accessed read-only: nothing to mount"));
            }

            NodeLog.Formatting(_logger, volumeId, devicePath, capability.FsType);
            var (tool, arguments) = wanted == DeviceContent.Xfs
                ? ("mkfs.xfs", new[] { "-q", devicePath })
                : ("mkfs.ext4", new[] { "-F", "-q", "-m", "0", devicePath });
            await RunToolAsync(volumeId, tool, arguments, cancellationToken);
        }
        else if (content != wanted)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"volume {volumeId}: {devicePath} already holds {description}, not {capability.FsType}; it is never reformatted"));
        }

        var (flags, data) = MountFlags.Parse(capability.MountFlags);
        if (capability.IsReaderOnly)
        {
            flags |= LinuxNodePlatform.MS_RDONLY;
        }

        Directory.CreateDirectory(staged.StagingPath);
        try
        {
            _platform.Mount(devicePath, staged.StagingPath, capability.FsType, flags, data);
        }
        catch (NodeSystemException e)
        {
            throw new RpcException(new Status(StatusCode.Internal, $"volume {volumeId}: {e.Message}"));
        }

        NodeLog.Mounted(_logger, volumeId, devicePath, staged.StagingPath);
    }

    private async Task<(DeviceContent Content, string Description)> ProbeAsync(string devicePath, CancellationToken cancellationToken)
    {
        var result = FilesystemSignature.Probe(devicePath);
        if (result.Content != DeviceContent.Blank || _platform.FindTool("blkid") is null)
        {
            return result;
        }

        // A second opinion before formatting: blkid knows many more signatures (exit 2 = none found).
        var blkid = await _platform.RunToolAsync("blkid", ["-p", "-o", "value", "-s", "TYPE", devicePath], TimeSpan.FromSeconds(30), cancellationToken);
        var type = blkid.Output.Trim();
        return blkid.ExitCode switch
        {
            0 when type == "ext4" || type == "ext3" || type == "ext2" => (DeviceContent.Ext4, type),
            0 when type == "xfs" => (DeviceContent.Xfs, type),
            0 => (DeviceContent.Other, type.Length > 0 ? type : "an unnamed signature"),
            2 => result,
            _ => throw new RpcException(new Status(StatusCode.Internal, $"blkid {devicePath} failed ({blkid.ExitCode}): {blkid.Output}")),
        };
    }

    private async Task RunToolAsync(string volumeId, string tool, string[] arguments, CancellationToken cancellationToken)
    {
        ToolResult result;
        try
        {
            result = await _platform.RunToolAsync(tool, arguments, _options.ToolTimeout, cancellationToken);
        }
        catch (Exception e) when (e is FileNotFoundException or TimeoutException)
        {
            throw new RpcException(new Status(StatusCode.Internal, $"volume {volumeId}: {e.Message}"));
        }

        if (result.ExitCode != 0)
        {
            throw new RpcException(new Status(StatusCode.Internal,
                $"volume {volumeId}: {tool} {string.Join(' ', arguments)} exited with {result.ExitCode}: {result.Output}"));
        }
    }

    private void BindMount(string volumeId, string source, string target, ulong remountFlags)
    {
        try
        {
            _platform.Mount(source, target, null, LinuxNodePlatform.MS_BIND, null);
        }
        catch (NodeSystemException e)
        {
            throw new RpcException(new Status(StatusCode.Internal, $"volume {volumeId}: {e.Message}"));
        }

        if (remountFlags != 0)
        {
            // A bind mount takes per-mount flags such as ro only on a remount (mount(2), MS_REMOUNT|MS_BIND).
            try
            {
                _platform.Mount(null, target, null, LinuxNodePlatform.MS_BIND | LinuxNodePlatform.MS_REMOUNT | remountFlags, null);
            }
            catch (NodeSystemException e)
            {
                _platform.Unmount(target);
                throw new RpcException(new Status(StatusCode.Internal, $"volume {volumeId}: {e.Message}"));
            }
        }

        NodeLog.Mounted(_logger, volumeId, source, target);
    }

    private void PrepareBlockTarget(string targetPath)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(targetPath)!);
        switch (_platform.Stat(targetPath).Kind)
        {
            case NodeFileKind.Missing:
                File.WriteAllBytes(targetPath, []);
                break;
            case NodeFileKind.Directory when !Directory.EnumerateFileSystemEntries(targetPath).Any():
                // A CO may have created the target as a directory; a device is bind-mounted onto a file.
                Directory.Delete(targetPath);
                File.WriteAllBytes(targetPath, []);
                break;
            case NodeFileKind.RegularFile:
                break;
            default:
                throw new RpcException(new Status(StatusCode.FailedPrecondition,
                    $"{targetPath} exists and is not a file the device can be bind-mounted onto"));
        }
    }

    private void UnmountAll(string volumeId, string path)
    {
        // Stacked mounts (a retried publish after a crash) come off one at a time.
        for (var attempt = 0; attempt < 16 && MountTable.At(_platform.Mounts(), path).Any(); attempt++)
        {
            try
            {
                _platform.Unmount(MountTable.NormalisePath(path));
                NodeLog.Unmounted(_logger, volumeId, path);
            }
            catch (NodeSystemException e)
            {
                throw new RpcException(new Status(StatusCode.Internal, $"volume {volumeId}: {e.Message}"));
            }
        }
    }

    /// <summary>Mounts that use the namespace: its filesystem, or its device node bind-mounted somewhere.</summary>
    private IEnumerable<MountEntry> MountsOf(NvmeBlockDevice device)
    {
        foreach (var mount in _platform.Mounts())
        {
            if (mount.Major == device.Major && mount.Minor == device.Minor)
            {
                yield return mount;
            }
            else if (mount.Root.EndsWith("/" + device.Name, StringComparison.Ordinal))
            {
                var status = _platform.Stat(mount.MountPoint);
                if (status.Kind == NodeFileKind.BlockDevice && status.DeviceNumber == device.DeviceNumber)
                {
                    yield return mount;
                }
            }
        }
    }

    private static string Describe(StagedVolume staged) => staged.IsBlock ? "block" : $"{staged.FsType} filesystem";

    /// <summary>
    /// Replicas the volume has: publish_context's (the count when ControllerPublishVolume ran, which follows a
    /// ControllerModifyVolume), else volume_context's (the StorageClass parameter at creation), 1 when absent; throws
    /// <see cref="FormatException"/>.
    /// </summary>
    private static int ReplicasOf(IDictionary<string, string> publishContext, IDictionary<string, string> volumeContext)
    {
        if (ContextValue(publishContext, volumeContext, Controller.VolumeParameters.ReplicasKey) is not { } text)
        {
            return 1;
        }

        return int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var replicas) &&
               replicas is >= 1 and <= Controller.VolumeParameters.MaxReplicas
            ? replicas
            : throw new FormatException($"{(publishContext.ContainsKey(Controller.VolumeParameters.ReplicasKey) ? "publish" : "volume")} context " +
                                        $"{Controller.VolumeParameters.ReplicasKey}='{text}' is not an integer in 1..{Controller.VolumeParameters.MaxReplicas}");
    }

    private static string? ContextValue(IDictionary<string, string> publishContext, IDictionary<string, string> volumeContext, string key) =>
        publishContext.TryGetValue(key, out var value) && !string.IsNullOrWhiteSpace(value) ? value.Trim()
        : volumeContext.TryGetValue(key, out value) && !string.IsNullOrWhiteSpace(value) ? value.Trim()
        : null;

    private static string Required(string value, string field) =>
        string.IsNullOrWhiteSpace(value) ? throw Invalid($"{field} is required") : value;

    /// <summary>
    /// The volume_path of NodeGetVolumeStats and NodeExpandVolume: required, and where the volume is staged or
    /// published, which is an absolute path. The volume cannot exist on a relative one (NOT_FOUND, as the
    /// spec's tables and csi-sanity have it).
    /// </summary>
    private static string VolumePath(string volumeId, string value)
    {
        Required(value, "volume_path");
        return Path.IsPathRooted(value) ? MountTable.NormalisePath(value) : throw NotOnPath(volumeId, value, "volume paths are absolute");
    }

    private static RpcException NotOnPath(string volumeId, string path, string why) =>
        new(new Status(StatusCode.NotFound, $"volume {volumeId} does not exist on path {path}: {why}"));

    private static string RequiredPath(string value, string field)
    {
        Required(value, field);
        return Path.IsPathRooted(value) ? value : throw Invalid($"{field} must be an absolute path, not '{value}'");
    }

    internal static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}
