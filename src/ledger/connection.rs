//! Opening the database: the URL, the connection pool, and write transactions.

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection};
use diesel::sqlite::SqliteConnection;
use std::path::PathBuf;
use std::time::Duration;

/// The connection type every repo function takes.
pub type Conn = SqliteConnection;
pub type Pool = diesel::r2d2::Pool<ConnectionManager<Conn>>;

/// How long a writer waits for another writer's transaction before giving up.
pub const BUSY_TIMEOUT_MS: u64 = 10_000;
/// How long a request waits for a free connection from the pool.
pub const POOL_TIMEOUT_MS: u64 = 30_000;

/// Where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// A file path, `sqlite://path` or `sqlite:path`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Err("PostgreSQL is not supported by this build yet: use a SQLite path".into());
        }
        let path = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .unwrap_or(text);
        if path.is_empty() || path == ":memory:" {
            return Err(format!(
                "{raw:?}: give a database file path, e.g. data/point-engine.db"
            ));
        }
        if path.contains("://") {
            return Err(format!("{raw:?}: unknown database scheme"));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot create the folder for the database {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database {url}: {source}")]
    Pool {
        url: String,
        source: diesel::r2d2::PoolError,
    },
    #[error("cannot migrate the database {url}: {message}")]
    Migrate { url: String, message: String },
}

/// Every SQLite connection: WAL (readers never block the writer), a busy timeout so that
/// concurrent writers queue instead of failing with "database is locked", foreign keys on,
/// and `synchronous = FULL` so an acknowledged trade survives a crash of the process or machine.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<Conn, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens a pool on the database, creating the file and its folder if needed, and runs the
/// pending migrations.
pub fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<Pool, ConnectError> {
    let DatabaseUrl::Sqlite(path) = url;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ConnectError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let manager = ConnectionManager::<Conn>::new(path.to_string_lossy());
    let pool = diesel::r2d2::Pool::builder()
        .max_size(pool_size)
        .connection_timeout(Duration::from_millis(POOL_TIMEOUT_MS))
        .connection_customizer(Box::new(SqlitePragmas))
        .build(manager)
        .map_err(|source| ConnectError::Pool {
            url: url.to_string(),
            source,
        })?;
    let mut conn = pool.get().map_err(|source| ConnectError::Pool {
        url: url.to_string(),
        source,
    })?;
    super::migrations::run(&mut conn).map_err(|message| ConnectError::Migrate {
        url: url.to_string(),
        message,
    })?;
    Ok(pool)
}

/// Runs `f` in one write transaction. On SQLite it begins IMMEDIATE: the write lock is taken
/// up front, so two writers never both read and then race to write.
pub fn write_transaction<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    conn.immediate_transaction(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        let want = DatabaseUrl::Sqlite(PathBuf::from("data/x.db"));
        assert_eq!(DatabaseUrl::parse("data/x.db").unwrap(), want);
        assert_eq!(DatabaseUrl::parse("sqlite://data/x.db").unwrap(), want);
        assert_eq!(DatabaseUrl::parse("sqlite:data/x.db").unwrap(), want);
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/tmp/x.db"))
        );
        assert!(DatabaseUrl::parse("").is_err());
        assert!(DatabaseUrl::parse(":memory:").is_err());
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("postgres://localhost/x").is_err());
    }
}
