using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Net;
using CsiNvme.Api;
using CsiNvme.Cluster;
using CsiNvme.Volumes;
using CsiNvme.Volumes.Backends;
using CsiNvme.Target;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Server.Hosting;

/// <summary>Outcome of parsing the server's command line.</summary>
public sealed record ServerCommandLineResult(StorageServerOptions? Options, IReadOnlyList<string> Errors, ParseResult ParseResult)
{
    public bool HelpRequested => Options is null && Errors.Count == 0;
}

/// <summary>Command line of csinvme-server; every option has a default so no flags are needed.</summary>
public static class ServerCommandLine
{
    public static ServerCommandLineResult Parse(IReadOnlyList<string> args)
    {
        var dataDir = new Option<string>("--data-dir")
        {
            Description = "Directory for volume files and the metadata database. Thin pools remember the metadata store they are used with: " +
                          "started over the same pools with another (or an emptied) data directory, the server refuses to start and changes nothing.",
            HelpName = "DIR",
            DefaultValueFactory = _ => "./csinvme-data",
        };
        var nvmeListen = new Option<IPEndPoint[]>("--nvme-listen")
        {
            Description = "NVMe/TCP listen address, ADDR:PORT or [IPv6]:PORT; repeat for several (port 0 picks a free port).",
            HelpName = "ADDR:PORT",
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = false,
            CustomParser = result => result.Tokens.Select(t => ParseEndpointOrError(result, "--nvme-listen", t.Value)).ToArray(),
            DefaultValueFactory = _ => [new IPEndPoint(IPAddress.Loopback, StorageServerOptions.DefaultNvmePort)],
        };
        var advertise = new Option<IPAddress[]>("--advertise-address")
        {
            Description = "Address hosts are told to connect to when --nvme-listen binds 0.0.0.0 or [::] (with that listener's port); " +
                          "repeat for several. Default: every non-loopback IPv4 address of this machine's interfaces.",
            HelpName = "ADDR",
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = false,
            CustomParser = result => result.Tokens.Select(t => ParseAddressOrError(result, t.Value, "--advertise-address")).ToArray(),
        };
        var hostAddress = new Option<IPAddress[]>("--host-address")
        {
            Description = "Address hosts reach the NVMe/TCP listeners at (with each listener's port), when it is not the one the other storage " +
                          "nodes use (NAT in front of this node, or a front-end network for hosts): what discovery logs, volumes' listen " +
                          "addresses (the CSI publish_context) and the node list report; replication keeps using the listeners as bound " +
                          "or advertised. Repeat for several. Default: the advertised addresses.",
            HelpName = "ADDR",
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = false,
            CustomParser = result => result.Tokens.Select(t => ParseAddressOrError(result, t.Value, "--host-address")).ToArray(),
        };
        var mgmtListen = EndpointOption(
            "--mgmt-listen",
            "Management gRPC listen address (HTTP/2). Anything but a loopback address needs mutual TLS (--tls-cert, --tls-key, --tls-client-ca) or --insecure.",
            StorageServerOptions.DefaultManagementPort);
        var tlsCert = new Option<string>("--tls-cert")
        {
            Description = "PEM certificate of the management API (mutual TLS). In a cluster it is also this node's client certificate towards the other " +
                          "nodes, so its Common Name must be node or node:NAME. Reloaded when the file changes. Needs --tls-key and --tls-client-ca.",
            HelpName = "PATH",
        };
        var tlsKey = new Option<string>("--tls-key")
        {
            Description = "PEM private key of --tls-cert.",
            HelpName = "PATH",
        };
        var tlsClientCa = new Option<string>("--tls-client-ca")
        {
            Description = "PEM CA certificate(s) that sign the clients: every call needs a client certificate they signed, whose Common Name " +
                          "(ROLE or ROLE:NAME) gives its role: admin, csi-controller, read-only or node. In a cluster, the other nodes' " +
                          "certificates must chain to it too.",
            HelpName = "PATH",
        };
        var insecure = new Option<bool>("--insecure")
        {
            Description = "Serve the management API without TLS on a non-loopback --mgmt-listen: anyone who reaches the port may do anything.",
        };
        var metricsListen = EndpointOption("--metrics-listen", "Prometheus /metrics listen address (HTTP/1.1).", StorageServerOptions.DefaultMetricsPort);
        var backend = new Option<StorageBackend>("--backend")
        {
            Description = "Volume storage: 'thin' (default: thin volumes with snapshots and clones in pools, SQLite metadata in --data-dir), " +
                          "'file' (one sparse file per volume, no snapshots) or 'memory' (RAM only).",
            HelpName = "thin|file|memory",
            DefaultValueFactory = _ => StorageBackend.Thin,
            CustomParser = result => ParseEnumOrError(result, "--backend", result.Tokens[0].Value, StorageBackend.Thin, ["thin", "file", "memory"]),
        };
        var pools = new Option<PoolDefinition[]>("--pool")
        {
            Description = "Thin pool: a file (created sparse with SIZE when missing) or a raw block device /dev/...; repeat for several. " +
                          "Its name is the file name without extension. Default: DIR/pools/default.pool sized to the free space of DIR's file system.",
            HelpName = "PATH[,SIZE]",
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = false,
            CustomParser = result => result.Tokens.Select(t => ParsePoolOrError(result, t.Value)).ToArray(),
        };
        var poolReserves = new Option<PoolReserve[]>("--pool-reserve")
        {
            Description = "Free space of each thin pool that snapshots may not promise away: a snapshot (or a clone from a volume) is refused " +
                          "with RESOURCE_EXHAUSTED when the pool's free space beyond the reserve could not take an overwrite of all the data " +
                          "the source volume would then share with it. A percentage of the pool's capacity or a size (0 keeps only that guarantee); " +
                          "POOL=... for one pool; repeat for several. Default: 5%.",
            HelpName = "[POOL=]PERCENT%|SIZE",
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = false,
            CustomParser = result => result.Tokens.Select(t => ParsePoolReserveOrError(result, t.Value)).ToArray(),
        };
        var recoverMetadata = new Option<bool>("--recover-metadata")
        {
            Description = "Rebuild the volume and snapshot records the metadata store lacks from what the thin pools record about their images " +
                          "(names, sizes, hosts, labels, sources), adopt pools last used with another metadata store, then start as usual. " +
                          "Existing records are kept. For a lost or emptied --data-dir; use once, not as a standing option.",
        };
        var secretKeyFile = new Option<string>("--secret-key-file")
        {
            Description = "Key sealing the hosts' DH-HMAC-CHAP secrets in the metadata store: 32 bytes, raw or base64 (head -c 32 /dev/urandom | base64). " +
                          "Default: DIR/secret.key, made at the first start. Every node of a cluster needs the same key.",
            HelpName = "PATH",
        };
        var nvmePoll = new Option<double>("--nvme-poll-us")
        {
            Description = "Microseconds an NVMe/TCP connection's thread keeps polling its socket for the next command before it sleeps " +
                          "(0: sleep at once). Polling saves a thread wake-up per batch of commands at the price of CPU while hosts are busy.",
            HelpName = "MICROSECONDS",
            DefaultValueFactory = _ => StorageServerOptions.DefaultNvmePollTime.TotalMicroseconds,
            CustomParser = result =>
            {
                var text = result.Tokens[0].Value;
                if (double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var value) && value is >= 0 and <= 1_000_000)
                {
                    return value;
                }

                result.AddError($"--nvme-poll-us: '{text}' is not a number of microseconds between 0 and 1000000");
                return 0;
            },
        };
        var maxConnections = CountOption(
            "--nvme-max-connections",
            "Connections one NVMe/TCP listener holds at once; a connection beyond it is closed at once (each holds about 1.4 MB of buffers).",
            NvmeTargetOptions.DefaultMaxConnections,
            min: 1);
        var maxConnectionsPerHost = CountOption(
            "--nvme-max-connections-per-host",
            "Connections one host NQN may hold at once (admin and I/O queues, every volume); a Connect beyond it is refused as busy. " +
            $"Default: {NvmeTargetOptions.VolumesPerNode} volumes x (I/O queues granted + 1) + {NvmeTargetOptions.ReconnectHeadroom}, " +
            $"{new NvmeTargetOptions().EffectiveMaxConnectionsPerHost}.",
            defaultValue: null,
            min: 1);
        var connectTimeout = new Option<double>("--nvme-connect-timeout")
        {
            Description = "Seconds a new NVMe/TCP connection may take to its Connect (ICReq, then Connect) before it is closed.",
            HelpName = "SECONDS",
            DefaultValueFactory = _ => NvmeTargetOptions.DefaultConnectTimeout.TotalSeconds,
            CustomParser = result =>
            {
                var text = result.Tokens[0].Value;
                if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value is > 0 and <= 3600)
                {
                    return value;
                }

                result.AddError($"--nvme-connect-timeout: '{text}' is not a number of seconds above 0 and at most 3600");
                return 0;
            },
        };
        var maxThreads = CountOption(
            "--nvme-max-threads",
            "NVMe/TCP connections that get a thread of their own (the fastest model); later ones, and any whose thread cannot start, " +
            "run on the thread pool. 0: every connection on the thread pool.",
            NvmeTargetOptions.DefaultMaxConnectionThreads,
            min: 0);
        var logLevel = new Option<LogLevel>("--log-level")
        {
            Description = "Minimum log level: trace, debug, information, warning, error, critical or none.",
            HelpName = "LEVEL",
            DefaultValueFactory = _ => LogLevel.Information,
            CustomParser = result => ParseEnumOrError(
                result, "--log-level", result.Tokens[0].Value, LogLevel.Information, ["trace", "debug", "information", "warning", "error", "critical", "none"]),
        };

        var etcd = new Option<string[]>("--etcd-endpoints")
        {
            Description = "etcd client URLs (http://HOST:PORT, comma separated or repeated): join the storage cluster whose metadata they hold. " +
                          "Volumes then have 1 to 3 replicas on distinct nodes and any node answers the management API for all. Needs --backend thin.",
            HelpName = "URL[,URL]",
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = false,
            CustomParser = result => result.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                .Select(url => ParseEtcdUrlOrError(result, url)).ToArray(),
        };
        var nodeName = new Option<string>("--node-name")
        {
            Description = "This node's name in the cluster, [A-Za-z0-9._-]{1,63}, stable across restarts (default: the host name).",
            HelpName = "NAME",
        };
        var leaseTtl = new Option<int>("--lease-ttl")
        {
            Description = "Seconds of the node's cluster lease: a primary that cannot renew it stops completing writes, and an in-sync replica " +
                          "takes over once it expires (the failover stall a host sees is about this long). 2 to 60; default 2.",
            HelpName = "SECONDS",
            DefaultValueFactory = _ => 2,
            CustomParser = result => ParseIntOrError(result, "--lease-ttl", result.Tokens[0].Value, 2, 60),
        };
        var rebuildRate = new Option<long>("--rebuild-rate")
        {
            Description = "Copy rate of a replica rebuild, per second, so the volume's own I/O keeps its bandwidth (e.g. 200MiB; 0 for no limit).",
            HelpName = "SIZE",
            DefaultValueFactory = _ => 200L << 20,
            CustomParser = result => ParseSizeOrError(result, "--rebuild-rate", result.Tokens[0].Value),
        };
        var recordTimeout = new Option<int>("--replica-record-timeout")
        {
            Description = "Seconds a write that skipped a failed replica may wait for etcd to record the replica out of sync before it fails " +
                          "with a path error (the host retries it). 1 to 600; default 30.",
            HelpName = "SECONDS",
            DefaultValueFactory = _ => 30,
            CustomParser = result => ParseIntOrError(result, "--replica-record-timeout", result.Tokens[0].Value, 1, 600),
        };
        var handoverHostWait = new Option<int>("--handover-host-wait")
        {
            Description = "Seconds a draining node holds the handover of a primary until the hosts connected to it are connected to the replica " +
                          "taking the role (their node plugin connects a new replica's path within its path keeper period); then it hands over " +
                          $"anyway. 0 to 3600; default {ClusterNodeOptions.DefaultHandoverHostWait.TotalSeconds:F0}.",
            HelpName = "SECONDS",
            DefaultValueFactory = _ => (int)ClusterNodeOptions.DefaultHandoverHostWait.TotalSeconds,
            CustomParser = result => ParseIntOrError(result, "--handover-host-wait", result.Tokens[0].Value, 0, 3600),
        };

        var root = new RootCommand("CsiNvme storage server: NVMe/TCP target, management gRPC API and Prometheus metrics.")
        {
            etcd,
            nodeName,
            leaseTtl,
            rebuildRate,
            recordTimeout,
            handoverHostWait,
            dataDir,
            nvmeListen,
            advertise,
            hostAddress,
            mgmtListen,
            tlsCert,
            tlsKey,
            tlsClientCa,
            insecure,
            metricsListen,
            backend,
            pools,
            poolReserves,
            recoverMetadata,
            secretKeyFile,
            nvmePoll,
            maxConnections,
            maxConnectionsPerHost,
            connectTimeout,
            maxThreads,
            logLevel,
        };

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            return new ServerCommandLineResult(null, parse.Errors.Select(e => e.Message).Distinct().ToArray(), parse);
        }

        // No action is attached to the root command, so any action here is --help or --version.
        if (parse.Action is not null)
        {
            return new ServerCommandLineResult(null, [], parse);
        }

        var options = new StorageServerOptions
        {
            DataDirectory = parse.GetValue(dataDir)!,
            NvmeListen = [.. parse.GetValue(nvmeListen)!],
            AdvertiseAddresses = [.. parse.GetValue(advertise) ?? []],
            HostAddresses = [.. parse.GetValue(hostAddress) ?? []],
            ManagementListen = parse.GetValue(mgmtListen)!,
            Insecure = parse.GetValue(insecure),
            MetricsListen = parse.GetValue(metricsListen)!,
            Backend = parse.GetValue(backend),
            Pools = [.. parse.GetValue(pools) ?? []],
            PoolReserves = [.. parse.GetValue(poolReserves) ?? []],
            RecoverMetadata = parse.GetValue(recoverMetadata),
            SecretKeyFile = parse.GetValue(secretKeyFile),
            NvmePollTime = TimeSpan.FromMicroseconds(parse.GetValue(nvmePoll)),
            NvmeMaxConnections = parse.GetValue(maxConnections)!.Value,
            NvmeMaxConnectionsPerHost = parse.GetValue(maxConnectionsPerHost),
            NvmeConnectTimeout = TimeSpan.FromSeconds(parse.GetValue(connectTimeout)),
            NvmeMaxThreads = parse.GetValue(maxThreads)!.Value,
            LogLevel = parse.GetValue(logLevel),
            EtcdEndpoints = [.. parse.GetValue(etcd) ?? []],
            NodeName = parse.GetValue(nodeName),
            LeaseTtl = TimeSpan.FromSeconds(parse.GetValue(leaseTtl)),
            RebuildBytesPerSecond = parse.GetValue(rebuildRate),
            ReplicaRecordTimeout = TimeSpan.FromSeconds(parse.GetValue(recordTimeout)),
            HandoverHostWait = TimeSpan.FromSeconds(parse.GetValue(handoverHostWait)),
        };

        var tlsFiles = new[] { parse.GetValue(tlsCert), parse.GetValue(tlsKey), parse.GetValue(tlsClientCa) };
        if (tlsFiles.Any(f => f is not null))
        {
            if (tlsFiles.Any(string.IsNullOrWhiteSpace))
            {
                return new ServerCommandLineResult(null, ["--tls-cert, --tls-key and --tls-client-ca go together: mutual TLS needs the server's certificate, its key and the CA of the clients"], parse);
            }

            if (options.Insecure)
            {
                return new ServerCommandLineResult(null, ["--insecure contradicts --tls-cert: give one or the other"], parse);
            }

            options.ManagementTls = new ManagementTlsFiles(tlsFiles[0]!, tlsFiles[1]!, tlsFiles[2]!);
        }

        if (options.ManagementTls is null && !options.Insecure && !IPAddress.IsLoopback(options.ManagementListen.Address))
        {
            return new ServerCommandLineResult(
                null,
                [$"--mgmt-listen {options.ManagementListen} is not a loopback address: give --tls-cert, --tls-key and --tls-client-ca (mutual TLS, see docs/security.md), " +
                 "or --insecure to serve the management API there without TLS, open to anyone who reaches the port"],
                parse);
        }

        if (options.IsClusterNode)
        {
            if (options.Backend != StorageBackend.Thin)
            {
                return new ServerCommandLineResult(null, [$"--etcd-endpoints needs --backend thin, not {options.Backend.ToString().ToLowerInvariant()}"], parse);
            }

            if (options.RecoverMetadata)
            {
                return new ServerCommandLineResult(null, ["--recover-metadata rebuilds a single server's records; a cluster node's copies are rebuilt from the other nodes"], parse);
            }

            options.NodeName ??= Environment.MachineName;
            if (!CsiNvme.Metadata.ClusterLimits.IsValidNodeName(options.NodeName))
            {
                return new ServerCommandLineResult(null, [$"--node-name '{options.NodeName}' must be 1 to 63 of [A-Za-z0-9._-]"], parse);
            }
        }
        else if (parse.GetResult(nodeName) is not null)
        {
            return new ServerCommandLineResult(null, ["--node-name names a cluster node; give --etcd-endpoints too"], parse);
        }

        foreach (var (given, option) in new[] { (options.Pools.Count > 0, "--pool"), (options.PoolReserves.Count > 0, "--pool-reserve"), (options.RecoverMetadata, "--recover-metadata") })
        {
            if (given && options.Backend != StorageBackend.Thin)
            {
                return new ServerCommandLineResult(null, [$"{option} needs --backend thin, not {options.Backend.ToString().ToLowerInvariant()}"], parse);
            }
        }

        var duplicate = options.Pools.GroupBy(p => ThinVolumeBackend.PoolNameOf(p.Path)).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            return new ServerCommandLineResult(
                null,
                [$"--pool: {string.Join(" and ", duplicate.Select(p => p.Path))} would both be pool '{duplicate.Key}'; pool names come from the file names and must differ"],
                parse);
        }

        if (string.IsNullOrWhiteSpace(options.DataDirectory))
        {
            return new ServerCommandLineResult(null, ["--data-dir must not be empty"], parse);
        }

        return new ServerCommandLineResult(options, [], parse);
    }

    private static string ParseEtcdUrlOrError(ArgumentResult result, string url)
    {
        if (Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.Host.Length > 0 && uri.AbsolutePath == "/")
        {
            return url;
        }

        result.AddError($"--etcd-endpoints: '{url}' is not an http(s)://HOST:PORT URL");
        return url;
    }

    private static int ParseIntOrError(ArgumentResult result, string option, string text, int min, int max)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
        {
            return value;
        }

        result.AddError($"{option}: '{text}' is not a whole number from {min} to {max}");
        return min;
    }

    private static long ParseSizeOrError(ArgumentResult result, string option, string text)
    {
        if (ByteSize.TryParse(text, out var bytes, out var error))
        {
            return bytes;
        }

        result.AddError($"{option}: {error}");
        return 0;
    }

    /// <summary>
    /// Parses "ADDR:PORT" with an IPv4 address or a bracketed IPv6 address ("[::1]:4420"). Host names are
    /// refused: a listener binds to an address, and resolving names at start would make it depend on DNS.
    /// </summary>
    public static bool TryParseEndpoint(string text, out IPEndPoint? endpoint, out string? error)
    {
        endpoint = null;
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
        {
            error = $"'{text}' is not ADDR:PORT (examples: 127.0.0.1:4420, 0.0.0.0:4420, [::1]:4420)";
            return false;
        }

        var hostPart = text[..colon];
        var portPart = text[(colon + 1)..];
        if (hostPart.StartsWith('['))
        {
            if (!hostPart.EndsWith(']'))
            {
                error = $"'{text}': IPv6 address must be in brackets, e.g. [::1]:4420";
                return false;
            }

            hostPart = hostPart[1..^1];
            if (!IPAddress.TryParse(hostPart, out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                error = $"'{text}': '{hostPart}' is not an IPv6 address";
                return false;
            }
        }
        else if (hostPart.Contains(':'))
        {
            error = $"'{text}': IPv6 address must be in brackets, e.g. [::1]:4420";
            return false;
        }

        if (!IPAddress.TryParse(hostPart, out var address) || (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && hostPart.Count(c => c == '.') != 3))
        {
            error = $"'{text}': '{hostPart}' is not an IP address";
            return false;
        }

        if (!int.TryParse(portPart, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > IPEndPoint.MaxPort)
        {
            error = $"'{text}': port '{portPart}' must be a number from 0 to 65535";
            return false;
        }

        endpoint = new IPEndPoint(address, port);
        error = null;
        return true;
    }

    private static IPAddress ParseAddressOrError(System.CommandLine.Parsing.ArgumentResult result, string text, string option)
    {
        // An advertised address is one a host dials: a wildcard or a host name (resolved where?) would not do.
        if (!IPAddress.TryParse(text, out var address) ||
            (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && text.Count(c => c == '.') != 3))
        {
            result.AddError($"{option}: '{text}' is not an IP address");
            return IPAddress.None;
        }

        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            result.AddError($"{option}: '{text}' is a wildcard; give an address hosts can connect to");
            return IPAddress.None;
        }

        return address;
    }

    /// <summary>A whole number of at least <paramref name="min"/>; null when absent and <paramref name="defaultValue"/> is null.</summary>
    private static Option<int?> CountOption(string name, string description, int? defaultValue, int min) => new(name)
    {
        Description = description,
        HelpName = "N",
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            var text = result.Tokens[0].Value;
            if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min)
            {
                return value;
            }

            result.AddError($"{name}: '{text}' is not a whole number of at least {min}");
            return defaultValue;
        },
    };

    private static Option<IPEndPoint> EndpointOption(string name, string description, int defaultPort) => new(name)
    {
        Description = description,
        HelpName = "ADDR:PORT",
        DefaultValueFactory = _ => new IPEndPoint(IPAddress.Loopback, defaultPort),
        CustomParser = result => ParseEndpointOrError(result, name, result.Tokens[0].Value),
    };

    /// <summary>"PATH" or "PATH,SIZE"; the size uses the same units as everywhere else (10GiB, 500G, 1T).</summary>
    public static bool TryParsePool(string text, out PoolDefinition? pool, out string? error)
    {
        pool = null;
        var comma = text.LastIndexOf(',');
        var path = comma < 0 ? text : text[..comma];
        long? size = null;
        if (comma >= 0)
        {
            if (!ByteSize.TryParse(text[(comma + 1)..], out var bytes, out var sizeError) || bytes <= 0)
            {
                error = $"'{text}': invalid size: {sizeError ?? "it must be greater than zero"}";
                return false;
            }

            size = bytes;
        }

        if (string.IsNullOrWhiteSpace(path))
        {
            error = $"'{text}': the path is empty; use PATH or PATH,SIZE";
            return false;
        }

        var name = ThinVolumeBackend.PoolNameOf(path);
        if (!ThinVolumeBackend.IsValidPoolName(name))
        {
            error = $"'{text}': the pool name '{name}' (the file name without extension) must be 1 to 64 of [A-Za-z0-9._-]";
            return false;
        }

        pool = new PoolDefinition(path, size);
        error = null;
        return true;
    }

    /// <summary>"PERCENT%" or "SIZE", optionally prefixed with "POOL=".</summary>
    public static bool TryParsePoolReserve(string text, out PoolReserve? reserve, out string? error)
    {
        reserve = null;
        var equals = text.IndexOf('=');
        string? pool = equals < 0 ? null : text[..equals];
        var amount = equals < 0 ? text : text[(equals + 1)..];
        if (pool is not null && !ThinVolumeBackend.IsValidPoolName(pool))
        {
            error = $"'{text}': '{pool}' is not a pool name (1 to 64 of [A-Za-z0-9._-])";
            return false;
        }

        if (amount.EndsWith('%'))
        {
            if (!double.TryParse(amount[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var percent) || percent is < 0 or > 100 || double.IsNaN(percent))
            {
                error = $"'{text}': '{amount}' is not a percentage from 0% to 100%";
                return false;
            }

            reserve = new PoolReserve(pool, percent, null);
        }
        else if (ByteSize.TryParse(amount, out var bytes, out var sizeError) && bytes >= 0)
        {
            reserve = new PoolReserve(pool, null, bytes);
        }
        else
        {
            error = $"'{text}': '{amount}' is neither a percentage (5%) nor a size (10GiB): {sizeError ?? "it is negative"}";
            return false;
        }

        error = null;
        return true;
    }

    private static PoolReserve ParsePoolReserveOrError(ArgumentResult result, string text)
    {
        if (TryParsePoolReserve(text, out var reserve, out var error))
        {
            return reserve!;
        }

        result.AddError($"--pool-reserve: {error}");
        return PoolReserve.Default;
    }

    private static PoolDefinition ParsePoolOrError(ArgumentResult result, string text)
    {
        if (TryParsePool(text, out var pool, out var error))
        {
            return pool!;
        }

        result.AddError($"--pool: {error}");
        return new PoolDefinition(text, null);
    }

    private static IPEndPoint ParseEndpointOrError(ArgumentResult result, string option, string text)
    {
        if (TryParseEndpoint(text, out var endpoint, out var error))
        {
            return endpoint!;
        }

        result.AddError($"{option}: {error}");
        return new IPEndPoint(IPAddress.None, 0);
    }

    private static T ParseEnumOrError<T>(ArgumentResult result, string option, string text, T fallback, string[] allowed)
        where T : struct, Enum
    {
        if (allowed.Contains(text, StringComparer.OrdinalIgnoreCase) && Enum.TryParse<T>(text, ignoreCase: true, out var value))
        {
            return value;
        }

        result.AddError($"{option}: '{text}' is not one of {string.Join(", ", allowed)}");
        return fallback;
    }
}
