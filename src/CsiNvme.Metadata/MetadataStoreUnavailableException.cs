namespace CsiNvme.Metadata;

/// <summary>
/// The metadata store did not answer within its deadline (unreachable, no quorum, or too slow). The operation may
/// or may not have taken effect; a caller retries it or reports the store unavailable (gRPC Unavailable).
/// </summary>
public sealed class MetadataStoreUnavailableException : Exception
{
    public MetadataStoreUnavailableException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}
