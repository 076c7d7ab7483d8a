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
    public async Task SnapshotsAndPoolsSurviveAReopen()
    {
        string path = _dir.Combine("metadata.db");
        VolumeRecord volume = MetadataStoreTests.Volume("v") with { Pool = "big", Labels = new Dictionary<string, string> { ["mode"] = "block" } };
        SnapshotRecord snapshot = MetadataStoreTests.Snapshot("v-1", volume, "big") with { Labels = new Dictionary<string, string> { ["by"] = "csi" } };
        await using (SqliteMetadataStore store = await SqliteMetadataStore.OpenAsync(path))
        {
            Assert.That(await store.TryCreateVolumeAsync(volume), Is.True);
            Assert.That(await store.TryCreateSnapshotAsync(snapshot), Is.True);
        }

        await using SqliteMetadataStore reopened = await SqliteMetadataStore.OpenAsync(path);
        MetadataStoreTests.AssertSame(await reopened.GetVolumeAsync("v"), volume);
        Assert.That(await reopened.ListSnapshotsAsync(), Is.EqualTo(new[] { snapshot }));
    }

    [Test]
    public async Task AVersionOneFileIsMigratedKeepingItsVolumes()
    {
        string path = _dir.Combine("metadata.db");
        var id = Guid.NewGuid();
        await using (var connection = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            // The schema exactly as version 1 wrote it.
            await connection.OpenAsync();
            Scalar(connection, """
                CREATE TABLE schema_version (version INTEGER NOT NULL);
                INSERT INTO schema_version (version) VALUES (1);
                CREATE TABLE volumes (
                    id TEXT NOT NULL PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    size_bytes INTEGER NOT NULL,
                    block_size INTEGER NOT NULL,
                    allow_any_host INTEGER NOT NULL,
                    created_unix_ms INTEGER NOT NULL
                );
                CREATE TABLE allowed_hosts (
                    volume_id TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
                    host_nqn TEXT NOT NULL,
                    position INTEGER NOT NULL,
                    PRIMARY KEY (volume_id, host_nqn)
                );
                """);
            Scalar(connection, $"INSERT INTO volumes VALUES ('{id:D}', 'old', 8192, 512, 0, 1750000000000)");
            Scalar(connection, $"INSERT INTO allowed_hosts VALUES ('{id:D}', 'nqn.host-1', 0)");
        }

        await using (SqliteMetadataStore store = await SqliteMetadataStore.OpenAsync(path))
        {
            VolumeRecord? old = await store.GetVolumeAsync("old");
            Assert.That(old, Is.Not.Null);
            Assert.That(old!.Id, Is.EqualTo(id));
            Assert.That(old.AllowedHosts, Is.EqualTo(new[] { "nqn.host-1" }));
            Assert.That(old.Pool, Is.Empty, "volumes from before pools have none");
            Assert.That(old.Labels, Is.Empty, "volumes from before labels have none");
            Assert.That(await store.ListSnapshotsAsync(), Is.Empty);
            Assert.That(await store.TryCreateSnapshotAsync(MetadataStoreTests.Snapshot("s", old)), Is.True);
            Assert.That(store.StoreId, Is.Not.EqualTo(Guid.Empty), "a migrated file gets an identity");
            Assert.That(await store.ListPoolBindingsAsync(), Is.Empty);
            Assert.That(await store.GetReservationStateAsync(id), Is.Null, "volumes from before reservations have no state");
            await store.SaveReservationStateAsync(id, [1, 2, 3]);
        }

        await using var check = new SqliteConnection($"Data Source={path};Pooling=False");
        await check.OpenAsync();
        Assert.That(Scalar(check, "SELECT version FROM schema_version"), Is.EqualTo((long)SqliteMetadataStore.SchemaVersion), "migrated to the newest schema");
        Assert.That(Scalar(check, "SELECT length(state) FROM reservation_state"), Is.EqualTo(3L));
    }

    [Test]
    public async Task TheIdentityAndThePoolBindingsSurviveAReopenAndANewFileHasAnotherIdentity()
    {
        string path = _dir.Combine("metadata.db");
        Guid storeId;
        var fast = new PoolBinding("fast", Guid.NewGuid());
        await using (SqliteMetadataStore store = await SqliteMetadataStore.OpenAsync(path))
        {
            storeId = store.StoreId;
            await store.SetPoolBindingAsync(fast);
            await store.SetPoolBindingAsync(new PoolBinding("default", Guid.NewGuid()));
        }

        await using (SqliteMetadataStore reopened = await SqliteMetadataStore.OpenAsync(path))
        {
            Assert.That(reopened.StoreId, Is.EqualTo(storeId));
            Assert.That((await reopened.ListPoolBindingsAsync()).Select(p => p.Name), Is.EqualTo(new[] { "default", "fast" }));
            Assert.That((await reopened.ListPoolBindingsAsync())[1], Is.EqualTo(fast));
        }

        // The same path after the file was lost: another store, and the pools can tell.
        File.Delete(path);
        await using SqliteMetadataStore recreated = await SqliteMetadataStore.OpenAsync(path);
        Assert.That(recreated.StoreId, Is.Not.EqualTo(storeId));
        Assert.That(await recreated.ListPoolBindingsAsync(), Is.Empty);
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
