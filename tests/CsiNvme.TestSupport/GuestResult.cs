using System.Text;

namespace CsiNvme.TestSupport;

/// <summary>What a guest run produced. <see cref="ExitCode"/> is the exit code of /run.sh, or -1 when the guest never reported one.</summary>
public sealed class GuestResult
{
    public const string ExitMarker = "CSINVME-GUEST-EXIT=";
    public const string RunMarker = "CSINVME-GUEST-RUN";

    public GuestResult(int exitCode, string output, TimeSpan elapsed, TimeSpan? bootTime, bool timedOut, int? qemuExitCode)
    {
        ExitCode = exitCode;
        Output = output;
        Elapsed = elapsed;
        BootTime = bootTime;
        TimedOut = timedOut;
        QemuExitCode = qemuExitCode;
    }

    public int ExitCode { get; }

    /// <summary>All serial console output, with line endings normalised to \n.</summary>
    public string Output { get; }

    public TimeSpan Elapsed { get; }

    /// <summary>Time from starting QEMU until the guest began running the script.</summary>
    public TimeSpan? BootTime { get; }

    public bool TimedOut { get; }

    public int? QemuExitCode { get; }

    public bool Succeeded => ExitCode == 0;

    public IEnumerable<string> Lines => Output.Split('\n');

    /// <summary>
    /// The value of the last line of the form <c>KEY=VALUE</c> (scripts report results this way);
    /// null when there is none.
    /// </summary>
    public string? Value(string key)
    {
        var prefix = key + "=";
        return Lines.LastOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal))?[prefix.Length..].Trim();
    }

    /// <summary>Like <see cref="Value"/> but fails with the output tail when the key is missing.</summary>
    public string RequireValue(string key) =>
        Value(key) ?? throw new InvalidOperationException($"guest did not report {key}=...\n{Describe()}");

    /// <summary>
    /// The lines a script printed between <c>@@BEGIN NAME</c> and the next <c>@@END</c> line
    /// (used for tool output such as JSON); null when the section is absent.
    /// </summary>
    public string? Section(string name)
    {
        var lines = Output.Split('\n');
        var start = Array.FindLastIndex(lines, l => l.Trim() == "@@BEGIN " + name);
        if (start < 0)
        {
            return null;
        }

        var end = Array.FindIndex(lines, start + 1, l => l.Trim() == "@@END");
        return end < 0 ? null : string.Join('\n', lines[(start + 1)..end]);
    }

    /// <summary>Like <see cref="Section"/> but fails with the output tail when the section is missing.</summary>
    public string RequireSection(string name) =>
        Section(name) ?? throw new InvalidOperationException($"guest printed no section {name}\n{Describe()}");

    public string Tail(int lines = 80)
    {
        var all = Output.TrimEnd('\n').Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    /// <summary>A summary for assertion messages: exit code, timing and the last lines of output.</summary>
    public string Describe(int tailLines = 120)
    {
        var text = new StringBuilder();
        text.Append($"guest exit={ExitCode} elapsed={Elapsed.TotalSeconds:F1}s");
        if (BootTime is { } boot)
        {
            text.Append($" boot={boot.TotalSeconds:F1}s");
        }

        if (TimedOut)
        {
            text.Append(" TIMED OUT");
        }

        if (QemuExitCode is { } qemu)
        {
            text.Append($" qemu-exit={qemu}");
        }

        text.Append($"\n----- last {tailLines} lines of guest output -----\n");
        text.Append(Tail(tailLines));
        text.Append("\n-----");
        return text.ToString();
    }

    public override string ToString() => Describe();
}
