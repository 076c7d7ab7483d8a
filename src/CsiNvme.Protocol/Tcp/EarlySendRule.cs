namespace CsiNvme.Protocol.Tcp;

/// <summary>
/// When to send the commands a received batch's first completions submitted before the rest of the batch is handled.
/// At moderate depth (QD8) the whole depth can travel between host and controller as one batch, each end idle while
/// the other works; sending early splits it into two groups in flight. At higher depth the batches already alternate
/// between two groups, and an extra send per batch only costs, so the rule only acts in the batch after one that
/// completed every outstanding command. Measured at QD8: after 4 completions it gained, after 2 it lost to the extra
/// sends; a rule without the whole-depth condition cost 11–17 % at QD32. One instance per receive loop.
/// </summary>
public struct EarlySendRule
{
    /// <summary>Completions after which an early send happens.</summary>
    public const int After = 4;

    private int _outstanding;
    private bool _wholeDepthBatches;
    private bool _armed;

    /// <summary>A received batch starts, with <paramref name="outstanding"/> commands in flight.</summary>
    public void BeginBatch(int outstanding)
    {
        _outstanding = outstanding;
        _armed = _wholeDepthBatches;
    }

    /// <summary>True once per armed batch: <paramref name="completions"/> reached <see cref="After"/> and more of the batch is waiting.</summary>
    public bool SendNow(int completions, bool moreReceived)
    {
        if (!_armed || completions != After || !moreReceived)
        {
            return false;
        }

        _armed = false;
        return true;
    }

    /// <summary>The batch ended after <paramref name="completions"/> completions.</summary>
    public void EndBatch(int completions) => _wholeDepthBatches = _outstanding > After && completions >= _outstanding;
}
