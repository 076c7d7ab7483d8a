using Microsoft.Data.Sqlite;

namespace CsiNvme.Metadata;

/// <summary>
/// Metadata in an embedded SQLite file. WAL with synchronous=FULL makes every committed write durable before
/// the call returns. One connection serves all callers in turn: metadata traffic is tiny, and a single
/// writer avoids SQLITE_BUSY handling entirely.
/// </summary>
public sealed class SqliteMetadataStore : IMetadataStore
{
    // Each entry upgrades the schema by one version; append, never edit, so existing files can be migrated.
    private static readonly string[] s_migrations =
    [
        """
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
        """,
        // 2: volumes remember their storage pool; snapshots. A snapshot has no foreign key to its source volume
        // because it outlives it.
        """
        ALTER TABLE volumes ADD COLUMN pool TEXT NOT NULL DEFAULT '';
        CREATE TABLE snapshots (
            id TEXT NOT NULL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source_volume_id TEXT NOT NULL,
            source_volume_name TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            block_size INTEGER NOT NULL,
            created_unix_ms INTEGER NOT NULL,
            pool TEXT NOT NULL
        );
        """,
        // 3: labels of volumes and snapshots, fixed at creation; rows go with their owner through ON DELETE CASCADE.
        """
        CREATE TABLE volume_labels (
            volume_id TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (volume_id, key)
        );
        CREATE TABLE snapshot_labels (
            snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (snapshot_id, key)
        );
        """,
        // 4: the store's own identity (one row, written at the first open) and the pools it was used with.
        """
        CREATE TABLE store_identity (id TEXT NOT NULL);
        CREATE TABLE pools (
            name TEXT NOT NULL PRIMARY KEY,
            pool_id TEXT NOT NULL
        );
        """,
        // 5: the NVMe reservation state of each volume's namespace, deleted with the volume.
        """
        CREATE TABLE reservation_state (
            volume_id TEXT NOT NULL PRIMARY KEY REFERENCES volumes(id) ON DELETE CASCADE,
            state BLOB NOT NULL
        );
        """,
        // 6: hosts that must authenticate with DH-HMAC-CHAP, their secrets sealed (encrypted), deleted with the volume.
        """
        CREATE TABLE host_secrets (
            volume_id TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
            host_nqn TEXT NOT NULL,
            sealed_secret TEXT NOT NULL,
            sealed_ctrl_secret TEXT NOT NULL,
            hash TEXT NOT NULL,
            dh_group TEXT NOT NULL,
            PRIMARY KEY (volume_id, host_nqn)
        );
        """,
        // 7: NVMe/TCP TLS: whether a volume takes only TLS connections, and hosts' PSKs sealed (encrypted).
        """
        ALTER TABLE volumes ADD COLUMN tls_required INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE host_tls_psks (
            volume_id TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
            host_nqn TEXT NOT NULL,
            sealed_psk TEXT NOT NULL,
            PRIMARY KEY (volume_id, host_nqn)
        );
        """,
    ];

    private const int SqliteUniqueConstraint = 2067; // SQLITE_CONSTRAINT_UNIQUE
    private const string SelectVolumeColumns = "SELECT id, name, size_bytes, block_size, allow_any_host, created_unix_ms, pool, tls_required FROM volumes";
    private const string SelectSnapshotColumns =
        "SELECT id, name, source_volume_id, source_volume_name, size_bytes, block_size, created_unix_ms, pool FROM snapshots";

    private readonly SqliteConnection _connection;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private bool _disposed;

    private SqliteMetadataStore(string databasePath, SqliteConnection connection, Guid storeId)
    {
        DatabasePath = databasePath;
        _connection = connection;
        StoreId = storeId;
    }

    public string DatabasePath { get; }

    public string Description => "sqlite:" + DatabasePath;

    public Guid StoreId { get; }

    /// <summary>The schema version this code writes; files at an older version are migrated on open.</summary>
    public static int SchemaVersion => s_migrations.Length;

    public static async Task<SqliteMetadataStore> OpenAsync(string databasePath, CancellationToken ct = default)
    {
        string fullPath = Path.GetFullPath(databasePath);
        var builder = new SqliteConnectionStringBuilder
        {
            DataSource = fullPath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            // Without pooling, disposing the store really closes the file (tests reopen it; so do restarts).
            Pooling = false,
        };
        var connection = new SqliteConnection(builder.ToString());
        try
        {
            await connection.OpenAsync(ct).ConfigureAwait(false);
            Execute(connection, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;");
            Migrate(connection, fullPath);
            return new SqliteMetadataStore(fullPath, connection, ReadOrCreateIdentity(connection));
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public Task<VolumeRecord?> GetVolumeAsync(string name, CancellationToken cancellationToken = default) =>
        RunAsync(() =>
        {
            using SqliteCommand command = Command(SelectVolumeColumns + " WHERE name = $name", ("$name", name));
            using SqliteDataReader reader = command.ExecuteReader();
            if (!reader.Read())
            {
                return null;
            }

            var (id, volume) = ReadVolume(reader);
            return volume with { AllowedHosts = ReadHosts(id), Labels = ReadLabels(s_volumeLabels, id), HostSecrets = ReadHostSecrets(id), TlsPsks = ReadTlsPsks(id) };
        }, cancellationToken);

    public Task<IReadOnlyList<VolumeRecord>> ListVolumesAsync(CancellationToken cancellationToken = default) =>
        RunAsync<IReadOnlyList<VolumeRecord>>(() =>
        {
            var hostsByVolume = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            using (SqliteCommand hosts = Command("SELECT volume_id, host_nqn FROM allowed_hosts ORDER BY volume_id, position"))
            using (SqliteDataReader reader = hosts.ExecuteReader())
            {
                while (reader.Read())
                {
                    string volumeId = reader.GetString(0);
                    if (!hostsByVolume.TryGetValue(volumeId, out List<string>? list))
                    {
                        hostsByVolume[volumeId] = list = [];
                    }

                    list.Add(reader.GetString(1));
                }
            }

            var labelsByVolume = ReadAllLabels(s_volumeLabels);
            var volumes = new List<VolumeRecord>();
            using (SqliteCommand command = Command(SelectVolumeColumns + " ORDER BY name"))
            using (SqliteDataReader reader = command.ExecuteReader())
            {
                while (reader.Read())
                {
                    var (id, volume) = ReadVolume(reader);
                    IReadOnlyList<string> allowed = hostsByVolume.TryGetValue(id, out List<string>? list) ? list.AsReadOnly() : Array.Empty<string>();
                    volumes.Add(volume with { AllowedHosts = allowed, Labels = labelsByVolume.GetValueOrDefault(id) ?? volume.Labels, HostSecrets = ReadHostSecrets(id), TlsPsks = ReadTlsPsks(id) });
                }
            }

            return volumes;
        }, cancellationToken);

    public Task<bool> TryCreateVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken = default)
    {
        VolumeRecord stored = VolumeRecordNormalization.Normalize(volume);
        return RunAsync(() =>
        {
            using SqliteTransaction transaction = _connection.BeginTransaction();
            using (SqliteCommand exists = Command("SELECT 1 FROM volumes WHERE name = $name", ("$name", stored.Name)))
            {
                if (exists.ExecuteScalar() is not null)
                {
                    return false;
                }
            }

            try
            {
                using SqliteCommand insert = Command(
                    "INSERT INTO volumes (id, name, size_bytes, block_size, allow_any_host, created_unix_ms, pool, tls_required) VALUES ($id, $name, $size, $block, $any, $created, $pool, $tls)",
                    ("$id", IdText(stored.Id)),
                    ("$name", stored.Name),
                    ("$size", stored.SizeBytes),
                    ("$block", stored.BlockSize),
                    ("$any", stored.AllowAnyHost),
                    ("$created", stored.CreatedAt.ToUnixTimeMilliseconds()),
                    ("$pool", stored.Pool),
                    ("$tls", stored.TlsRequired));
                insert.ExecuteNonQuery();
            }
            catch (SqliteException e) when (e.SqliteExtendedErrorCode == SqliteUniqueConstraint && e.Message.Contains("volumes.name", StringComparison.Ordinal))
            {
                // Another process sharing the file won the race between the check and the insert.
                return false;
            }

            InsertHosts(stored.Id, stored.AllowedHosts);
            InsertLabels(s_volumeLabels, stored.Id, stored.Labels);
            InsertHostSecrets(stored.Id, stored.HostSecrets);
            InsertTlsPsks(stored.Id, stored.TlsPsks);
            transaction.Commit();
            return true;
        }, cancellationToken);
    }

    public Task<bool> UpdateVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken = default)
    {
        VolumeRecord update = VolumeRecordNormalization.Normalize(volume);
        return RunAsync(() =>
        {
            using SqliteTransaction transaction = _connection.BeginTransaction();
            string? id;
            using (SqliteCommand find = Command("SELECT id FROM volumes WHERE name = $name", ("$name", update.Name)))
            {
                id = find.ExecuteScalar() as string;
            }

            if (id is null)
            {
                return false;
            }

            // Identity, creation time and pool are fixed at creation; only the mutable fields are replaced.
            using (SqliteCommand command = Command(
                "UPDATE volumes SET size_bytes = $size, block_size = $block, allow_any_host = $any, tls_required = $tls WHERE id = $id",
                ("$id", id),
                ("$size", update.SizeBytes),
                ("$block", update.BlockSize),
                ("$any", update.AllowAnyHost),
                ("$tls", update.TlsRequired)))
            {
                command.ExecuteNonQuery();
            }

            using (SqliteCommand clear = Command("DELETE FROM allowed_hosts WHERE volume_id = $id", ("$id", id)))
            {
                clear.ExecuteNonQuery();
            }

            InsertHosts(Guid.Parse(id), update.AllowedHosts);
            using (SqliteCommand clear = Command("DELETE FROM host_secrets WHERE volume_id = $id", ("$id", id)))
            {
                clear.ExecuteNonQuery();
            }

            InsertHostSecrets(Guid.Parse(id), update.HostSecrets);
            using (SqliteCommand clear = Command("DELETE FROM host_tls_psks WHERE volume_id = $id", ("$id", id)))
            {
                clear.ExecuteNonQuery();
            }

            InsertTlsPsks(Guid.Parse(id), update.TlsPsks);
            transaction.Commit();
            return true;
        }, cancellationToken);
    }

    public Task<bool> DeleteVolumeAsync(string name, CancellationToken cancellationToken = default) =>
        RunAsync(() =>
        {
            // allowed_hosts rows go with it through ON DELETE CASCADE.
            using SqliteCommand command = Command("DELETE FROM volumes WHERE name = $name", ("$name", name));
            return command.ExecuteNonQuery() > 0;
        }, cancellationToken);

    public Task<SnapshotRecord?> GetSnapshotAsync(string name, CancellationToken cancellationToken = default) =>
        RunAsync(() =>
        {
            using SqliteCommand command = Command(SelectSnapshotColumns + " WHERE name = $name", ("$name", name));
            using SqliteDataReader reader = command.ExecuteReader();
            if (!reader.Read())
            {
                return null;
            }

            SnapshotRecord snapshot = ReadSnapshot(reader);
            return snapshot with { Labels = ReadLabels(s_snapshotLabels, IdText(snapshot.Id)) };
        }, cancellationToken);

    public Task<IReadOnlyList<SnapshotRecord>> ListSnapshotsAsync(CancellationToken cancellationToken = default) =>
        RunAsync<IReadOnlyList<SnapshotRecord>>(() =>
        {
            var labelsBySnapshot = ReadAllLabels(s_snapshotLabels);
            using SqliteCommand command = Command(SelectSnapshotColumns + " ORDER BY name");
            using SqliteDataReader reader = command.ExecuteReader();
            var snapshots = new List<SnapshotRecord>();
            while (reader.Read())
            {
                SnapshotRecord snapshot = ReadSnapshot(reader);
                snapshots.Add(snapshot with { Labels = labelsBySnapshot.GetValueOrDefault(IdText(snapshot.Id)) ?? snapshot.Labels });
            }

            return snapshots;
        }, cancellationToken);

    public Task<bool> TryCreateSnapshotAsync(SnapshotRecord snapshot, CancellationToken cancellationToken = default)
    {
        SnapshotRecord stored = VolumeRecordNormalization.Normalize(snapshot);
        return RunAsync(() =>
        {
            using SqliteTransaction transaction = _connection.BeginTransaction();
            try
            {
                using SqliteCommand insert = Command(
                    "INSERT INTO snapshots (id, name, source_volume_id, source_volume_name, size_bytes, block_size, created_unix_ms, pool) " +
                    "VALUES ($id, $name, $source_id, $source_name, $size, $block, $created, $pool)",
                    ("$id", IdText(stored.Id)),
                    ("$name", stored.Name),
                    ("$source_id", IdText(stored.SourceVolumeId)),
                    ("$source_name", stored.SourceVolumeName),
                    ("$size", stored.SizeBytes),
                    ("$block", stored.BlockSize),
                    ("$created", stored.CreatedAt.ToUnixTimeMilliseconds()),
                    ("$pool", stored.Pool));
                insert.ExecuteNonQuery();
            }
            catch (SqliteException e) when (e.SqliteExtendedErrorCode == SqliteUniqueConstraint && e.Message.Contains("snapshots.name", StringComparison.Ordinal))
            {
                return false;
            }

            InsertLabels(s_snapshotLabels, stored.Id, stored.Labels);
            transaction.Commit();
            return true;
        }, cancellationToken);
    }

    public Task<bool> DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default) =>
        RunAsync(() =>
        {
            using SqliteCommand command = Command("DELETE FROM snapshots WHERE name = $name", ("$name", name));
            return command.ExecuteNonQuery() > 0;
        }, cancellationToken);

    public Task<IReadOnlyList<PoolBinding>> ListPoolBindingsAsync(CancellationToken cancellationToken = default) =>
        RunAsync<IReadOnlyList<PoolBinding>>(() =>
        {
            using SqliteCommand command = Command("SELECT name, pool_id FROM pools ORDER BY name");
            using SqliteDataReader reader = command.ExecuteReader();
            var pools = new List<PoolBinding>();
            while (reader.Read())
            {
                pools.Add(new PoolBinding(reader.GetString(0), Guid.Parse(reader.GetString(1))));
            }

            return pools;
        }, cancellationToken);

    public Task SetPoolBindingAsync(PoolBinding binding, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(binding);
        ArgumentException.ThrowIfNullOrEmpty(binding.Name);
        return RunAsync(() =>
        {
            using SqliteCommand command = Command(
                "INSERT INTO pools (name, pool_id) VALUES ($name, $id) ON CONFLICT (name) DO UPDATE SET pool_id = excluded.pool_id",
                ("$name", binding.Name),
                ("$id", IdText(binding.PoolId)));
            return command.ExecuteNonQuery();
        }, cancellationToken);
    }

    public Task<byte[]?> GetReservationStateAsync(Guid volumeId, CancellationToken cancellationToken = default) =>
        RunAsync(() =>
        {
            using SqliteCommand command = Command("SELECT state FROM reservation_state WHERE volume_id = $id", ("$id", IdText(volumeId)));
            return command.ExecuteScalar() as byte[];
        }, cancellationToken);

    public Task SaveReservationStateAsync(Guid volumeId, byte[] state, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(state);
        return RunAsync(() =>
        {
            using SqliteCommand command = Command(
                "INSERT INTO reservation_state (volume_id, state) SELECT $id, $state WHERE EXISTS (SELECT 1 FROM volumes WHERE id = $id) " +
                "ON CONFLICT (volume_id) DO UPDATE SET state = excluded.state",
                ("$id", IdText(volumeId)),
                ("$state", state));
            if (command.ExecuteNonQuery() == 0)
            {
                throw new InvalidOperationException($"no volume has id {volumeId}");
            }

            return true;
        }, cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            await _connection.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<T> RunAsync<T>(Func<T> work, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return work();
        }
        finally
        {
            _gate.Release();
        }
    }

    private void InsertHosts(Guid volumeId, IReadOnlyList<string> hosts)
    {
        using SqliteCommand insert = Command(
            "INSERT INTO allowed_hosts (volume_id, host_nqn, position) VALUES ($id, $nqn, $position)",
            ("$id", IdText(volumeId)),
            ("$nqn", ""),
            ("$position", 0));
        for (int i = 0; i < hosts.Count; i++)
        {
            insert.Parameters["$nqn"].Value = hosts[i];
            insert.Parameters["$position"].Value = i;
            insert.ExecuteNonQuery();
        }
    }

    private void InsertLabels(LabelTable table, Guid ownerId, IReadOnlyDictionary<string, string> labels)
    {
        using SqliteCommand insert = Command(
            $"INSERT INTO {table.Name} ({table.OwnerColumn}, key, value) VALUES ($id, $key, $value)",
            ("$id", IdText(ownerId)),
            ("$key", ""),
            ("$value", ""));
        foreach (var (key, value) in labels)
        {
            insert.Parameters["$key"].Value = key;
            insert.Parameters["$value"].Value = value;
            insert.ExecuteNonQuery();
        }
    }

    private IReadOnlyDictionary<string, string> ReadLabels(LabelTable table, string ownerId)
    {
        using SqliteCommand command = Command($"SELECT key, value FROM {table.Name} WHERE {table.OwnerColumn} = $id", ("$id", ownerId));
        using SqliteDataReader reader = command.ExecuteReader();
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        while (reader.Read())
        {
            labels[reader.GetString(0)] = reader.GetString(1);
        }

        return labels.AsReadOnly();
    }

    private Dictionary<string, IReadOnlyDictionary<string, string>> ReadAllLabels(LabelTable table)
    {
        var byOwner = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        using (SqliteCommand command = Command($"SELECT {table.OwnerColumn}, key, value FROM {table.Name}"))
        using (SqliteDataReader reader = command.ExecuteReader())
        {
            while (reader.Read())
            {
                string owner = reader.GetString(0);
                if (!byOwner.TryGetValue(owner, out Dictionary<string, string>? labels))
                {
                    byOwner[owner] = labels = new Dictionary<string, string>(StringComparer.Ordinal);
                }

                labels[reader.GetString(1)] = reader.GetString(2);
            }
        }

        return byOwner.ToDictionary(p => p.Key, p => (IReadOnlyDictionary<string, string>)p.Value.AsReadOnly(), StringComparer.Ordinal);
    }

    private void InsertHostSecrets(Guid volumeId, IReadOnlyList<HostSecretRecord> secrets)
    {
        using SqliteCommand insert = Command(
            "INSERT INTO host_secrets (volume_id, host_nqn, sealed_secret, sealed_ctrl_secret, hash, dh_group) VALUES ($id, $nqn, $secret, $ctrl, $hash, $group)",
            ("$id", IdText(volumeId)), ("$nqn", ""), ("$secret", ""), ("$ctrl", ""), ("$hash", ""), ("$group", ""));
        foreach (var secret in secrets)
        {
            insert.Parameters["$nqn"].Value = secret.HostNqn;
            insert.Parameters["$secret"].Value = secret.SealedSecret;
            insert.Parameters["$ctrl"].Value = secret.SealedControllerSecret;
            insert.Parameters["$hash"].Value = secret.Hash;
            insert.Parameters["$group"].Value = secret.DhGroup;
            insert.ExecuteNonQuery();
        }
    }

    private void InsertTlsPsks(Guid volumeId, IReadOnlyList<TlsPskRecord> psks)
    {
        using SqliteCommand insert = Command(
            "INSERT INTO host_tls_psks (volume_id, host_nqn, sealed_psk) VALUES ($id, $nqn, $psk)",
            ("$id", IdText(volumeId)), ("$nqn", ""), ("$psk", ""));
        foreach (var psk in psks)
        {
            insert.Parameters["$nqn"].Value = psk.HostNqn;
            insert.Parameters["$psk"].Value = psk.SealedPsk;
            insert.ExecuteNonQuery();
        }
    }

    private IReadOnlyList<TlsPskRecord> ReadTlsPsks(string volumeId)
    {
        using SqliteCommand command = Command("SELECT host_nqn, sealed_psk FROM host_tls_psks WHERE volume_id = $id ORDER BY host_nqn", ("$id", volumeId));
        using SqliteDataReader reader = command.ExecuteReader();
        var psks = new List<TlsPskRecord>();
        while (reader.Read())
        {
            psks.Add(new TlsPskRecord(reader.GetString(0), reader.GetString(1)));
        }

        return psks.AsReadOnly();
    }

    private IReadOnlyList<HostSecretRecord> ReadHostSecrets(string volumeId)
    {
        using SqliteCommand command = Command(
            "SELECT host_nqn, sealed_secret, sealed_ctrl_secret, hash, dh_group FROM host_secrets WHERE volume_id = $id ORDER BY host_nqn", ("$id", volumeId));
        using SqliteDataReader reader = command.ExecuteReader();
        var secrets = new List<HostSecretRecord>();
        while (reader.Read())
        {
            secrets.Add(new HostSecretRecord(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4)));
        }

        return secrets.AsReadOnly();
    }

    private IReadOnlyList<string> ReadHosts(string volumeId)
    {
        using SqliteCommand command = Command("SELECT host_nqn FROM allowed_hosts WHERE volume_id = $id ORDER BY position", ("$id", volumeId));
        using SqliteDataReader reader = command.ExecuteReader();
        var hosts = new List<string>();
        while (reader.Read())
        {
            hosts.Add(reader.GetString(0));
        }

        return hosts.AsReadOnly();
    }

    private static (string Id, VolumeRecord Volume) ReadVolume(SqliteDataReader reader)
    {
        string id = reader.GetString(0);
        var volume = new VolumeRecord(
            Guid.Parse(id),
            reader.GetString(1),
            reader.GetInt64(2),
            reader.GetInt32(3),
            reader.GetBoolean(4),
            Array.Empty<string>(),
            DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5)))
        {
            Pool = reader.GetString(6),
            TlsRequired = reader.GetBoolean(7),
        };
        return (id, volume);
    }

    private static SnapshotRecord ReadSnapshot(SqliteDataReader reader) => new(
        Guid.Parse(reader.GetString(0)),
        reader.GetString(1),
        Guid.Parse(reader.GetString(2)),
        reader.GetString(3),
        reader.GetInt64(4),
        reader.GetInt32(5),
        DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)),
        reader.GetString(7));

    private SqliteCommand Command(string sql, params (string Name, object Value)[] parameters)
    {
        SqliteCommand command = _connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return command;
    }

    private static string IdText(Guid id) => id.ToString("D");

    private static readonly LabelTable s_volumeLabels = new("volume_labels", "volume_id");
    private static readonly LabelTable s_snapshotLabels = new("snapshot_labels", "snapshot_id");

    /// <summary>Table and owner column names are constants of this class, never caller input, so interpolating them into SQL is safe.</summary>
    private sealed record LabelTable(string Name, string OwnerColumn);

    private static void Execute(SqliteConnection connection, string sql)
    {
        using SqliteCommand command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>The store's identity: written once, at the first open of a new (or newly migrated) file.</summary>
    private static Guid ReadOrCreateIdentity(SqliteConnection connection)
    {
        using SqliteTransaction transaction = connection.BeginTransaction();
        using (SqliteCommand read = connection.CreateCommand())
        {
            read.CommandText = "SELECT id FROM store_identity";
            if (read.ExecuteScalar() is string existing)
            {
                return Guid.Parse(existing);
            }
        }

        var id = Guid.NewGuid();
        using (SqliteCommand write = connection.CreateCommand())
        {
            write.CommandText = "INSERT INTO store_identity (id) VALUES ($id)";
            write.Parameters.AddWithValue("$id", IdText(id));
            write.ExecuteNonQuery();
        }

        transaction.Commit();
        return id;
    }

    private static void Migrate(SqliteConnection connection, string path)
    {
        using SqliteTransaction transaction = connection.BeginTransaction();
        Execute(connection, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
        long current;
        using (SqliteCommand read = connection.CreateCommand())
        {
            read.CommandText = "SELECT version FROM schema_version";
            current = read.ExecuteScalar() is long v ? v : 0;
        }

        if (current > s_migrations.Length)
        {
            throw new InvalidDataException($"{path} has metadata schema version {current}, newer than this program's {s_migrations.Length}.");
        }

        for (long version = current; version < s_migrations.Length; version++)
        {
            Execute(connection, s_migrations[version]);
        }

        Execute(connection, "DELETE FROM schema_version");
        using (SqliteCommand write = connection.CreateCommand())
        {
            write.CommandText = "INSERT INTO schema_version (version) VALUES ($version)";
            write.Parameters.AddWithValue("$version", s_migrations.Length);
            write.ExecuteNonQuery();
        }

        transaction.Commit();
    }
}
