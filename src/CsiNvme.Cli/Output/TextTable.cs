namespace CsiNvme.Cli.Output;

/// <summary>A plain-text table with columns padded to their widest cell, like kubectl or docker print.</summary>
internal sealed class TextTable(params string[] headers)
{
    private const string Gap = "   ";
    private readonly List<string[]> _rows = [];

    public void AddRow(params string[] cells)
    {
        if (cells.Length != headers.Length)
        {
            throw new ArgumentException($"expected {headers.Length} cells, got {cells.Length}", nameof(cells));
        }

        _rows.Add(cells);
    }

    public void WriteTo(TextWriter writer)
    {
        int[] widths = headers.Select(h => h.Length).ToArray();
        foreach (string[] row in _rows)
        {
            for (int i = 0; i < row.Length; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }

        WriteRow(writer, headers, widths);
        foreach (string[] row in _rows)
        {
            WriteRow(writer, row, widths);
        }
    }

    private static void WriteRow(TextWriter writer, string[] cells, int[] widths)
    {
        // The last column is not padded so lines carry no trailing spaces.
        string line = string.Join(Gap, cells.Select((cell, i) => i == cells.Length - 1 ? cell : cell.PadRight(widths[i])));
        writer.WriteLine(line);
    }
}
