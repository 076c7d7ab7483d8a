using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target.Tests;

/// <summary>
/// Keeps every line the target logs at Information or above, so a test can prove that hostile input was handled as a
/// protocol error and never escaped as an unexpected exception ("connection failed"), and that a limit or a refusal
/// was logged (and how often).
/// </summary>
internal sealed class RecordingLoggerFactory : ILoggerFactory
{
    private readonly ConcurrentQueue<string> _errors = new();
    private readonly ConcurrentQueue<(LogLevel Level, string Message)> _messages = new();

    public IReadOnlyCollection<string> Errors => _errors.ToArray();

    /// <summary>Every line at Information or above, formatted, in the order logged.</summary>
    public IReadOnlyList<(LogLevel Level, string Message)> Messages => _messages.ToArray();

    /// <summary>The lines that contain every one of <paramref name="fragments"/>.</summary>
    public IReadOnlyList<string> Matching(params string[] fragments) =>
        Messages.Select(m => m.Message).Where(m => fragments.All(f => m.Contains(f, StringComparison.Ordinal))).ToArray();

    /// <summary>Waits (bounded) until at least <paramref name="count"/> lines contain every fragment.</summary>
    public bool WaitFor(TimeSpan within, int count, params string[] fragments)
    {
        var deadline = DateTime.UtcNow + within;
        while (Matching(fragments).Count < count)
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            Thread.Sleep(10);
        }

        return true;
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class Logger(RecordingLoggerFactory owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel < LogLevel.Information)
            {
                return;
            }

            var message = formatter(state, exception);
            owner._messages.Enqueue((logLevel, message));
            if (logLevel >= LogLevel.Error)
            {
                owner._errors.Enqueue($"{category}: {message} {exception}");
            }
        }
    }
}
