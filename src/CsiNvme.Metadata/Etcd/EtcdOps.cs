using Etcdserverpb;
using Google.Protobuf;
using Mvccpb;

namespace CsiNvme.Metadata.Etcd;

/// <summary>Builders for the comparisons and operations of etcd transactions, so each transaction reads as its intent.</summary>
internal static class EtcdOps
{
    /// <summary>True when the key does not exist (version 0).</summary>
    public static Compare Absent(ByteString key) => new()
    {
        Key = key,
        Target = Compare.Types.CompareTarget.Version,
        Result = Compare.Types.CompareResult.Equal,
        Version = 0,
    };

    /// <summary>True when the key exists.</summary>
    public static Compare Present(ByteString key) => new()
    {
        Key = key,
        Target = Compare.Types.CompareTarget.Version,
        Result = Compare.Types.CompareResult.Greater,
        Version = 0,
    };

    /// <summary>True when the key was last written at <paramref name="revision"/>; never for a missing key when revision is non-zero.</summary>
    public static Compare ModRevisionIs(ByteString key, long revision) => new()
    {
        Key = key,
        Target = Compare.Types.CompareTarget.Mod,
        Result = Compare.Types.CompareResult.Equal,
        ModRevision = revision,
    };

    /// <summary>True when the key is attached to <paramref name="leaseId"/>.</summary>
    public static Compare LeaseIs(ByteString key, long leaseId) => new()
    {
        Key = key,
        Target = Compare.Types.CompareTarget.Lease,
        Result = Compare.Types.CompareResult.Equal,
        Lease = leaseId,
    };

    public static RequestOp Put(ByteString key, ByteString value, long leaseId = 0) =>
        new() { RequestPut = new PutRequest { Key = key, Value = value, Lease = leaseId } };

    public static RequestOp Get(ByteString key) => new() { RequestRange = new RangeRequest { Key = key } };

    public static RequestOp GetRange((ByteString Key, ByteString RangeEnd) range) =>
        new() { RequestRange = new RangeRequest { Key = range.Key, RangeEnd = range.RangeEnd } };

    /// <summary>Keys and versions only: cheaper when only which keys exist matters.</summary>
    public static RequestOp GetKeys((ByteString Key, ByteString RangeEnd) range) =>
        new() { RequestRange = new RangeRequest { Key = range.Key, RangeEnd = range.RangeEnd, KeysOnly = true } };

    public static RequestOp Delete(ByteString key) => new() { RequestDeleteRange = new DeleteRangeRequest { Key = key } };

    /// <summary>The single key-value a range operation of a transaction returned, or null.</summary>
    public static KeyValue? Single(ResponseOp response) => response.ResponseRange.Kvs.Count > 0 ? response.ResponseRange.Kvs[0] : null;
}
