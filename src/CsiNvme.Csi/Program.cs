using CsiNvme.Api.Hosting;
using CsiNvme.Csi;
using CsiNvme.Csi.Hosting;

var commandLine = CsiCommandLine.Parse(args);
return await ServiceProcess.RunAsync(
    "csinvme-csi",
    commandLine.Errors,
    commandLine.Options,
    // --help or --version: System.CommandLine prints them.
    () => commandLine.ParseResult.Invoke(),
    async (options, stop) => await CsiDriver.StartAsync(options, stop));
