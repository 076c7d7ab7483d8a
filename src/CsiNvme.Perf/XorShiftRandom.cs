namespace CsiNvme.Perf;

/// <summary>
/// xorshift64* (Vigna): a few instructions per number, no allocation, good enough to spread offsets and choose
/// reads or writes; each load loop owns one, so nothing is shared between threads.
/// </summary>
internal struct XorShiftRandom
{
    private ulong _state;

    /// <param name="seed">Any value but zero.</param>
    public XorShiftRandom(ulong seed) => _state = seed == 0 ? 0x9E3779B97F4A7C15UL : seed;

    public ulong Next()
    {
        var x = _state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        _state = x;
        return x * 0x2545F4914F6CDD1DUL;
    }
}
