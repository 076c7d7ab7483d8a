using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>One content line of a chart template, as a pattern over the lines of a rendered manifest.</summary>
/// <param name="Source">The template line, trimmed.</param>
/// <param name="Pattern">Matches the normalised rendered line.</param>
/// <param name="Unconditional">Rendered with the given values for sure (not inside range or an unevaluated if).</param>
public sealed record TemplateLine(int Number, string Source, Regex Pattern, bool Unconditional);

/// <summary>
/// Reads a Helm template line by line without Helm: the literal parts stay literal; `.Values.…` paths,
/// `.Release.Namespace` and the chart's simple named templates become their values; anything else is a
/// wildcard. `if`/`with`/`else` on values paths (truthiness, eq, ne, not) are evaluated, so lines of a branch
/// the values do not take are dropped; lines under `range` or a condition this cannot evaluate are kept
/// as conditional. `toYaml .Values.x` lines expand to the value's YAML lines.
/// </summary>
public sealed partial class TemplateLines
{
    public const string ReleaseNamespace = "csinvme-system";

    private readonly JsonNode? _values;
    private readonly IReadOnlyDictionary<string, string> _includes;

    public TemplateLines(JsonNode? values, IReadOnlyDictionary<string, string> includes)
    {
        _values = values;
        _includes = includes;
    }

    /// <summary>Comment-free, trimmed, unquoted lines of a plain manifest, without document separators.</summary>
    public static IEnumerable<string> NormaliseManifest(string text) =>
        text.Split('\n').Select(l => l.TrimEnd('\r')).Select(Normalise).Where(l => l.Length > 0 && l != "---" && !l.StartsWith('#'));

    /// <summary>Trims and drops quotes around a scalar value, so `a: "1"` and `a: 1` compare equal.</summary>
    public static string Normalise(string line)
    {
        var trimmed = line.Trim();
        var match = QuotedScalar().Match(trimmed);
        return match.Success ? match.Groups["prefix"].Value + match.Groups["value"].Value : trimmed;
    }

    public IReadOnlyList<TemplateLine> Read(string template)
    {
        var result = new List<TemplateLine>();
        var scopes = new Stack<Scope>();
        var lines = template.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r');
            var trimmed = line.Trim();
            if (trimmed.Length == 0 || trimmed.StartsWith('#') || trimmed == "---" || trimmed.StartsWith("{{/*", StringComparison.Ordinal))
            {
                continue;
            }

            if (IsAction(trimmed))
            {
                var action = ActionBody(trimmed);
                if (HandleControl(action, scopes))
                {
                    continue;
                }

                if (scopes.Any(s => s.State == State.False))
                {
                    continue;
                }

                var toYaml = ToYamlAction().Match(action);
                if (toYaml.Success)
                {
                    var unconditional = scopes.All(s => s.State == State.True);
                    var node = Lookup(toYaml.Groups["path"].Value, scopes, out var known);
                    if (known)
                    {
                        foreach (var yamlLine in ToYamlLines(node))
                        {
                            result.Add(new TemplateLine(i + 1, trimmed, new Regex("^" + Regex.Escape(Normalise(yamlLine)) + "$"), unconditional));
                        }
                    }
                }

                // include of label blocks, variables, fail and the like render no comparable line.
                continue;
            }

            if (scopes.Any(s => s.State == State.False))
            {
                continue;
            }

            var pattern = new StringBuilder("^");
            var normalised = Normalise(trimmed);
            var last = 0;
            foreach (Match expression in Expression().Matches(normalised))
            {
                pattern.Append(Regex.Escape(normalised[last..expression.Index]));
                pattern.Append(Evaluate(expression.Groups["body"].Value, scopes));
                last = expression.Index + expression.Length;
            }

            pattern.Append(Regex.Escape(normalised[last..])).Append('$');
            result.Add(new TemplateLine(i + 1, trimmed, new Regex(pattern.ToString()), scopes.All(s => s.State == State.True)));
        }

        return result;
    }

    private static bool IsAction(string trimmed) =>
        trimmed.StartsWith("{{", StringComparison.Ordinal) && trimmed.EndsWith("}}", StringComparison.Ordinal) &&
        trimmed.IndexOf("}}", StringComparison.Ordinal) == trimmed.Length - 2;

    private static string ActionBody(string trimmed) => trimmed[2..^2].Trim().TrimStart('-').TrimEnd('-').Trim();

    private bool HandleControl(string action, Stack<Scope> scopes)
    {
        var word = action.Split(' ', 2)[0];
        var rest = action.Length > word.Length ? action[word.Length..].Trim() : "";
        switch (word)
        {
            case "if":
                {
                    var state = EvaluateCondition(rest, scopes);
                    scopes.Push(new Scope(state, state == State.True, null, false));
                    return true;
                }

            case "with":
                {
                    var value = Lookup(rest, scopes, out var known);
                    var state = known ? (Truthy(value) ? State.True : State.False) : State.Unknown;
                    scopes.Push(new Scope(state, state == State.True, known ? value : null, known));
                    return true;
                }

            case "range":
                {
                    var value = Lookup(rest, scopes, out var known);
                    var state = known && !Truthy(value) ? State.False : State.Unknown;
                    scopes.Push(new Scope(state, false, null, false));
                    return true;
                }

            case "else":
                {
                    var top = scopes.Pop();
                    State state;
                    if (rest.StartsWith("if ", StringComparison.Ordinal))
                    {
                        state = top.Taken ? State.False : EvaluateCondition(rest[3..], scopes);
                    }
                    else
                    {
                        state = top.Taken ? State.False : top.State == State.Unknown ? State.Unknown : State.True;
                    }

                    scopes.Push(new Scope(state, top.Taken || state == State.True, null, false));
                    return true;
                }

            case "end":
                scopes.Pop();
                return true;
            case "define":
                scopes.Push(new Scope(State.False, false, null, false));
                return true;
            default:
                return false;
        }
    }

    private State EvaluateCondition(string condition, Stack<Scope> scopes)
    {
        var parts = Tokens().Matches(condition).Select(m => m.Value).ToArray();
        if (parts.Length == 1)
        {
            var value = Lookup(parts[0], scopes, out var known);
            return known ? (Truthy(value) ? State.True : State.False) : State.Unknown;
        }

        if (parts.Length == 2 && parts[0] == "not")
        {
            var value = Lookup(parts[1], scopes, out var known);
            return known ? (Truthy(value) ? State.False : State.True) : State.Unknown;
        }

        if (parts.Length == 3 && parts[0] is "eq" or "ne")
        {
            var left = Operand(parts[1], scopes, out var knownLeft);
            var right = Operand(parts[2], scopes, out var knownRight);
            if (!knownLeft || !knownRight)
            {
                return State.Unknown;
            }

            return (left == right) == (parts[0] == "eq") ? State.True : State.False;
        }

        return State.Unknown;
    }

    private string? Operand(string token, Stack<Scope> scopes, out bool known)
    {
        if (token.StartsWith('"'))
        {
            known = true;
            return token.Trim('"');
        }

        var value = Lookup(token, scopes, out known);
        return known ? Scalar(value) : null;
    }

    private string Evaluate(string body, Stack<Scope> scopes)
    {
        var pipeline = body.Split('|').Select(p => p.Trim()).ToArray();
        var head = pipeline[0];
        if (pipeline.Skip(1).Any(p => p != "quote"))
        {
            return ".+?";
        }

        if (head is ".Release.Namespace" or "$.Release.Namespace")
        {
            return Regex.Escape(ReleaseNamespace);
        }

        var include = IncludeCall().Match(head);
        if (include.Success)
        {
            return _includes.TryGetValue(include.Groups["name"].Value, out var rendered) ? Regex.Escape(rendered) : ".+?";
        }

        var value = Lookup(head, scopes, out var known);
        return known && value is not JsonObject and not JsonArray ? Regex.Escape(Scalar(value)) : ".+?";
    }

    /// <summary>Resolves `.Values.a.b`, `$.Values.a.b` or `.` (the innermost known `with` value).</summary>
    private JsonNode? Lookup(string expression, Stack<Scope> scopes, out bool known)
    {
        expression = expression.Trim();
        if (expression == ".")
        {
            var with = scopes.FirstOrDefault(s => s.WithKnown || s.State == State.Unknown);
            known = with is { WithKnown: true };
            return with?.WithValue;
        }

        var match = ValuesPath().Match(expression);
        if (!match.Success)
        {
            known = false;
            return null;
        }

        JsonNode? node = _values;
        foreach (var part in match.Groups["path"].Value.Split('.'))
        {
            if (node is not JsonObject o || !o.TryGetPropertyValue(part, out node))
            {
                known = true;
                return null;
            }
        }

        known = true;
        return node;
    }

    public static string Scalar(JsonNode? value) => value switch
    {
        null => "",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        JsonValue v when v.GetValueKind() == JsonValueKind.True => "true",
        JsonValue v when v.GetValueKind() == JsonValueKind.False => "false",
        _ => value.ToJsonString(),
    };

    private static bool Truthy(JsonNode? value) => value switch
    {
        null => false,
        JsonObject o => o.Count > 0,
        JsonArray a => a.Count > 0,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>().Length > 0,
        JsonValue v when v.GetValueKind() == JsonValueKind.False => false,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => v.GetValue<double>() != 0,
        _ => true,
    };

    private static IEnumerable<string> ToYamlLines(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (key, child) in o)
                {
                    if (child is JsonObject or JsonArray)
                    {
                        yield return key + ":";
                        foreach (var line in ToYamlLines(child))
                        {
                            yield return line;
                        }
                    }
                    else
                    {
                        yield return $"{key}: {Scalar(child)}";
                    }
                }

                break;
            case JsonArray a:
                foreach (var item in a)
                {
                    if (item is JsonObject or JsonArray)
                    {
                        var first = true;
                        foreach (var line in ToYamlLines(item))
                        {
                            yield return first ? "- " + line : line;
                            first = false;
                        }
                    }
                    else
                    {
                        yield return "- " + Scalar(item);
                    }
                }

                break;
            default:
                yield return Scalar(node);
                break;
        }
    }

    private enum State
    {
        True,
        False,
        Unknown,
    }

    private sealed record Scope(State State, bool Taken, JsonNode? WithValue, bool WithKnown);

    [GeneratedRegex(@"^(?<prefix>(- )?([^:""']+: )?)(""(?<value>[^""]*)""|'(?<value>[^']*)')$")]
    private static partial Regex QuotedScalar();

    [GeneratedRegex(@"\{\{-?\s*(?<body>.*?)\s*-?\}\}")]
    private static partial Regex Expression();

    [GeneratedRegex(@"^toYaml\s+(?<path>\$?\.Values\.[A-Za-z0-9_.]+|\.)\s*\|\s*nindent\s+\d+$")]
    private static partial Regex ToYamlAction();

    [GeneratedRegex(@"^include\s+""(?<name>[^""]+)""\s+(\.|\$)$")]
    private static partial Regex IncludeCall();

    [GeneratedRegex(@"^\$?\.Values\.(?<path>[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*)$")]
    private static partial Regex ValuesPath();

    [GeneratedRegex(@"""[^""]*""|\S+")]
    private static partial Regex Tokens();
}
