namespace CsiNvme.Host;

/// <summary>
/// Receives the completion of a command submitted with <see cref="IoQueue.TrySubmitRead"/> or
/// <see cref="IoQueue.TrySubmitWrite"/>: the submission path without a task per command, as an SPDK host's callbacks.
/// </summary>
/// <remarks>
/// Runs on the queue's receive loop, once per command, after the command's slot is free again, so it may submit the
/// next command at once (it then joins the loop's send batch). It must not block and must not throw: an exception
/// would end the receive loop and fail every command in flight with a path error.
/// </remarks>
public interface INvmeCompletionCallback
{
    void OnCompleted(NvmeCompletion completion);
}
