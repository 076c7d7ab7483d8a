namespace CsiNvme.Target.Listening;

/// <summary>How names that a host chose appear in the log.</summary>
internal static class LogText
{
    /// <summary>
    /// A host or subsystem NQN from a Connect: "(empty)" for an empty one, and control characters escaped, so that a
    /// hostile NQN cannot forge log lines.
    /// </summary>
    public static string Nqn(string nqn)
    {
        if (nqn.Length == 0)
        {
            return "(empty)";
        }

        if (!nqn.Any(char.IsControl))
        {
            return nqn;
        }

        return string.Concat(nqn.Select(c => char.IsControl(c) ? $"\\x{(int)c:x2}" : c.ToString()));
    }
}
