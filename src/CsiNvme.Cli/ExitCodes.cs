namespace CsiNvme.Cli;

/// <summary>Process exit codes; scripts rely on them, so they never change meaning.</summary>
internal static class ExitCodes
{
    public const int Success = 0;

    /// <summary>The server answered and refused: not found, already exists, invalid argument, internal error.</summary>
    public const int ServerRefused = 1;

    /// <summary>The command line itself is wrong: unknown command or option, missing argument, bad size.</summary>
    public const int UsageError = 2;

    /// <summary>No answer from the server: nothing listening, wrong address, or it timed out.</summary>
    public const int ServerUnreachable = 3;

    /// <summary>
    /// <c>volume verify</c> ran and the replicas are not identical: one is not in sync, was not compared (its node is
    /// down), or a region's checksums differ.
    /// </summary>
    public const int NotIdentical = 4;

    /// <summary><c>node drain --wait</c>: the node was not drained within --timeout (the drain goes on on the server).</summary>
    public const int TimedOut = 5;
}
