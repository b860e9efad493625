//! The one place with SQL. `Store` hides the backend: embedded SQLite (WAL, `synchronous=FULL`) by default,
//! PostgreSQL when the URL says so. Queries are written once in SQL both understand (`$n` placeholders,
//! `ON CONFLICT`, `RETURNING`) and run on whichever pool is configured; the few that differ say so.
//!
//! Values from the vault arrive here already sealed; the store never sees a plaintext token.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::vault::Sealed;

mod alerts;
mod bot;
mod bulk;
mod communities;
mod forward;
mod inbox;
mod long_poll;
mod sessions;
mod setups;
mod users;

pub use alerts::*;
pub use bot::*;
pub use bulk::*;
pub use communities::*;
pub use forward::*;
pub use inbox::*;
pub use long_poll::*;
pub use sessions::*;
pub use setups::*;
pub use users::*;

/// Runs `$body` with `$pool` bound to the concrete pool of whichever backend is configured.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Reserves `$n` values of community `$group_id`'s `random_id` counter in the transaction `$tx` (see `dedup`): the
/// first reserved value, or `None` when `$n` is 0 or the community has no settings. The first reservation starts
/// the counter at a random place. One conditional update: two instances never get the same values.
macro_rules! reserve_random_ids {
    ($tx:ident, $group_id:expr, $n:expr) => {{
        let n = $n as i64;
        if n == 0 {
            None
        } else {
            let q = "UPDATE community_settings SET next_random_id = \
                     CASE WHEN next_random_id = 0 THEN $2 ELSE next_random_id END + $3 \
                     WHERE group_id = $1 RETURNING next_random_id";
            let after: Option<i64> = sqlx::query_scalar(q)
                .bind($group_id)
                .bind(crate::dedup::random_id_start())
                .bind(n)
                .fetch_optional(&mut *$tx)
                .await?;
            after.map(|v| v - n)
        }
    }};
}
pub(crate) use reserve_random_ids;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is neither sqlite:// nor postgres://")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database file: {0}")]
    Io(#[from] std::io::Error),
    #[error("migration {version} ({name}): {source}")]
    Migration { version: i64, name: &'static str, source: sqlx::Error },
    /// A sealed value is stored but does not open with the configured keys (`VKHOOK_TOKEN_KEYS` lacks its key, or a
    /// backup was restored under other keys). Never taken for "no value".
    #[error("{column} does not open with the configured token keys (sealed with key {key_id:?})")]
    Unreadable { column: &'static str, key_id: Option<String> },
}

impl StoreError {
    /// The database could not be reached (as opposed to a query that is wrong): answer 503, try later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Sqlx(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Tls(_)
                ) || e.as_database_error().is_some_and(|d| {
                    // PostgreSQL: admin shutdown, cannot connect now, too many connections; SQLite: busy, locked, I/O.
                    matches!(d.code().as_deref(), Some("57P01" | "57P02" | "57P03" | "53300" | "5" | "6" | "10" | "13"))
                })
            }
            StoreError::Io(_) => true,
            // Until an operator gives the key back: refuse and retry, never proceed without the value.
            StoreError::Unreadable { .. } => true,
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) backend: Backend,
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Both backends have the same versions.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("migrations/sqlite/0001_init.sql"),
        postgres: include_str!("migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "previous_secret_window",
        sqlite: include_str!("migrations/sqlite/0002_previous_secret_window.sql"),
        postgres: include_str!("migrations/postgres/0002_previous_secret_window.sql"),
    },
    Migration {
        version: 3,
        name: "inbox_open_by_id",
        sqlite: include_str!("migrations/sqlite/0003_inbox_open_by_id.sql"),
        postgres: include_str!("migrations/postgres/0003_inbox_open_by_id.sql"),
    },
    Migration {
        version: 4,
        name: "forwarding",
        sqlite: include_str!("migrations/sqlite/0004_forwarding.sql"),
        postgres: include_str!("migrations/postgres/0004_forwarding.sql"),
    },
    Migration {
        version: 5,
        name: "bulk",
        sqlite: include_str!("migrations/sqlite/0005_bulk.sql"),
        postgres: include_str!("migrations/postgres/0005_bulk.sql"),
    },
    Migration {
        version: 6,
        name: "proofs_and_messages",
        sqlite: include_str!("migrations/sqlite/0006_proofs_and_messages.sql"),
        postgres: include_str!("migrations/postgres/0006_proofs_and_messages.sql"),
    },
    Migration {
        version: 7,
        name: "tenants",
        sqlite: include_str!("migrations/sqlite/0007_tenants.sql"),
        postgres: include_str!("migrations/postgres/0007_tenants.sql"),
    },
    Migration {
        version: 8,
        name: "sources",
        sqlite: include_str!("migrations/sqlite/0008_sources.sql"),
        postgres: include_str!("migrations/postgres/0008_sources.sql"),
    },
    Migration {
        version: 9,
        name: "long_poll",
        sqlite: include_str!("migrations/sqlite/0009_long_poll.sql"),
        postgres: include_str!("migrations/postgres/0009_long_poll.sql"),
    },
    Migration {
        version: 10,
        name: "setup_mode",
        sqlite: include_str!("migrations/sqlite/0010_setup_mode.sql"),
        postgres: include_str!("migrations/postgres/0010_setup_mode.sql"),
    },
];

/// Creates the SQLite file owner-only (0600) and its missing folders 0700, before SQLite opens it: the file holds
/// sealed tokens, session hashes and every event's text. SQLite gives the `-wal` and `-shm` files the database
/// file's permissions. An existing file keeps its mode; a readable-by-others one is reported.
fn create_private(file: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(file)?;
    let mode = std::fs::metadata(file)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %file.display(), mode = format!("{:o}", mode & 0o777), "the database file is readable by others: chmod 600 it");
    }
    Ok(())
}

impl Store {
    /// Opens the database at `url` (`sqlite://path` — created with its folder if missing — or `postgres://…`).
    /// Does not migrate.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let file = path.split('?').next().unwrap_or(path);
            if file != ":memory:" {
                create_private(std::path::Path::new(file))?;
            }
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?;
            return Ok(Store { backend: Backend::Sqlite(pool) });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(3))
                .connect_with(options)
                .await?;
            return Ok(Store { backend: Backend::Postgres(pool) });
        }
        Err(StoreError::UnsupportedUrl(url.split('@').next_back().unwrap_or_default().to_owned()))
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// Applies the migrations not yet applied; returns their versions. Safe when several instances start at once:
    /// PostgreSQL serializes them with an advisory lock, SQLite with its write lock.
    pub async fn migrate(&self) -> StoreResult<Vec<i64>> {
        /// Creates the bookkeeping table and applies what it does not list, on `$conn` (inside the caller's
        /// lock), taking each migration's SQL from the field `$sql` (`sqlite` or `postgres`).
        macro_rules! apply_pending {
            ($conn:expr, $sql:ident) => {{
                let conn = $conn;
                sqlx::raw_sql(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (\
                     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
                )
                .execute(&mut *conn)
                .await?;
                let done: Vec<i64> =
                    sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&mut *conn).await?;
                let mut applied = Vec::new();
                for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
                    sqlx::raw_sql(m.$sql).execute(&mut *conn).await.map_err(|source| StoreError::Migration {
                        version: m.version,
                        name: m.name,
                        source,
                    })?;
                    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                        .bind(m.version)
                        .bind(m.name)
                        .bind(now_ms())
                        .execute(&mut *conn)
                        .await?;
                    applied.push(m.version);
                }
                StoreResult::Ok(applied)
            }};
        }
        match &self.backend {
            Backend::Postgres(pool) => {
                // The advisory lock makes instances that start together take turns.
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7261001)").execute(&mut *tx).await?;
                let applied = apply_pending!(&mut *tx, postgres)?;
                tx.commit().await?;
                Ok(applied)
            }
            Backend::Sqlite(pool) => {
                // BEGIN IMMEDIATE takes SQLite's write lock for the whole check-and-apply.
                let mut conn = pool.acquire().await?;
                sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                let result = async { apply_pending!(&mut *conn, sqlite) }.await;
                let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                sqlx::raw_sql(end).execute(&mut *conn).await?;
                result
            }
        }
    }

    /// The migration versions applied so far.
    pub async fn applied_migrations(&self) -> StoreResult<Vec<i64>> {
        let q = "SELECT version FROM schema_migrations ORDER BY version";
        Ok(on_pool!(self, pool => sqlx::query_scalar(q).fetch_all(pool).await?))
    }

    /// The database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await?.rows_affected());
        Ok(())
    }
}

/// One stored vault value.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedCell {
    pub row: String,
    pub value: String,
}

impl Store {
    /// Every sealed value in a column, with its row key as text.
    pub async fn sealed_values(&self, sealed: Sealed) -> StoreResult<Vec<SealedCell>> {
        let (table, key, column) = sealed.location();
        let q = format!("SELECT CAST({key} AS TEXT) AS row, {column} AS value FROM {table} WHERE {column} IS NOT NULL");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SealedCell>(&q).fetch_all(pool).await?))
    }

    /// How many stored values each token key sealed (by the key id each value carries; `?` when unparsable).
    pub async fn sealed_key_use(&self) -> StoreResult<std::collections::BTreeMap<String, usize>> {
        let mut use_ = std::collections::BTreeMap::new();
        for &sealed in Sealed::ALL {
            for cell in self.sealed_values(sealed).await? {
                let id = crate::vault::Vault::key_id_of(&cell.value).unwrap_or("?");
                *use_.entry(id.to_owned()).or_default() += 1;
            }
        }
        Ok(use_)
    }

    /// Replaces one sealed value, if it is still `old`.
    pub async fn replace_sealed_value(&self, sealed: Sealed, row: &str, old: &str, new: &str) -> StoreResult<bool> {
        let (table, key, column) = sealed.location();
        let q = format!("UPDATE {table} SET {column} = $1 WHERE CAST({key} AS TEXT) = $2 AND {column} = $3");
        let n =
            on_pool!(self, pool => sqlx::query(&q).bind(new).bind(row).bind(old).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::Store;
    use crate::testkit::ScratchDir;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_new_sqlite_database_and_its_folder_are_private() {
        let scratch = ScratchDir::new();
        let dir = scratch.0.join("data/vkhook");
        let file = dir.join("vkhook.db");
        let store = Store::connect(&format!("sqlite://{}", file.display())).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(mode(&dir), 0o700, "folder");
        assert_eq!(mode(&file), 0o600, "file");
        let wal = dir.join("vkhook.db-wal");
        assert!(wal.exists(), "WAL mode writes a -wal file");
        assert_eq!(mode(&wal), 0o600, "the -wal file follows the file");
        store.close().await;
    }
}
