using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Protocol.Tests.Tcp;

/// <summary>The early send acts only in the batch after one that completed the whole depth, once, at 4 completions.</summary>
public sealed class EarlySendRuleTests
{
    [Test]
    public void The_first_batch_never_sends_early()
    {
        var rule = default(EarlySendRule);
        rule.BeginBatch(8);

        Assert.That(rule.SendNow(EarlySendRule.After, moreReceived: true), Is.False);
    }

    [Test]
    public void After_a_whole_depth_batch_the_next_sends_once_at_four_completions_while_more_waits()
    {
        var rule = WholeDepthBatchSeen(8);
        rule.BeginBatch(8);

        Assert.Multiple(() =>
        {
            Assert.That(rule.SendNow(3, moreReceived: true), Is.False);
            Assert.That(rule.SendNow(4, moreReceived: false), Is.False, "nothing more of the batch waits");
            Assert.That(rule.SendNow(4, moreReceived: true), Is.True);
            Assert.That(rule.SendNow(4, moreReceived: true), Is.False, "only once per batch");
        });
    }

    [Test]
    public void A_batch_that_left_commands_outstanding_disarms_the_next()
    {
        var rule = WholeDepthBatchSeen(32);
        rule.BeginBatch(32);
        rule.EndBatch(16);
        rule.BeginBatch(32);

        Assert.That(rule.SendNow(EarlySendRule.After, moreReceived: true), Is.False);
    }

    [TestCase(1)]
    [TestCase(EarlySendRule.After)]
    public void Depths_up_to_four_never_send_early(int depth)
    {
        var rule = WholeDepthBatchSeen(depth);
        rule.BeginBatch(depth);

        Assert.That(rule.SendNow(EarlySendRule.After, moreReceived: true), Is.False);
    }

    private static EarlySendRule WholeDepthBatchSeen(int depth)
    {
        var rule = default(EarlySendRule);
        rule.BeginBatch(depth);
        rule.EndBatch(depth);
        return rule;
    }
}
