using System.Runtime.InteropServices;
using CsiNvme.Csi;
using CsiNvme.Csi.Hosting;

var commandLine = CsiCommandLine.Parse(args);
if (commandLine.Errors.Count > 0)
{
    foreach (var error in commandLine.Errors)
    {
        Console.Error.WriteLine($"csinvme-csi: {error}");
    }

    Console.Error.WriteLine("Try '--help' for the list of options.");
    return 2;
}

if (commandLine.Options is null)
{
    // --help or --version: System.CommandLine prints them.
    return commandLine.ParseResult.Invoke();
}

using var stop = new CancellationTokenSource();
void RequestStop(PosixSignalContext context)
{
    // Handled here instead of killing the process: in-flight calls finish and the socket file is removed.
    context.Cancel = true;
    stop.Cancel();
}

using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, RequestStop);
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, RequestStop);

CsiDriver driver;
try
{
    driver = await CsiDriver.StartAsync(commandLine.Options, stop.Token);
}
catch (OperationCanceledException) when (stop.IsCancellationRequested)
{
    return 0;
}
catch (Exception e)
{
    Console.Error.WriteLine($"csinvme-csi: cannot start: {e.Message}");
    return 1;
}

await using (driver)
{
    Console.Out.WriteLine(driver.ReadyLine);
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
