using Microsoft.Extensions.Logging;

namespace CsiNvme.Target.Listening;

/// <summary>
/// Connections per host NQN, counted from a successful Connect to the connection's end, so that one host (or every
/// host that sends an empty host NQN, which share one count) cannot take a listener's whole cap. Reaching the limit
/// and going below it again are logged once each.
/// </summary>
internal sealed partial class HostConnectionLimit
{
    private readonly object _gate = new();
    private readonly Dictionary<string, Entry> _hosts = new(StringComparer.Ordinal);
    private readonly ILogger _logger;

    public HostConnectionLimit(int maxPerHost, ILogger logger)
    {
        MaxPerHost = maxPerHost;
        _logger = logger;
    }

    public int MaxPerHost { get; }

    /// <summary>Connections <paramref name="hostNqn"/> holds now.</summary>
    public int CountOf(string hostNqn)
    {
        lock (_gate)
        {
            return _hosts.TryGetValue(hostNqn, out var entry) ? entry.Count : 0;
        }
    }

    /// <summary>Counts one more connection of the host, or refuses it when the host is at its limit.</summary>
    public bool TryAdd(string hostNqn)
    {
        var reached = false;
        lock (_gate)
        {
            if (!_hosts.TryGetValue(hostNqn, out var entry))
            {
                entry = new Entry();
                _hosts.Add(hostNqn, entry);
            }

            if (entry.Count >= MaxPerHost)
            {
                reached = !entry.AtLimit;
                entry.AtLimit = true;
            }
            else
            {
                entry.Count++;
                return true;
            }
        }

        if (reached)
        {
            LogLimitReached(_logger, LogText.Nqn(hostNqn), MaxPerHost);
        }

        return false;
    }

    public void Remove(string hostNqn)
    {
        var belowAgain = false;
        lock (_gate)
        {
            if (!_hosts.TryGetValue(hostNqn, out var entry))
            {
                return;
            }

            entry.Count--;
            if (entry.AtLimit && Saturation.IsWellBelow(entry.Count, MaxPerHost))
            {
                entry.AtLimit = false;
                belowAgain = true;
            }

            if (entry.Count <= 0)
            {
                _hosts.Remove(hostNqn);
            }
        }

        if (belowAgain)
        {
            LogBelowLimit(_logger, LogText.Nqn(hostNqn), MaxPerHost);
        }
    }

    private sealed class Entry
    {
        public int Count;
        public bool AtLimit;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Host {HostNqn} reached the limit of {MaxPerHost} connections per host: its further Connects are refused until some of its connections end")]
    private static partial void LogLimitReached(ILogger logger, string hostNqn, int maxPerHost);

    [LoggerMessage(Level = LogLevel.Information, Message = "Host {HostNqn} is below the limit of {MaxPerHost} connections per host again")]
    private static partial void LogBelowLimit(ILogger logger, string hostNqn, int maxPerHost);
}
