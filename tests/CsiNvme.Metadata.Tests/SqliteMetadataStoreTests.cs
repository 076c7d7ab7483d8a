using Microsoft.Data.Sqlite;

namespace CsiNvme.Metadata.Tests;

public sealed class SqliteMetadataStoreTests
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-sqlite");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public async Task ReopeningKeepsEverything()
    {
        string path = _dir.Combine("metadata.db");
        VolumeRecord a = MetadataStoreTests.Volume("a", "nqn.host-1", "nqn.host-2");
        VolumeRecord b = MetadataStoreTests.Volume("b") with { AllowAnyHost = true };

        await using (SqliteMetadataStore store = await SqliteMetadataStore.OpenAsync(path))
        {
            Assert.That(store.Description, Is.EqualTo("sqlite:" + path));
            Assert.That(await store.TryCreateVolumeAsync(a), Is.True);
            Assert.That(await store.TryCreateVolumeAsync(b), Is.True);
            Assert.That(await store.UpdateVolumeAsync(a with { SizeBytes = 3L << 30 }), Is.True);
        }

        await using (SqliteMetadataStore reopened = await SqliteMetadataStore.OpenAsync(path))
        {
            IReadOnlyList<VolumeRecord> all = await reopened.ListVolumesAsync();
            Assert.That(all, Has.Count.EqualTo(2));
            MetadataStoreTests.AssertSame(all[0], a with { SizeBytes = 3L << 30 });
            MetadataStoreTests.AssertSame(all[1], b);
            Assert.That(await reopened.DeleteVolumeAsync("a"), Is.True);
        }

        await using SqliteMetadataStore third = await SqliteMetadataStore.OpenAsync(path);
        Assert.That((await third.ListVolumesAsync()).Select(v => v.Name), Is.EqualTo(new[] { "b" }));
    }

    [Test]
    public async Task TheFileIsInWalModeWithTheCurrentSchemaVersionAndNoOrphanHosts()
    {
        string path = _dir.Combine("metadata.db");
        await using (SqliteMetadataStore store = await SqliteMetadataStore.OpenAsync(path))
        {
            Assert.That(await store.TryCreateVolumeAsync(MetadataStoreTests.Volume("a", "nqn.host-1")), Is.True);
            Assert.That(await store.DeleteVolumeAsync("a"), Is.True);
        }

        await using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        await connection.OpenAsync();
        Assert.That(Scalar(connection, "PRAGMA journal_mode"), Is.EqualTo("wal"));
        Assert.That(Scalar(connection, "SELECT version FROM schema_version"), Is.EqualTo((long)SqliteMetadataStore.SchemaVersion));
        Assert.That(Scalar(connection, "SELECT COUNT(*) FROM allowed_hosts"), Is.EqualTo(0L), "hosts of a deleted volume are removed with it");
    }

    [Test]
    public async Task AFileFromANewerVersionIsRefused()
    {
        string path = _dir.Combine("metadata.db");
        await (await SqliteMetadataStore.OpenAsync(path)).DisposeAsync();
        await using (var connection = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            await connection.OpenAsync();
            Scalar(connection, "UPDATE schema_version SET version = 999");
        }

        Assert.That(async () => await SqliteMetadataStore.OpenAsync(path), Throws.InstanceOf<InvalidDataException>());
    }

    [Test]
    public async Task CallsAfterDisposeThrowObjectDisposed()
    {
        SqliteMetadataStore store = await SqliteMetadataStore.OpenAsync(_dir.Combine("metadata.db"));
        await store.DisposeAsync();
        await store.DisposeAsync();
        Assert.That(async () => await store.ListVolumesAsync(), Throws.InstanceOf<ObjectDisposedException>());
    }

    private static object? Scalar(SqliteConnection connection, string sql)
    {
        using SqliteCommand command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }
}
