using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace CsiNvme.Csi.Tests.Deployment;

/// <summary>A kind the client library has no model for (CRDs): typed metadata, the spec as a tree.</summary>
public sealed class CustomObject : IKubernetesObject<V1ObjectMeta>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = "";

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public Dictionary<string, object?> Spec { get; set; } = [];
}

/// <summary>snapshot.storage.k8s.io/v1 VolumeSnapshotClass: its fields are at the top level, so typed here.</summary>
public sealed class VolumeSnapshotClass : IKubernetesObject<V1ObjectMeta>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = "";

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("driver")]
    public string Driver { get; set; } = "";

    [JsonPropertyName("deletionPolicy")]
    public string DeletionPolicy { get; set; } = "";

    [JsonPropertyName("parameters")]
    public Dictionary<string, string>? Parameters { get; set; }
}

/// <summary>snapshot.storage.k8s.io/v1 VolumeSnapshot.</summary>
public sealed class VolumeSnapshot : IKubernetesObject<V1ObjectMeta>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = "";

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public VolumeSnapshotSpec Spec { get; set; } = new();
}

public sealed class VolumeSnapshotSpec
{
    [JsonPropertyName("volumeSnapshotClassName")]
    public string? VolumeSnapshotClassName { get; set; }

    [JsonPropertyName("source")]
    public VolumeSnapshotSource Source { get; set; } = new();
}

public sealed class VolumeSnapshotSource
{
    [JsonPropertyName("persistentVolumeClaimName")]
    public string? PersistentVolumeClaimName { get; set; }

    [JsonPropertyName("volumeSnapshotContentName")]
    public string? VolumeSnapshotContentName { get; set; }
}

/// <summary>Loads rendered manifests with the client library's models, strictly: an unknown field fails.</summary>
public static class Manifests
{
    private static readonly Dictionary<string, Type> _customKinds = new(StringComparer.Ordinal)
    {
        ["snapshot.storage.k8s.io/v1/VolumeSnapshotClass"] = typeof(VolumeSnapshotClass),
        ["snapshot.storage.k8s.io/v1/VolumeSnapshot"] = typeof(VolumeSnapshot),
        ["monitoring.coreos.com/v1/ServiceMonitor"] = typeof(CustomObject),
        ["cert-manager.io/v1/Certificate"] = typeof(CustomObject),
        ["cert-manager.io/v1/Issuer"] = typeof(CustomObject),
        ["kubevirt.io/v1/VirtualMachine"] = typeof(CustomObject),
        ["kubevirt.io/v1/VirtualMachineInstanceMigration"] = typeof(CustomObject),
    };

    public static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Load(string yaml)
    {
        var objects = KubernetesYaml.LoadAllFromString(yaml, _customKinds, strict: true);
        var result = new List<IKubernetesObject<V1ObjectMeta>>();
        foreach (var o in objects)
        {
            if (o is not IKubernetesObject<V1ObjectMeta> typed)
            {
                throw new InvalidOperationException($"{o.GetType().Name} is not a Kubernetes object with metadata");
            }

            // The type map chose the model from apiVersion/kind; a custom object must still say what it is.
            var key = typed.ApiVersion + "/" + typed.Kind;
            if (typed is CustomObject && !_customKinds.ContainsKey(key))
            {
                throw new InvalidOperationException($"unexpected kind {key}");
            }

            result.Add(typed);
        }

        return result;
    }

    public static IEnumerable<T> OfKind<T>(this IEnumerable<IKubernetesObject<V1ObjectMeta>> objects) => objects.OfType<T>();

    public static IEnumerable<CustomObject> Custom(this IEnumerable<IKubernetesObject<V1ObjectMeta>> objects, string kind) =>
        objects.OfType<CustomObject>().Where(o => o.Kind == kind);

    /// <summary>Walks a YAML tree (dictionaries and lists from the deserializer) by keys and list indexes.</summary>
    public static object? At(this object? node, params object[] path)
    {
        foreach (var step in path)
        {
            node = (node, step) switch
            {
                (IDictionary<string, object?> d, string key) => d.TryGetValue(key, out var v) ? v : null,
                (IDictionary<object, object?> d, string key) => d.TryGetValue(key, out var v) ? v : null,
                (IList<object?> list, int index) => index < list.Count ? list[index] : null,
                _ => null,
            };
        }

        return node;
    }

    public static IEnumerable<object?> Items(this object? node) => node as IList<object?> ?? (IEnumerable<object?>)[];
}
