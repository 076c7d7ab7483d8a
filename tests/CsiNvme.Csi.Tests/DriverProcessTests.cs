using System.Diagnostics;
using System.Runtime.InteropServices;
using Csi.V1;
using CsiNvme.Csi.Hosting;
using CsiNvme.TestSupport;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using IdentityClient = Csi.V1.Identity.IdentityClient;

namespace CsiNvme.Csi.Tests;

/// <summary>The csinvme-csi executable as an operator runs it: flags, readiness line, SIGTERM, exit codes.</summary>
[TestFixture]
[CancelAfter(120_000)]
public sealed class DriverProcessTests
{
    private static string DriverDll => Path.Combine(RepoPaths.Root, "src", "CsiNvme.Csi", "bin", RepoPaths.Configuration, "net10.0", "csinvme-csi.dll");

    [Test]
    public async Task The_controller_process_serves_the_socket_and_stops_cleanly_on_SIGTERM()
    {
        await using var harness = await CsiHarness.StartAsync();
        var socket = Path.Combine(harness.Directory, "process.sock");
        var output = new List<string>();
        var ready = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var process = Start(
            ["--mode", "controller", "--endpoint", $"unix://{socket}", "--server", harness.StorageServer!.ManagementEndpoint.ToString(), "--log-level", "information"],
            line =>
            {
                lock (output)
                {
                    output.Add(line);
                }

                if (line.StartsWith("CSINVME-CSI-READY ", StringComparison.Ordinal))
                {
                    ready.TrySetResult(line);
                }
            });
        try
        {
            var line = await ready.Task.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.That(line, Is.EqualTo($"CSINVME-CSI-READY endpoint=unix://{socket} mode=controller"));

            using (var channel = CsiEndpoint.Parse($"unix://{socket}").CreateChannel())
            {
                var probe = await new IdentityClient(channel).ProbeAsync(new ProbeRequest());
                var created = await new ControllerClient(channel).CreateVolumeAsync(Caps.Create("pvc-by-process", requiredBytes: 1 << 20));
                Assert.Multiple(() =>
                {
                    Assert.That(probe.Ready, Is.True);
                    Assert.That(created.Volume.VolumeId, Is.EqualTo("pvc-by-process"));
                });
            }

            Assert.That(Kill(process.Id, 15), Is.Zero, "SIGTERM");
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            string[] lines;
            lock (output)
            {
                lines = [.. output];
            }

            Assert.Multiple(() =>
            {
                Assert.That(process.ExitCode, Is.Zero);
                Assert.That(File.Exists(socket), Is.False, "the socket file is removed at shutdown");
                Assert.That(lines, Has.Some.Contains("CreateVolume volume=pvc-by-process -> OK"));
            });
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }
    }

    [Test]
    public async Task Bad_flags_exit_with_2_and_say_why()
    {
        using var process = Start(["--mode", "sideways"], _ => { });
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.That(process.ExitCode, Is.EqualTo(2));
    }

    [Test]
    public async Task A_start_failure_exits_with_1()
    {
        using var temp = new TempDirectory("csi");
        var notASocket = temp.Combine("file");
        await File.WriteAllTextAsync(notASocket, "data");
        var lines = new List<string>();
        using var process = Start(["--mode", "controller", "--server", "127.0.0.1:1", "--endpoint", $"unix://{notASocket}"], line =>
        {
            lock (lines)
            {
                lines.Add(line);
            }
        });
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Multiple(() =>
        {
            Assert.That(process.ExitCode, Is.EqualTo(1));
            Assert.That(File.ReadAllText(notASocket), Is.EqualTo("data"), "a file that is not a socket is left alone");
        });
        lock (lines)
        {
            Assert.That(lines, Has.Some.Contains("not a socket"));
        }
    }

    private static Process Start(IEnumerable<string> args, Action<string> onLine)
    {
        Assume.That(File.Exists(DriverDll), Is.True, $"driver not built: {DriverDll}");
        var startInfo = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        startInfo.ArgumentList.Add(DriverDll);
        foreach (var arg in args)
        {
            startInfo.ArgumentList.Add(arg);
        }

        startInfo.Environment["DOTNET_NOLOGO"] = "1";
        var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                onLine(e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                onLine(e.Data);
            }
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
