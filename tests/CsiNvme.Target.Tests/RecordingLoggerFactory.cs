using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target.Tests;

/// <summary>
/// Keeps every warning and error the target logs, so a test can prove that hostile input was handled as a protocol
/// error and never escaped as an unexpected exception ("connection failed").
/// </summary>
internal sealed class RecordingLoggerFactory : ILoggerFactory
{
    private readonly ConcurrentQueue<string> _errors = new();

    public IReadOnlyCollection<string> Errors => _errors.ToArray();

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

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Error;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Error)
            {
                owner._errors.Enqueue($"{category}: {formatter(state, exception)} {exception}");
            }
        }
    }
}
