//! Migrations, one folder per backend with the same versions, embedded in the binary and run
//! at start. Safe when several instances start at once: SQLite runs them under its write lock,
//! PostgreSQL under an advisory lock.

use super::connection::Conn;
use diesel::connection::SimpleConnection;
use diesel::RunQueryDsl;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The advisory lock key instances take while migrating a PostgreSQL database.
const PG_MIGRATION_LOCK: i64 = 0x7065_6D69_6772; // "pemigr"

/// The advisory lock of the ledger's schema (the one its tables are created in): instances of
/// one ledger migrate in turn, ledgers in other schemas of the database (tenants, the tests'
/// schemas) never wait for each other. Measured: tests starting dozens of ledgers at once on a
/// busy CI machine queued on one key for the whole database past `lock_timeout` (10 s).
fn pg_migration_lock_of_schema() -> String {
    format!("hashtextextended(coalesce(current_schema(), ''), 0) # {PG_MIGRATION_LOCK}")
}

pub fn run(conn: &mut Conn) -> Result<(), String> {
    match conn {
        Conn::Sqlite(_) => {
            // SQLite changes a table's constraints by rebuilding the table. Other tables'
            // references to it must not follow the old table away or stop the drop, so
            // migrations run with foreign keys off (SQLite's procedure for this), and every
            // foreign key is checked before they commit.
            conn.batch_execute("PRAGMA foreign_keys = OFF")
                .map_err(|e| e.to_string())?;
            let result = super::connection::write_transaction(conn, |conn| {
                let Conn::Sqlite(inner) = conn else {
                    unreachable!("matched above")
                };
                let applied = inner
                    .run_pending_migrations(SQLITE)
                    .map_err(|e| MigrateError(e.to_string()))?;
                // Only after a migration ran: the check reads every reference of the ledger
                // (half a second at start on a million trades, for nothing).
                if applied.is_empty() {
                    return Ok(());
                }
                let broken: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "(SELECT COUNT(*) FROM pragma_foreign_key_check)",
                ))
                .get_result(inner)?;
                match broken {
                    0 => Ok(()),
                    n => Err(MigrateError(format!(
                        "the migrations would leave {n} rows naming rows that do not exist"
                    ))),
                }
            })
            .map_err(|e: MigrateError| e.0);
            conn.batch_execute("PRAGMA foreign_keys = ON")
                .map_err(|e| e.to_string())?;
            result
        }
        Conn::Postgres(inner) => {
            let lock = pg_migration_lock_of_schema();
            inner
                .batch_execute(&format!("SELECT pg_advisory_lock({lock})"))
                .map_err(|e| e.to_string())?;
            let result = inner
                .run_pending_migrations(POSTGRES)
                .map(|_| ())
                .map_err(|e| e.to_string());
            inner
                .batch_execute(&format!("SELECT pg_advisory_unlock({lock})"))
                .map_err(|e| e.to_string())?;
            result
        }
    }
}

struct MigrateError(String);

impl From<diesel::result::Error> for MigrateError {
    fn from(e: diesel::result::Error) -> Self {
        Self(e.to_string())
    }
}
