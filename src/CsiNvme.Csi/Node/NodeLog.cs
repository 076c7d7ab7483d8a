using Microsoft.Extensions.Logging;

namespace CsiNvme.Csi.Node;

internal static partial class NodeLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Node service for {NodeName}: host NQN {HostNqn}, host id {HostId}, state in {StateDirectory}")]
    public static partial void Started(ILogger logger, string nodeName, string hostNqn, Guid hostId, string stateDirectory);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "Volume {Volume}: connected controller {Controller} to {Target} ({Nqn})")]
    public static partial void Connected(ILogger logger, string volume, string controller, string target, string nqn);

    [LoggerMessage(EventId = 102, Level = LogLevel.Debug, Message = "Volume {Volume}: controller {Controller} already connects {Target}")]
    public static partial void AlreadyConnected(ILogger logger, string volume, string controller, string target);

    [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "Volume {Volume}: connecting to {Target} failed: {Error}")]
    public static partial void ConnectFailed(ILogger logger, string volume, string target, string error);

    [LoggerMessage(EventId = 104, Level = LogLevel.Information, Message = "Volume {Volume}: namespace is {Device} ({SizeBytes} bytes)")]
    public static partial void DeviceFound(ILogger logger, string volume, string device, long sizeBytes);

    [LoggerMessage(EventId = 105, Level = LogLevel.Information, Message = "Volume {Volume}: created device node {Path} ({Major}:{Minor})")]
    public static partial void DeviceNodeCreated(ILogger logger, string volume, string path, int major, int minor);

    [LoggerMessage(EventId = 106, Level = LogLevel.Information, Message = "Volume {Volume}: formatting blank {Device} as {FsType}")]
    public static partial void Formatting(ILogger logger, string volume, string device, string fsType);

    [LoggerMessage(EventId = 107, Level = LogLevel.Information, Message = "Volume {Volume}: mounted {Source} on {Target}")]
    public static partial void Mounted(ILogger logger, string volume, string source, string target);

    [LoggerMessage(EventId = 108, Level = LogLevel.Information, Message = "Volume {Volume}: unmounted {Target}")]
    public static partial void Unmounted(ILogger logger, string volume, string target);

    [LoggerMessage(EventId = 109, Level = LogLevel.Information, Message = "Volume {Volume}: disconnected controller {Controller} ({Nqn})")]
    public static partial void Disconnected(ILogger logger, string volume, string controller, string nqn);

    [LoggerMessage(EventId = 110, Level = LogLevel.Information, Message = "Volume {Volume}: subsystem {Nqn} stays connected for {Others}")]
    public static partial void SubsystemStillUsed(ILogger logger, string volume, string nqn, string others);

    [LoggerMessage(EventId = 111, Level = LogLevel.Information, Message = "Volume {Volume}: rescanning {Controller} for the new size")]
    public static partial void Rescanning(ILogger logger, string volume, string controller);

    [LoggerMessage(EventId = 112, Level = LogLevel.Information, Message = "Volume {Volume}: grew the {FsType} filesystem on {Device} to {SizeBytes} bytes")]
    public static partial void FilesystemGrown(ILogger logger, string volume, string fsType, string device, long sizeBytes);

    [LoggerMessage(EventId = 113, Level = LogLevel.Warning, Message = "Node {NodeName}: cannot read the Node object's topology labels: {Error}")]
    public static partial void NodeLabelsUnavailable(ILogger logger, string nodeName, string error);

    [LoggerMessage(EventId = 114, Level = LogLevel.Information, Message = "Volume {Volume}: path to {Target} connected again as {Controller} (the kernel had dropped it)")]
    public static partial void PathReconnected(ILogger logger, string volume, string target, string controller);

    [LoggerMessage(EventId = 115, Level = LogLevel.Information, Message = "Volume {Volume}: new path to {Target} from the discovery log connected as {Controller}")]
    public static partial void PathAdded(ILogger logger, string volume, string target, string controller);

    [LoggerMessage(EventId = 116, Level = LogLevel.Warning, Message = "Volume {Volume}: connecting the path to {Target} failed although it answers discovery: {Error}; next attempt in {Seconds} s")]
    public static partial void PathConnectFailed(ILogger logger, string volume, string target, string error, double seconds);

    [LoggerMessage(EventId = 117, Level = LogLevel.Information, Message = "Volume {Volume}: the discovery log lists a listener of {Nqn} this node did not know: {Target}")]
    public static partial void PathLearned(ILogger logger, string volume, string target, string nqn);

    [LoggerMessage(EventId = 118, Level = LogLevel.Information, Message = "Volume {Volume}: no discovery log lists {Target} for {Nqn} any more and another path is live: forgetting it")]
    public static partial void PathForgotten(ILogger logger, string volume, string target, string nqn);

    [LoggerMessage(EventId = 119, Level = LogLevel.Debug, Message = "Volume {Volume}: {Target} does not answer; its path is connected once it does")]
    public static partial void PathUnreachable(ILogger logger, string volume, string target);

    [LoggerMessage(EventId = 120, Level = LogLevel.Debug, Message = "Discovery controller at {Target} did not answer: {Error}")]
    public static partial void DiscoveryUnanswered(ILogger logger, string target, string error);

    [LoggerMessage(EventId = 121, Level = LogLevel.Warning, Message = "Volume {Volume}: no path is live; controller {Controller} now reconnects until a path is back (ctrl_loss_tmo off), so the kernel keeps the device")]
    public static partial void LastPathHeld(ILogger logger, string volume, string controller);

    [LoggerMessage(EventId = 122, Level = LogLevel.Information, Message = "Volume {Volume}: a path is live again; controller {Controller} gets ctrl_loss_tmo {Seconds} s back")]
    public static partial void LastPathReleased(ILogger logger, string volume, string controller, int seconds);

    [LoggerMessage(EventId = 123, Level = LogLevel.Warning, Message = "Volume {Volume}: cannot set ctrl_loss_tmo of {Controller}: {Error}")]
    public static partial void CtrlLossTmoUnwritable(ILogger logger, string volume, string controller, string error);

    [LoggerMessage(EventId = 124, Level = LogLevel.Warning, Message = "Volume {Volume}: paths degraded: {Paths}")]
    public static partial void PathsDegraded(ILogger logger, string volume, string paths);

    [LoggerMessage(EventId = 125, Level = LogLevel.Information, Message = "Volume {Volume}: paths whole again: {Paths}")]
    public static partial void PathsWhole(ILogger logger, string volume, string paths);

    [LoggerMessage(EventId = 126, Level = LogLevel.Error, Message = "Path keeper pass failed: {Error}")]
    public static partial void PathKeeperFailed(ILogger logger, string error, Exception exception);

    [LoggerMessage(EventId = 127, Level = LogLevel.Information, Message = "Volume {Volume}: the discovery logs now list {Replicas} replica(s) of it (was {Previous}): it should have as many live paths")]
    public static partial void ReplicaCountFollowed(ILogger logger, string volume, int previous, int replicas);
}
