using System.Runtime.InteropServices;

namespace CsiNvme.Api.Hosting;

/// <summary>A started service: it announces itself with one ready line and stops gracefully when disposed.</summary>
public interface IRunningService : IAsyncDisposable
{
    /// <summary>The single stdout line that tells a supervisor (or a test) the service is serving, with its endpoints.</summary>
    string ReadyLine { get; }
}

/// <summary>
/// The life of a service process shared by the storage server and the CSI driver: usage errors exit 2, a failed start
/// exits 1, and SIGTERM/SIGINT are caught so the service shuts down gracefully (flushing volumes, finishing calls in
/// flight, removing sockets) and the process exits 0.
/// </summary>
public static class ServiceProcess
{
    public static async Task<int> RunAsync<TOptions>(
        string programName,
        IReadOnlyList<string> usageErrors,
        TOptions? options,
        Func<int> printHelpOrVersion,
        Func<TOptions, CancellationToken, Task<IRunningService>> start)
        where TOptions : class
    {
        if (usageErrors.Count > 0)
        {
            foreach (var error in usageErrors)
            {
                Console.Error.WriteLine($"{programName}: {error}");
            }

            Console.Error.WriteLine("Try '--help' for the list of options.");
            return 2;
        }

        if (options is null)
        {
            return printHelpOrVersion();
        }

        using var stop = new CancellationTokenSource();
        void RequestStop(PosixSignalContext context)
        {
            // Handled here instead of killing the process, so the service's own shutdown runs.
            context.Cancel = true;
            stop.Cancel();
        }

        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, RequestStop);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, RequestStop);

        IRunningService service;
        try
        {
            service = await start(options, stop.Token);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"{programName}: cannot start: {e.Message}");
            return 1;
        }

        await using (service)
        {
            Console.Out.WriteLine(service.ReadyLine);
            Console.Out.Flush();
            try
            {
                await Task.Delay(Timeout.Infinite, stop.Token);
            }
            catch (OperationCanceledException)
            {
                // SIGTERM/SIGINT: fall through to the graceful shutdown of DisposeAsync.
            }
        }

        return 0;
    }
}
