namespace CsiNvme.Volumes;

/// <summary>Why a volume operation was refused; mapped one to one onto gRPC status codes.</summary>
public enum VolumeError
{
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    /// <summary>The pool lacks the space the operation needs (or would need later, as a snapshot does).</summary>
    ResourceExhausted,
    /// <summary>Not done yet, and safe to retry (a removed host's commands still running past the bound).</summary>
    Unavailable,
    Internal,
}

/// <summary>A volume operation that was refused or failed without changing anything.</summary>
public sealed class VolumeException(VolumeError error, string message, Exception? inner = null) : Exception(message, inner)
{
    public VolumeError Error { get; } = error;
}
