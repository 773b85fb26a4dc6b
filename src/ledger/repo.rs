//! Every query the ledger runs. Functions take a connection, never the pool.

use super::connection::Conn;
use super::models::{
    BurnableLot, DebtMovementRow, EntryRow, LotRow, MovementRow, NewDebtMovement, NewEntry, NewLot,
    NewMember, NewRuleset, NewTrade, RefundLineRow, RefundRow, ShownEntryRow, ShownLot,
    TradeDetailRow, TradeLineRow, TradeNumbers, TradeRow,
};
use super::schema::{
    campaign_budget_periods, campaign_budgets, card_records, debt_movements, entries,
    external_orders, lots, member_identities, member_profiles, members, refund_lines,
    refund_settlements, refund_takes, refunds, request_nonces, rulesets, trade_lines, trades,
};
use diesel::prelude::*;
use diesel::result::Error;

/// An SQL text that binds nothing, as an expression of `$sql_type`: its statements are
/// prepared once (a `diesel::dsl::sql` literal makes diesel prepare its statement on every run).
macro_rules! sql_text {
    ($(#[$doc:meta])* $name:ident: $sql_type:ty, $aggregate:ident, $text:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
        struct $name;

        impl diesel::expression::Expression for $name {
            type SqlType = $sql_type;
        }

        impl<DB: diesel::backend::Backend> diesel::query_builder::QueryFragment<DB> for $name {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
            ) -> QueryResult<()> {
                out.push_sql($text);
                Ok(())
            }
        }

        impl<QS> diesel::expression::AppearsOnTable<QS> for $name {}
        impl<QS> diesel::expression::SelectableExpression<QS> for $name {}
        impl diesel::expression::ValidGrouping<()> for $name {
            type IsAggregate = diesel::expression::is_aggregate::$aggregate;
        }
    };
}

sql_text! {
    /// The SQL literal `0`, where a bound parameter would cost a prepare on every run: SQLite
    /// decides whether a partial index (`lots_expiring`, `refund_lines_owed`: `WHERE … > 0`) fits
    /// a query from the *value* bound to `> ?`, so each new binding expires the prepared statement
    /// and every run parses and plans it again.
    Zero: diesel::sql_types::BigInt, Never, "0"
}

sql_text! {
    /// The points a query's lots hold, summed by the database (PostgreSQL's SUM of a BIGINT is
    /// a NUMERIC, hence the cast).
    SumOfRemaining: diesel::sql_types::BigInt, Yes,
    "CAST(COALESCE(SUM(\"lots\".\"remaining\"), 0) AS BIGINT)"
}

// Lookups by a unique key read with `get_result`, not `first`: `first` adds `LIMIT ?`, and
// SQLite plans a LIMIT from its bound value, so each run would prepare the statement again.

/// Runs `$body` with `$c` bound to the backend's own connection. Through the `MultiConnection`
/// every query is first built into SQL text to find its prepared statement; on the backend's
/// own connection diesel finds it by the query's type. Used on the write path's queries.
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            Conn::Sqlite($c) => $body,
            Conn::Postgres($c) => $body,
        }
    };
}

/// `Holdings` of member `$member_id` as two expressions: the points its lots still hold (`None`:
/// no lot) and whether it owes. Read alone by `holdings`, and inside `TradeRowsPg`'s statement.
macro_rules! holdings_of {
    ($member_id:expr) => {
        (
            lots::table
                .filter(lots::member_id.eq($member_id))
                .filter(lots::remaining.gt(Zero))
                .select(SumOfRemaining)
                .single_value(),
            // As `owed_lines_query!` finds them: by `refunds_member`.
            diesel::dsl::exists(
                refund_lines::table
                    .inner_join(refunds::table)
                    .filter(refunds::member_id.eq($member_id))
                    .filter(refund_lines::owed.gt(Zero))
                    .select(refund_lines::id),
            ),
        )
    };
}

pub fn find_member_id(conn: &mut Conn, vip_accountno: &str) -> Result<Option<i64>, Error> {
    on_backend!(conn, c => {
        members::table
            .filter(members::vip_accountno.eq(vip_accountno))
            .select(members::id)
            .get_result(c)
            .optional()
    })
}

/// What a member's balance is read from, named by its newest entry and its newest refund
/// (`None`: none yet). Every change to the member's lots comes with an entry (the audit checks
/// that a lot's entries sum to what it holds) and every change to what the member owes with an
/// entry or a refund; the member's writers take turns on its lock, so their ids grow in the order
/// they commit. Two reads that find the same version read the same lots and debts.
macro_rules! ledger_version_query {
    ($member_id:expr) => {
        diesel::select((
            entries::table
                .filter(entries::member_id.eq($member_id))
                .select(diesel::dsl::max(entries::id))
                .single_value(),
            refunds::table
                .filter(refunds::member_id.eq($member_id))
                .select(diesel::dsl::max(refunds::id))
                .single_value(),
        ))
    };
}

/// The member's ledger version (see `ledger_version_query!`): one statement, two index seeks.
pub fn member_ledger_version(
    conn: &mut Conn,
    member_id: i64,
) -> Result<(Option<i64>, Option<i64>), Error> {
    on_backend!(conn, c => ledger_version_query!(member_id).get_result(c))
}

/// A member's account number, id, newest entry and newest refund (`ledger_versions`).
pub type MemberVersionRow = (String, i64, Option<i64>, Option<i64>);

/// The members of the account numbers `vips`, each with its id and ledger version
/// (`ledger_version_query!`), in one statement (on PostgreSQL `= ANY($1)`, one prepared
/// statement whatever their count): an index seek for each member, two for its version. An
/// account number missing from the answer names no member.
pub fn ledger_versions(conn: &mut Conn, vips: &[&str]) -> Result<Vec<MemberVersionRow>, Error> {
    on_backend!(conn, c => {
        members::table
            .filter(members::vip_accountno.eq_any(vips))
            .select((
                members::vip_accountno,
                members::id,
                entries::table
                    .filter(entries::member_id.eq(members::id))
                    .select(diesel::dsl::max(entries::id))
                    .single_value(),
                refunds::table
                    .filter(refunds::member_id.eq(members::id))
                    .select(diesel::dsl::max(refunds::id))
                    .single_value(),
            ))
            .load(c)
    })
}

/// The member's newest entry (one index seek): a member's entries are only ever added to, so
/// it names all of them (a history page's version, `pages::KnownPages`).
pub fn newest_entry_of_member(conn: &mut Conn, member_id: i64) -> Result<Option<i64>, Error> {
    on_backend!(conn, c => {
        entries::table
            .filter(entries::member_id.eq(member_id))
            .select(diesel::dsl::max(entries::id))
            .get_result(c)
    })
}

/// Locks the member's row until the transaction ends, so that writers of one member (burns,
/// refunds, debts) take turns on PostgreSQL (`FOR NO KEY UPDATE`: the member's new trades,
/// lots and entries can still reference it). SQLite's write transactions already do.
pub fn lock_member(conn: &mut Conn, member_id: i64) -> Result<(), Error> {
    match conn {
        Conn::Sqlite(_) => Ok(()),
        Conn::Postgres(c) => members::table
            .filter(members::id.eq(member_id))
            .select(members::id)
            .for_no_key_update()
            .execute(c)
            .map(|_| ()),
    }
}

/// `find_member_id` and `lock_member` in one statement.
pub fn find_and_lock_member(conn: &mut Conn, vip_accountno: &str) -> Result<Option<i64>, Error> {
    match conn {
        Conn::Sqlite(_) => find_member_id(conn, vip_accountno),
        Conn::Postgres(c) => members::table
            .filter(members::vip_accountno.eq(vip_accountno))
            .select(members::id)
            .for_no_key_update()
            .get_result(c)
            .optional(),
    }
}

/// Inserts one row into `$table` and answers its id: on SQLite by `last_insert_rowid` (see
/// there), on PostgreSQL by `RETURNING`.
macro_rules! insert_returning_id {
    ($conn:expr, $table:ident, $row:expr) => {
        match $conn {
            Conn::Sqlite(c) => {
                diesel::insert_into($table::table).values($row).execute(c)?;
                last_insert_rowid(c)
            }
            Conn::Postgres(c) => diesel::insert_into($table::table)
                .values($row)
                .returning($table::id)
                .get_result(c),
        }
    };
}

pub fn insert_member(conn: &mut Conn, member: &NewMember) -> Result<i64, Error> {
    insert_returning_id!(conn, members, member)
}

diesel::define_sql_function! {
    /// SQLite: the rowid of the row the connection's last INSERT made.
    #[sql_name = "last_insert_rowid"]
    fn sqlite_last_insert_rowid() -> diesel::sql_types::BigInt;
}

/// The id of the row the single-row INSERT just run on this SQLite connection made.
///
/// SQLite runs `RETURNING` as a trigger, which makes every insert with it keep a statement
/// journal (a copy of each page it touches, in case it aborts half-way): 6% of the ledger
/// writer's time, profiled. A single-row insert without it needs none, and
/// `last_insert_rowid()` answers the same id.
fn last_insert_rowid(c: &mut diesel::SqliteConnection) -> Result<i64, Error> {
    diesel::select(sqlite_last_insert_rowid()).get_result(c)
}

/// The trade recorded under `out_trade_no` and the lots it granted, in the order it granted
/// them, read in one statement (on SQLite one read transaction, on PostgreSQL one round trip):
/// what a replay answers.
pub fn recorded_trade(
    conn: &mut Conn,
    out_trade_no: &str,
) -> Result<Option<(TradeRow, Vec<LotRow>)>, Error> {
    let rows: Vec<(TradeRow, Option<LotRow>)> = on_backend!(conn, c => {
        trades::table
            .left_join(lots::table.on(lots::trade_id.eq(trades::id)))
            .filter(trades::out_trade_no.eq(out_trade_no))
            .order(lots::id.asc())
            .select((TradeRow::as_select(), Option::<LotRow>::as_select()))
            .load(c)
    })?;
    Ok(by_trade(rows).pop())
}

/// `recorded_trade` for many `out_trade_no`s in one statement (on PostgreSQL `= ANY($1)`, one
/// prepared statement whatever their count): the trades recorded under any of them, each with
/// its lots in the order it granted them. The rest were never recorded.
pub fn recorded_trades(
    conn: &mut Conn,
    out_trade_nos: &[&str],
) -> Result<Vec<(TradeRow, Vec<LotRow>)>, Error> {
    let rows: Vec<(TradeRow, Option<LotRow>)> = on_backend!(conn, c => {
        trades::table
            .left_join(lots::table.on(lots::trade_id.eq(trades::id)))
            .filter(trades::out_trade_no.eq_any(out_trade_nos))
            .order((trades::id.asc(), lots::id.asc()))
            .select((TradeRow::as_select(), Option::<LotRow>::as_select()))
            .load(c)
    })?;
    Ok(by_trade(rows))
}

/// Rows of trades left-joined to their lots, in trade order, as each trade with its lots.
fn by_trade(rows: Vec<(TradeRow, Option<LotRow>)>) -> Vec<(TradeRow, Vec<LotRow>)> {
    let mut trades: Vec<(TradeRow, Vec<LotRow>)> = Vec::new();
    for (trade, lot) in rows {
        match trades.last_mut() {
            Some((last, lots)) if last.id == trade.id => lots.extend(lot),
            _ => trades.push((trade, lot.into_iter().collect())),
        }
    }
    trades
}

pub fn insert_trade(conn: &mut Conn, trade: &NewTrade) -> Result<i64, Error> {
    insert_returning_id!(conn, trades, trade)
}

pub fn insert_lot(conn: &mut Conn, lot: &NewLot) -> Result<i64, Error> {
    insert_returning_id!(conn, lots, lot)
}

/// What `insert_trade_with_grants` and `insert_grants` recorded, and what the member held
/// before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub trade_id: i64,
    /// The lots' ids, in the order given.
    pub lot_ids: Vec<i64>,
    /// The member's holdings just before the grants (after anything the trade burned).
    pub before: Holdings,
}

/// Records a new trade of `member_id` with its lines, and its grants (`insert_grants`). Sets
/// `trade_id` of `lines` and `new_lots`. PostgreSQL: one statement (`TradeRowsPg`), where a
/// statement each costs a round trip to the server; SQLite: a statement each, in process.
pub fn insert_trade_with_grants(
    conn: &mut Conn,
    trade: &NewTrade,
    lines: &mut [TradeLineRow],
    new_lots: &mut [NewLot],
    now_ms: i64,
) -> Result<Recorded, Error> {
    let recorded = match conn {
        Conn::Postgres(c) => TradeRowsPg {
            trade: diesel::insert_into(trades::table).values(trade).returning((
                trades::id,
                trades::trade_no,
                trades::out_trade_no,
            )),
            holdings: holdings_of!(trade.member_id),
            lines,
            lots: new_lots,
            now_ms,
        }
        .get_result::<(i64, Vec<i64>, i64, bool)>(c)
        .map(Recorded::from)?,
        Conn::Sqlite(_) => {
            let trade_id = insert_trade(conn, trade)?;
            insert_trade_lines(conn, trade_id, lines)?;
            let recorded = (trade_id, trade.numbers());
            return insert_grants(conn, recorded, trade.member_id, new_lots, now_ms);
        }
    };
    for line in lines.iter_mut() {
        line.trade_id = recorded.trade_id;
    }
    for lot in new_lots.iter_mut() {
        lot.trade_id = recorded.trade_id;
    }
    Ok(recorded)
}

/// Records the grants of a trade (its id and numbers) to `member_id`: a lot each, and the
/// lot's earn entry, effective `now_ms`. Sets `trade_id` of `new_lots`.
pub fn insert_grants(
    conn: &mut Conn,
    (trade_id, numbers): (i64, TradeNumbers),
    member_id: i64,
    new_lots: &mut [NewLot],
    now_ms: i64,
) -> Result<Recorded, Error> {
    for lot in new_lots.iter_mut() {
        debug_assert_eq!(lot.member_id, member_id, "a trade grants to its member");
        lot.trade_id = trade_id;
    }
    match conn {
        Conn::Postgres(c) => TradeRowsPg {
            trade: RecordedTrade(trade_id),
            holdings: holdings_of!(member_id),
            lines: &[],
            lots: new_lots,
            now_ms,
        }
        .get_result::<(i64, Vec<i64>, i64, bool)>(c)
        .map(Recorded::from),
        Conn::Sqlite(_) => {
            // A row a statement: each single-row insert stays prepared, where diesel prepares a
            // multi-row insert again on every run (and a statement costs no round trip here).
            let before = holdings(conn, member_id)?;
            let mut lot_ids = Vec::with_capacity(new_lots.len());
            for lot in new_lots.iter() {
                let lot_id = insert_lot(conn, lot)?;
                insert_entry(
                    conn,
                    &NewEntry {
                        member_id,
                        lot_id,
                        trade_id: Some(trade_id),
                        refund_id: None,
                        kind: "earn",
                        points: lot.points,
                        effective_at_ms: now_ms,
                        created_at_ms: now_ms,
                        point_type: lot.point_type,
                        campaign_code: lot.campaign_code,
                        trade_no: numbers.trade_no,
                        out_trade_no: numbers.out_trade_no,
                    },
                )?;
                lot_ids.push(lot_id);
            }
            Ok(Recorded {
                trade_id,
                lot_ids,
                before,
            })
        }
    }
}

impl From<(i64, Vec<i64>, i64, bool)> for Recorded {
    fn from((trade_id, lot_ids, held, owes): (i64, Vec<i64>, i64, bool)) -> Self {
        Self {
            trade_id,
            lot_ids,
            before: Holdings { held, owes },
        }
    }
}

/// PostgreSQL: a trade's rows in one statement, a data-modifying `WITH`: the trade (`trade`:
/// its insert `RETURNING id`, or `RecordedTrade`), its lines, its lots and their earn entries;
/// answers the trade's id, the lots' ids in order and the member's `Holdings` before the
/// statement (`holdings`: `holdings_of!`; every part of a statement sees the database as it
/// was when it began).
/// Statements with more rows than `PREPARED_ROWS_MAX` are not kept prepared: each count of
/// rows is another statement.
struct TradeRowsPg<'q, T, H> {
    trade: T,
    holdings: H,
    lines: &'q [TradeLineRow],
    lots: &'q [NewLot<'q>],
    now_ms: i64,
}

/// The trade of `TradeRowsPg` when it is already recorded: its id.
struct RecordedTrade(i64);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RecordedTrade {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("SELECT id, trade_no, out_trade_no FROM trades WHERE id = ");
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.0)?;
        Ok(())
    }
}

/// Rows of one `TradeRowsPg` kept as a prepared statement at most (lines and lots).
const PREPARED_ROWS_MAX: usize = 8;

impl<T, H> diesel::query_builder::QueryFragment<diesel::pg::Pg> for TradeRowsPg<'_, T, H>
where
    T: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
    H: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Nullable, Text};
        if self.lines.len() + self.lots.len() > PREPARED_ROWS_MAX {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql("WITH t AS (");
        self.trade.walk_ast(out.reborrow())?;
        out.push_sql(")");
        if !self.lines.is_empty() {
            out.push_sql(
                ", tl AS (INSERT INTO trade_lines \
                 (trade_id, line_no, sku, name, quantity, amount_minor) \
                 SELECT t.id, v.line_no, v.sku, v.name, v.quantity, v.amount_minor FROM t, (VALUES ",
            );
            for (i, line) in self.lines.iter().enumerate() {
                out.push_sql(if i == 0 { "(" } else { ", (" });
                out.push_bind_param::<BigInt, _>(&line.line_no)?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(&line.sku)?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(&line.name)?;
                out.push_sql(", ");
                out.push_bind_param::<BigInt, _>(&line.quantity)?;
                out.push_sql(", ");
                out.push_bind_param::<BigInt, _>(&line.amount_minor)?;
                out.push_sql(")");
            }
            out.push_sql(") AS v (line_no, sku, name, quantity, amount_minor))");
        }
        if self.lots.is_empty() {
            out.push_sql(" SELECT t.id, ARRAY[]::BIGINT[], ");
            return self.push_holdings(out);
        }
        out.push_sql(
            ", l AS (INSERT INTO lots (member_id, trade_id, point_type, campaign_code, remark, \
             expire_type, expire_date, expires_at_ms, available_at_ms, points, remaining, \
             ruleset_version, created_at_ms) \
             SELECT v.member_id, t.id, v.point_type, v.campaign_code, v.remark, v.expire_type, \
             v.expire_date, v.expires_at_ms, v.available_at_ms, v.points, v.remaining, \
             v.ruleset_version, v.created_at_ms FROM t, (VALUES ",
        );
        for (i, lot) in self.lots.iter().enumerate() {
            // The lot's place, so that ids grow in the order given.
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_sql(&i.to_string());
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&lot.member_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(lot.point_type)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(lot.campaign_code)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(lot.remark)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(lot.expire_type)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&lot.expire_date)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&lot.expires_at_ms)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&lot.available_at_ms)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&lot.points)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&lot.remaining)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(lot.ruleset_version)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&lot.created_at_ms)?;
            out.push_sql(")");
        }
        out.push_sql(
            ") AS v (n, member_id, point_type, campaign_code, remark, expire_type, expire_date, \
             expires_at_ms, available_at_ms, points, remaining, ruleset_version, created_at_ms) \
             ORDER BY v.n RETURNING id, member_id, points, point_type, campaign_code), \
             e AS (INSERT INTO entries (member_id, lot_id, trade_id, refund_id, kind, points, \
             effective_at_ms, created_at_ms, point_type, campaign_code, trade_no, out_trade_no) \
             SELECT l.member_id, l.id, t.id, NULL, 'earn', l.points, ",
        );
        out.push_bind_param::<BigInt, _>(&self.now_ms)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.now_ms)?;
        out.push_sql(
            ", l.point_type, l.campaign_code, t.trade_no, t.out_trade_no \
             FROM t, l ORDER BY l.id) SELECT t.id, ARRAY(SELECT id FROM l ORDER BY id), ",
        );
        self.push_holdings(out)
    }
}

impl<T, H> TradeRowsPg<'_, T, H>
where
    H: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    /// The member's `Holdings` (`holdings_of!`), then the end of the statement.
    fn push_holdings<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        self.holdings.walk_ast(out.reborrow())?;
        out.push_sql(" FROM t");
        Ok(())
    }
}

impl<T, H> diesel::query_builder::QueryId for TradeRowsPg<'_, T, H> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T, H> diesel::query_builder::Query for TradeRowsPg<'_, T, H> {
    type SqlType = (
        diesel::sql_types::BigInt,
        diesel::sql_types::Array<diesel::sql_types::BigInt>,
        diesel::sql_types::BigInt,
        diesel::sql_types::Bool,
    );
}

impl<T, H> RunQueryDsl<diesel::PgConnection> for TradeRowsPg<'_, T, H> {}

pub fn insert_entry(conn: &mut Conn, entry: &NewEntry) -> Result<(), Error> {
    on_backend!(conn, c => {
        diesel::insert_into(entries::table)
            .values(entry)
            .execute(c)
            .map(|_| ())
    })
}

/// The lots a trade granted, in the order it granted them.
pub fn lots_of_trade(conn: &mut Conn, trade_id: i64) -> Result<Vec<LotRow>, Error> {
    on_backend!(conn, c => {
        lots::table
            .filter(lots::trade_id.eq(trade_id))
            .order(lots::id.asc())
            .select(LotRow::as_select())
            .load(c)
    })
}

/// What a trade must know of what its (locked) member holds, read in one statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Every point the member's lots still hold (pending ones and, until the expiry task runs,
    /// expired ones too: an upper bound of any balance it shows).
    pub held: i64,
    /// Whether a refund line of the member still owes points (`allow_negative`).
    pub owes: bool,
}

/// The member's `Holdings`. Held points are summed by the database from the covering index: a
/// member with thousands of lots costs a trade no row decoded per lot. Run on the backend's own
/// connection, so the statement is prepared once.
pub fn holdings(conn: &mut Conn, member_id: i64) -> Result<Holdings, Error> {
    let (held, owes): (Option<i64>, bool) =
        on_backend!(conn, c => diesel::select(holdings_of!(member_id)).get_result(c))?;
    Ok(Holdings {
        held: held.unwrap_or(0),
        owes,
    })
}

/// A member's open lots (points left, not expired at `as_of_ms`: usable or still pending), in
/// no set order, as `$lot` (`ShownLot`, `BurnableLot`: columns of the covering index
/// `lots_member_open`, so the read never visits the table).
macro_rules! open_lots_as {
    ($lot:ty, $conn:expr, $member_id:expr, $as_of_ms:expr) => {
        on_backend!($conn, c => {
            lots::table
                .filter(lots::member_id.eq($member_id))
                .filter(lots::remaining.gt(Zero))
                .filter(
                    lots::expires_at_ms
                        .is_null()
                        .or(lots::expires_at_ms.gt($as_of_ms)),
                )
                .select(<$lot>::as_select())
                .load(c)
        })
    };
}

/// A member's open lots as a balance shows them (see `open_lots_as!`).
pub fn shown_lots(conn: &mut Conn, member_id: i64, as_of_ms: i64) -> Result<Vec<ShownLot>, Error> {
    open_lots_as!(ShownLot, conn, member_id, as_of_ms)
}

/// The open lots of the members `member_ids` (see `open_lots_as!`), each with its member, in
/// one statement (on PostgreSQL `= ANY($1)`): a range of the covering index a member.
pub fn shown_lots_of_members(
    conn: &mut Conn,
    member_ids: &[i64],
    as_of_ms: i64,
) -> Result<Vec<(i64, ShownLot)>, Error> {
    on_backend!(conn, c => {
        lots::table
            .filter(lots::member_id.eq_any(member_ids))
            .filter(lots::remaining.gt(Zero))
            .filter(
                lots::expires_at_ms
                    .is_null()
                    .or(lots::expires_at_ms.gt(as_of_ms)),
            )
            .select((lots::member_id, ShownLot::as_select()))
            .load(c)
    })
}

/// A member's open lots as a burn takes from them (see `open_lots_as!`).
pub fn burnable_lots(
    conn: &mut Conn,
    member_id: i64,
    as_of_ms: i64,
) -> Result<Vec<BurnableLot>, Error> {
    open_lots_as!(BurnableLot, conn, member_id, as_of_ms)
}

/// Takes `points` from a lot's remaining points. Guarded: it changes nothing (and answers
/// `false`) if the lot does not have that many left, so a lot can never go negative.
pub fn take_from_lot(conn: &mut Conn, lot_id: i64, points: i64) -> Result<bool, Error> {
    let updated = on_backend!(conn, c => TakeFromLot { lot_id, points }.execute(c))?;
    Ok(updated == 1)
}

/// Each `UPDATE` (or upsert) here is its own type written out, where diesel's `update` would
/// prepare the statement again on every run (its `UpdateStatement` is never kept prepared,
/// nor an insert with an `ON CONFLICT` clause); its type is
/// the statement's key in the prepared-statement cache, so one type is one SQL text.
macro_rules! prepared_update {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }, $walk:expr) => {
        $(#[$doc])*
        struct $name { $($field: $ty),* }

        impl<DB> diesel::query_builder::QueryFragment<DB> for $name
        where
            DB: diesel::backend::Backend
                + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
                + diesel::sql_types::HasSqlType<diesel::sql_types::Text>,
            i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
            str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
        {
            fn walk_ast<'b>(
                &'b self,
                out: diesel::query_builder::AstPass<'_, 'b, DB>,
            ) -> QueryResult<()> {
                let walk: fn(&'b Self, diesel::query_builder::AstPass<'_, 'b, DB>) -> QueryResult<()> = $walk;
                walk(self, out)
            }
        }

        impl diesel::query_builder::QueryId for $name {
            type QueryId = $name;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl<C: diesel::Connection> RunQueryDsl<C> for $name {}
    };
}

prepared_update! {
    /// `take_from_lot`'s guarded update.
    TakeFromLot { lot_id: i64, points: i64 },
    |q, mut out| {
        use diesel::sql_types::BigInt;
        out.push_sql("UPDATE lots SET remaining = remaining - ");
        out.push_bind_param::<BigInt, _>(&q.points)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<BigInt, _>(&q.lot_id)?;
        out.push_sql(" AND remaining >= ");
        out.push_bind_param::<BigInt, _>(&q.points)
    }
}

prepared_update! {
    /// `take_from_budget`'s guarded upsert: the row's first use inserts it; a later one adds
    /// to it only while it has used at most `used_max` (answers 0 rows otherwise).
    TakeFromBudget { campaign_code: String, points: i64, used_max: i64 },
    |q, mut out| {
        use diesel::sql_types::{BigInt, Text};
        out.push_sql("INSERT INTO campaign_budgets (campaign_code, used) VALUES (");
        out.push_bind_param::<Text, str>(q.campaign_code.as_str())?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&q.points)?;
        out.push_sql(
            ") ON CONFLICT (campaign_code) DO UPDATE \
             SET used = campaign_budgets.used + excluded.used \
             WHERE campaign_budgets.used <= ",
        );
        out.push_bind_param::<BigInt, _>(&q.used_max)
    }
}

prepared_update! {
    /// `take_from_budget_period`'s guarded upsert, as `TakeFromBudget`.
    TakeFromBudgetPeriod { campaign_code: String, period: String, points: i64, used_max: i64 },
    |q, mut out| {
        use diesel::sql_types::{BigInt, Text};
        out.push_sql("INSERT INTO campaign_budget_periods (campaign_code, period, used) VALUES (");
        out.push_bind_param::<Text, str>(q.campaign_code.as_str())?;
        out.push_sql(", ");
        out.push_bind_param::<Text, str>(q.period.as_str())?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&q.points)?;
        out.push_sql(
            ") ON CONFLICT (campaign_code, period) DO UPDATE \
             SET used = campaign_budget_periods.used + excluded.used \
             WHERE campaign_budget_periods.used <= ",
        );
        out.push_bind_param::<BigInt, _>(&q.used_max)
    }
}

/// Lots with points left whose expiry instant is at or before `as_of_ms`, soonest first.
pub fn expired_lots(conn: &mut Conn, as_of_ms: i64, limit: i64) -> Result<Vec<LotRow>, Error> {
    lots::table
        .filter(lots::remaining.gt(Zero))
        .filter(lots::expires_at_ms.le(as_of_ms))
        .order((lots::expires_at_ms.asc(), lots::id.asc()))
        .limit(limit)
        .select(LotRow::as_select())
        .load(conn)
}

/// The lots of members `first..=last`, in id order.
pub fn member_lots(conn: &mut Conn, (first, last): (i64, i64)) -> Result<Vec<LotRow>, Error> {
    lots::table
        .filter(lots::member_id.between(first, last))
        .order(lots::id.asc())
        .select(LotRow::as_select())
        .load(conn)
}

/// The entries of the lots of members `first..=last`, in id order.
pub fn member_lot_entries(
    conn: &mut Conn,
    (first, last): (i64, i64),
) -> Result<Vec<EntryRow>, Error> {
    entries::table
        .inner_join(lots::table)
        .filter(lots::member_id.between(first, last))
        .order(entries::id.asc())
        .select(EntryRow::as_select())
        .load(conn)
}

/// The ids of the entries of members `first..=last` that do not show what their lot and their
/// trade hold (point type, campaign; `trade_no`, `out_trade_no`).
pub fn misshown_entries(conn: &mut Conn, (first, last): (i64, i64)) -> Result<Vec<i64>, Error> {
    entries::table
        .inner_join(lots::table)
        .inner_join(trades::table.on(trades::id.nullable().eq(entries::trade_id)))
        .filter(entries::member_id.between(first, last))
        .filter(
            entries::point_type
                .ne(lots::point_type)
                .or(entries::campaign_code.ne(lots::campaign_code))
                .or(entries::trade_no.ne(trades::trade_no))
                .or(entries::out_trade_no.ne(trades::out_trade_no)),
        )
        .order(entries::id.asc())
        .select(entries::id)
        .load(conn)
}

/// Up to `limit` member ids after `after_id`, in order.
pub fn member_ids_after(conn: &mut Conn, after_id: i64, limit: i64) -> Result<Vec<i64>, Error> {
    members::table
        .filter(members::id.gt(after_id))
        .order(members::id.asc())
        .limit(limit)
        .select(members::id)
        .load(conn)
}

/// (id, burn_point, payment_amount_minor, sales_at_ms) of the trades of members `first..=last`.
pub fn trade_burns(
    conn: &mut Conn,
    (first, last): (i64, i64),
) -> Result<Vec<(i64, i64, i64, i64)>, Error> {
    trades::table
        .filter(trades::member_id.between(first, last))
        .order(trades::id.asc())
        .select((
            trades::id,
            trades::burn_point,
            trades::payment_amount_minor,
            trades::sales_at_ms,
        ))
        .load(conn)
}

/// Up to `limit` trades after `after_id`, in id order, each with its member's account number.
pub fn trade_details_after(
    conn: &mut Conn,
    after_id: i64,
    limit: i64,
) -> Result<Vec<(TradeDetailRow, String)>, Error> {
    trades::table
        .inner_join(members::table)
        .filter(trades::id.gt(after_id))
        .order(trades::id.asc())
        .limit(limit)
        .select((TradeDetailRow::as_select(), members::vip_accountno))
        .load(conn)
}

/// The lots of these trades, in id order.
pub fn lots_of_trades(conn: &mut Conn, trade_ids: &[i64]) -> Result<Vec<LotRow>, Error> {
    lots::table
        .filter(lots::trade_id.eq_any(trade_ids))
        .order(lots::id.asc())
        .select(LotRow::as_select())
        .load(conn)
}

pub fn count_entries_of_member(conn: &mut Conn, member_id: i64) -> Result<i64, Error> {
    // On the backend's own connection, where diesel keeps the statement prepared.
    on_backend!(conn, c => {
        entries::table
            .filter(entries::member_id.eq(member_id))
            .count()
            .get_result(c)
    })
}

/// Whose movements to read (`movements`).
#[derive(Debug, Clone, Copy)]
pub enum MovementsOf {
    /// One page of a member's, newest first.
    Member {
        member_id: i64,
        offset: i64,
        limit: i64,
    },
    /// Every entry that names a trade, oldest first (its earns, its burns, and later
    /// movements of its lots).
    Trade(i64),
}

/// The query of a member's history page (`movements`), also planned by the tests: each entry
/// carries its lot's type and campaign and its trade's numbers, so the page is read from one
/// index (`entries_member` covers it on SQLite), never from the lots and trades it names.
macro_rules! member_page_query {
    ($member_id:expr, $offset:expr, $limit:expr) => {
        entries::table
            .filter(entries::member_id.eq($member_id))
            .order(entries::id.desc())
            .offset($offset)
            .limit($limit)
            .select(ShownEntryRow::as_select())
    };
}

/// Entries as a history shows them: a page of a member's, newest first, or a trade's. Read on
/// the backend's own connection, where diesel keeps each statement prepared.
pub fn movements(conn: &mut Conn, of: MovementsOf) -> Result<Vec<ShownEntryRow>, Error> {
    match of {
        MovementsOf::Member {
            member_id,
            offset,
            limit,
        } => on_backend!(conn, c => member_page_query!(member_id, offset, limit).load(c)),
        MovementsOf::Trade(trade_id) => on_backend!(conn, c => {
            entries::table
                .filter(entries::trade_id.eq(trade_id))
                .order(entries::id.asc())
                .select(ShownEntryRow::as_select())
                .load(c)
        }),
    }
}

/// How many entries each of the members `member_ids` has (`count_entries_of_member`), those
/// with any, in one statement.
pub fn count_entries_of_members(
    conn: &mut Conn,
    member_ids: &[i64],
) -> Result<Vec<(i64, i64)>, Error> {
    on_backend!(conn, c => {
        entries::table
            .filter(entries::member_id.eq_any(member_ids))
            .group_by(entries::member_id)
            .select((entries::member_id, diesel::dsl::count_star()))
            .load(c)
    })
}

/// A page of a member's entries, newest first, as `member_pages_pg` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageAsked {
    pub member_id: i64,
    /// Only entries newer than this one (a first page kept earlier, read again: the entries
    /// newer than its own); `None`: all of them.
    pub after: Option<i64>,
    pub offset: i64,
    pub limit: i64,
}

/// History pages of many members in one statement (PostgreSQL; `member_page_query!` each):
/// answers each page's entries with the page's place in `pages` and the count of every entry
/// of its member, as of the one moment the statement reads at (a page with no entries
/// answers nothing: `count_entries_of_members`). Its text is the same whatever the count of
/// pages (every column is one array), so it stays prepared.
pub fn member_pages_pg(
    c: &mut diesel::PgConnection,
    pages: &[PageAsked],
) -> Result<Vec<(i64, i64, ShownEntryRow)>, Error> {
    let query = MemberPagesPg {
        member_id: pages.iter().map(|p| p.member_id).collect(),
        after: pages.iter().map(|p| p.after.unwrap_or(i64::MIN)).collect(),
        offset: pages.iter().map(|p| p.offset).collect(),
        limit: pages.iter().map(|p| p.limit).collect(),
    };
    let rows: Vec<(i64, i64, ShownEntryRow)> = query.load(c)?;
    // `WITH ORDINALITY` counts from 1.
    Ok(rows
        .into_iter()
        .map(|(n, total, row)| (n - 1, total, row))
        .collect())
}

/// `member_pages_pg`'s statement.
struct MemberPagesPg {
    member_id: Vec<i64>,
    after: Vec<i64>,
    offset: Vec<i64>,
    limit: Vec<i64>,
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for MemberPagesPg {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt};
        out.push_sql(
            "SELECT p.n, p.total, e.id, e.kind, e.points, e.point_type, e.campaign_code, \
             e.trade_no, e.out_trade_no, e.effective_at_ms, e.created_at_ms \
             FROM (SELECT p.*, (SELECT count(*) FROM entries \
             WHERE entries.member_id = p.member_id) AS total FROM unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.member_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.after)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.offset)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.limit)?;
        out.push_sql(
            ") WITH ORDINALITY AS p (member_id, after, skipped, taken, n) \
             OFFSET 0) AS p \
             CROSS JOIN LATERAL (SELECT * FROM entries WHERE entries.member_id = p.member_id \
             AND entries.id > p.after ORDER BY entries.id DESC OFFSET p.skipped LIMIT p.taken) AS e \
             ORDER BY p.n, e.id DESC",
        );
        Ok(())
    }
}

impl diesel::query_builder::QueryId for MemberPagesPg {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for MemberPagesPg {
    type SqlType = (
        diesel::sql_types::BigInt,
        diesel::sql_types::BigInt,
        diesel::dsl::SqlTypeOf<diesel::dsl::AsSelect<ShownEntryRow, diesel::pg::Pg>>,
    );
}

impl RunQueryDsl<diesel::PgConnection> for MemberPagesPg {}

pub fn lots_by_ids(conn: &mut Conn, ids: &[i64]) -> Result<Vec<LotRow>, Error> {
    on_backend!(conn, c => {
        lots::table
            .filter(lots::id.eq_any(ids))
            .select(LotRow::as_select())
            .load(c)
    })
}

/// (trade_no, out_trade_no) of a trade.
pub fn trade_numbers_of(conn: &mut Conn, trade_id: i64) -> Result<(String, String), Error> {
    on_backend!(conn, c => {
        trades::table
            .find(trade_id)
            .select((trades::trade_no, trades::out_trade_no))
            .get_result(c)
    })
}

/// A trade and its member's account number, found by point-engine's `trade_no` or by the
/// store's `out_trade_no` (`by_out_trade_no_only`: by the latter alone).
pub fn find_trade_detail(
    conn: &mut Conn,
    number: &str,
    by_out_trade_no_only: bool,
) -> Result<Option<(TradeDetailRow, String)>, Error> {
    let mut query = trades::table.inner_join(members::table).into_boxed();
    query = if by_out_trade_no_only {
        query.filter(trades::out_trade_no.eq(number))
    } else {
        query.filter(
            trades::trade_no
                .eq(number)
                .or(trades::out_trade_no.eq(number)),
        )
    };
    query
        .order(trades::id.asc())
        .select((TradeDetailRow::as_select(), members::vip_accountno))
        .first(conn)
        .optional()
}

/// The points a lot has lost to expiry (its `expire` entries).
pub fn expired_points(conn: &mut Conn, lot_id: i64) -> Result<i64, Error> {
    let points: Vec<i64> = entries::table
        .filter(entries::lot_id.eq(lot_id))
        .filter(entries::kind.eq("expire"))
        .select(entries::points)
        .load(conn)?;
    Ok(-points.iter().sum::<i64>())
}

/// The entries that name a trade (its earns, its burns, and later movements of its lots).
pub fn entries_of_trade(conn: &mut Conn, trade_id: i64) -> Result<Vec<EntryRow>, Error> {
    entries::table
        .filter(entries::trade_id.eq(trade_id))
        .order(entries::id.asc())
        .select(EntryRow::as_select())
        .load(conn)
}

/// Keeps a ruleset's sources under its version; a version already kept is left as it is (also
/// when another instance keeps it at the same moment).
pub fn save_ruleset(conn: &mut Conn, ruleset: &NewRuleset) -> Result<(), Error> {
    if ruleset_sources(conn, ruleset.version)?.is_some() {
        return Ok(());
    }
    // Another instance saving the same version at once: a unique violation, which the writer
    // turns into a run again (that finds it saved).
    diesel::insert_into(rulesets::table)
        .values(ruleset)
        .execute(conn)
        .map(|_| ())
}

/// The ruleset version saved last, if any.
pub fn latest_ruleset_version(conn: &mut Conn) -> Result<Option<String>, Error> {
    rulesets::table
        .order((rulesets::created_at_ms.desc(), rulesets::version.desc()))
        .select(rulesets::version)
        .first(conn)
        .optional()
}

pub fn ruleset_sources(conn: &mut Conn, version: &str) -> Result<Option<String>, Error> {
    rulesets::table
        .filter(rulesets::version.eq(version))
        .select(rulesets::sources)
        .get_result(conn)
        .optional()
}

pub fn find_refund(conn: &mut Conn, out_refund_no: &str) -> Result<Option<RefundRow>, Error> {
    refunds::table
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .select(RefundRow::as_select())
        .get_result(conn)
        .optional()
}

pub fn insert_refund(conn: &mut Conn, refund: &RefundRow) -> Result<i64, Error> {
    diesel::insert_into(refunds::table)
        .values(refund)
        .returning(refunds::id)
        .get_result(conn)
}

/// Inserts a refund line: its id.
pub fn insert_refund_line(conn: &mut Conn, line: &RefundLineRow) -> Result<i64, Error> {
    diesel::insert_into(refund_lines::table)
        .values(line)
        .returning(refund_lines::id)
        .get_result(conn)
}

pub fn insert_debt_movement(conn: &mut Conn, movement: &NewDebtMovement) -> Result<(), Error> {
    diesel::insert_into(debt_movements::table)
        .values(movement)
        .execute(conn)
        .map(|_| ())
}

/// The debt movements of lots `first..=last` effective before `before_ms`, as a report reads
/// them: against the lot of the grant whose refund left the debt, and that refund's trade; owed
/// points negative, paid ones positive (their effect on what the program owes its members).
pub fn lot_debt_movements_before(
    conn: &mut Conn,
    (first, last): (i64, i64),
    before_ms: i64,
) -> Result<Vec<MovementRow>, Error> {
    let rows: Vec<(i64, i64, String, i64, i64)> = debt_movements::table
        .inner_join(refund_lines::table.inner_join(refunds::table))
        .filter(refund_lines::lot_id.between(first, last))
        .filter(debt_movements::effective_at_ms.lt(before_ms))
        .select((
            refund_lines::lot_id,
            refunds::trade_id,
            debt_movements::kind,
            debt_movements::points,
            debt_movements::effective_at_ms,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(lot_id, trade_id, kind, points, effective_at_ms)| MovementRow {
                lot_id,
                trade_id: Some(trade_id),
                points: if kind == "owed" { -points } else { points },
                kind,
                effective_at_ms,
            },
        )
        .collect())
}

/// The shortfalls of lots `first..=last` written off (refunds under `record_shortfall`) before
/// `before_ms`: what a refund was due to take back and found already spent or expired. Points,
/// not a movement of the balance.
pub fn lot_write_offs_before(
    conn: &mut Conn,
    (first, last): (i64, i64),
    before_ms: i64,
) -> Result<Vec<MovementRow>, Error> {
    let rows: Vec<(i64, i64, i64, i64)> = refund_lines::table
        .inner_join(refunds::table)
        .filter(refund_lines::lot_id.between(first, last))
        .filter(refunds::shortfall_policy.eq("record_shortfall"))
        .filter(refund_lines::shortfall.gt(Zero))
        .filter(refunds::created_at_ms.lt(before_ms))
        .select((
            refund_lines::lot_id,
            refunds::trade_id,
            refund_lines::shortfall,
            refunds::created_at_ms,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(lot_id, trade_id, points, effective_at_ms)| MovementRow {
            lot_id,
            trade_id: Some(trade_id),
            kind: "written_off".to_string(),
            points,
            effective_at_ms,
        })
        .collect())
}

/// (refund line, kind, points) of the debt movements of the refunds of members `first..=last`.
pub fn member_debt_movements(
    conn: &mut Conn,
    (first, last): (i64, i64),
) -> Result<Vec<DebtMovementRow>, Error> {
    debt_movements::table
        .inner_join(refund_lines::table.inner_join(refunds::table))
        .filter(refunds::member_id.between(first, last))
        .order(debt_movements::id.asc())
        .select((
            debt_movements::id,
            debt_movements::refund_line_id,
            debt_movements::kind,
            debt_movements::points,
            debt_movements::paid_by_lot_id,
            debt_movements::restored,
        ))
        .load(conn)
}

/// (refund line, points, restored) of the takes of the refunds of members `first..=last`.
pub fn member_refund_takes(
    conn: &mut Conn,
    (first, last): (i64, i64),
) -> Result<Vec<(i64, i64, i64)>, Error> {
    refund_takes::table
        .inner_join(refund_lines::table.inner_join(refunds::table))
        .filter(refunds::member_id.between(first, last))
        .order(refund_takes::id.asc())
        .select((
            refund_takes::refund_line_id,
            refund_takes::points,
            refund_takes::restored,
        ))
        .load(conn)
}

/// (refund line, points) of the settlements of the refunds of members `first..=last`.
pub fn member_refund_settlements(
    conn: &mut Conn,
    (first, last): (i64, i64),
) -> Result<Vec<(i64, i64)>, Error> {
    refund_settlements::table
        .inner_join(refund_lines::table.inner_join(refunds::table))
        .filter(refunds::member_id.between(first, last))
        .order(refund_settlements::id.asc())
        .select((
            refund_settlements::refund_line_id,
            refund_settlements::points,
        ))
        .load(conn)
}

/// A refund line, its refund's trade (id, out_trade_no), and what returned burns settled of it.
pub type LineOfLot = (RefundLineRow, (i64, String), i64);

/// (row id, lot, points left to give back) of a debt payment or a take.
pub type Restorable = (i64, i64, i64);

/// The refund lines that took points from the grant of lot `lot_id`, oldest first, each with
/// its refund's trade (id, out_trade_no) and what returned burns have settled of it so far.
pub fn refund_lines_of_lot(conn: &mut Conn, lot_id: i64) -> Result<Vec<LineOfLot>, Error> {
    let lines: Vec<(RefundLineRow, (i64, String))> = refund_lines::table
        .inner_join(refunds::table.inner_join(trades::table))
        .filter(refund_lines::lot_id.eq(lot_id))
        .order(refund_lines::id.asc())
        .select((
            RefundLineRow::as_select(),
            (refunds::trade_id, trades::out_trade_no),
        ))
        .load(conn)?;
    let ids: Vec<i64> = lines.iter().map(|(line, _)| line.id).collect();
    let settled: Vec<(i64, i64)> = refund_settlements::table
        .filter(refund_settlements::refund_line_id.eq_any(&ids))
        .select((
            refund_settlements::refund_line_id,
            refund_settlements::points,
        ))
        .load(conn)?;
    Ok(lines
        .into_iter()
        .map(|(line, trade_id)| {
            let done = settled
                .iter()
                .filter(|(id, _)| *id == line.id)
                .map(|(_, points)| points)
                .sum();
            (line, trade_id, done)
        })
        .collect())
}

/// What a refund line's settlement may give back: the debt payments of later lots (not the
/// grant's own lot) and the takes from other lots, each as (row id, lot, points left to
/// give back), the latest first.
pub fn restorable_of_line(
    conn: &mut Conn,
    line: &RefundLineRow,
) -> Result<(Vec<Restorable>, Vec<Restorable>), Error> {
    let payments: Vec<(i64, Option<i64>, i64, i64)> = debt_movements::table
        .filter(debt_movements::refund_line_id.eq(line.id))
        .filter(debt_movements::kind.eq("paid"))
        .order(debt_movements::id.desc())
        .select((
            debt_movements::id,
            debt_movements::paid_by_lot_id,
            debt_movements::points,
            debt_movements::restored,
        ))
        .load(conn)?;
    let takes: Vec<(i64, i64, i64, i64)> = refund_takes::table
        .filter(refund_takes::refund_line_id.eq(line.id))
        .order(refund_takes::id.desc())
        .select((
            refund_takes::id,
            refund_takes::lot_id,
            refund_takes::points,
            refund_takes::restored,
        ))
        .load(conn)?;
    Ok((
        payments
            .into_iter()
            .filter_map(|(id, lot, points, restored)| match lot {
                Some(lot) if lot != line.lot_id && points > restored => {
                    Some((id, lot, points - restored))
                }
                _ => None,
            })
            .collect(),
        takes
            .into_iter()
            .filter(|(_, _, points, restored)| points > restored)
            .map(|(id, lot, points, restored)| (id, lot, points - restored))
            .collect(),
    ))
}

/// Written-off points of lots `first..=last` recovered (settled by a returned burn) before
/// `before_ms`: against the grant's lot and its refunded trade. Points, not a movement of the
/// balance.
pub fn lot_recoveries_before(
    conn: &mut Conn,
    (first, last): (i64, i64),
    before_ms: i64,
) -> Result<Vec<MovementRow>, Error> {
    let rows: Vec<(i64, i64, i64, i64)> = refund_settlements::table
        .inner_join(refund_lines::table.inner_join(refunds::table))
        .filter(refunds::shortfall_policy.eq("record_shortfall"))
        .filter(refund_lines::lot_id.between(first, last))
        .filter(refund_settlements::effective_at_ms.lt(before_ms))
        .select((
            refund_lines::lot_id,
            refunds::trade_id,
            refund_settlements::points,
            refund_settlements::effective_at_ms,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(lot_id, trade_id, points, effective_at_ms)| MovementRow {
            lot_id,
            trade_id: Some(trade_id),
            kind: "recovered".to_string(),
            points,
            effective_at_ms,
        })
        .collect())
}

/// What a refund line owes now.
pub fn refund_line_owed(conn: &mut Conn, line_id: i64) -> Result<i64, Error> {
    refund_lines::table
        .find(line_id)
        .select(refund_lines::owed)
        .get_result(conn)
}

/// Marks `points` more of a debt payment as given back to the lot that paid it.
pub fn restore_debt_payment(conn: &mut Conn, movement_id: i64, points: i64) -> Result<bool, Error> {
    let updated = diesel::update(
        debt_movements::table
            .filter(debt_movements::id.eq(movement_id))
            .filter(debt_movements::restored.le(debt_movements::points - points)),
    )
    .set(debt_movements::restored.eq(debt_movements::restored + points))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Marks `points` more of a take as given back to the lot it was taken from.
pub fn restore_take(conn: &mut Conn, take_id: i64, points: i64) -> Result<bool, Error> {
    let updated = diesel::update(
        refund_takes::table
            .filter(refund_takes::id.eq(take_id))
            .filter(refund_takes::restored.le(refund_takes::points - points)),
    )
    .set(refund_takes::restored.eq(refund_takes::restored + points))
    .execute(conn)?;
    Ok(updated == 1)
}

/// (out_trade_no of the refunded trade, the grant's lot, points) of what a refund's returned
/// burns settled, in order.
pub fn settlements_by_refund(
    conn: &mut Conn,
    returning_refund_id: i64,
) -> Result<Vec<(String, i64, i64)>, Error> {
    refund_settlements::table
        .inner_join(refund_lines::table.inner_join(refunds::table.inner_join(trades::table)))
        .filter(refund_settlements::returning_refund_id.eq(returning_refund_id))
        .order(refund_settlements::id.asc())
        .select((
            trades::out_trade_no,
            refund_lines::lot_id,
            refund_settlements::points,
        ))
        .load(conn)
}

pub fn insert_refund_settlement(
    conn: &mut Conn,
    refund_line_id: i64,
    returning_refund_id: i64,
    points: i64,
    now_ms: i64,
) -> Result<(), Error> {
    diesel::insert_into(refund_settlements::table)
        .values((
            refund_settlements::refund_line_id.eq(refund_line_id),
            refund_settlements::returning_refund_id.eq(returning_refund_id),
            refund_settlements::points.eq(points),
            refund_settlements::effective_at_ms.eq(now_ms),
            refund_settlements::created_at_ms.eq(now_ms),
        ))
        .execute(conn)?;
    Ok(())
}

/// The refunds of members `first..=last`, oldest first.
pub fn member_refunds(conn: &mut Conn, (first, last): (i64, i64)) -> Result<Vec<RefundRow>, Error> {
    refunds::table
        .filter(refunds::member_id.between(first, last))
        .order(refunds::id.asc())
        .select(RefundRow::as_select())
        .load(conn)
}

/// The lines of the refunds of members `first..=last`.
pub fn member_refund_lines(
    conn: &mut Conn,
    (first, last): (i64, i64),
) -> Result<Vec<RefundLineRow>, Error> {
    refund_lines::table
        .inner_join(refunds::table)
        .filter(refunds::member_id.between(first, last))
        .order(refund_lines::id.asc())
        .select(RefundLineRow::as_select())
        .load(conn)
}

/// Every refund, or one trade's, oldest first.
pub fn refunds(conn: &mut Conn, trade_id: Option<i64>) -> Result<Vec<RefundRow>, Error> {
    let mut query = refunds::table
        .order(refunds::id.asc())
        .select(RefundRow::as_select())
        .into_boxed();
    if let Some(trade_id) = trade_id {
        query = query.filter(refunds::trade_id.eq(trade_id));
    }
    query.load(conn)
}

/// Every refund line, or those of the given refunds.
pub fn refund_lines(
    conn: &mut Conn,
    refund_ids: Option<&[i64]>,
) -> Result<Vec<RefundLineRow>, Error> {
    let mut query = refund_lines::table
        .order(refund_lines::id.asc())
        .select(RefundLineRow::as_select())
        .into_boxed();
    if let Some(ids) = refund_ids {
        query = query.filter(refund_lines::refund_id.eq_any(ids.to_vec()));
    }
    query.load(conn)
}

/// A member's refund lines that still owe points (`allow_negative`), oldest first, each with
/// its refund's trade.
pub fn owed_lines(conn: &mut Conn, member_id: i64) -> Result<Vec<(RefundLineRow, i64)>, Error> {
    on_backend!(conn, c => owed_lines_query!(member_id).load(c))
}

/// The query of `owed_lines`, also planned by the tests. Every trade and every balance runs it:
/// it must find the member's refunds by `refunds_member`, never scan the ledger's refund lines.
macro_rules! owed_lines_query {
    ($member_id:expr) => {
        refund_lines::table
            .inner_join(refunds::table)
            .filter(refunds::member_id.eq($member_id))
            .filter(refund_lines::owed.gt(Zero))
            .order(refund_lines::id.asc())
            .select((RefundLineRow::as_select(), refunds::trade_id))
    };
}
use owed_lines_query;

/// Pays `points` off a refund line's owed points. Guarded like `take_from_lot`.
pub fn pay_owed(conn: &mut Conn, line_id: i64, points: i64) -> Result<bool, Error> {
    let updated = diesel::update(
        refund_lines::table
            .filter(refund_lines::id.eq(line_id))
            .filter(refund_lines::owed.ge(points)),
    )
    .set(refund_lines::owed.eq(refund_lines::owed - points))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Points a member still owes from refunds under `allow_negative`.
pub fn owed_points(conn: &mut Conn, member_id: i64) -> Result<i64, Error> {
    Ok(owed_lines(conn, member_id)?
        .iter()
        .map(|(line, _)| line.owed)
        .sum())
}

/// What each of the members `member_ids` owes (`owed_points`), those who owe anything, in one
/// statement.
pub fn owed_of_members(conn: &mut Conn, member_ids: &[i64]) -> Result<Vec<(i64, i64)>, Error> {
    let lines: Vec<(i64, i64)> = on_backend!(conn, c => {
        refund_lines::table
            .inner_join(refunds::table)
            .filter(refunds::member_id.eq_any(member_ids))
            .filter(refund_lines::owed.gt(Zero))
            .select((refunds::member_id, refund_lines::owed))
            .load(c)
    })?;
    let mut owed: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for (member_id, points) in lines {
        *owed.entry(member_id).or_default() += points;
    }
    Ok(owed.into_iter().collect())
}

/// Gives `points` back to a lot (a refunded burn). Guarded: a lot never holds more than it
/// was granted.
pub fn give_back_to_lot(conn: &mut Conn, lot_id: i64, points: i64) -> Result<bool, Error> {
    let updated = diesel::update(
        lots::table
            .filter(lots::id.eq(lot_id))
            .filter(lots::remaining.le(lots::points - points)),
    )
    .set(lots::remaining.eq(lots::remaining + points))
    .execute(conn)?;
    Ok(updated == 1)
}

/// The entries of lots `first..=last` effective before `before_ms`.
pub fn lot_entries_before(
    conn: &mut Conn,
    (first, last): (i64, i64),
    before_ms: i64,
) -> Result<Vec<MovementRow>, Error> {
    entries::table
        .filter(entries::lot_id.between(first, last))
        .filter(entries::effective_at_ms.lt(before_ms))
        .select(MovementRow::as_select())
        .load(conn)
}

/// Up to `limit` lots after `after_id`, in id order.
pub fn lots_after(conn: &mut Conn, after_id: i64, limit: i64) -> Result<Vec<LotRow>, Error> {
    lots::table
        .filter(lots::id.gt(after_id))
        .order(lots::id.asc())
        .limit(limit)
        .select(LotRow::as_select())
        .load(conn)
}

/// (id, store_code) of every trade.
/// (id, store code) of the given trades.
pub fn trade_stores(conn: &mut Conn, ids: &[i64]) -> Result<Vec<(i64, String)>, Error> {
    trades::table
        .filter(trades::id.eq_any(ids))
        .select((trades::id, trades::store_code))
        .load(conn)
}

/// Records the lines of trade `trade_id`, and sets their `trade_id`.
pub fn insert_trade_lines(
    conn: &mut Conn,
    trade_id: i64,
    lines: &mut [TradeLineRow],
) -> Result<(), Error> {
    for line in lines.iter_mut() {
        line.trade_id = trade_id;
        on_backend!(conn, c => diesel::insert_into(trade_lines::table).values(&*line).execute(c))?;
    }
    Ok(())
}

/// The lines of the given trades, in line order.
pub fn trade_lines_of(conn: &mut Conn, trade_ids: &[i64]) -> Result<Vec<TradeLineRow>, Error> {
    trade_lines::table
        .filter(trade_lines::trade_id.eq_any(trade_ids))
        .order((trade_lines::trade_id.asc(), trade_lines::line_no.asc()))
        .select(TradeLineRow::as_select())
        .load(conn)
}

/// How many trades a member has (all of them, or those sold in `[from_ms, to_ms)`).
pub fn count_member_trades(
    conn: &mut Conn,
    member_id: i64,
    sold_in: Option<(i64, i64)>,
) -> Result<i64, Error> {
    on_backend!(conn, c => {
        let mut query = trades::table
            .filter(trades::member_id.eq(member_id))
            .into_boxed();
        if let Some((from_ms, to_ms)) = sold_in {
            query = query
                .filter(trades::sales_at_ms.ge(from_ms))
                .filter(trades::sales_at_ms.lt(to_ms));
        }
        query.count().get_result(c)
    })
}

/// (points, sales_at_ms) of every lot a campaign granted the member.
pub fn member_campaign_grants(
    conn: &mut Conn,
    member_id: i64,
    campaign_code: &str,
) -> Result<Vec<(i64, i64)>, Error> {
    on_backend!(conn, c => {
        lots::table
            .inner_join(trades::table)
            .filter(lots::member_id.eq(member_id))
            .filter(lots::campaign_code.eq(campaign_code))
            .select((lots::points, trades::sales_at_ms))
            .load(c)
    })
}

/// What qualifies a member for a tier, of trades sold from `from_ms` on: (sales_at_ms, points)
/// of each lot granted, and (sales_at_ms, points) of what each refund line took back.
pub type PointsEarned = (Vec<(i64, i64)>, Vec<(i64, i64)>);

pub fn member_points_since(
    conn: &mut Conn,
    member_id: i64,
    from_ms: i64,
) -> Result<PointsEarned, Error> {
    on_backend!(conn, c => {
        let granted = lots::table
            .inner_join(trades::table)
            .filter(lots::member_id.eq(member_id))
            .filter(trades::sales_at_ms.ge(from_ms))
            .select((trades::sales_at_ms, lots::points))
            .load(c)?;
        let refunded = refund_lines::table
            .inner_join(lots::table.inner_join(trades::table))
            .filter(lots::member_id.eq(member_id))
            .filter(trades::sales_at_ms.ge(from_ms))
            .select((trades::sales_at_ms, refund_lines::points))
            .load(c)?;
        Ok((granted, refunded))
    })
}

/// (sales_at_ms, currency, minor units) of each payment of a member's trades sold from
/// `from_ms` on, and of each refund of them.
pub type MoneySpent = (Vec<(i64, String, i64)>, Vec<(i64, String, i64)>);

pub fn member_spend_since(
    conn: &mut Conn,
    member_id: i64,
    from_ms: i64,
) -> Result<MoneySpent, Error> {
    on_backend!(conn, c => {
        let paid = trades::table
            .filter(trades::member_id.eq(member_id))
            .filter(trades::sales_at_ms.ge(from_ms))
            .select((
                trades::sales_at_ms,
                trades::currency,
                trades::payment_amount_minor,
            ))
            .load(c)?;
        let refunded = refunds::table
            .inner_join(trades::table)
            .filter(refunds::member_id.eq(member_id))
            .filter(trades::sales_at_ms.ge(from_ms))
            .select((
                trades::sales_at_ms,
                trades::currency,
                refunds::refund_amount_minor,
            ))
            .load(c)?;
        Ok((paid, refunded))
    })
}

/// Points a campaign's budget has granted so far.
pub fn budget_used(conn: &mut Conn, campaign_code: &str) -> Result<i64, Error> {
    on_backend!(conn, c => {
        Ok(campaign_budgets::table
            .filter(campaign_budgets::campaign_code.eq(campaign_code))
            .select(campaign_budgets::used)
            .get_result(c)
            .optional()?
            .unwrap_or(0))
    })
}

/// Takes `points` from a campaign's budget of `cap`. Guarded: `false`, and nothing changed, if
/// that would overspend it (another trade took the rest first). One statement, kept prepared:
/// the budget's first use inserts its row, so two first uses at once never race.
pub fn take_from_budget(
    conn: &mut Conn,
    campaign_code: &str,
    cap: i64,
    points: i64,
) -> Result<bool, Error> {
    if points > cap {
        return Ok(false);
    }
    let take = TakeFromBudget {
        campaign_code: campaign_code.to_string(),
        points,
        used_max: cap - points,
    };
    Ok(on_backend!(conn, c => take.execute(c))? == 1)
}

/// Points a campaign's budget of one local day or month (`period`) has granted so far.
pub fn budget_period_used(
    conn: &mut Conn,
    campaign_code: &str,
    period: &str,
) -> Result<i64, Error> {
    on_backend!(conn, c => {
        Ok(campaign_budget_periods::table
            .filter(campaign_budget_periods::campaign_code.eq(campaign_code))
            .filter(campaign_budget_periods::period.eq(period))
            .select(campaign_budget_periods::used)
            .get_result::<i64>(c)
            .optional()?
            .unwrap_or(0))
    })
}

/// Takes `points` from a campaign's budget of `cap` for one period, guarded as
/// `take_from_budget` is.
pub fn take_from_budget_period(
    conn: &mut Conn,
    campaign_code: &str,
    period: &str,
    cap: i64,
    points: i64,
) -> Result<bool, Error> {
    if points > cap {
        return Ok(false);
    }
    let take = TakeFromBudgetPeriod {
        campaign_code: campaign_code.to_string(),
        period: period.to_string(),
        points,
        used_max: cap - points,
    };
    Ok(on_backend!(conn, c => take.execute(c))? == 1)
}

/// Trades sold in `[from_ms, to_ms)` after the cursor `(sales_at_ms, id)`, in sales order, each
/// with its member's account number and its sales instant.
pub fn trades_sold_page(
    conn: &mut Conn,
    from_ms: i64,
    to_ms: i64,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<(TradeDetailRow, String, i64)>, Error> {
    let mut query = trades::table
        .inner_join(members::table)
        .filter(trades::sales_at_ms.ge(from_ms))
        .filter(trades::sales_at_ms.lt(to_ms))
        .into_boxed();
    if let Some((at, id)) = after {
        query = query.filter(
            trades::sales_at_ms
                .gt(at)
                .or(trades::sales_at_ms.eq(at).and(trades::id.gt(id))),
        );
    }
    query
        .order((trades::sales_at_ms.asc(), trades::id.asc()))
        .limit(limit)
        .select((
            TradeDetailRow::as_select(),
            members::vip_accountno,
            trades::sales_at_ms,
        ))
        .load(conn)
}

pub fn count_trades_sold(conn: &mut Conn, from_ms: i64, to_ms: i64) -> Result<i64, Error> {
    trades::table
        .filter(trades::sales_at_ms.ge(from_ms))
        .filter(trades::sales_at_ms.lt(to_ms))
        .count()
        .get_result(conn)
}

/// (trade_id, campaign_code, points) of the lots of the given trades.
pub fn grants_of_trades(
    conn: &mut Conn,
    trade_ids: &[i64],
) -> Result<Vec<(i64, String, i64)>, Error> {
    lots::table
        .filter(lots::trade_id.eq_any(trade_ids))
        .order(lots::id.asc())
        .select((lots::trade_id, lots::campaign_code, lots::points))
        .load(conn)
}

/// (campaign, points used) of every campaign budget.
pub fn all_budgets(conn: &mut Conn) -> Result<Vec<(String, i64)>, Error> {
    campaign_budgets::table
        .order(campaign_budgets::campaign_code.asc())
        .select((campaign_budgets::campaign_code, campaign_budgets::used))
        .load(conn)
}

/// (campaign, period, points used) of every campaign's per-day and per-month budgets.
pub fn all_budget_periods(conn: &mut Conn) -> Result<Vec<(String, String, i64)>, Error> {
    campaign_budget_periods::table
        .order((
            campaign_budget_periods::campaign_code.asc(),
            campaign_budget_periods::period.asc(),
        ))
        .select((
            campaign_budget_periods::campaign_code,
            campaign_budget_periods::period,
            campaign_budget_periods::used,
        ))
        .load(conn)
}

pub fn find_member_by_identity(
    conn: &mut Conn,
    kind: &str,
    value: &str,
) -> Result<Option<i64>, Error> {
    member_identities::table
        .filter(member_identities::kind.eq(kind))
        .filter(member_identities::value.eq(value))
        .select(member_identities::member_id)
        .get_result(conn)
        .optional()
}

pub fn insert_identity(
    conn: &mut Conn,
    member_id: i64,
    kind: &str,
    value: &str,
    now_ms: i64,
) -> Result<(), Error> {
    diesel::insert_into(member_identities::table)
        .values((
            member_identities::member_id.eq(member_id),
            member_identities::kind.eq(kind),
            member_identities::value.eq(value),
            member_identities::created_at_ms.eq(now_ms),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Every identity a member holds, as (kind, value), in the order they were linked.
pub fn member_identities(conn: &mut Conn, member_id: i64) -> Result<Vec<(String, String)>, Error> {
    member_identities::table
        .filter(member_identities::member_id.eq(member_id))
        .order(member_identities::id.asc())
        .select((member_identities::kind, member_identities::value))
        .load(conn)
}

pub fn member_account(conn: &mut Conn, member_id: i64) -> Result<String, Error> {
    members::table
        .filter(members::id.eq(member_id))
        .select(members::vip_accountno)
        .get_result(conn)
}

/// A member's profile: (name, nick_name, gender, country, province, city).
pub type ProfileRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub fn member_profile(conn: &mut Conn, member_id: i64) -> Result<Option<ProfileRow>, Error> {
    member_profiles::table
        .filter(member_profiles::member_id.eq(member_id))
        .select((
            member_profiles::name,
            member_profiles::nick_name,
            member_profiles::gender,
            member_profiles::country,
            member_profiles::province,
            member_profiles::city,
        ))
        .first(conn)
        .optional()
}

/// (member id, gender, birthday) of a member's profile.
pub type GenderAndBirthday = (i64, Option<String>, Option<String>);

/// The gender and birthday of those of these members that have a profile.
pub fn genders_and_birthdays_of(
    conn: &mut Conn,
    member_ids: &[i64],
) -> Result<Vec<GenderAndBirthday>, Error> {
    member_profiles::table
        .filter(member_profiles::member_id.eq_any(member_ids))
        .select((
            member_profiles::member_id,
            member_profiles::gender,
            member_profiles::birthday,
        ))
        .load(conn)
}

/// A member's birthday as stored ("YYYY-MM-DD" or "MM-DD").
pub fn member_birthday(conn: &mut Conn, member_id: i64) -> Result<Option<String>, Error> {
    Ok(member_profiles::table
        .filter(member_profiles::member_id.eq(member_id))
        .select(member_profiles::birthday)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// Sets a member's birthday (after `merge_profile` made sure the row exists).
pub fn save_birthday(conn: &mut Conn, member_id: i64, birthday: &str) -> Result<(), Error> {
    diesel::update(member_profiles::table.filter(member_profiles::member_id.eq(member_id)))
        .set(member_profiles::birthday.eq(birthday))
        .execute(conn)?;
    Ok(())
}

diesel::define_sql_function! {
    /// The first of two texts that is not NULL.
    fn coalesce(x: diesel::sql_types::Nullable<diesel::sql_types::Text>, y: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// Keeps what `profile` gives of a member's profile, and what it leaves out (`None`) as it was
/// stored: one statement (an insert, or on the member's row an update).
pub fn merge_profile(
    conn: &mut Conn,
    member_id: i64,
    profile: &ProfileRow,
    now_ms: i64,
) -> Result<(), Error> {
    use diesel::upsert::excluded;
    use member_profiles::dsl as p;
    let (name, nick_name, gender, country, province, city) = profile.clone();
    let values = (
        p::member_id.eq(member_id),
        p::name.eq(name),
        p::nick_name.eq(nick_name),
        p::gender.eq(gender),
        p::country.eq(country),
        p::province.eq(province),
        p::city.eq(city),
        p::updated_at_ms.eq(now_ms),
    );
    let kept = (
        p::name.eq(coalesce(excluded(p::name), p::name)),
        p::nick_name.eq(coalesce(excluded(p::nick_name), p::nick_name)),
        p::gender.eq(coalesce(excluded(p::gender), p::gender)),
        p::country.eq(coalesce(excluded(p::country), p::country)),
        p::province.eq(coalesce(excluded(p::province), p::province)),
        p::city.eq(coalesce(excluded(p::city), p::city)),
        p::updated_at_ms.eq(excluded(p::updated_at_ms)),
    );
    on_backend!(conn, c => {
        diesel::insert_into(member_profiles::table)
            .values(values.clone())
            .on_conflict(p::member_id)
            .do_update()
            .set(kept)
            .execute(c)
            .map(|_| ())
    })
}

/// (id, trade_id, status, updated_at, body) of an external order.
pub type ExternalOrderRow = (i64, Option<i64>, String, String, String);

pub fn find_external_order(
    conn: &mut Conn,
    source: &str,
    external_id: &str,
) -> Result<Option<ExternalOrderRow>, Error> {
    external_orders::table
        .filter(external_orders::source.eq(source))
        .filter(external_orders::external_id.eq(external_id))
        .select((
            external_orders::id,
            external_orders::trade_id,
            external_orders::status,
            external_orders::updated_at,
            external_orders::body,
        ))
        .get_result(conn)
        .optional()
}

#[allow(clippy::too_many_arguments)]
pub fn save_external_order(
    conn: &mut Conn,
    existing: Option<i64>,
    source: &str,
    external_id: &str,
    trade_id: Option<i64>,
    status: &str,
    updated_at: &str,
    body: &str,
    now_ms: i64,
) -> Result<(), Error> {
    match existing {
        Some(id) => diesel::update(external_orders::table.filter(external_orders::id.eq(id)))
            .set((
                external_orders::trade_id.eq(trade_id),
                external_orders::status.eq(status),
                external_orders::updated_at.eq(updated_at),
                external_orders::body.eq(body),
            ))
            .execute(conn)
            .map(|_| ()),
        None => diesel::insert_into(external_orders::table)
            .values((
                external_orders::source.eq(source),
                external_orders::external_id.eq(external_id),
                external_orders::trade_id.eq(trade_id),
                external_orders::status.eq(status),
                external_orders::updated_at.eq(updated_at),
                external_orders::body.eq(body),
                external_orders::created_at_ms.eq(now_ms),
            ))
            .execute(conn)
            .map(|_| ()),
    }
}

/// The id of the trade with this `out_trade_no`.
pub fn trade_id_of(conn: &mut Conn, out_trade_no: &str) -> Result<Option<i64>, Error> {
    trades::table
        .filter(trades::out_trade_no.eq(out_trade_no))
        .select(trades::id)
        .get_result(conn)
        .optional()
}

/// Records a request's nonce; `false` if this merchant used it before. Nonces older than
/// `forget_before_ms` are forgotten first (requests that old are refused by their timestamp).
pub fn use_nonce(
    conn: &mut Conn,
    mchid: &str,
    nonce: &str,
    now_ms: i64,
    forget_before_ms: i64,
) -> Result<bool, Error> {
    diesel::delete(request_nonces::table.filter(request_nonces::seen_at_ms.lt(forget_before_ms)))
        .execute(conn)?;
    let seen = request_nonces::table
        .filter(request_nonces::mchid.eq(mchid))
        .filter(request_nonces::nonce.eq(nonce))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if seen {
        return Ok(false);
    }
    diesel::insert_into(request_nonces::table)
        .values((
            request_nonces::mchid.eq(mchid),
            request_nonces::nonce.eq(nonce),
            request_nonces::seen_at_ms.eq(now_ms),
        ))
        .execute(conn)?;
    Ok(true)
}

/// A card record as stored: (id, body, trade_id).
pub fn find_card_record(
    conn: &mut Conn,
    kind: &str,
    card_code: &str,
    serial_no: &str,
) -> Result<Option<(i64, String, Option<i64>)>, Error> {
    card_records::table
        .filter(card_records::kind.eq(kind))
        .filter(card_records::card_code.eq(card_code))
        .filter(card_records::serial_no.eq(serial_no))
        .select((card_records::id, card_records::body, card_records::trade_id))
        .get_result(conn)
        .optional()
}

#[allow(clippy::too_many_arguments)]
pub fn insert_card_record(
    conn: &mut Conn,
    kind: &str,
    serial_no: &str,
    card_code: &str,
    card_template_id: &str,
    member_id: i64,
    item_id: &str,
    record_type: &str,
    count: i64,
    amount: Option<i64>,
    occurred_at: &str,
    body: &str,
    trade_id: Option<i64>,
    now_ms: i64,
) -> Result<(), Error> {
    diesel::insert_into(card_records::table)
        .values((
            card_records::kind.eq(kind),
            card_records::serial_no.eq(serial_no),
            card_records::card_code.eq(card_code),
            card_records::card_template_id.eq(card_template_id),
            card_records::member_id.eq(member_id),
            card_records::item_id.eq(item_id),
            card_records::record_type.eq(record_type),
            card_records::count.eq(count),
            card_records::amount.eq(amount),
            card_records::occurred_at.eq(occurred_at),
            card_records::body.eq(body),
            card_records::trade_id.eq(trade_id),
            card_records::created_at_ms.eq(now_ms),
        ))
        .execute(conn)
        .map(|_| ())
}

/// (record_type, count, trade_id) of a member's records of one objective, oldest first.
pub fn objective_records(
    conn: &mut Conn,
    member_id: i64,
    objective_id: &str,
) -> Result<Vec<(String, i64, Option<i64>)>, Error> {
    card_records::table
        .filter(card_records::member_id.eq(member_id))
        .filter(card_records::kind.eq("objective"))
        .filter(card_records::item_id.eq(objective_id))
        .order(card_records::id.asc())
        .select((
            card_records::record_type,
            card_records::count,
            card_records::trade_id,
        ))
        .load(conn)
}

/// Locks the rows of the members with these accounts (PostgreSQL, `FOR NO KEY UPDATE` as
/// `lock_member`) in id order, and answers each one found: its id and account.
pub fn lock_members_pg(
    c: &mut diesel::PgConnection,
    vips: &[&str],
) -> Result<Vec<(i64, String)>, Error> {
    members::table
        .filter(members::vip_accountno.eq_any(vips))
        .select((members::id, members::vip_accountno))
        .order(members::id.asc())
        .for_no_key_update()
        .load(c)
}

/// Inserts members (PostgreSQL): `vips` in account order, each with its `created_at_ms`; one
/// another writer inserted first is skipped. Answers the id and account of each inserted.
pub fn insert_members_pg(
    c: &mut diesel::PgConnection,
    vips: &[&str],
    created_at_ms: &[i64],
) -> Result<Vec<(i64, String)>, Error> {
    debug_assert!(vips.windows(2).all(|w| w[0] < w[1]), "in account order");
    MembersPg {
        vips,
        created_at_ms,
    }
    .load(c)
}

/// `insert_members_pg`'s statement: both columns bound as arrays, so it stays prepared
/// whatever the count.
struct MembersPg<'a> {
    vips: &'a [&'a str],
    created_at_ms: &'a [i64],
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for MembersPg<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Text};
        out.push_sql(
            "INSERT INTO members (vip_accountno, created_at_ms) \
             SELECT m.vip_accountno, m.created_at_ms FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.vips)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.created_at_ms)?;
        out.push_sql(
            ") AS m (vip_accountno, created_at_ms) ORDER BY m.vip_accountno \
             ON CONFLICT (vip_accountno) DO NOTHING RETURNING id, vip_accountno",
        );
        Ok(())
    }
}

impl diesel::query_builder::QueryId for MembersPg<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for MembersPg<'_> {
    type SqlType = (diesel::sql_types::BigInt, diesel::sql_types::Text);
}

impl RunQueryDsl<diesel::PgConnection> for MembersPg<'_> {}

/// A new trade posted together with others (`insert_receipts_pg`): its row, its lines and its
/// lots (`trade_id` unknown: set by the statement).
pub struct ReceiptRows<'a> {
    pub trade: NewTrade<'a>,
    pub lines: &'a [TradeLineRow],
    pub lots: &'a [NewLot<'a>],
}

/// Records new trades with their lines and lots (and each lot's earn entry, effective at the
/// lot's `created_at_ms`) in one statement (PostgreSQL). Answers, for each trade in the order
/// given, what `insert_trade_with_grants` answers for one: its id, its lots' ids in the order
/// given, and its member's `Holdings` before the statement. Every column is bound as one array
/// (`unnest`), so the statement's text is the same whatever the count of rows, and it stays
/// prepared. The trades' `out_trade_no`s must differ (they are unique in the ledger anyway).
pub fn insert_receipts_pg(
    c: &mut diesel::PgConnection,
    receipts: &[ReceiptRows],
) -> Result<Vec<Recorded>, Error> {
    let rows = ReceiptsPg::of(receipts).load::<(String, i64, Option<Vec<i64>>, i64, bool)>(c)?;
    let mut recorded: std::collections::HashMap<String, Recorded> = rows
        .into_iter()
        .map(|(out_trade_no, trade_id, lot_ids, held, owes)| {
            let recorded = Recorded {
                trade_id,
                lot_ids: lot_ids.unwrap_or_default(),
                before: Holdings { held, owes },
            };
            (out_trade_no, recorded)
        })
        .collect();
    receipts
        .iter()
        .map(|r| {
            let one = recorded.remove(r.trade.out_trade_no);
            one.filter(|one| one.lot_ids.len() == r.lots.len())
                .ok_or_else(|| {
                    Error::QueryBuilderError(
                        format!(
                            "the statement answered no trade (or not its lots) for {}",
                            r.trade.out_trade_no
                        )
                        .into(),
                    )
                })
        })
        .collect()
}

/// `insert_receipts_pg`'s statement: the columns of the trades, of their lines and of their
/// lots, each as one array. Lines and lots name their trade by its `out_trade_no`.
#[derive(Default)]
struct ReceiptsPg<'a> {
    trade_no: Vec<&'a str>,
    out_trade_no: Vec<&'a str>,
    request_fingerprint: Vec<&'a str>,
    member_id: Vec<i64>,
    store_code: Vec<&'a str>,
    invoice_id: Vec<&'a str>,
    currency: Vec<&'a str>,
    total_amount_minor: Vec<i64>,
    payment_amount_minor: Vec<i64>,
    payment_method: Vec<&'a str>,
    sales_time: Vec<&'a str>,
    sales_at_ms: Vec<i64>,
    submit_time: Vec<&'a str>,
    approval_time: Vec<&'a str>,
    burn_point: Vec<i64>,
    resource: Vec<&'a str>,
    remark: Vec<&'a str>,
    receipt_image_urls: Vec<&'a str>,
    payment_image_urls: Vec<&'a str>,
    ruleset_version: Vec<&'a str>,
    created_at_ms: Vec<i64>,
    post_fee_minor: Vec<i64>,
    discount_minor: Vec<i64>,
    tier: Vec<&'a str>,
    line_trade: Vec<&'a str>,
    line_no: Vec<i64>,
    line_sku: Vec<&'a str>,
    line_name: Vec<&'a str>,
    line_quantity: Vec<i64>,
    line_amount_minor: Vec<i64>,
    lot_trade: Vec<&'a str>,
    lot_point_type: Vec<&'a str>,
    lot_campaign_code: Vec<&'a str>,
    lot_remark: Vec<&'a str>,
    lot_expire_type: Vec<&'a str>,
    lot_expire_date: Vec<Option<&'a str>>,
    lot_expires_at_ms: Vec<Option<i64>>,
    lot_available_at_ms: Vec<i64>,
    lot_points: Vec<i64>,
    lot_ruleset_version: Vec<&'a str>,
    lot_created_at_ms: Vec<i64>,
}

impl<'a> ReceiptsPg<'a> {
    fn of(receipts: &'a [ReceiptRows<'a>]) -> Self {
        let mut q = Self::default();
        for ReceiptRows {
            trade: t,
            lines,
            lots,
        } in receipts
        {
            q.trade_no.push(t.trade_no);
            q.out_trade_no.push(t.out_trade_no);
            q.request_fingerprint.push(t.request_fingerprint);
            q.member_id.push(t.member_id);
            q.store_code.push(t.store_code);
            q.invoice_id.push(t.invoice_id);
            q.currency.push(t.currency);
            q.total_amount_minor.push(t.total_amount_minor);
            q.payment_amount_minor.push(t.payment_amount_minor);
            q.payment_method.push(t.payment_method);
            q.sales_time.push(&t.sales_time);
            q.sales_at_ms.push(t.sales_at_ms);
            q.submit_time.push(&t.submit_time);
            q.approval_time.push(&t.approval_time);
            q.burn_point.push(t.burn_point);
            q.resource.push(t.resource);
            q.remark.push(t.remark);
            q.receipt_image_urls.push(&t.receipt_image_urls);
            q.payment_image_urls.push(&t.payment_image_urls);
            q.ruleset_version.push(t.ruleset_version);
            q.created_at_ms.push(t.created_at_ms);
            q.post_fee_minor.push(t.post_fee_minor);
            q.discount_minor.push(t.discount_minor);
            q.tier.push(t.tier);
            for line in lines.iter() {
                q.line_trade.push(t.out_trade_no);
                q.line_no.push(line.line_no);
                q.line_sku.push(&line.sku);
                q.line_name.push(&line.name);
                q.line_quantity.push(line.quantity);
                q.line_amount_minor.push(line.amount_minor);
            }
            for lot in lots.iter() {
                debug_assert_eq!(lot.member_id, t.member_id, "a trade grants to its member");
                debug_assert_eq!(lot.points, lot.remaining, "a new lot holds all its points");
                q.lot_trade.push(t.out_trade_no);
                q.lot_point_type.push(lot.point_type);
                q.lot_campaign_code.push(lot.campaign_code);
                q.lot_remark.push(lot.remark);
                q.lot_expire_type.push(lot.expire_type);
                q.lot_expire_date.push(lot.expire_date.as_deref());
                q.lot_expires_at_ms.push(lot.expires_at_ms);
                q.lot_available_at_ms.push(lot.available_at_ms);
                q.lot_points.push(lot.points);
                q.lot_ruleset_version.push(lot.ruleset_version);
                q.lot_created_at_ms.push(lot.created_at_ms);
            }
        }
        q
    }
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for ReceiptsPg<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Nullable, Text};
        macro_rules! arrays {
            ($out:ident, $($sql_type:ty => $column:expr),+) => {{
                let mut first = true;
                $(
                    if !std::mem::take(&mut first) {
                        $out.push_sql(", ");
                    }
                    $out.push_bind_param::<Array<$sql_type>, _>(&$column)?;
                )+
            }};
        }
        out.push_sql("WITH v AS (SELECT * FROM unnest(");
        arrays!(out,
            Text => self.trade_no, Text => self.out_trade_no, Text => self.request_fingerprint,
            BigInt => self.member_id, Text => self.store_code, Text => self.invoice_id,
            Text => self.currency, BigInt => self.total_amount_minor,
            BigInt => self.payment_amount_minor, Text => self.payment_method,
            Text => self.sales_time, BigInt => self.sales_at_ms, Text => self.submit_time,
            Text => self.approval_time, BigInt => self.burn_point, Text => self.resource,
            Text => self.remark, Text => self.receipt_image_urls,
            Text => self.payment_image_urls, Text => self.ruleset_version,
            BigInt => self.created_at_ms, BigInt => self.post_fee_minor,
            BigInt => self.discount_minor, Text => self.tier
        );
        out.push_sql(
            ") WITH ORDINALITY AS v (trade_no, out_trade_no, request_fingerprint, member_id, \
             store_code, invoice_id, currency, total_amount_minor, payment_amount_minor, \
             payment_method, sales_time, sales_at_ms, submit_time, approval_time, burn_point, \
             resource, remark, receipt_image_urls, payment_image_urls, ruleset_version, \
             created_at_ms, post_fee_minor, discount_minor, tier, n)), \
             t AS (INSERT INTO trades (trade_no, out_trade_no, request_fingerprint, member_id, \
             store_code, invoice_id, currency, total_amount_minor, payment_amount_minor, \
             payment_method, sales_time, sales_at_ms, submit_time, approval_time, burn_point, \
             resource, remark, receipt_image_urls, payment_image_urls, ruleset_version, \
             created_at_ms, post_fee_minor, discount_minor, tier) \
             SELECT trade_no, out_trade_no, request_fingerprint, member_id, store_code, \
             invoice_id, currency, total_amount_minor, payment_amount_minor, payment_method, \
             sales_time, sales_at_ms, submit_time, approval_time, burn_point, resource, remark, \
             receipt_image_urls, payment_image_urls, ruleset_version, created_at_ms, \
             post_fee_minor, discount_minor, tier FROM v ORDER BY n \
             RETURNING id, member_id, trade_no, out_trade_no), \
             tl AS (INSERT INTO trade_lines (trade_id, line_no, sku, name, quantity, amount_minor) \
             SELECT t.id, w.line_no, w.sku, w.name, w.quantity, w.amount_minor FROM unnest(",
        );
        arrays!(out,
            Text => self.line_trade, BigInt => self.line_no, Text => self.line_sku,
            Text => self.line_name, BigInt => self.line_quantity,
            BigInt => self.line_amount_minor
        );
        out.push_sql(
            ") WITH ORDINALITY AS w (out_trade_no, line_no, sku, name, quantity, amount_minor, n) \
             JOIN t ON t.out_trade_no = w.out_trade_no ORDER BY w.n), \
             l AS (INSERT INTO lots (member_id, trade_id, point_type, campaign_code, remark, \
             expire_type, expire_date, expires_at_ms, available_at_ms, points, remaining, \
             ruleset_version, created_at_ms) \
             SELECT t.member_id, t.id, g.point_type, g.campaign_code, g.remark, g.expire_type, \
             g.expire_date, g.expires_at_ms, g.available_at_ms, g.points, g.points, \
             g.ruleset_version, g.created_at_ms FROM unnest(",
        );
        arrays!(out,
            Text => self.lot_trade, Text => self.lot_point_type, Text => self.lot_campaign_code,
            Text => self.lot_remark, Text => self.lot_expire_type,
            Nullable<Text> => self.lot_expire_date, Nullable<BigInt> => self.lot_expires_at_ms,
            BigInt => self.lot_available_at_ms, BigInt => self.lot_points,
            Text => self.lot_ruleset_version, BigInt => self.lot_created_at_ms
        );
        out.push_sql(
            ") WITH ORDINALITY AS g (out_trade_no, point_type, campaign_code, remark, \
             expire_type, expire_date, expires_at_ms, available_at_ms, points, ruleset_version, \
             created_at_ms, n) \
             JOIN t ON t.out_trade_no = g.out_trade_no ORDER BY g.n \
             RETURNING id, member_id, trade_id, points, point_type, campaign_code, created_at_ms), \
             e AS (INSERT INTO entries (member_id, lot_id, trade_id, refund_id, kind, points, \
             effective_at_ms, created_at_ms, point_type, campaign_code, trade_no, out_trade_no) \
             SELECT l.member_id, l.id, l.trade_id, NULL, 'earn', l.points, l.created_at_ms, \
             l.created_at_ms, l.point_type, l.campaign_code, t.trade_no, t.out_trade_no \
             FROM l JOIN t ON t.id = l.trade_id ORDER BY l.id) \
             SELECT t.out_trade_no, t.id, g.lot_ids, \
             (SELECT CAST(COALESCE(SUM(lots.remaining), 0) AS BIGINT) FROM lots \
             WHERE lots.member_id = t.member_id AND lots.remaining > 0), \
             EXISTS (SELECT 1 FROM refund_lines JOIN refunds ON refunds.id = refund_lines.refund_id \
             WHERE refunds.member_id = t.member_id AND refund_lines.owed > 0) \
             FROM t LEFT JOIN (SELECT trade_id, array_agg(id ORDER BY id) AS lot_ids FROM l \
             GROUP BY trade_id) AS g ON g.trade_id = t.id",
        );
        Ok(())
    }
}

impl diesel::query_builder::QueryId for ReceiptsPg<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for ReceiptsPg<'_> {
    type SqlType = (
        diesel::sql_types::Text,
        diesel::sql_types::BigInt,
        diesel::sql_types::Nullable<diesel::sql_types::Array<diesel::sql_types::BigInt>>,
        diesel::sql_types::BigInt,
        diesel::sql_types::Bool,
    );
}

impl RunQueryDsl<diesel::PgConnection> for ReceiptsPg<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sqlite::Sqlite;

    #[derive(QueryableByName)]
    struct PlanStep {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }

    /// SQLite's plan of a query on the migrated schema, one step a line.
    fn plan(conn: &mut Conn, sql: &str) -> Vec<String> {
        diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .load::<PlanStep>(conn)
            .unwrap()
            .into_iter()
            .map(|step| step.detail)
            .collect()
    }

    fn migrated() -> (tempfile::TempDir, Conn) {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::ledger::DatabaseUrl::Sqlite(dir.path().join("plan.db"));
        // Migrated by the pool; planned on a connection of its own.
        crate::ledger::connection::connect(&url, 1).unwrap();
        let manager = crate::ledger::connection::Manager::new(url);
        (
            dir,
            diesel::r2d2::ManageConnection::connect(&manager).unwrap(),
        )
    }

    #[test]
    fn what_a_member_owes_is_found_by_the_member_not_by_scanning_refund_lines() {
        let (_dir, mut conn) = migrated();
        let query = owed_lines_query!(7_i64);
        let sql = diesel::debug_query::<Sqlite, _>(&query).to_string();
        let sql = sql.split(" -- binds").next().unwrap();
        let steps = plan(&mut conn, sql);
        assert!(
            steps.iter().all(|step| !step.starts_with("SCAN")),
            "{steps:?}"
        );
        assert!(steps[0].contains("USING INDEX refunds_member"), "{steps:?}");
    }

    #[test]
    fn a_ledger_version_is_two_index_seeks() {
        let (_dir, mut conn) = migrated();
        let query = ledger_version_query!(7_i64);
        let sql = diesel::debug_query::<Sqlite, _>(&query).to_string();
        let sql = sql.split(" -- binds").next().unwrap();
        let steps = plan(&mut conn, sql);
        assert!(
            steps
                .iter()
                .all(|step| !step.starts_with("SCAN") || step == "SCAN CONSTANT ROW"),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.contains("COVERING INDEX entries_member")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.contains("COVERING INDEX refunds_member")),
            "{steps:?}"
        );
    }

    #[test]
    fn a_history_page_is_read_from_one_covering_index() {
        let (_dir, mut conn) = migrated();
        let query = member_page_query!(7_i64, 50_i64, 50_i64);
        let sql = diesel::debug_query::<Sqlite, _>(&query).to_string();
        let sql = sql.split(" -- binds").next().unwrap();
        assert_eq!(
            plan(&mut conn, sql),
            vec!["SEARCH entries USING COVERING INDEX entries_member (member_id=?)".to_string()]
        );
    }
}
