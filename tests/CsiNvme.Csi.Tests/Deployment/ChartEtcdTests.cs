using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using CsiNvme.TestSupport;
using k8s.Models;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// The chart's etcd run for real: every member ci/cluster-values.yaml renders, started by /usr/bin/etcd with its
/// rendered arguments. Only what exists in a Kubernetes cluster alone is moved: each member's DNS name and wildcard
/// listeners become 127.0.0.1 with ports of its own, its data directory a temporary one. The members must bootstrap
/// one cluster named after the StatefulSet's pods and answer the probes as rendered. This machine's etcd is Debian's
/// 3.4 and the chart's image 3.5; the flags and /health queries the chart uses mean the same in both.
/// </summary>
[TestFixture]
public sealed partial class ChartEtcdTests
{
    private static readonly HttpClient s_http = new() { Timeout = TimeSpan.FromSeconds(3) };

    [Test]
    public async Task Rendered_members_bootstrap_one_cluster_and_pass_their_probes()
    {
        EtcdServer.Require();
        var values = ChartValues.All.Single(v => v.Name == "ci/cluster-values.yaml");
        var objects = Manifests.Load(Helm.Template(values.Arguments));
        var etcd = objects.OfKind<V1StatefulSet>().Single(s => s.Metadata.Labels["app.kubernetes.io/component"] == "etcd");
        var container = etcd.Spec.Template.Spec.Containers.Single();
        var dataMount = container.VolumeMounts.Single(m => m.Name == "data").MountPath;
        var members = Enumerable.Range(0, etcd.Spec.Replicas!.Value).Select(i => $"{etcd.Metadata.Name}-{i}").ToList();
        var hosts = members.ToDictionary(m => $"{m}.{etcd.Spec.ServiceName}.{etcd.Metadata.NamespaceProperty}.svc", m => m, StringComparer.Ordinal);
        var free = new Queue<int>(FreePorts(members.Count * container.Ports.Count));
        var ports = members.ToDictionary(m => m, _ => container.Ports.ToDictionary(p => p.ContainerPort, _ => free.Dequeue()));
        Assert.That(container.Command, Is.EqualTo(new[] { "etcd" }));
        Assert.That(members, Has.Count.EqualTo(3));

        using var temp = new TempDirectory("chart-etcd");
        var processes = new List<(string Member, Process Process, StringBuilder Output)>();
        try
        {
            foreach (var member in members)
            {
                var args = RenderedManifestTests.ExpandedArgs(container, member)
                    .Select(a => ToLoopback(a, member, hosts, ports))
                    .Select(a => a.StartsWith("--data-dir=" + dataMount + "/", StringComparison.Ordinal) ? "--data-dir=" + temp.Combine(member) + a[("--data-dir=" + dataMount).Length..] : a)
                    .ToList();
                var (process, output) = Start(args);
                processes.Add((member, process, output));
            }

            foreach (var (member, process, output) in processes)
            {
                foreach (var probe in new[] { container.StartupProbe, container.ReadinessProbe, container.LivenessProbe })
                {
                    var port = ports[member][container.Ports.Single(p => p.Name == probe.HttpGet.Port.Value).ContainerPort];
                    await WaitForOkAsync(process, output, $"http://127.0.0.1:{port}{probe.HttpGet.Path}", TimeSpan.FromSeconds(60));
                }
            }

            var client = ports[members[0]][container.Ports.Single(p => p.Name == "client").ContainerPort];
            using var list = await s_http.PostAsync($"http://127.0.0.1:{client}/v3/cluster/member/list", new StringContent("{}"));
            var listed = JsonNode.Parse(await list.Content.ReadAsStringAsync())!["members"]!.AsArray();
            var peer = container.Ports.Single(p => p.Name == "peer").ContainerPort;
            Assert.Multiple(() =>
            {
                Assert.That(listed.Select(m => m!["name"]!.GetValue<string>()).Order(StringComparer.Ordinal), Is.EqualTo(members));
                Assert.That(
                    listed.Select(m => m!["peerURLs"]!.AsArray().Single()!.GetValue<string>()).Order(StringComparer.Ordinal),
                    Is.EqualTo(members.Select(m => $"http://127.0.0.1:{ports[m][peer]}").Order(StringComparer.Ordinal)));
            });
        }
        finally
        {
            foreach (var (_, process, _) in processes)
            {
                if (!process.HasExited)
                {
                    process.Kill();
                }

                await process.WaitForExitAsync(CancellationToken.None);
                process.Dispose();
            }
        }
    }

    /// <summary>
    /// Rewrites every http URL of an argument: a member's DNS name to 127.0.0.1, a wildcard listener to the member the
    /// argument is for, each port to that member's own.
    /// </summary>
    private static string ToLoopback(string argument, string member, Dictionary<string, string> hosts, Dictionary<string, Dictionary<int, int>> ports) =>
        HttpUrl().Replace(argument, m =>
        {
            var host = m.Groups["host"].Value;
            var owner = host is "0.0.0.0" or "[::]" ? member
                : hosts.TryGetValue(host, out var named) ? named
                : throw new AssertionException($"{argument}: {host} is neither a wildcard nor a member's DNS name");
            return $"http://127.0.0.1:{ports[owner][int.Parse(m.Groups["port"].Value, System.Globalization.CultureInfo.InvariantCulture)]}";
        });

    private static (Process, StringBuilder) Start(IEnumerable<string> args)
    {
        var startInfo = new ProcessStartInfo(EtcdServer.DefaultBinary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            startInfo.ArgumentList.Add(arg);
        }

        // Debian's etcd reads ETCD_* variables; none may change what the rendered flags say.
        foreach (var key in startInfo.Environment.Keys.Where(k => k.StartsWith("ETCD_", StringComparison.Ordinal)).ToArray())
        {
            startInfo.Environment.Remove(key);
        }

        var output = new StringBuilder();
        var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) => Append(output, e.Data);
        process.ErrorDataReceived += (_, e) => Append(output, e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (process, output);
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is not null)
        {
            lock (output)
            {
                output.AppendLine(line);
            }
        }
    }

    private static async Task WaitForOkAsync(Process process, StringBuilder output, string url, TimeSpan timeout)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        var last = "no answer";
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (process.HasExited)
            {
                break;
            }

            try
            {
                using var response = await s_http.GetAsync(url);
                last = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                last = e.Message;
            }

            await Task.Delay(200);
        }

        string log;
        lock (output)
        {
            log = output.ToString();
        }

        Assert.Fail($"{url} did not answer 200 ({last}); etcd {(process.HasExited ? $"exited with {process.ExitCode}" : "still runs")}:\n{string.Join('\n', log.Split('\n').TakeLast(30))}");
    }

    /// <summary>Distinct free loopback ports (released before etcd binds them; a clash fails the test with etcd's output).</summary>
    private static int[] FreePorts(int count)
    {
        var sockets = Enumerable.Range(0, count).Select(_ => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)).ToList();
        try
        {
            foreach (var socket in sockets)
            {
                socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            }

            return sockets.Select(s => ((IPEndPoint)s.LocalEndPoint!).Port).ToArray();
        }
        finally
        {
            sockets.ForEach(s => s.Dispose());
        }
    }

    [GeneratedRegex(@"http://(?<host>\[[^\]]+\]|[^:/,\s]+):(?<port>\d+)")]
    private static partial Regex HttpUrl();
}
