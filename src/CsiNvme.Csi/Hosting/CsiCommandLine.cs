using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Net;
using CsiNvme.Csi.Node;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Csi.Hosting;

/// <summary>Outcome of parsing the driver's command line.</summary>
public sealed record CsiCommandLineResult(CsiDriverOptions? Options, IReadOnlyList<string> Errors, ParseResult ParseResult);

/// <summary>Command line of csinvme-csi.</summary>
public static class CsiCommandLine
{
    public static CsiCommandLineResult Parse(IReadOnlyList<string> args)
    {
        var mode = new Option<string>("--mode")
        {
            Description = "Services to serve besides Identity: controller, node or all.",
            HelpName = "controller|node|all",
            DefaultValueFactory = _ => "all",
        };
        var endpoint = new Option<string>("--endpoint")
        {
            Description = "gRPC endpoint: unix:///path/csi.sock, or tcp://ADDR:PORT.",
            HelpName = "URI",
            DefaultValueFactory = _ => CsiDriverOptions.DefaultEndpoint,
        };
        var nodeId = new Option<string?>("--node-id")
        {
            Description = "Name of this node (Kubernetes node name); required in node and all modes.",
            HelpName = "NAME",
        };
        var server = new Option<string?>("--server")
        {
            Description = "Management API of the storage server, ADDR:PORT; required in controller and all modes.",
            HelpName = "ADDR:PORT",
        };
        var serverTlsCa = new Option<string?>("--server-tls-ca")
        {
            Description = "PEM CA of the storage server's management certificate: talk mutual TLS to --server (default $CSINVME_TLS_CA).",
            HelpName = "PATH",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("CSINVME_TLS_CA"),
        };
        var serverTlsCert = new Option<string?>("--server-tls-cert")
        {
            Description = "PEM client certificate presented to the management API, role csi-controller (CN=csi-controller[:NAME]) " +
                          "(default $CSINVME_TLS_CERT). Reloaded when the file changes.",
            HelpName = "PATH",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("CSINVME_TLS_CERT"),
        };
        var serverTlsKey = new Option<string?>("--server-tls-key")
        {
            Description = "PEM private key of --server-tls-cert (default $CSINVME_TLS_KEY).",
            HelpName = "PATH",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("CSINVME_TLS_KEY"),
        };
        var hostNqn = new Option<string?>("--host-nqn")
        {
            Description = "NVMe host NQN of this node (node mode); derived from --node-id by default.",
            HelpName = "NQN",
        };
        var topology = new Option<string[]>("--topology")
        {
            Description = "Topology segment key=value reported by the node outside a cluster; repeatable.",
            HelpName = "KEY=VALUE",
            Arity = ArgumentArity.ZeroOrMore,
            AllowMultipleArgumentsPerToken = false,
        };
        var metricsListen = new Option<string?>("--metrics-listen")
        {
            Description = "Serve Prometheus /metrics on ADDR:PORT (HTTP/1.1); off by default.",
            HelpName = "ADDR:PORT",
        };
        var maxVolumesPerNode = new Option<string>("--max-volumes-per-node")
        {
            Description = "Volumes one node may have published at once: reported by the node (NodeGetInfo), enforced by the " +
                          "controller (ControllerPublishVolume); give both the same value. 0: no limit.",
            HelpName = "N",
            DefaultValueFactory = _ => CsiDriverOptions.DefaultMaxVolumesPerNode.ToString(CultureInfo.InvariantCulture),
        };
        var logLevel = new Option<string>("--log-level")
        {
            Description = "Minimum log level: trace, debug, information, warning, error, critical or none.",
            HelpName = "LEVEL",
            DefaultValueFactory = _ => "information",
        };

        // The node's NVMe/TCP connection defaults, one flag per StorageClass parameter the node reads: a volume
        // whose context lacks the parameter gets the flag's value.
        var connect = FabricsConnectSettings.Parameters
            .Select(p => (p.Key, Option: new Option<string?>(p.Flag) { Description = "Node mode: " + p.Description, HelpName = p.HelpName }))
            .ToArray();
        var multipathConnect = FabricsConnectSettings.MultipathParameters
            .Select(p => (p.Key, Option: new Option<string?>(p.Flag) { Description = "Node mode: " + p.Description, HelpName = p.HelpName }))
            .ToArray();
        var pathKeeperPeriod = new Option<string>("--path-keeper-period")
        {
            Description = "Node mode: seconds between two checks of every staged volume's paths (lost paths reconnected, new " +
                          "listeners from the discovery log connected, path metrics updated); keep it well below the ctrl-loss-tmo values.",
            HelpName = "SECONDS",
            DefaultValueFactory = _ => NodeOptions.DefaultPathKeeperPeriod.TotalSeconds.ToString(CultureInfo.InvariantCulture),
        };

        var root = new RootCommand($"CSI driver {CsiDriverOptions.DriverName}: Identity, Controller and Node services of CsiNvme.")
        {
            mode,
            endpoint,
            nodeId,
            server,
            serverTlsCa,
            serverTlsCert,
            serverTlsKey,
            hostNqn,
            topology,
            metricsListen,
            maxVolumesPerNode,
            logLevel,
            pathKeeperPeriod,
        };
        foreach (var (_, option) in connect.Concat(multipathConnect))
        {
            root.Options.Add(option);
        }

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            return new CsiCommandLineResult(null, parse.Errors.Select(e => e.Message).Distinct().ToArray(), parse);
        }

        // No action is attached to the root command, so any action here is --help or --version.
        if (parse.Action is not null)
        {
            return new CsiCommandLineResult(null, [], parse);
        }

        var errors = new List<string>();
        var options = new CsiDriverOptions
        {
            Endpoint = parse.GetValue(endpoint)!,
            NodeId = NullIfBlank(parse.GetValue(nodeId)),
            Server = NullIfBlank(parse.GetValue(server)),
            ServerTlsCa = NullIfBlank(parse.GetValue(serverTlsCa)),
            ServerTlsCertificate = NullIfBlank(parse.GetValue(serverTlsCert)),
            ServerTlsKey = NullIfBlank(parse.GetValue(serverTlsKey)),
            HostNqn = NullIfBlank(parse.GetValue(hostNqn)),
        };

        switch (parse.GetValue(mode)!.ToLowerInvariant())
        {
            case "controller":
                options.Mode = DriverMode.Controller;
                break;
            case "node":
                options.Mode = DriverMode.Node;
                break;
            case "all":
                options.Mode = DriverMode.All;
                break;
            default:
                errors.Add($"--mode '{parse.GetValue(mode)}' must be controller, node or all");
                break;
        }

        if (!CsiEndpoint.TryParse(options.Endpoint, out _, out var endpointError))
        {
            errors.Add($"--endpoint {endpointError}");
        }

        if (options.Mode.HasFlag(DriverMode.Controller) && options.Server is null)
        {
            errors.Add("--server ADDR:PORT is required in controller and all modes");
        }

        if (options.Server is not null && !Controller.StorageServerClient.IsValidAddress(options.Server))
        {
            errors.Add($"--server '{options.Server}' is not ADDR:PORT");
        }

        if ((options.ServerTlsCertificate is null) != (options.ServerTlsKey is null))
        {
            errors.Add("--server-tls-cert and --server-tls-key go together");
        }
        else if (options.ServerTlsCertificate is not null && options.ServerTlsCa is null)
        {
            errors.Add("--server-tls-cert needs --server-tls-ca, the CA that signed the storage server's certificate");
        }

        if (options.Mode.HasFlag(DriverMode.Node) && options.NodeId is null)
        {
            errors.Add("--node-id NAME is required in node and all modes");
        }

        foreach (var segment in parse.GetValue(topology) ?? [])
        {
            var equals = segment.IndexOf('=');
            if (equals <= 0 || equals == segment.Length - 1)
            {
                errors.Add($"--topology '{segment}' is not KEY=VALUE");
                continue;
            }

            options.Topology[segment[..equals]] = segment[(equals + 1)..];
        }

        var metrics = parse.GetValue(metricsListen);
        if (!string.IsNullOrWhiteSpace(metrics))
        {
            if (IPEndPoint.TryParse(metrics, out var metricsEndpoint) && metrics.Contains(':'))
            {
                options.MetricsListen = metricsEndpoint;
            }
            else
            {
                errors.Add($"--metrics-listen '{metrics}' is not ADDR:PORT");
            }
        }

        if (int.TryParse(parse.GetValue(maxVolumesPerNode), NumberStyles.None, CultureInfo.InvariantCulture, out var maxVolumes))
        {
            options.MaxVolumesPerNode = maxVolumes;
        }
        else
        {
            errors.Add($"--max-volumes-per-node '{parse.GetValue(maxVolumesPerNode)}' is not a whole number (0 for no limit)");
        }

        var connectValues = FlagValues(connect);
        var multipathValues = FlagValues(multipathConnect);
        try
        {
            options.NodeConnectDefaults = FabricsConnectSettings.FromNodeFlags(connectValues, multipathValues);
        }
        catch (FormatException e)
        {
            errors.Add(e.Message);
        }

        if (int.TryParse(parse.GetValue(pathKeeperPeriod), NumberStyles.None, CultureInfo.InvariantCulture, out var keeperSeconds) &&
            keeperSeconds is >= 1 and <= 3600)
        {
            options.PathKeeperPeriod = TimeSpan.FromSeconds(keeperSeconds);
        }
        else
        {
            errors.Add($"--path-keeper-period '{parse.GetValue(pathKeeperPeriod)}' is not a whole number of seconds from 1 to 3600");
        }

        if (Enum.TryParse<LogLevel>(parse.GetValue(logLevel), ignoreCase: true, out var level) &&
            !int.TryParse(parse.GetValue(logLevel), NumberStyles.Integer, CultureInfo.InvariantCulture, out _))
        {
            options.LogLevel = level;
        }
        else
        {
            errors.Add($"--log-level '{parse.GetValue(logLevel)}' must be trace, debug, information, warning, error, critical or none");
        }

        return errors.Count > 0
            ? new CsiCommandLineResult(null, errors, parse)
            : new CsiCommandLineResult(options, [], parse);

        Dictionary<string, string> FlagValues((string Key, Option<string?> Option)[] flags)
        {
            var values = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (key, option) in flags)
            {
                if (parse.GetValue(option) is not { } text)
                {
                    continue;
                }

                if (string.IsNullOrWhiteSpace(text))
                {
                    errors.Add($"{option.Name} needs a value");
                    continue;
                }

                values[key] = text;
            }

            return values;
        }
    }

    private static string? NullIfBlank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
}
