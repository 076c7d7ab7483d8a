using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Csi.Hosting;

/// <summary>
/// Logs and measures every CSI call: method, the volume (or snapshot) it concerns, the gRPC status and the
/// duration. Exceptions that are not <see cref="RpcException"/> become INTERNAL here, so a bug never reaches
/// the CO as an UNKNOWN status without a log line. Request fields are never logged wholesale: they carry
/// secrets (csi_secret) and mount flags.
/// </summary>
internal sealed class CallInterceptor(CsiMetrics metrics, ILogger<CallInterceptor> logger) : Interceptor
{
    // The field naming the object a request acts on, looked up once per request type.
    private static readonly ConcurrentDictionary<MessageDescriptor, FieldDescriptor?> _subjectFields = new();
    private static readonly string[] _subjectFieldNames = ["volume_id", "source_volume_id", "snapshot_id", "name"];

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        var method = MethodName(context.Method);
        var subject = SubjectOf(request);
        var started = Stopwatch.GetTimestamp();
        try
        {
            var response = await continuation(request, context);
            var elapsed = Stopwatch.GetElapsedTime(started);
            metrics.Record(method, StatusCode.OK, elapsed);
            CsiLog.CallSucceeded(logger, method, subject, StatusCode.OK, elapsed.TotalMilliseconds);
            return response;
        }
        catch (RpcException e)
        {
            var elapsed = Stopwatch.GetElapsedTime(started);
            metrics.Record(method, e.StatusCode, elapsed);
            if (e.StatusCode == StatusCode.Unimplemented)
            {
                // COs probe optional RPCs; UNIMPLEMENTED is an answer, not a fault.
                CsiLog.CallRefusedQuietly(logger, method, subject, e.StatusCode, elapsed.TotalMilliseconds, e.Status.Detail);
            }
            else
            {
                CsiLog.CallFailed(logger, method, subject, e.StatusCode, elapsed.TotalMilliseconds, e.Status.Detail);
            }

            throw;
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            var elapsed = Stopwatch.GetElapsedTime(started);
            metrics.Record(method, StatusCode.Cancelled, elapsed);
            CsiLog.CallFailed(logger, method, subject, StatusCode.Cancelled, elapsed.TotalMilliseconds, "cancelled by the caller or its deadline");
            throw new RpcException(new Status(StatusCode.Cancelled, "call cancelled"));
        }
        catch (Exception e)
        {
            var elapsed = Stopwatch.GetElapsedTime(started);
            metrics.Record(method, StatusCode.Internal, elapsed);
            CsiLog.CallCrashed(logger, e, method, subject, elapsed.TotalMilliseconds);
            throw new RpcException(new Status(StatusCode.Internal, $"{method} failed: {e.Message}"));
        }
    }

    /// <summary>"/csi.v1.Controller/CreateVolume" -> "CreateVolume".</summary>
    internal static string MethodName(string fullMethod)
    {
        var slash = fullMethod.LastIndexOf('/');
        return slash >= 0 ? fullMethod[(slash + 1)..] : fullMethod;
    }

    internal static string SubjectOf(object? request)
    {
        if (request is not IMessage message)
        {
            return "-";
        }

        var field = _subjectFields.GetOrAdd(message.Descriptor, static descriptor =>
        {
            foreach (var name in _subjectFieldNames)
            {
                var candidate = descriptor.FindFieldByName(name);
                if (candidate is { FieldType: FieldType.String, IsRepeated: false })
                {
                    return candidate;
                }
            }

            return null;
        });
        var value = field?.Accessor.GetValue(message) as string;
        return string.IsNullOrEmpty(value) ? "-" : value;
    }
}
