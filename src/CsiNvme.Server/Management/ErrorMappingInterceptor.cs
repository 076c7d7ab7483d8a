using CsiNvme.Volumes;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Server.Management;

/// <summary>
/// Turns <see cref="VolumeException"/> into the documented status codes and any other failure into
/// INTERNAL with its message, so a bad request never takes the server down or leaves the client guessing.
/// </summary>
internal sealed class ErrorMappingInterceptor(ILogger<ErrorMappingInterceptor> logger) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request,
        ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context);
        }
        catch (VolumeException e)
        {
            if (e.Error == VolumeError.Internal)
            {
                ServerLog.UnexpectedRpcError(logger, e, context.Method);
            }
            else
            {
                ServerLog.OperationRefused(logger, context.Method, e.Error.ToString(), e.Message);
            }

            throw new RpcException(new Status(ToStatusCode(e.Error), e.Message));
        }
        catch (RpcException)
        {
            throw;
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            throw new RpcException(new Status(StatusCode.Cancelled, "the call was cancelled"));
        }
        catch (Exception e)
        {
            ServerLog.UnexpectedRpcError(logger, e, context.Method);
            throw new RpcException(new Status(StatusCode.Internal, e.Message));
        }
    }

    internal static StatusCode ToStatusCode(VolumeError error) => error switch
    {
        VolumeError.InvalidArgument => StatusCode.InvalidArgument,
        VolumeError.NotFound => StatusCode.NotFound,
        VolumeError.AlreadyExists => StatusCode.AlreadyExists,
        VolumeError.FailedPrecondition => StatusCode.FailedPrecondition,
        VolumeError.ResourceExhausted => StatusCode.ResourceExhausted,
        VolumeError.Unavailable => StatusCode.Unavailable,
        _ => StatusCode.Internal,
    };
}
