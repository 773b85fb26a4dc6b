//! Opening the database: the URL, the connection pool, and write transactions. One connection
//! type serves both backends (diesel's `MultiConnection`); which one is chosen by the URL.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use std::path::PathBuf;
use std::time::Duration;

/// The connection type every repo function takes: SQLite or PostgreSQL, the same queries.
#[derive(diesel::MultiConnection)]
pub enum Conn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

pub type Pool = diesel::r2d2::Pool<Manager>;

/// How long a writer waits for another writer's lock (SQLite's write lock, a PostgreSQL row
/// lock) before giving up.
pub const LOCK_TIMEOUT_MS: u64 = 10_000;
/// How long a request waits for a free connection from the pool.
pub const POOL_TIMEOUT_MS: u64 = 30_000;
/// How long an unused pooled connection stays open.
pub const IDLE_TIMEOUT_S: u64 = 120;

/// Where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server: a libpq URL `postgres://user@host:port/db?options`.
    Postgres(String),
}

impl DatabaseUrl {
    /// `postgres://…` or `postgresql://…`; otherwise a file path, `sqlite://path` or `sqlite:path`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Self::Postgres(text.to_string()));
        }
        let path = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .unwrap_or(text);
        if path.is_empty() || path == ":memory:" {
            return Err(format!(
                "{raw:?}: give a database file path, e.g. data/point-engine.db, or a postgres:// URL"
            ));
        }
        if path.contains("://") {
            return Err(format!("{raw:?}: unknown database scheme"));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

impl std::fmt::Display for DatabaseUrl {
    /// Never shows a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                let (authority, query) = match rest.split_once('?') {
                    Some((authority, query)) => (authority, Some(query)),
                    None => (rest, None),
                };
                match authority.split_once('@') {
                    Some((user, host)) if user.contains(':') => {
                        let name = user.split(':').next().unwrap_or_default();
                        write!(f, "{scheme}://{name}:***@{host}")?
                    }
                    _ => write!(f, "{scheme}://{authority}")?,
                }
                if let Some(query) = query {
                    let shown: Vec<String> = query
                        .split('&')
                        .map(|pair| match pair.split_once('=') {
                            Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                                format!("{key}=***")
                            }
                            _ => pair.to_string(),
                        })
                        .collect();
                    write!(f, "?{}", shown.join("&"))?;
                }
                Ok(())
            }
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
    #[error("cannot open the database {url}: {message}\n{hint}")]
    Open {
        url: String,
        message: String,
        hint: &'static str,
    },
    #[error("cannot open the database {url}: {source}")]
    Pool {
        url: String,
        source: diesel::r2d2::PoolError,
    },
    #[error("cannot migrate the database {url}: {message}")]
    Migrate { url: String, message: String },
    #[error("cannot open the ledger writer's connection to {url}: {message}")]
    Writer { url: String, message: String },
}

/// Opens connections of the backend the URL names (never falling back to the other one).
///
/// SQLite: WAL (readers never block the writer), a busy timeout so that concurrent writers
/// queue instead of failing with "database is locked", foreign keys on, and
/// `synchronous = FULL` so an acknowledged trade survives a crash of the process or machine.
/// PostgreSQL: a lock timeout of the same length, and UTC.
#[derive(Debug, Clone)]
pub struct Manager {
    url: DatabaseUrl,
}

impl Manager {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Conn, Self::Error> {
        use diesel::r2d2::Error;
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                configure_sqlite();
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(Error::ConnectionError)?;
                let setup = format!(
                    "PRAGMA busy_timeout = {LOCK_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;"
                );
                // Switching a new file to WAL while another process creates it answers
                // "database is locked" at once, without waiting on the busy timeout: wait here,
                // as long as the busy timeout would.
                let started = std::time::Instant::now();
                loop {
                    match conn.batch_execute(&setup) {
                        Ok(()) => break,
                        Err(e)
                            if e.to_string().contains("database is locked")
                                && started.elapsed() < Duration::from_millis(LOCK_TIMEOUT_MS) =>
                        {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(Error::QueryError(e)),
                    }
                }
                Ok(Conn::Sqlite(conn))
            }
            DatabaseUrl::Postgres(url) => {
                let mut conn = PgConnection::establish(url).map_err(Error::ConnectionError)?;
                conn.batch_execute(&format!(
                    "SET lock_timeout = {LOCK_TIMEOUT_MS}; SET TIME ZONE 'UTC';"
                ))
                .map_err(Error::QueryError)?;
                Ok(Conn::Postgres(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_broken()
    }
}

/// Sets SQLite's process-wide options once, before its first connection opens.
///
/// - Multi-thread mode: a connection is used by one thread at a time (diesel's connections are
///   `Send`, not `Sync`; the pool and the writer hand each to one thread), so SQLite need not
///   lock a mutex around every call on it.
/// - No memory statistics: SQLite otherwise takes a process-wide mutex on every allocation
///   to count it, which every connection of every thread contends on.
///
/// Profiled under 64 writers, the two mutexes were about 8% of the ledger writer's time.
/// SQLite refuses both (`SQLITE_MISUSE`, and keeps its defaults) once it is initialized, e.g.
/// when another part of the process opened a database first: that is only slower.
fn configure_sqlite() {
    static CONFIGURED: std::sync::Once = std::sync::Once::new();
    CONFIGURED.call_once(|| {
        use libsqlite3_sys as ffi;
        // SAFETY: `sqlite3_config` is called before any connection is opened by this process
        // (the `Once` runs before the first `establish`), with the argument each option takes.
        let (threading, memstatus) = unsafe {
            (
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MULTITHREAD),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int),
            )
        };
        if threading != ffi::SQLITE_OK || memstatus != ffi::SQLITE_OK {
            log::info!("SQLite was initialized before point-engine could configure it");
        }
        if page_caches_share_a_lock() {
            log::warn!(
                "SQLite was compiled with SQLITE_ENABLE_MEMORY_MANAGEMENT: every connection's \
                 page cache is behind one lock (build from the project folder, whose \
                 .cargo/config.toml leaves it out)"
            );
        }
        if !plans_are_stable() {
            log::warn!(
                "SQLite was compiled without SQLITE_ENABLE_QPSG: statements with `LIMIT ?` are \
                 parsed and planned again whenever a value is bound to them (build from the \
                 project folder, whose .cargo/config.toml sets it)"
            );
        }
    });
}

/// Whether the SQLite linked in keeps every connection's page cache in one group behind one
/// process-wide lock (compiled with `SQLITE_ENABLE_MEMORY_MANAGEMENT`, as libsqlite3-sys
/// bundles it unless `.cargo/config.toml`'s `LIBSQLITE3_FLAGS` leaves it out).
pub fn page_caches_share_a_lock() -> bool {
    sqlite_compiled_with(c"ENABLE_MEMORY_MANAGEMENT")
}

/// Whether the SQLite linked in plans a statement once, whatever values are later bound to it
/// (compiled with `SQLITE_ENABLE_QPSG`, which `.cargo/config.toml`'s `LIBSQLITE3_FLAGS` sets).
/// Otherwise binding a `LIMIT ?` or `OFFSET ?` expires the prepared statement.
pub fn plans_are_stable() -> bool {
    sqlite_compiled_with(c"ENABLE_QPSG")
}

/// Whether the SQLite linked in was compiled with `SQLITE_<option>`.
fn sqlite_compiled_with(option: &std::ffi::CStr) -> bool {
    // SAFETY: the argument is a NUL-terminated string that outlives the call.
    unsafe { libsqlite3_sys::sqlite3_compileoption_used(option.as_ptr()) == 1 }
}

/// Opens a pool on the database (creating a SQLite file and its folder if needed) and runs
/// the pending migrations.
pub fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<Pool, ConnectError> {
    if let DatabaseUrl::Sqlite(path) = url {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ConnectError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
    }
    // One connection first, so that a database that cannot be reached is said at once, with
    // what to do, instead of after the pool's 30 s of retries.
    Manager::new(url.clone())
        .connect()
        .map_err(|e| open_error(url, &e.to_string()))?;
    let pool_error = |source| ConnectError::Pool {
        url: url.to_string(),
        source,
    };
    let pool = diesel::r2d2::Pool::builder()
        .max_size(pool_size)
        .min_idle(Some(1))
        // No `SELECT 1` before every use: a broken connection is found by `has_broken` and
        // by the query that fails on it.
        .test_on_check_out(false)
        .idle_timeout(Some(Duration::from_secs(IDLE_TIMEOUT_S)))
        .connection_timeout(Duration::from_millis(POOL_TIMEOUT_MS))
        .build(Manager { url: url.clone() })
        .map_err(pool_error)?;
    let mut conn = pool.get().map_err(pool_error)?;
    super::migrations::run(&mut conn).map_err(|message| ConnectError::Migrate {
        url: url.to_string(),
        message,
    })?;
    Ok(pool)
}

/// A database that cannot be opened, with what to do about it.
fn open_error(url: &DatabaseUrl, message: &str) -> ConnectError {
    let hint = match url {
        DatabaseUrl::Sqlite(_) => {
            "check that the file's folder exists and this user may write to it (--database)"
        }
        DatabaseUrl::Postgres(_) if message.contains("does not exist") => {
            "create the database first, e.g. `createdb -h HOST -U USER NAME`, or name another one \
             (--database postgres://USER@HOST:PORT/NAME)"
        }
        DatabaseUrl::Postgres(_) if message.contains("password") => {
            "check the user and password in the URL"
        }
        DatabaseUrl::Postgres(_) => {
            "check that PostgreSQL is running and reachable at the URL's host and port"
        }
    };
    ConnectError::Open {
        url: url.to_string(),
        message: message.trim().to_string(),
        hint,
    }
}

/// Runs `f` in one write transaction: all of it commits, or none of it. Inside a transaction
/// already open (a write through `ledger::writer`), `f` is simply part of that transaction:
/// the writer commits or rolls back the whole write, and runs it again after a `Race`.
///
/// SQLite: `BEGIN IMMEDIATE` takes the database's write lock up front, so two writers never
/// both read and then race to write. PostgreSQL: `READ COMMITTED`; writers that touch the same
/// member serialize on that member's row lock (`repo::lock_member`), guarded updates keep every
/// lot and debt from going negative, and unique constraints decide races between duplicates.
pub fn write_transaction<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    type Manager = <Conn as Connection>::TransactionManager;
    if in_transaction(conn)? {
        return f(conn);
    }
    begin_write(conn)?;
    match f(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => roll_back(conn, Err(error)),
    }
}

/// Rolls the open transaction back and answers `result`, or the rollback's own failure (a
/// transaction manager already broken by the error has nothing left to roll back).
fn roll_back<T, E: From<diesel::result::Error>>(
    conn: &mut Conn,
    result: Result<T, E>,
) -> Result<T, E> {
    type Manager = <Conn as Connection>::TransactionManager;
    match Manager::rollback_transaction(conn) {
        Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => result,
        Err(error) => result.and(Err(error.into())),
    }
}

/// Whether a transaction is open on the connection (a write through `ledger::writer`).
fn in_transaction(conn: &mut Conn) -> diesel::QueryResult<bool> {
    type Manager = <Conn as Connection>::TransactionManager;
    Ok(Manager::transaction_manager_status_mut(conn)
        .transaction_depth()?
        .is_some())
}

/// Runs `f` on one consistent snapshot of the ledger, writing nothing: a read transaction on
/// SQLite (WAL: a snapshot from its first read on), `REPEATABLE READ READ ONLY` on PostgreSQL.
/// Inside a transaction already open, `f` reads in that transaction.
pub fn read_snapshot<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    if in_transaction(conn)? {
        return f(conn);
    }
    match conn {
        Conn::Sqlite(inner) => AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN")?,
        Conn::Postgres(inner) => AnsiTransactionManager::begin_transaction_sql(
            inner,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )?,
    }
    // Read only: nothing to commit.
    let result = f(conn);
    roll_back(conn, result)
}

/// Runs the statements of one short read (a balance, a page of history) on one snapshot where
/// that is cheap: on SQLite one read transaction (`read_snapshot`), which also takes the WAL
/// index's lock once instead of once a statement (a balance of a few lots: about 10% less
/// CPU). On PostgreSQL the statements run as they are, each on its own snapshot (`READ
/// COMMITTED`): a transaction would cost two more round trips.
pub fn one_read<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        Conn::Sqlite(_) => read_snapshot(conn, f),
        Conn::Postgres(_) => f(conn),
    }
}

/// Opens a write transaction: `BEGIN IMMEDIATE` on SQLite (the write lock up front), `BEGIN`
/// on PostgreSQL.
pub fn begin_write(conn: &mut Conn) -> diesel::QueryResult<()> {
    type Manager = <Conn as Connection>::TransactionManager;
    match conn {
        Conn::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")
        }
        Conn::Postgres(_) => Manager::begin_transaction(conn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_read_on_sqlite_sees_one_snapshot() {
        use diesel::sql_types::BigInt;
        use diesel::RunQueryDsl;
        let dir = tempfile::tempdir().unwrap();
        let pool = connect(&DatabaseUrl::Sqlite(dir.path().join("snapshot.db")), 2).unwrap();
        let (mut reader, mut writer) = (pool.get().unwrap(), pool.get().unwrap());
        writer
            .batch_execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let rows = |conn: &mut Conn| {
            let count = diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM t)");
            match conn {
                Conn::Sqlite(c) => diesel::select(count).get_result::<i64>(c),
                Conn::Postgres(c) => diesel::select(count).get_result::<i64>(c),
            }
        };
        let seen = one_read(&mut reader, |conn| -> diesel::QueryResult<_> {
            let before = rows(conn)?;
            writer.batch_execute("INSERT INTO t VALUES (2);")?;
            Ok((before, rows(conn)?))
        });
        assert_eq!(seen, Ok((1, 1)));
        assert_eq!(rows(&mut reader), Ok(2));
    }

    #[test]
    fn each_sqlite_connection_keeps_its_own_page_cache() {
        assert!(
            !page_caches_share_a_lock(),
            "LIBSQLITE3_FLAGS of .cargo/config.toml did not reach libsqlite3-sys's build"
        );
    }

    #[test]
    fn sqlite_plans_a_statement_once_whatever_is_bound() {
        assert!(
            plans_are_stable(),
            "LIBSQLITE3_FLAGS of .cargo/config.toml did not reach libsqlite3-sys's build"
        );
    }

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
        assert_eq!(
            DatabaseUrl::parse("postgres://pe@localhost/x").unwrap(),
            DatabaseUrl::Postgres("postgres://pe@localhost/x".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgresql://localhost/x").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        assert!(DatabaseUrl::parse("").is_err());
        assert!(DatabaseUrl::parse(":memory:").is_err());
        assert!(DatabaseUrl::parse("mysql://x").is_err());
    }

    #[test]
    fn urls_never_show_a_password() {
        let url = DatabaseUrl::parse("postgres://pe:secret@db:5432/ledger").unwrap();
        assert_eq!(url.to_string(), "postgres://pe:***@db:5432/ledger");
        let url = DatabaseUrl::parse("postgres://pe@db/ledger").unwrap();
        assert_eq!(url.to_string(), "postgres://pe@db/ledger");
        let url =
            DatabaseUrl::parse("postgres://pe@db/ledger?sslmode=disable&password=secret").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://pe@db/ledger?sslmode=disable&password=***"
        );
        let url = DatabaseUrl::parse("postgresql://pe:secret@db/ledger?PASSWORD=x").unwrap();
        assert_eq!(
            url.to_string(),
            "postgresql://pe:***@db/ledger?PASSWORD=***"
        );
    }
}
