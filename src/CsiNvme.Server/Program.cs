using CsiNvme.Api.Hosting;
using CsiNvme.Server;
using CsiNvme.Server.Hosting;

var commandLine = ServerCommandLine.Parse(args);
return await ServiceProcess.RunAsync(
    "csinvme-server",
    commandLine.Errors,
    commandLine.Options,
    // --help or --version: System.CommandLine prints them.
    () => commandLine.ParseResult.Invoke(),
    async (options, stop) => await StorageServer.StartAsync(options, stop));
