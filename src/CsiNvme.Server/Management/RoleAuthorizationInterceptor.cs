using CsiNvme.Api.Security;
using Grpc.AspNetCore.Server;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Server.Management;

/// <summary>
/// Who may make a management call: under TLS, the client certificate's role (<see cref="ManagementRoles"/>) checked
/// against <see cref="ManagementAccess"/>; UNAUTHENTICATED without a certificate, PERMISSION_DENIED when its role may
/// not make the call. Without TLS (loopback, or --insecure) every caller is admin. Each call is logged with its caller.
/// Kestrel has already refused a certificate that does not chain to the client CA during the handshake.
/// </summary>
internal sealed class RoleAuthorizationInterceptor(StorageServer server, ILogger<RoleAuthorizationInterceptor> logger) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, responseStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, responseStream, context);
    }

    private void Authorize(ServerCallContext context)
    {
        var method = ManagementAccess.ShortName(context.Method);
        if (server.Options.ManagementTls is null)
        {
            ServerLog.ManagementCall(logger, method, context.Peer, "(no TLS)", ManagementRoles.Admin);
            return;
        }

        var certificate = context.GetHttpContext().Connection.ClientCertificate;
        if (certificate is null)
        {
            ServerLog.ManagementCallRefused(logger, method, context.Peer, "(no certificate)", "", "no client certificate");
            throw new RpcException(new Status(
                StatusCode.Unauthenticated,
                "the server requires a client certificate (mutual TLS) signed by its client CA; none was presented"));
        }

        var subject = certificate.Subject;
        if (!ManagementRoles.TryGetRole(certificate, out var role))
        {
            ServerLog.ManagementCallRefused(logger, method, context.Peer, subject, "", "no role");
            throw new RpcException(new Status(
                StatusCode.PermissionDenied,
                $"the client certificate {subject} carries no role: its Common Name must be one of " +
                $"{string.Join(", ", ManagementRoles.Names)}, optionally followed by :NAME"));
        }

        var roleName = ManagementRoles.NameOf(role);
        if (!ManagementAccess.IsAllowed(role, context.Method))
        {
            ServerLog.ManagementCallRefused(logger, method, context.Peer, subject, roleName, "role not allowed");
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"role {roleName} may not call {method}"));
        }

        ServerLog.ManagementCall(logger, method, context.Peer, subject, roleName);
    }

}
