using System.Diagnostics;
using System.Text;
using NUnit.Framework;

namespace CsiNvme.TestSupport;

/// <summary>
/// Boots a throw-away Linux guest under QEMU (TCG, no KVM needed) with the kernel and initramfs
/// from tests/guest/build-guest.sh, runs one shell script in it as PID 1's child and returns its
/// exit code and serial output. The guest reaches the host's 127.0.0.1 as 10.0.2.2 (QEMU
/// user-mode network), so servers under test listen on loopback only. Runs are independent and
/// may run concurrently.
/// </summary>
public static class LinuxGuest
{
    /// <summary>Address at which the guest reaches the host's loopback interface.</summary>
    public const string HostAddress = "10.0.2.2";

    private const string QemuBinary = "qemu-system-x86_64";

    private static readonly SemaphoreSlim _buildLock = new(1, 1);
    private static readonly HashSet<GuestImage> _imagesReady = [];
    private static readonly Dictionary<GuestImage, string> _buildFailures = [];

    public static string KernelPath => KernelPathOf(GuestImage.Default);

    public static string InitramfsPath => InitramfsPathOf(GuestImage.Default);

    public static string KernelPathOf(GuestImage image) => Path.Combine(RepoPaths.GuestImageDirectoryOf(image), "vmlinuz");

    public static string InitramfsPathOf(GuestImage image) => Path.Combine(RepoPaths.GuestImageDirectoryOf(image), "initramfs.cpio.gz");

    /// <summary>True when QEMU is installed and the guest image has been built.</summary>
    public static bool IsAvailable => UnavailableReason is null;

    /// <summary>Why guests cannot run here, or null when they can.</summary>
    public static string? UnavailableReason => UnavailableReasonOf(GuestImage.Default);

    /// <summary>Why guests of <paramref name="image"/> cannot run here, or null when they can.</summary>
    public static string? UnavailableReasonOf(GuestImage image)
    {
        if (!OperatingSystem.IsLinux())
        {
            return "the Linux guest tests need a Linux host";
        }

        if (FindOnPath(QemuBinary) is null)
        {
            return $"{QemuBinary} is not installed (tests/guest/build-guest.sh installs it when run as root)";
        }

        string? failure;
        lock (_buildFailures)
        {
            failure = _buildFailures.GetValueOrDefault(image);
        }

        if (failure is not null)
        {
            return "building the guest image failed:\n" + failure;
        }

        if (!File.Exists(KernelPathOf(image)) || !File.Exists(InitramfsPathOf(image)))
        {
            return $"guest image missing in {RepoPaths.GuestImageDirectoryOf(image)} (run tests/guest/build-guest.sh{VariantArgument(image)})";
        }

        return null;
    }

    private static string VariantArgument(GuestImage image) => image == GuestImage.Trixie ? " --variant trixie" : "";

    /// <summary>Builds the guest image once per process (the script itself skips work when up to date).</summary>
    public static async Task EnsureImageAsync(CancellationToken cancellationToken = default) =>
        await EnsureImageAsync(GuestImage.Default, cancellationToken).ConfigureAwait(false);

    /// <summary>Builds <paramref name="image"/> once per process (the script itself skips work when up to date).</summary>
    public static async Task EnsureImageAsync(GuestImage image, CancellationToken cancellationToken = default)
    {
        lock (_buildFailures)
        {
            if (_imagesReady.Contains(image))
            {
                return;
            }
        }

        await _buildLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            lock (_buildFailures)
            {
                if (_imagesReady.Contains(image) || _buildFailures.ContainsKey(image))
                {
                    return;
                }
            }

            var script = Path.Combine(RepoPaths.GuestDirectory, "build-guest.sh");
            string[] arguments = image == GuestImage.Trixie
                ? [script, "--variant", "trixie", RepoPaths.GuestImageDirectoryOf(image)]
                : [script, RepoPaths.GuestImageDirectoryOf(image)];
            var result = await ProcessRunner.RunAsync("bash", arguments, TimeSpan.FromMinutes(15), cancellationToken).ConfigureAwait(false);
            lock (_buildFailures)
            {
                if (result.ExitCode != 0)
                {
                    _buildFailures[image] = $"build-guest.sh{VariantArgument(image)} exited with {result.ExitCode}:\n{result.Output}";
                    return;
                }

                _imagesReady.Add(image);
            }
        }
        finally
        {
            _buildLock.Release();
        }
    }

    /// <summary>
    /// Makes sure guests can run: builds the image, then ignores the test with the reason when
    /// QEMU is missing — except under CI (CI env variable set), where that is a failure.
    /// </summary>
    public static Task RequireAsync(CancellationToken cancellationToken = default) => RequireAsync(GuestImage.Default, cancellationToken);

    /// <summary><see cref="RequireAsync(CancellationToken)"/> for <paramref name="image"/>.</summary>
    public static async Task RequireAsync(GuestImage image, CancellationToken cancellationToken = default)
    {
        await EnsureImageAsync(image, cancellationToken).ConfigureAwait(false);
        if (UnavailableReasonOf(image) is { } reason)
        {
            if (Environment.GetEnvironmentVariable("CI") is { Length: > 0 })
            {
                Assert.Fail("Linux guest unavailable under CI: " + reason);
            }

            Assert.Ignore("Linux guest unavailable: " + reason);
        }
    }

    /// <summary>Boots a guest that runs <paramref name="script"/> with <c>sh -e</c> and powers off.</summary>
    public static async Task<GuestResult> RunAsync(string script, GuestOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new GuestOptions();
        await EnsureImageAsync(options.Image, cancellationToken).ConfigureAwait(false);
        if (UnavailableReasonOf(options.Image) is { } reason)
        {
            throw new InvalidOperationException("Linux guest unavailable: " + reason);
        }

        using var work = new TempDirectory("csinvme-guest");
        var initrd = work.Combine("initrd");
        BuildInitrd(initrd, script, options);

        // taskset execs QEMU in its own process, so the process started here is QEMU's either way.
        var startInfo = new ProcessStartInfo(options.HostCpu is null ? QemuBinary : "taskset")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (options.HostCpu is { } cpu)
        {
            startInfo.ArgumentList.Add("-c");
            startInfo.ArgumentList.Add(cpu.ToString(System.Globalization.CultureInfo.InvariantCulture));
            startInfo.ArgumentList.Add(QemuBinary);
        }

        // no_timer_check: under TCG on a busy machine the kernel's IO-APIC timer check can time out and panic the boot.
        var kernelArgs = string.Join(' ', new[] { "console=ttyS0", "panic=-1", "quiet", "loglevel=4", "mitigations=off", "no_timer_check" }
            .Concat(options.KernelArgs));
        foreach (var arg in new[]
                 {
                     "-accel", "tcg", "-cpu", "max",
                     "-smp", options.Cpus.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     "-m", options.MemoryMiB.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
                     "-kernel", KernelPathOf(options.Image), "-initrd", initrd, "-append", kernelArgs,
                     // No option ROM: the kernel is loaded directly, and skipping iPXE saves seconds under TCG.
                     "-netdev", "user,id=n0" + string.Concat(options.HostForwards.Select(f => $",hostfwd=tcp:127.0.0.1:{f.Key}-:{f.Value}")),
                     "-device", "virtio-net-pci,netdev=n0,romfile=",
                 })
        {
            startInfo.ArgumentList.Add(arg);
        }

        var output = new StringBuilder();
        var stopwatch = Stopwatch.StartNew();
        TimeSpan? bootTime = null;
        var scriptStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var process = new Process { StartInfo = startInfo };
        void OnLine(string? line, bool isError)
        {
            if (line is null)
            {
                return;
            }

            line = line.Replace("\r", string.Empty, StringComparison.Ordinal);
            lock (output)
            {
                if (isError)
                {
                    output.Append("[qemu] ");
                }

                output.Append(line).Append('\n');
                if (bootTime is null && line.Contains(GuestResult.RunMarker, StringComparison.Ordinal))
                {
                    bootTime = stopwatch.Elapsed;
                    scriptStarted.TrySetResult();
                }
            }

            options.OutputLine?.Invoke(line);
        }

        process.OutputDataReceived += (_, e) => OnLine(e.Data, false);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data, true);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var timedOut = false;
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            // Two limits, one after the other: the boot until the run marker, then the script's own time. A wall-clock
            // limit over both made a test fail whenever the machine was busy enough to slow the boot.
            timeout.CancelAfter(options.BootTimeout);
            var exited = process.WaitForExitAsync(timeout.Token);
            _ = scriptStarted.Task.ContinueWith(
                _ =>
                {
                    try
                    {
                        timeout.CancelAfter(options.Timeout);
                    }
                    catch (ObjectDisposedException)
                    {
                        // The run is over already.
                    }
                },
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
            try
            {
                await exited.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                KillTree(process);
                await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
                cancellationToken.ThrowIfCancellationRequested();
                timedOut = true;
            }
        }

        // The parameterless wait also drains the asynchronous output readers.
        process.WaitForExit();
        stopwatch.Stop();
        string text;
        lock (output)
        {
            text = output.ToString();
        }

        return new GuestResult(ParseExitCode(text), text, stopwatch.Elapsed, bootTime, timedOut, timedOut ? null : process.ExitCode);
    }

    private static void BuildInitrd(string path, string script, GuestOptions options)
    {
        var archive = new NewcArchive();
        archive.AddText("run.sh", script);
        foreach (var (guestPath, content) in options.TextFiles)
        {
            archive.AddText(guestPath, content);
        }

        foreach (var (guestPath, hostPath) in options.Files)
        {
            archive.AddHostFile(guestPath, hostPath);
        }

        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        using (var baseImage = File.OpenRead(InitramfsPathOf(options.Image)))
        {
            baseImage.CopyTo(file);
        }

        // The kernel only recognises a following cpio archive at a 4-byte aligned offset; the
        // zero bytes in between are skipped (init/initramfs.c, unpack_to_rootfs).
        while (file.Length % 4 != 0)
        {
            file.WriteByte(0);
        }

        archive.WriteTo(file);
    }

    private static int ParseExitCode(string output)
    {
        var code = -1;
        foreach (var line in output.Split('\n'))
        {
            var at = line.IndexOf(GuestResult.ExitMarker, StringComparison.Ordinal);
            if (at >= 0 && int.TryParse(line.AsSpan(at + GuestResult.ExitMarker.Length).Trim(), out var parsed))
            {
                code = parsed;
            }
        }

        return code;
    }

    private static void KillTree(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
    }

    internal static string? FindOnPath(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator))
        {
            if (dir.Length > 0 && File.Exists(Path.Combine(dir, name)))
            {
                return Path.Combine(dir, name);
            }
        }

        return null;
    }
}
