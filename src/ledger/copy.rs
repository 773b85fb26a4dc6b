//! Moving a ledger from SQLite to PostgreSQL: every row of every table, ids kept, in one
//! PostgreSQL transaction read from one SQLite snapshot. The target must be a migrated, empty
//! ledger; a failure leaves it empty.

use super::connection::{read_snapshot, Conn};
use super::schema;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

/// Rows read and written per statement (24 columns × 1,000 stays under PostgreSQL's 65,535
/// parameters).
const ROWS_PER_BATCH: i64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the source must be a SQLite ledger")]
    SourceNotSqlite,
    #[error("the target must be a PostgreSQL ledger")]
    TargetNotPostgres,
    #[error("the target is not empty: its table {0} has rows; copy into a new database")]
    TargetNotEmpty(&'static str),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// Rows copied, per table, in the order they were copied (parents before children).
pub type Copied = Vec<(&'static str, i64)>;

/// A copy names every column of its table (a column added by a migration and left out here
/// would arrive empty).
macro_rules! assert_every_column_copied {
    ($t:ident, $table:ident, [$($column:ident),+]) => {
        let columns = diesel::debug_query::<diesel::sqlite::Sqlite, _>(
            &$t::table.select($t::all_columns),
        )
        .to_string()
        .matches(", ")
        .count()
            + 1;
        assert_eq!(
            [$(stringify!($column)),+].len(),
            columns,
            "the copy of {} names every column",
            stringify!($table)
        );
    };
}

/// Copies the table page by page in key order (`$key` first among the columns), after checking
/// the target's copy is empty.
macro_rules! copy_table {
    ($from:ident, $to:ident, $copied:ident, $table:ident by $key:ident: [$($column:ident: $type:ty),+ $(,)?]) => {{
        use schema::$table as t;
        assert_every_column_copied!(t, $table, [$($column),+]);
        let present: i64 = t::table.count().get_result($to)?;
        if present > 0 {
            return Err(CopyError::TargetNotEmpty(stringify!($table)));
        }
        let mut after = i64::MIN;
        let mut rows_copied = 0;
        loop {
            let rows: Vec<($($type,)+)> = t::table
                .select(($(t::$column,)+))
                .filter(t::$key.gt(after))
                .order(t::$key.asc())
                .limit(ROWS_PER_BATCH)
                .load($from)?;
            let Some(last) = rows.last() else { break };
            after = last.0;
            rows_copied += rows.len() as i64;
            let values: Vec<_> = rows
                .into_iter()
                .map(|($($column,)+)| ($(t::$column.eq($column),)+))
                .collect();
            diesel::insert_into(t::table).values(values).execute($to)?;
        }
        $copied.push((stringify!($table), rows_copied));
    }};
    // A small table without an integer key: all at once.
    ($from:ident, $to:ident, $copied:ident, $table:ident whole: [$($column:ident: $type:ty),+ $(,)?]) => {{
        use schema::$table as t;
        assert_every_column_copied!(t, $table, [$($column),+]);
        let present: i64 = t::table.count().get_result($to)?;
        if present > 0 {
            return Err(CopyError::TargetNotEmpty(stringify!($table)));
        }
        let rows: Vec<($($type,)+)> = t::table.select(($(t::$column,)+)).load($from)?;
        let rows_copied = rows.len() as i64;
        for chunk in rows.chunks(ROWS_PER_BATCH as usize) {
            let values: Vec<_> = chunk
                .iter()
                .cloned()
                .map(|($($column,)+)| ($(t::$column.eq($column),)+))
                .collect();
            diesel::insert_into(t::table).values(values).execute($to)?;
        }
        $copied.push((stringify!($table), rows_copied));
    }};
}

/// The tables whose `id` a `BIGSERIAL` numbers on PostgreSQL: their sequences continue after
/// the copied ids.
const SERIAL_TABLES: [&str; 13] = [
    "members",
    "trades",
    "trade_lines",
    "lots",
    "entries",
    "refunds",
    "refund_lines",
    "debt_movements",
    "refund_takes",
    "refund_settlements",
    "member_identities",
    "external_orders",
    "card_records",
];

/// Copies every row of the SQLite ledger `from` into the empty PostgreSQL ledger `to`.
pub fn sqlite_to_postgres(from: &mut Conn, to: &mut Conn) -> Result<Copied, CopyError> {
    let Conn::Postgres(to) = to else {
        return Err(CopyError::TargetNotPostgres);
    };
    if !matches!(from, Conn::Sqlite(_)) {
        return Err(CopyError::SourceNotSqlite);
    }
    read_snapshot(from, |from| {
        let Conn::Sqlite(from) = from else {
            unreachable!("checked above")
        };
        to.transaction(|to| copy_all(from, to))
    })
}

fn copy_all(from: &mut SqliteConnection, to: &mut PgConnection) -> Result<Copied, CopyError> {
    let mut copied = Copied::new();
    copy_table!(from, to, copied, members by id: [id: i64, vip_accountno: String, created_at_ms: i64]);
    copy_table!(from, to, copied, rulesets whole: [version: String, sources: String, created_at_ms: i64]);
    copy_table!(from, to, copied, trades by id: [
        id: i64, trade_no: String, out_trade_no: String, request_fingerprint: String,
        member_id: i64, store_code: String, invoice_id: String, currency: String,
        total_amount_minor: i64, payment_amount_minor: i64, payment_method: String,
        sales_time: String, sales_at_ms: i64, submit_time: String, approval_time: String,
        burn_point: i64, resource: String, remark: String, receipt_image_urls: String,
        payment_image_urls: String, ruleset_version: String, created_at_ms: i64,
        post_fee_minor: i64, discount_minor: i64, tier: String,
    ]);
    copy_table!(from, to, copied, trade_lines by id: [
        id: i64, trade_id: i64, line_no: i64, sku: String, name: String, quantity: i64,
        amount_minor: i64,
    ]);
    copy_table!(from, to, copied, lots by id: [
        id: i64, member_id: i64, trade_id: i64, point_type: String, campaign_code: String,
        remark: String, expire_type: String, expire_date: Option<String>,
        expires_at_ms: Option<i64>, available_at_ms: i64, points: i64, remaining: i64,
        ruleset_version: String, created_at_ms: i64,
    ]);
    copy_table!(from, to, copied, refunds by id: [
        id: i64, out_refund_no: String, request_fingerprint: String, trade_id: i64,
        member_id: i64, refund_amount_minor: i64, refund_time: String, burn_returned: i64,
        shortfall_policy: String, created_at_ms: i64,
    ]);
    copy_table!(from, to, copied, entries by id: [
        id: i64, member_id: i64, lot_id: i64, trade_id: Option<i64>, refund_id: Option<i64>,
        kind: String, points: i64, effective_at_ms: i64, created_at_ms: i64, point_type: String,
        campaign_code: String, trade_no: String, out_trade_no: String,
    ]);
    copy_table!(from, to, copied, refund_lines by id: [
        id: i64, refund_id: i64, lot_id: i64, points: i64, shortfall: i64, owed: i64,
        from_grant: i64, from_expired: i64,
    ]);
    copy_table!(from, to, copied, refund_takes by id: [
        id: i64, refund_line_id: i64, lot_id: i64, points: i64, restored: i64,
    ]);
    copy_table!(from, to, copied, debt_movements by id: [
        id: i64, refund_line_id: i64, kind: String, points: i64, paid_by_lot_id: Option<i64>,
        effective_at_ms: i64, created_at_ms: i64, restored: i64,
    ]);
    copy_table!(from, to, copied, refund_settlements by id: [
        id: i64, refund_line_id: i64, returning_refund_id: i64, points: i64,
        effective_at_ms: i64, created_at_ms: i64,
    ]);
    copy_table!(from, to, copied, campaign_budgets whole: [campaign_code: String, used: i64]);
    copy_table!(from, to, copied, campaign_budget_periods whole: [
        campaign_code: String, period: String, used: i64,
    ]);
    copy_table!(from, to, copied, member_identities by id: [
        id: i64, member_id: i64, kind: String, value: String, created_at_ms: i64,
    ]);
    copy_table!(from, to, copied, member_profiles by member_id: [
        member_id: i64, name: Option<String>, nick_name: Option<String>, gender: Option<String>,
        country: Option<String>, province: Option<String>, city: Option<String>,
        updated_at_ms: i64, birthday: Option<String>,
    ]);
    copy_table!(from, to, copied, external_orders by id: [
        id: i64, source: String, external_id: String, trade_id: Option<i64>, status: String,
        updated_at: String, body: String, created_at_ms: i64,
    ]);
    copy_table!(from, to, copied, card_records by id: [
        id: i64, kind: String, serial_no: String, card_code: String, card_template_id: String,
        member_id: i64, item_id: String, record_type: String, count: i64,
        amount: Option<i64>, occurred_at: String, body: String, trade_id: Option<i64>,
        created_at_ms: i64,
    ]);
    copy_table!(from, to, copied, request_nonces whole: [mchid: String, nonce: String, seen_at_ms: i64]);
    for table in SERIAL_TABLES {
        diesel::sql_query(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
             (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
        ))
        .execute(to)?;
    }
    Ok(copied)
}

/// Rows per table, for comparing a copy with its source.
pub fn row_counts(conn: &mut Conn) -> Result<Vec<(&'static str, i64)>, diesel::result::Error> {
    macro_rules! counts {
        ($($table:ident),+) => {
            Ok(vec![$((stringify!($table), schema::$table::table.count().get_result(conn)?)),+])
        };
    }
    counts!(
        members,
        rulesets,
        trades,
        trade_lines,
        lots,
        refunds,
        entries,
        refund_lines,
        refund_takes,
        debt_movements,
        refund_settlements,
        campaign_budgets,
        campaign_budget_periods,
        member_identities,
        member_profiles,
        external_orders,
        card_records,
        request_nonces
    )
}
