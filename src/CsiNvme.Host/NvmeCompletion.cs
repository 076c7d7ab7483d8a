using CsiNvme.Protocol.Commands;

namespace CsiNvme.Host;

/// <summary>The outcome of one command: the CQE status and its command specific dwords.</summary>
public readonly record struct NvmeCompletion(NvmeStatus Status, uint Dw0, uint Dw1)
{
    /// <summary>
    /// Host Path Error (NVMe base 2.0, Figure 97, SCT 3 SC 70h): what Linux reports when a command dies with its
    /// transport connection. Path related, so a multipath caller fails over or retries instead of failing the I/O.
    /// </summary>
    public static readonly NvmeStatus HostPathError = new(StatusCodeType.PathRelated, 0x70, false);

    public bool IsSuccess => Status.IsSuccess;

    /// <summary>True when the command failed because the connection went away, not because the controller refused it.</summary>
    public bool IsPathError => Status.Type == StatusCodeType.PathRelated;

    internal static NvmeCompletion PathError => new(HostPathError, 0, 0);

    /// <summary>Throws <see cref="NvmeCommandException"/> unless the command succeeded (for admin paths, not the I/O path).</summary>
    public NvmeCompletion EnsureSuccess(string what) =>
        IsSuccess ? this : throw new NvmeCommandException(what, Status);
}

/// <summary>A command the controller completed with an error status.</summary>
public sealed class NvmeCommandException : Exception
{
    public NvmeCommandException(string what, NvmeStatus status)
        : base($"{what} failed: {status}")
    {
        Status = status;
    }

    public NvmeStatus Status { get; }
}

/// <summary>The connection could not be set up or broke the NVMe/TCP rules.</summary>
public sealed class NvmeTransportException : Exception
{
    public NvmeTransportException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
