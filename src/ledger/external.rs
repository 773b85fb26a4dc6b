//! Orders of the other contracts: their last known state, so a re-sent order is recognised and
//! a stale update is ignored.

use super::{connection, ms, repo, Conn, PostError};
use chrono::{DateTime, Utc};

/// An order of another contract as last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalOrder {
    pub id: i64,
    pub trade_id: Option<i64>,
    pub status: String,
    /// The order's own update time, as sent (comparable text: `yyyy-mm-dd HH:mm:ss`).
    pub updated_at: String,
    pub body: String,
}

pub fn find(
    conn: &mut Conn,
    source: &str,
    external_id: &str,
) -> Result<Option<ExternalOrder>, PostError> {
    Ok(repo::find_external_order(conn, source, external_id)?.map(
        |(id, trade_id, status, updated_at, body)| ExternalOrder {
            id,
            trade_id,
            status,
            updated_at,
            body,
        },
    ))
}

/// Records an order's latest state (creating it the first time).
#[allow(clippy::too_many_arguments)]
pub fn save(
    conn: &mut Conn,
    source: &str,
    external_id: &str,
    trade_id: Option<i64>,
    status: &str,
    updated_at: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<(), PostError> {
    connection::write_transaction(conn, |conn| {
        let existing = repo::find_external_order(conn, source, external_id)?.map(|row| row.0);
        repo::save_external_order(
            conn,
            existing,
            source,
            external_id,
            trade_id,
            status,
            updated_at,
            body,
            ms(now),
        )?;
        Ok(())
    })
}
