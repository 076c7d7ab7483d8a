using System.Net;
using System.Net.Sockets;
using CsiNvme.Api.V1;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Fabrics;
using CsiNvme.Protocol.Tcp;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>
/// The storage server as a child process under a real thread limit: run as user nobody with RLIMIT_NPROC of
/// <see cref="ThreadLimit"/> (the server starts with about 20 threads), as a pod's pids limit would be, then given
/// more connections than threads can start.
/// </summary>
[TestFixture]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ProcessLimitTests
{
    private const int Nobody = 65534;
    private const int ThreadLimit = 48;
    private const int Connections = 80;
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    [Test]
    public async Task UnderRlimitNprocEveryConnectionIsServedAndNewHostsStillConnect()
    {
        await SkipUnlessWeCanRunAsNobodyAsync();
        using var dir = new TempDirectory("csinvme-nproc");
        // The server runs as nobody, in this directory.
        File.SetUnixFileMode(dir.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
            UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
            UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
        await using var server = await ServerProcess.StartAsync(
            dir.Path,
            ["--backend", "memory", "--log-level", "information"],
            launcher: ["setpriv", $"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", "prlimit", $"--nproc={ThreadLimit}:{ThreadLimit}"]);
        var volume = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "v", SizeBytes = 1 << 20, AllowAnyHost = true });

        var idle = new List<Socket>();
        try
        {
            for (var i = 0; i < Connections; i++)
            {
                idle.Add(Initialize(server.NvmeEndpoint));
            }

            Assert.That(server.HasExited, Is.False, server.OutputTail());
            Assert.That(await OutputShowsAsync(server, "Starting a thread for the NVMe/TCP connection"), Is.True, "thread creation did fail");
            using (var host = Initialize(server.NvmeEndpoint))
            {
                Assert.That(ConnectAdmin(host, volume.SubsystemNqn), Is.EqualTo(NvmeStatus.Success), "a new host connects while no thread can start");
            }

            var info = await server.ServerInfo.GetServerInfoAsync(new GetServerInfoRequest());
            Assert.That(info.ConnectionCount, Is.InRange((uint)Connections, (uint)Connections + 1));
            using var http = new HttpClient();
            using var readyz = await http.GetAsync($"http://{server.MetricsEndpoint}/readyz");
            Assert.That(readyz.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(await readyz.Content.ReadAsStringAsync(), Does.Contain("a connection thread failed to start"));
        }
        finally
        {
            idle.ForEach(s => s.Dispose());
        }

        // The connections served on the pool end like any other: nothing is left counted.
        var deadline = DateTime.UtcNow + Generous;
        while ((await server.ServerInfo.GetServerInfoAsync(new GetServerInfoRequest())).ConnectionCount != 0)
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "connections left counted");
            await Task.Delay(50);
        }

        Assert.That(server.Output.Split('\n').Count(l => l.Contains("Starting a thread for the NVMe/TCP connection", StringComparison.Ordinal)), Is.EqualTo(1),
            "one warning for the whole run of failures");
    }

    /// <summary>Waits (bounded) for <paramref name="text"/> in the server's output, which its logger writes asynchronously.</summary>
    private static async Task<bool> OutputShowsAsync(ServerProcess server, string text)
    {
        var deadline = DateTime.UtcNow + Generous;
        while (!server.Output.Contains(text, StringComparison.Ordinal))
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            await Task.Delay(20);
        }

        return true;
    }

    private static async Task SkipUnlessWeCanRunAsNobodyAsync()
    {
        if (!OperatingSystem.IsLinux() || EffectiveUid() != 0)
        {
            Assert.Ignore("needs root, to run the server as another user whose RLIMIT_NPROC is enforced");
        }

        var check = await ProcessRunner.RunAsync("setpriv", [$"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", "test", "-r", RepoPaths.ServerDll], Generous);
        if (check.ExitCode != 0)
        {
            Assert.Ignore($"setpriv cannot run the server as user {Nobody} here: {check.Output}");
        }

        if (ThreadsOfUser(Nobody) > 0)
        {
            Assert.Ignore($"user {Nobody} runs other processes, whose threads would count against the limit");
        }
    }

    private static int EffectiveUid() =>
        int.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t', StringSplitOptions.RemoveEmptyEntries)[2]);

    /// <summary>Threads of every process whose real user is <paramref name="uid"/>: what RLIMIT_NPROC counts.</summary>
    private static int ThreadsOfUser(int uid)
    {
        var threads = 0;
        foreach (var status in Directory.EnumerateDirectories("/proc").Where(d => char.IsDigit(Path.GetFileName(d)[0])).Select(d => Path.Combine(d, "status")))
        {
            try
            {
                var lines = File.ReadAllLines(status);
                var realUid = int.Parse(lines.First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1]);
                if (realUid == uid)
                {
                    threads += int.Parse(lines.First(l => l.StartsWith("Threads:", StringComparison.Ordinal)).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1]);
                }
            }
            catch (IOException)
            {
                // The process ended meanwhile.
            }
        }

        return threads;
    }

    /// <summary>A TCP connection that completed ICReq / ICResp (TCP 1.0, 3.6.2.2).</summary>
    private static Socket Initialize(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 30_000 };
        socket.Connect(endpoint);
        var icreq = new byte[ICReq.Length];
        new ICReq(0, 0, false, false, 0).Write(icreq);
        socket.Send(icreq);
        var icresp = ReceiveExactly(socket, ICResp.Length);
        Assert.That(PduHeader.Read(icresp).Type, Is.EqualTo(PduType.ICResp));
        return socket;
    }

    /// <summary>An admin queue Connect (NVMe-oF 1.1, 3.3) with its data in the capsule; returns the completion's status.</summary>
    private static NvmeStatus ConnectAdmin(Socket socket, string subsystemNqn)
    {
        var host = NvmeHostIdentity.Create();
        var pdu = new byte[72 + ConnectData.Size];
        new PduHeader(PduType.CapsuleCmd, PduFlags.None, 72, 72, (uint)pdu.Length).Write(pdu);
        new ConnectCommand(0, 0, 31, 0, 0).ToSubmissionQueueEntry(1, new SglDescriptor(0, ConnectData.Size, SglDescriptor.InCapsuleDataBlock))
            .Write(pdu.AsSpan(PduHeader.Size));
        new ConnectData(host.Id, ConnectData.DynamicControllerId, subsystemNqn, host.Nqn).Write(pdu.AsSpan(72));
        socket.Send(pdu);
        var response = ReceiveExactly(socket, 24);
        Assert.That(PduHeader.Read(response).Type, Is.EqualTo(PduType.CapsuleResp));
        return CompletionQueueEntry.Read(response.AsSpan(PduHeader.Size)).Status;
    }

    private static byte[] ReceiveExactly(Socket socket, int length)
    {
        var buffer = new byte[length];
        for (var at = 0; at < length;)
        {
            var received = socket.Receive(buffer, at, length - at, SocketFlags.None);
            if (received == 0)
            {
                throw new EndOfStreamException("the target closed the connection");
            }

            at += received;
        }

        return buffer;
    }
}
