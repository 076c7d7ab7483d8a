using System.CommandLine;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using CsiNvme.Api.Security;
using CsiNvme.Api.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace CsiNvme.Cli;

/// <summary>
/// What a command's action needs: output writers, the --json flag and gRPC clients for the chosen server.
/// <see cref="RunAsync"/> owns the channel and turns failures into messages and exit codes, so commands
/// contain only their happy path.
/// </summary>
internal sealed class CommandSession
{
    private static readonly TimeSpan s_callTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan s_connectTimeout = TimeSpan.FromSeconds(5);

    private readonly CancellationToken _cancellationToken;
    // How long the last call was allowed, for the message when it got no answer.
    private TimeSpan _lastCallTimeout = s_callTimeout;

    private CommandSession(ParseResult parseResult, GlobalOptions globals, string server, GrpcChannel channel, CancellationToken cancellationToken)
    {
        Out = parseResult.InvocationConfiguration.Output;
        Error = parseResult.InvocationConfiguration.Error;
        Json = parseResult.GetValue(globals.Json);
        Server = server;
        Channel = channel;
        Volumes = new VolumeService.VolumeServiceClient(channel);
        ServerInfo = new ServerService.ServerServiceClient(channel);
        Nodes = new NodeService.NodeServiceClient(channel);
        _cancellationToken = cancellationToken;
    }

    public TextWriter Out { get; }

    public TextWriter Error { get; }

    public bool Json { get; }

    /// <summary>The address as the user gave it, for messages.</summary>
    public string Server { get; }

    /// <summary>The channel to the server, for clients of services the session has no property for.</summary>
    public GrpcChannel Channel { get; }

    public VolumeService.VolumeServiceClient Volumes { get; }

    public ServerService.ServerServiceClient ServerInfo { get; }

    public NodeService.NodeServiceClient Nodes { get; }

    public CancellationToken CancellationToken => _cancellationToken;

    /// <summary>Options for every call: a deadline so a hung server cannot hang the shell, and Ctrl+C.</summary>
    public CallOptions Call => new(deadline: DateTime.UtcNow + s_callTimeout, cancellationToken: _cancellationToken);

    /// <summary>Options for a call that may take longer than most (a --timeout the user chose).</summary>
    public CallOptions CallWithin(TimeSpan timeout)
    {
        _lastCallTimeout = timeout;
        return new(deadline: DateTime.UtcNow + timeout, cancellationToken: _cancellationToken);
    }

    /// <summary>Options for one call of a loop that must end by <paramref name="deadline"/>; at most the usual call timeout.</summary>
    public CallOptions CallBy(DateTime deadline) =>
        new(deadline: deadline < DateTime.UtcNow + s_callTimeout ? deadline : DateTime.UtcNow + s_callTimeout, cancellationToken: _cancellationToken);

    /// <summary>
    /// Whether the call never got an answer from the server (nothing listening, connection lost, deadline), as opposed
    /// to a status the server sent. Grpc.Net.Client attaches the transport's exception to the statuses it makes up
    /// itself; a server's own UNAVAILABLE ("no primary is up right now") carries none.
    /// </summary>
    // A plaintext client meeting a TLS server usually sees the connection end (Unavailable), but sometimes the HTTP/2
    // handshake fails first, which gRPC reports as Internal "Error starting gRPC call": both are no answer.
    private static bool IsNoAnswer(RpcException e) =>
        e.StatusCode == StatusCode.DeadlineExceeded
        || (e.StatusCode == StatusCode.Unavailable && e.Status.DebugException is not null)
        || (e.StatusCode == StatusCode.Internal && e.Status.DebugException is HttpRequestException);

    public static async Task<int> RunAsync(
        ParseResult parseResult,
        GlobalOptions globals,
        CancellationToken cancellationToken,
        Func<CommandSession, Task<int>> body)
    {
        TextWriter error = parseResult.InvocationConfiguration.Error;
        if (!ClientSettings.TryResolve(parseResult, globals, out ClientSettings settings, out string? settingsError))
        {
            await error.WriteLineAsync($"csinvme: {settingsError}").ConfigureAwait(false);
            return ExitCodes.UsageError;
        }

        string server = settings.Server;
        if (!ServerAddress.TryParse(server, out Uri uri, out string? addressError))
        {
            await error.WriteLineAsync($"csinvme: {addressError}").ConfigureAwait(false);
            return ExitCodes.UsageError;
        }

        ManagementClientTls? tls;
        try
        {
            tls = settings.UsesTls ? new ManagementClientTls(settings.TlsCa!, settings.TlsCert, settings.TlsKey) : null;
        }
        catch (Exception e) when (e is IOException or CryptographicException or ArgumentException)
        {
            await error.WriteLineAsync($"csinvme: {e.Message}").ConfigureAwait(false);
            return ExitCodes.UsageError;
        }

        using GrpcChannel channel = ManagementClientTls.CreateChannel(uri.Authority, tls, s_connectTimeout);
        var session = new CommandSession(parseResult, globals, server, channel, cancellationToken);
        try
        {
            return await body(session).ConfigureAwait(false);
        }
        catch (RpcException e) when (IsNoAnswer(e))
        {
            string reason = e.StatusCode == StatusCode.DeadlineExceeded
                ? $"no answer within {session._lastCallTimeout.TotalSeconds:0} s"
                : Reason(e);
            string hint = IsTlsFailure(e)
                ? tls is null
                    ? "Does the server use TLS? Give --tls-ca (and --tls-cert/--tls-key), or set them in the config file."
                    : $"The server's certificate must be signed by the CA in {tls.Ca.File} and carry the role node, " +
                      "and the server must trust the CA that signed --tls-cert."
                : "Is the server running there? Pick another address with --server ADDR:PORT." + (tls is null ? " If it serves TLS, give --tls-ca." : "");
            await error.WriteLineAsync(
                $"csinvme: cannot reach the storage server at {server}: {reason}.\n{hint}").ConfigureAwait(false);
            return ExitCodes.ServerUnreachable;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unauthenticated)
        {
            await error.WriteLineAsync(
                $"csinvme: the server at {server} requires a client certificate" +
                (settings.TlsCert is null ? ": give --tls-cert and --tls-key (or CSINVME_TLS_CERT/CSINVME_TLS_KEY, or tlsCert/tlsKey in the config file)." : $": {e.Status.Detail}.")).ConfigureAwait(false);
            return ExitCodes.ServerRefused;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.PermissionDenied)
        {
            await error.WriteLineAsync(
                $"csinvme: permission denied: {e.Status.Detail}. Ask for a certificate with a role that may (see docs/security.md).").ConfigureAwait(false);
            return ExitCodes.ServerRefused;
        }
        catch (RpcException e) when (e.StatusCode != StatusCode.Cancelled || !cancellationToken.IsCancellationRequested)
        {
            string kind = Describe(e.StatusCode);
            string detail = e.Status.Detail;
            string message = string.IsNullOrEmpty(detail) ? kind
                : detail.Contains(kind, StringComparison.OrdinalIgnoreCase) ? detail
                : $"{detail} ({kind})";
            await error.WriteLineAsync($"csinvme: {message}").ConfigureAwait(false);
            return ExitCodes.ServerRefused;
        }
    }

    /// <summary>Whether the call failed in the TLS handshake (untrusted server, client certificate refused, TLS against cleartext).</summary>
    private static bool IsTlsFailure(RpcException e)
    {
        for (Exception? inner = e.Status.DebugException; inner is not null; inner = inner.InnerException)
        {
            if (inner is AuthenticationException)
            {
                return true;
            }
        }

        return false;
    }

    private static string Reason(RpcException e)
    {
        // The useful part (connection refused, name not found) is the innermost socket or HTTP error.
        for (Exception? inner = e.Status.DebugException; inner is not null; inner = inner.InnerException)
        {
            if (inner is SocketException socket)
            {
                return socket.SocketErrorCode switch
                {
                    SocketError.ConnectionRefused => "connection refused",
                    SocketError.HostNotFound or SocketError.NoData => "host name not found",
                    SocketError.TimedOut => "connection timed out",
                    _ => socket.Message,
                };
            }

            if (inner.InnerException is null)
            {
                return inner.Message.TrimEnd('.');
            }
        }

        return string.IsNullOrEmpty(e.Status.Detail) ? "unavailable" : e.Status.Detail.TrimEnd('.');
    }

    private static string Describe(StatusCode code) => code switch
    {
        StatusCode.NotFound => "not found",
        StatusCode.AlreadyExists => "already exists",
        StatusCode.InvalidArgument => "invalid argument",
        StatusCode.FailedPrecondition => "not allowed in the current state",
        StatusCode.Internal => "server error",
        StatusCode.Unimplemented => "not supported by this server",
        StatusCode.Unavailable => "unavailable right now; try again",
        _ => code.ToString(),
    };
}
