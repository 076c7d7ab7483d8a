using System.Runtime.InteropServices;

namespace CsiNvme.Perf;

/// <summary>Pins the whole process to CPUs with sched_setaffinity(2), the way <c>taskset</c> does.</summary>
public static partial class CpuAffinity
{
    /// <summary>
    /// Sets the affinity of every existing thread of the process; threads created later inherit it from their creator,
    /// so the whole runtime (thread pool, socket engine) stays on <paramref name="cpus"/>.
    /// </summary>
    public static void PinProcess(IReadOnlyCollection<int> cpus)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("CPU pinning needs Linux");
        }

        var mask = new ulong[16];
        foreach (var cpu in cpus)
        {
            if (cpu < 0 || cpu >= mask.Length * 64)
            {
                throw new ArgumentOutOfRangeException(nameof(cpus), $"CPU {cpu} out of range");
            }

            mask[cpu / 64] |= 1UL << (cpu % 64);
        }

        foreach (var task in Directory.GetDirectories("/proc/self/task"))
        {
            if (!int.TryParse(Path.GetFileName(task), out var tid))
            {
                continue;
            }

            if (SchedSetAffinity(tid, mask.Length * sizeof(ulong), mask) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                // ESRCH: the thread ended meanwhile.
                if (errno != 3)
                {
                    throw new InvalidOperationException($"sched_setaffinity({tid}) failed with errno {errno}");
                }
            }
        }
    }

    /// <summary>CPUs the calling thread may run on.</summary>
    public static IReadOnlyList<int> CurrentThreadCpus()
    {
        var mask = new ulong[16];
        if (SchedGetAffinity(0, mask.Length * sizeof(ulong), mask) != 0)
        {
            throw new InvalidOperationException($"sched_getaffinity failed with errno {Marshal.GetLastPInvokeError()}");
        }

        var cpus = new List<int>();
        for (var i = 0; i < mask.Length * 64; i++)
        {
            if ((mask[i / 64] & (1UL << (i % 64))) != 0)
            {
                cpus.Add(i);
            }
        }

        return cpus;
    }

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nint size, ulong[] mask);

    [LibraryImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetAffinity(int pid, nint size, ulong[] mask);
}
