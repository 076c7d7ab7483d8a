using System.Text;
using Grpc.Core;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.ErrorTables;

/// <summary>
/// One row of an RPC's error table in the CSI spec (spec.md, "&lt;RPC&gt; Errors", and the general rows of
/// "Error Scheme"): the spec's condition, the request by which this driver meets it, and the code the spec
/// asks for. OK rows are the spec's "MUST reply 0 OK" cases and conditions the driver answers with success
/// by design (the test name says why). Rows found by csi-sanity name its spec in the case.
/// </summary>
public sealed record ErrorRow<TTable>(string Rpc, string Condition, string Case, StatusCode Code, Func<TTable, Task> Call)
{
    public const string MissingField = "Missing required field";
    public const string InvalidField = "Invalid or unsupported field in the request";
    public const string NotImplemented = "Call not implemented";

    public TestCaseData ToTestCase() => new TestCaseData(this).SetName($"{Rpc}: {Condition}: {Case} -> {CodeName(Code)}");

    public async Task VerifyAsync(TTable table)
    {
        if (Code == StatusCode.OK)
        {
            await Call(table);
            return;
        }

        var failure = await CsiHarness.FailureOf(() => Call(table));
        Assert.That(failure.StatusCode, Is.EqualTo(Code), failure.Status.Detail);
        // Error Scheme: "The status message MUST contain a human readable description of error".
        Assert.That(failure.Status.Detail, Is.Not.Empty);
        TestContext.Out.WriteLine($"{CodeName(failure.StatusCode)}: {failure.Status.Detail}");
    }

    public override string ToString() => $"{Rpc}: {Condition}: {Case}";

    /// <summary>The canonical name the spec uses: NOT_FOUND for NotFound.</summary>
    public static string CodeName(StatusCode code)
    {
        if (code == StatusCode.OK)
        {
            return "OK";
        }

        var name = code.ToString();
        var upper = new StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            if (i > 0 && char.IsUpper(name[i]))
            {
                upper.Append('_');
            }

            upper.Append(char.ToUpperInvariant(name[i]));
        }

        return upper.ToString();
    }
}
