//! Migrations, embedded in the binary and run at start.

use super::connection::Conn;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

pub fn run(conn: &mut Conn) -> Result<(), String> {
    super::connection::write_transaction(conn, |conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(|e| MigrateError(e.to_string()))
    })
    .map_err(|e: MigrateError| e.0)
}

struct MigrateError(String);

impl From<diesel::result::Error> for MigrateError {
    fn from(e: diesel::result::Error) -> Self {
        Self(e.to_string())
    }
}
