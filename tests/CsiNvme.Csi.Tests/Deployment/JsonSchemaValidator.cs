using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>
/// The part of JSON Schema draft-07 that values.schema.json uses, evaluated the way Helm does at install.
/// A keyword this validator does not know makes it throw, so the schema cannot silently grow checks that
/// nothing here evaluates.
/// </summary>
public sealed class JsonSchemaValidator
{
    private static readonly HashSet<string> _annotations = ["$schema", "title", "description", "definitions", "default", "examples", "$comment"];

    private readonly JsonObject _root;

    public JsonSchemaValidator(JsonObject root) => _root = root;

    public IReadOnlyList<string> Validate(JsonNode? instance)
    {
        var errors = new List<string>();
        Check(_root, instance, "$", errors);
        return errors;
    }

    private void Check(JsonObject schema, JsonNode? value, string path, List<string> errors)
    {
        foreach (var (keyword, argument) in schema)
        {
            switch (keyword)
            {
                case "$ref":
                    Check(Resolve(argument!.GetValue<string>()), value, path, errors);
                    break;
                case "type":
                    var types = argument is JsonArray many ? many.Select(t => t!.GetValue<string>()).ToArray() : [argument!.GetValue<string>()];
                    if (!types.Any(t => IsType(value, t)))
                    {
                        errors.Add($"{path}: {Describe(value)} is not of type {string.Join("|", types)}");
                    }

                    break;
                case "enum":
                    if (!argument!.AsArray().Any(e => JsonNode.DeepEquals(e, value)))
                    {
                        errors.Add($"{path}: {Describe(value)} is not one of {argument.ToJsonString()}");
                    }

                    break;
                case "const":
                    if (!JsonNode.DeepEquals(argument, value))
                    {
                        errors.Add($"{path}: {Describe(value)} is not {argument?.ToJsonString()}");
                    }

                    break;
                case "properties":
                    if (value is JsonObject props)
                    {
                        foreach (var (name, sub) in argument!.AsObject())
                        {
                            if (props.TryGetPropertyValue(name, out var child))
                            {
                                Check(sub!.AsObject(), child, $"{path}.{name}", errors);
                            }
                        }
                    }

                    break;
                case "additionalProperties":
                    if (value is JsonObject extra)
                    {
                        var known = schema["properties"]?.AsObject();
                        foreach (var (name, child) in extra)
                        {
                            if (known?.ContainsKey(name) == true)
                            {
                                continue;
                            }

                            if (argument is JsonValue b && b.GetValueKind() == JsonValueKind.False)
                            {
                                errors.Add($"{path}: unknown key '{name}'");
                            }
                            else if (argument is JsonObject sub)
                            {
                                Check(sub, child, $"{path}.{name}", errors);
                            }
                        }
                    }

                    break;
                case "required":
                    if (value is JsonObject required)
                    {
                        foreach (var name in argument!.AsArray().Select(n => n!.GetValue<string>()))
                        {
                            if (!required.ContainsKey(name))
                            {
                                errors.Add($"{path}: missing required key '{name}'");
                            }
                        }
                    }

                    break;
                case "items":
                    if (value is JsonArray array)
                    {
                        for (var i = 0; i < array.Count; i++)
                        {
                            Check(argument!.AsObject(), array[i], $"{path}[{i}]", errors);
                        }
                    }

                    break;
                case "minItems":
                    if (value is JsonArray few && few.Count < argument!.GetValue<int>())
                    {
                        errors.Add($"{path}: fewer than {argument} items");
                    }

                    break;
                case "uniqueItems":
                    if (value is JsonArray list && argument!.GetValue<bool>())
                    {
                        for (var i = 0; i < list.Count; i++)
                        {
                            for (var j = i + 1; j < list.Count; j++)
                            {
                                if (JsonNode.DeepEquals(list[i], list[j]))
                                {
                                    errors.Add($"{path}: items {i} and {j} are equal");
                                }
                            }
                        }
                    }

                    break;
                case "minimum":
                    if (IsType(value, "number") && value!.GetValue<double>() < argument!.GetValue<double>())
                    {
                        errors.Add($"{path}: {Describe(value)} is less than {argument}");
                    }

                    break;
                case "maximum":
                    if (IsType(value, "number") && value!.GetValue<double>() > argument!.GetValue<double>())
                    {
                        errors.Add($"{path}: {Describe(value)} is greater than {argument}");
                    }

                    break;
                case "minLength":
                    if (value is JsonValue s1 && s1.GetValueKind() == JsonValueKind.String && s1.GetValue<string>().Length < argument!.GetValue<int>())
                    {
                        errors.Add($"{path}: {Describe(value)} is shorter than {argument}");
                    }

                    break;
                case "maxLength":
                    if (value is JsonValue s2 && s2.GetValueKind() == JsonValueKind.String && s2.GetValue<string>().Length > argument!.GetValue<int>())
                    {
                        errors.Add($"{path}: {Describe(value)} is longer than {argument}");
                    }

                    break;
                case "pattern":
                    // ECMA 262 regular expressions; the ones in the schema mean the same in .NET.
                    if (value is JsonValue s3 && s3.GetValueKind() == JsonValueKind.String &&
                        !Regex.IsMatch(s3.GetValue<string>(), argument!.GetValue<string>(), RegexOptions.None, TimeSpan.FromSeconds(1)))
                    {
                        errors.Add($"{path}: {Describe(value)} does not match {argument}");
                    }

                    break;
                case "format":
                    if (value is JsonValue s4 && s4.GetValueKind() == JsonValueKind.String && !HasFormat(s4.GetValue<string>(), argument!.GetValue<string>()))
                    {
                        errors.Add($"{path}: {Describe(value)} is not a valid {argument}");
                    }

                    break;
                case "anyOf":
                    if (!argument!.AsArray().Any(sub => Passes(sub!.AsObject(), value, path)))
                    {
                        errors.Add($"{path}: {Describe(value)} matches none of {argument.ToJsonString()}");
                    }

                    break;
                case "oneOf":
                    if (argument!.AsArray().Count(sub => Passes(sub!.AsObject(), value, path)) != 1)
                    {
                        errors.Add($"{path}: {Describe(value)} does not match exactly one of {argument.ToJsonString()}");
                    }

                    break;
                case "not":
                    if (Passes(argument!.AsObject(), value, path))
                    {
                        errors.Add($"{path}: {Describe(value)} must not match {argument.ToJsonString()}");
                    }

                    break;
                default:
                    if (!_annotations.Contains(keyword))
                    {
                        throw new NotSupportedException($"schema keyword '{keyword}' at {path} is not implemented by this validator");
                    }

                    break;
            }
        }
    }

    private bool Passes(JsonObject schema, JsonNode? value, string path)
    {
        var errors = new List<string>();
        Check(schema, value, path, errors);
        return errors.Count == 0;
    }

    private JsonObject Resolve(string reference)
    {
        if (!reference.StartsWith("#/", StringComparison.Ordinal))
        {
            throw new NotSupportedException($"only local $ref is supported, not {reference}");
        }

        JsonNode node = _root;
        foreach (var part in reference[2..].Split('/'))
        {
            node = node[part] ?? throw new InvalidOperationException($"$ref {reference} does not resolve");
        }

        return node.AsObject();
    }

    private static bool IsType(JsonNode? value, string type) => type switch
    {
        "null" => value is null,
        "object" => value is JsonObject,
        "array" => value is JsonArray,
        "string" => value is JsonValue v && v.GetValueKind() == JsonValueKind.String,
        "boolean" => value is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False,
        "number" => value is JsonValue v && v.GetValueKind() == JsonValueKind.Number,
        "integer" => value is JsonValue v && v.GetValueKind() == JsonValueKind.Number && Math.Abs(v.GetValue<double>() % 1) == 0,
        _ => throw new NotSupportedException($"type '{type}'"),
    };

    private static bool HasFormat(string text, string format) => format switch
    {
        "ipv4" => IPAddress.TryParse(text, out var a) && a.AddressFamily == AddressFamily.InterNetwork && text.Count(c => c == '.') == 3,
        "ipv6" => IPAddress.TryParse(text, out var b) && b.AddressFamily == AddressFamily.InterNetworkV6,
        _ => throw new NotSupportedException($"format '{format}'"),
    };

    private static string Describe(JsonNode? value) => value is null ? "null" : value.ToJsonString();
}
