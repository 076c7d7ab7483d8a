namespace CsiNvme.Target.Listening;

/// <summary>
/// When a cap counts as left again: a cap is reached when something is refused, and left only once the count fell a
/// tenth below it (at least one), so that a count hovering at its cap logs one transition, not one per connection.
/// </summary>
internal static class Saturation
{
    public static bool IsWellBelow(int count, int max) => count <= max - Math.Max(1, max / 10);
}
