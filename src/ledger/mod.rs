//! The ledger: members, trades, point lots with expiry, and append-only entries.
//! `repo` is the only place with SQL; the operations here are each one transaction.

pub mod audit;
pub mod balances;
pub mod card;
pub mod connection;
pub mod copy;
pub mod external;
pub mod history;
pub mod memory;
pub mod migrations;
pub mod models;
pub mod pages;
pub mod probe;
pub mod recent;
pub mod refund;
pub mod repo;
pub mod report;
pub mod schema;
pub mod together;
pub mod writer;

pub use connection::{connect, one_read, Conn, DatabaseUrl, Pool};

/// The ledger as the use cases reach it: reads on pooled connections, every write through the
/// one writer.
#[derive(Clone)]
pub struct Store {
    pub pool: Pool,
    pub writer: writer::Writer,
    /// The answers of trades recorded lately, for replays answered without a read.
    pub recent: Arc<recent::RecentTrades>,
    /// Members' balances as last read, answered again while the member's ledger is unchanged.
    pub balances: Arc<KnownBalances>,
    /// Members' history pages as last read, answered again while the member has no newer entry.
    pub pages: Arc<pages::KnownPages>,
    /// Bytes the three memories above hold together at most (`memory::Budget`).
    pub answers_budget: Arc<memory::Budget>,
    /// SQLite: short reads may run on the calling thread (`Store::conn_here`).
    reads_here: bool,
    /// PostgreSQL with writer lanes: whether new receipts were recorded, asked in groups.
    probe: Option<probe::TradeProbe>,
    /// PostgreSQL: members and their ledger versions, asked for many balances and history
    /// pages at once.
    members_probe: Option<probe::MemberProbe>,
    /// PostgreSQL: balances and history pages not known, read for many members at once.
    reads_probe: Option<probe::ReadProbe>,
}

/// What the memories of recent trades, balances and history pages hold together at most by
/// default: with the server's own 30–40 MB, resident memory stays under 200 MB whatever is
/// asked; the load's 20,000 members of a million-trade ledger (their balances, first pages and
/// the last 65,536 trades, about 150 MB) nearly fit.
pub const ANSWERS_MEMORY_BYTES_DEFAULT: usize = 144 << 20;

/// A connection of the pool, given back when dropped.
pub type PooledConn = diesel::r2d2::PooledConnection<connection::Manager>;

impl Store {
    /// Opens (creating and migrating if needed) the database and starts its writer.
    pub fn open(
        url: &DatabaseUrl,
        pool_size: u32,
        limits: writer::WriterLimits,
    ) -> Result<Self, connection::ConnectError> {
        let pool = connect(url, pool_size)?;
        let writer = writer::Writer::start(url, &pool, limits)?;
        // A connection of its own for a probe's thread.
        let own_conn = || {
            let manager = connection::Manager::new(url.clone());
            let conn = diesel::r2d2::ManageConnection::connect(&manager).map_err(|source| {
                connection::ConnectError::Writer {
                    url: url.to_string(),
                    message: source.to_string(),
                }
            })?;
            Ok::<_, connection::ConnectError>((manager, conn))
        };
        let (probe, members_probe, reads_probe) = match url {
            DatabaseUrl::Postgres(_) => {
                let (manager, conn) = own_conn()?;
                let members = probe::MemberProbe::start(manager, conn, limits.queue_max);
                let (manager, conn) = own_conn()?;
                let reads = probe::ReadProbe::start(manager, conn, limits.queue_max);
                let trades = match limits.lanes {
                    0 => None,
                    _ => {
                        let (manager, conn) = own_conn()?;
                        Some(probe::TradeProbe::start(manager, conn, limits.queue_max))
                    }
                };
                (trades, Some(members), Some(reads))
            }
            DatabaseUrl::Sqlite(_) => (None, None, None),
        };
        let budget = Arc::new(memory::Budget::new(ANSWERS_MEMORY_BYTES_DEFAULT));
        Ok(Self {
            pool,
            writer,
            recent: Arc::new(
                recent::RecentTrades::new(recent::RECENT_TRADES_MAX_DEFAULT).sharing(&budget),
            ),
            balances: Arc::new(
                KnownBalances::new(balances::BALANCES_LOTS_MAX_DEFAULT).sharing(&budget),
            ),
            pages: Arc::new(
                pages::KnownPages::new(pages::HISTORY_MOVEMENTS_MAX_DEFAULT).sharing(&budget),
            ),
            answers_budget: budget,
            reads_here: matches!(url, DatabaseUrl::Sqlite(_)),
            probe,
            members_probe,
            reads_probe,
        })
    }

    /// The store's memories of answers holding `bytes_max` together at most, instead of
    /// `ANSWERS_MEMORY_BYTES_DEFAULT`.
    pub fn answers_memory(self, bytes_max: usize) -> Self {
        self.answers_budget.set_bytes_max(bytes_max);
        self
    }

    /// The store remembering the answers of up to `trades_max` recent trades (0: none), instead
    /// of `recent::RECENT_TRADES_MAX_DEFAULT`.
    pub fn remembering(self, trades_max: usize) -> Self {
        Self {
            recent: Arc::new(recent::RecentTrades::new(trades_max).sharing(&self.answers_budget)),
            ..self
        }
    }

    /// The store keeping balances of up to `lots_max` lots in all (0: none), instead of
    /// `balances::BALANCES_LOTS_MAX_DEFAULT`.
    pub fn keeping_balances(self, lots_max: usize) -> Self {
        Self {
            balances: Arc::new(KnownBalances::new(lots_max).sharing(&self.answers_budget)),
            ..self
        }
    }

    /// The store keeping history pages of up to `movements_max` movements in all (0: none),
    /// instead of `pages::HISTORY_MOVEMENTS_MAX_DEFAULT`.
    pub fn keeping_pages(self, movements_max: usize) -> Self {
        Self {
            pages: Arc::new(pages::KnownPages::new(movements_max).sharing(&self.answers_budget)),
            ..self
        }
    }

    /// A pooled connection for a short read on the calling thread, even an HTTP worker, where
    /// that costs less than handing the read to a blocking thread and back: on SQLite, where a
    /// read of one member's or one trade's rows is a few index pages read in this process
    /// (about 10 µs; the hand-off measured about 17 µs of CPU a request), and WAL readers never
    /// wait for the writer. `None` on PostgreSQL (a network round trip a statement) and when no
    /// connection is free at once, so the caller never waits for one here.
    pub fn conn_here(&self) -> Option<PooledConn> {
        match self.reads_here {
            true => self.pool.try_get(),
            false => None,
        }
    }

    /// PostgreSQL: whether new receipts are on their way to the ledger, waiting for the probe
    /// or a writer lane (`Writer::lanes_writing`); balance and history reads then take turns
    /// beside them.
    pub fn lanes_writing(&self) -> bool {
        let probing = self
            .probe_stats()
            .is_some_and(|s| s.pending.load(Ordering::Relaxed) > 0);
        probing || self.writer.lanes_writing()
    }

    /// The probe's counters, where the store has one.
    pub fn probe_stats(&self) -> Option<&probe::ProbeStats> {
        self.probe.as_ref().map(probe::TradeProbe::stats)
    }

    /// What the ledger holds under `out_trade_no`, asked with other receipts' questions in one
    /// statement where the store has a probe (PostgreSQL with writer lanes); `Unknown`
    /// otherwise.
    pub async fn probe(&self, out_trade_no: &str, fingerprint: Fingerprint) -> probe::Probed {
        match &self.probe {
            Some(probe) => probe.ask(out_trade_no, fingerprint).await,
            None => probe::Probed::Unknown,
        }
    }

    /// PostgreSQL: the member whose account number is `vip` and its ledger version, asked with
    /// other reads' in one statement (`probe::MemberProbe`). `None` on SQLite (a read there is
    /// a few pages in this process), for an account number of no member (it may be an
    /// identity), or when the probe could not say: read on the pool.
    pub async fn member_version(&self, vip: &VipAccountNo) -> Option<probe::Versioned> {
        self.members_probe.as_ref()?.ask(vip.as_str()).await
    }

    /// The balance of `member` (found by `member_version`, its account number `vip`) as of
    /// `as_of`: kept for its ledger version (`KnownBalances`), or else read with other
    /// balances' in two statements and kept (`probe::ReadProbe`). `None` when neither
    /// answered: read on the pool.
    pub async fn member_balance(
        &self,
        member: probe::Versioned,
        vip: &VipAccountNo,
        as_of: DateTime<Utc>,
    ) -> Option<Arc<Balance>> {
        let known = self
            .balances
            .answer(member.member_id, member.version, ms(as_of));
        if known.is_some() {
            return known;
        }
        let reads = self.reads_probe.as_ref()?;
        reads.balance(member, vip, as_of, &self.balances).await
    }

    /// History page `page` of `page_size` movements (both validated) of `member` (found by
    /// `member_version`): kept for its newest entry (`pages::KnownPages`), or else read with
    /// other pages in one statement and kept (`probe::ReadProbe`). `None` when neither
    /// answered: read on the pool.
    pub async fn member_page(
        &self,
        member: probe::Versioned,
        page: i64,
        page_size: i64,
    ) -> Option<history::History> {
        let key = pages::PageKey {
            member_id: member.member_id,
            page,
            page_size,
        };
        let known = self.pages.answer(key, member.version.0);
        if known.is_some() {
            return known;
        }
        let reads = self.reads_probe.as_ref()?;
        reads.page(member, page, page_size, &self.pages).await
    }

    /// The members probe's counters, where the store has one.
    pub fn members_probe_stats(&self) -> Option<&probe::ProbeStats> {
        self.members_probe.as_ref().map(probe::MemberProbe::stats)
    }

    /// The reads probe's counters, where the store has one.
    pub fn reads_probe_stats(&self) -> Option<&probe::ProbeStats> {
        self.reads_probe.as_ref().map(probe::ReadProbe::stats)
    }
}

use crate::domain::{
    BudgetKey, CampaignCode, CampaignUse, ContextNeeds, EvaluateError, ExpireType, Fingerprint,
    Grant, MemberContext, PointType, Points, Priced, TierBasis, TierNeed, Trade, TradeNo,
    VipAccountNo,
};
use balances::KnownBalances;
use chrono::{DateTime, NaiveDate, Utc};
use models::{LotRow, NewEntry, NewLot, NewMember, NewTrade, ShownLot};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The `out_trade_no` was already posted with a different request.
    #[error("out_trade_no was already used by trade {trade_no} with a different request")]
    Conflict { trade_no: String },
    #[error("burn_point {requested} is more than the {available} points available")]
    InsufficientPoints { requested: Points, available: i64 },
    /// The grants would take what the member holds past `Points::MAX`, the most a balance may
    /// show.
    #[error(
        "the member holds {held} points: the {granted} this trade earns would take them past \
         {}, the most one member may hold",
        Points::MAX
    )]
    BalanceLimit { held: i64, granted: i64 },
    /// The `out_refund_no` was already used with a different request.
    #[error("out_refund_no {out_refund_no} was already used with a different request")]
    RefundConflict { out_refund_no: String },
    /// A trade paid wholly with points was refunded (in full) already.
    #[error("trade {out_trade_no} was paid wholly with points and is refunded in full already")]
    RefundedInFull { out_trade_no: String },
    #[error("refund_amount {requested} is more than the {refundable} left to refund")]
    OverRefund {
        requested: crate::domain::Amount,
        refundable: crate::domain::Amount,
    },
    /// Another writer got there first: the same trade or refund inserted by another process,
    /// or a lot changed by another instance's expiry. Nothing was written; the caller retries
    /// on a fresh read (and gets the replay).
    #[error("another writer changed the ledger first")]
    Race,
    #[error("the ledger holds a value it cannot read: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Evaluate(EvaluateError),
    #[error(transparent)]
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for PostError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Self::Race,
            // PostgreSQL ended the transaction to break a deadlock (40P01, which diesel does not
            // name) or a serialization conflict (40001): run it again.
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => Self::Race,
            Error::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if info.message().starts_with("deadlock detected") =>
            {
                Self::Race
            }
            other => Self::Database(other),
        }
    }
}

/// What posting a trade did (or, for a replay, had done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The trade's row id: the record id some contracts answer with.
    pub trade_id: i64,
    pub trade_no: TradeNo,
    pub grants: Vec<Grant>,
    pub replayed: bool,
}

pub(crate) fn ms(instant: DateTime<Utc>) -> i64 {
    instant.timestamp_millis()
}

/// The member an account number names: the member with that account number, or else the
/// member one of whose identities it writes (`WX:<openid>`, `TEL:<phone>`, `CARD:<code>`), so
/// a member first seen by openid can be looked up by its phone too.
/// Whether the database answers: one trivial query.
pub fn ping(conn: &mut Conn) -> Result<(), PostError> {
    use diesel::RunQueryDsl;
    diesel::sql_query("SELECT 1").execute(conn)?;
    Ok(())
}

pub fn find_member(conn: &mut Conn, vip: &VipAccountNo) -> Result<Option<i64>, PostError> {
    if let Some(id) = repo::find_member_id(conn, vip.as_str())? {
        return Ok(Some(id));
    }
    match crate::domain::Identity::from_account_number(vip) {
        Some(identity) => Ok(repo::find_member_by_identity(
            conn,
            identity.kind.as_str(),
            identity.value(),
        )?),
        None => Ok(None),
    }
}

/// The member `vip` names (an account number, or an identity of a member) and the member's own
/// account number: one read when `vip` is the account number itself.
fn find_member_account(
    conn: &mut Conn,
    vip: &VipAccountNo,
) -> Result<Option<(i64, VipAccountNo)>, PostError> {
    if let Some(id) = repo::find_member_id(conn, vip.as_str())? {
        return Ok(Some((id, vip.clone())));
    }
    let Some(id) = find_member(conn, vip)? else {
        return Ok(None);
    };
    let account =
        VipAccountNo::parse(&repo::member_account(conn, id)?).map_err(PostError::Corrupt)?;
    Ok(Some((id, account)))
}

/// What pricing needs to know about a member, read outside any write (a simulation).
pub fn read_member_context(
    conn: &mut Conn,
    vip: &VipAccountNo,
    needs: &ContextNeeds,
) -> Result<MemberContext, PostError> {
    let member_id = find_member(conn, vip)?;
    member_context(conn, member_id, needs)
}

/// Reads what pricing needs to know about a member (`None`: a member not seen before) inside
/// the trade's transaction, after the member's row is locked.
fn member_context(
    conn: &mut Conn,
    member_id: Option<i64>,
    needs: &ContextNeeds,
) -> Result<MemberContext, PostError> {
    let mut ctx = MemberContext::default();
    if needs.trades_before {
        if let Some(member_id) = member_id {
            ctx.trades_before = repo::count_member_trades(conn, member_id, None)? as u64;
        }
    }
    if let Some(need) = &needs.tier {
        ctx.qualifying = Some(match member_id {
            Some(member_id) => qualifying(conn, member_id, need)?,
            None => [rust_decimal::Decimal::ZERO; 2],
        });
    }
    if let (true, Some(member_id)) = (needs.gender || needs.birthday, member_id) {
        // One read of the profile for both.
        if let Some((_, gender, birthday)) = repo::genders_and_birthdays_of(conn, &[member_id])?
            .into_iter()
            .next()
        {
            ctx.gender = gender.and_then(|g| crate::domain::Gender::parse(&g).ok());
            ctx.birthday = birthday.and_then(|b| crate::domain::Birthday::parse(&b).ok());
        }
    }
    for need in &needs.campaigns {
        let mut used = CampaignUse::default();
        if let Some(member_id) = member_id {
            if let Some((from, to)) = need.trades_in {
                used.trades_in_window =
                    repo::count_member_trades(conn, member_id, Some((ms(from), ms(to))))? as u64;
            }
            if let Some(windows) = need.member_points {
                let within = |at: i64, (from, to): (DateTime<Utc>, DateTime<Utc>)| {
                    (ms(from)..ms(to)).contains(&at)
                };
                for (points, sold_at) in
                    repo::member_campaign_grants(conn, member_id, need.code.as_str())?
                {
                    used.points_total += points;
                    if within(sold_at, windows.day) {
                        used.points_day += points;
                    }
                    if within(sold_at, windows.week) {
                        used.points_week += points;
                    }
                    if within(sold_at, windows.month) {
                        used.points_month += points;
                    }
                }
            }
        }
        if need.budget {
            used.budget_used = repo::budget_used(conn, need.code.as_str())?;
        }
        if let Some(day) = &need.budget_day {
            used.budget_day_used = repo::budget_period_used(conn, need.code.as_str(), day)?;
        }
        if let Some(month) = &need.budget_month {
            used.budget_month_used = repo::budget_period_used(conn, need.code.as_str(), month)?;
        }
        ctx.campaigns.insert(need.code.clone(), used);
    }
    Ok(ctx)
}

/// What qualifies a member for a tier in the need's two windows (current, review): points
/// granted less what refunds took back, or money paid in base currency less refunds.
fn qualifying(
    conn: &mut Conn,
    member_id: i64,
    need: &TierNeed,
) -> Result<[rust_decimal::Decimal; 2], PostError> {
    use rust_decimal::Decimal;
    let windows = [need.current, need.review];
    let from_ms = ms(need.current.0.min(need.review.0));
    let mut sums = [Decimal::ZERO; 2];
    let mut add = |at: i64, amount: Decimal| {
        for (sum, (from, to)) in sums.iter_mut().zip(windows) {
            if (ms(from)..ms(to)).contains(&at) {
                *sum += amount;
            }
        }
    };
    match need.basis {
        TierBasis::Points => {
            let (granted, refunded) = repo::member_points_since(conn, member_id, from_ms)?;
            for (at, points) in granted {
                add(at, Decimal::from(points));
            }
            for (at, points) in refunded {
                add(at, -Decimal::from(points));
            }
        }
        TierBasis::Spend => {
            let (paid, refunded) = repo::member_spend_since(conn, member_id, from_ms)?;
            let base = |currency: &str, minor: i64| {
                let rate = crate::domain::CurrencyCode::parse(currency)
                    .ok()
                    .and_then(|c| need.rates.get(&c).copied())
                    .unwrap_or(Decimal::ZERO);
                Decimal::new(minor, 2) * rate
            };
            for (at, currency, minor) in paid {
                add(at, base(&currency, minor));
            }
            for (at, currency, minor) in refunded {
                add(at, -base(&currency, minor));
            }
        }
    }
    Ok(sums.map(|sum| sum.max(Decimal::ZERO)))
}

/// What is known of a trade's earlier posting when `post_trade` runs.
#[derive(Debug, Clone, Copy)]
pub struct Replay<'a> {
    /// `Trade::fingerprint`, worked out once per request.
    pub fingerprint: &'a str,
    /// A read just found no trade under the trade's `out_trade_no`, so `post_trade` does not
    /// look again: one posted since (a concurrent duplicate) is caught by the unique
    /// `out_trade_no` as a `Race`, and the write runs again, looking (`known_new: false`).
    pub known_new: bool,
}

impl<'a> Replay<'a> {
    /// Nothing known: `post_trade` looks for the trade first.
    pub fn unknown(fingerprint: &'a str) -> Self {
        Self {
            fingerprint,
            known_new: false,
        }
    }
}

/// Records a trade, its burn and its grants in one write transaction. The same trade again
/// (same fingerprint) answers what the first one did and writes nothing; the same
/// `out_trade_no` with another fingerprint is a `Conflict`. Otherwise the member's history is
/// read under the member's lock, `price` prices the trade against it, and what the grants take
/// from campaign budgets is taken with a guard: a budget another trade spent first is a
/// `Race`, and the caller prices again.
pub fn post_trade(
    conn: &mut Conn,
    trade: &Trade,
    replay: Replay,
    needs: &ContextNeeds,
    price: impl FnOnce(&MemberContext) -> Result<Priced, EvaluateError>,
    ruleset_version: &str,
    now: DateTime<Utc>,
) -> Result<Posted, PostError> {
    connection::write_transaction(conn, |conn| {
        if !replay.known_new {
            if let Some(posted) = find_posted(conn, trade, replay.fingerprint)? {
                return Ok(posted);
            }
        }
        let now_ms = ms(now);
        // One lock order for every write: the member's row first (a new member's row is
        // inserted, which locks it), then campaign budgets in campaign-code order.
        let known = repo::find_and_lock_member(conn, trade.vip_accountno.as_str())?;
        let member_id = match known {
            Some(id) => id,
            None => repo::insert_member(
                conn,
                &NewMember {
                    vip_accountno: trade.vip_accountno.as_str(),
                    created_at_ms: now_ms,
                },
            )?,
        };
        let ctx = member_context(conn, known, needs)?;
        let Priced {
            grants,
            mut budget_use,
            tier,
        } = price(&ctx).map_err(PostError::Evaluate)?;
        // In one order for every trade, so two trades never wait on each other's budgets.
        budget_use.sort_by(|a, b| a.0.cmp(&b.0));
        for (budget, cap, points) in &budget_use {
            let taken = match budget {
                BudgetKey::Whole(code) => {
                    repo::take_from_budget(conn, code.as_str(), *cap, *points)?
                }
                BudgetKey::Period(code, period) => {
                    repo::take_from_budget_period(conn, code.as_str(), period, *cap, *points)?
                }
            };
            if !taken {
                return Err(PostError::Race);
            }
        }
        let trade_no = TradeNo::mint(&trade.out_trade_no, now);
        let of = TradeRowOf {
            trade_no: &trade_no,
            fingerprint: replay.fingerprint,
            member_id,
            tier: tier.as_deref(),
            ruleset_version,
            now_ms,
        };
        let new_trade = trade_row(trade, of);
        let mut lines = line_rows(trade);
        let mut new_lots = lot_rows(&grants, member_id, ruleset_version, now_ms);
        let recorded = if trade.burn_point.is_zero() {
            repo::insert_trade_with_grants(conn, &new_trade, &mut lines, &mut new_lots, now_ms)?
        } else {
            let trade_id = repo::insert_trade(conn, &new_trade)?;
            repo::insert_trade_lines(conn, trade_id, &mut lines)?;
            // Points pay for this receipt before it earns: the burn draws on the balance as it
            // was.
            let recorded = (trade_id, new_trade.numbers());
            burn_oldest_first(conn, member_id, recorded, trade.burn_point, now_ms)?;
            repo::insert_grants(conn, recorded, member_id, &mut new_lots, now_ms)?
        };
        // A balance is one `Points` value: no member may hold more than it can show. (Over it,
        // the error rolls back what was just written.)
        let granted: i64 = new_lots.iter().map(|l| l.points).sum();
        let held = recorded.before.held;
        if granted > 0 && held + granted > Points::MAX {
            return Err(PostError::BalanceLimit { held, granted });
        }
        if recorded.before.owes {
            refund::pay_debts(conn, member_id, &recorded.lot_ids, now_ms)?;
        }
        let trade_id = recorded.trade_id;
        if cfg!(debug_assertions) {
            let violations = audit::check_member(conn, member_id)?;
            assert!(
                violations.is_empty(),
                "ledger invariant broken: {violations:?}"
            );
        }
        Ok(Posted {
            trade_id,
            trade_no,
            grants,
            replayed: false,
        })
    })
}

/// What a trade's row holds beyond the trade itself (`trade_row`).
struct TradeRowOf<'a> {
    trade_no: &'a TradeNo,
    fingerprint: &'a str,
    member_id: i64,
    tier: Option<&'a str>,
    ruleset_version: &'a str,
    now_ms: i64,
}

/// The row a new trade is recorded as.
fn trade_row<'a>(trade: &'a Trade, of: TradeRowOf<'a>) -> NewTrade<'a> {
    // As JSON lists of strings.
    let urls = |list: &[crate::domain::ImageUrl]| {
        serde_json::to_string(&list.iter().map(|u| u.as_str()).collect::<Vec<_>>())
            .expect("a list of strings serializes")
    };
    NewTrade {
        trade_no: of.trade_no.as_str(),
        out_trade_no: trade.out_trade_no.as_str(),
        request_fingerprint: of.fingerprint,
        member_id: of.member_id,
        store_code: trade.store_code.as_str(),
        invoice_id: trade.invoice_id.as_str(),
        currency: trade.currency.as_str(),
        total_amount_minor: trade.total_amount.to_minor(),
        payment_amount_minor: trade.payment_amount.to_minor(),
        payment_method: trade.payment_method.as_str(),
        sales_time: trade.sales_time.to_rfc3339(),
        sales_at_ms: ms(trade.sales_instant()),
        submit_time: trade.submit_time.to_rfc3339(),
        approval_time: trade.approval_time.to_rfc3339(),
        burn_point: trade.burn_point.value(),
        resource: &trade.resource,
        remark: &trade.remark,
        receipt_image_urls: urls(&trade.receipt_image_urls),
        payment_image_urls: urls(&trade.payment_image_urls),
        ruleset_version: of.ruleset_version,
        created_at_ms: of.now_ms,
        post_fee_minor: trade.post_fee.to_minor(),
        discount_minor: trade.discount.to_minor(),
        tier: of.tier.unwrap_or(""),
    }
}

/// The rows of a trade's lines (`trade_id` set once the trade is recorded).
fn line_rows(trade: &Trade) -> Vec<models::TradeLineRow> {
    trade
        .lines
        .iter()
        .enumerate()
        .map(|(line_no, line)| models::TradeLineRow {
            id: 0,
            trade_id: TRADE_ID_UNKNOWN,
            line_no: line_no as i64,
            sku: line.sku.to_string(),
            name: line.name.clone(),
            quantity: i64::from(line.quantity),
            amount_minor: line.amount.to_minor(),
        })
        .collect()
}

/// A lot for each grant of a trade to `member_id` (`trade_id` set once the trade is recorded).
fn lot_rows<'a>(
    grants: &'a [Grant],
    member_id: i64,
    ruleset_version: &'a str,
    now_ms: i64,
) -> Vec<NewLot<'a>> {
    grants
        .iter()
        .map(|grant| {
            let points = grant.points.value();
            assert!(points > 0, "the rules engine makes no empty grants");
            NewLot {
                member_id,
                trade_id: TRADE_ID_UNKNOWN,
                point_type: grant.point_type.as_str(),
                campaign_code: grant.campaign_code_text(),
                remark: &grant.remark,
                expire_type: grant.expire_type.as_str(),
                expire_date: grant.expire_date.map(|d| d.to_string()),
                expires_at_ms: grant.expires_at.map(ms),
                available_at_ms: ms(grant.available_at),
                points,
                remaining: points,
                ruleset_version,
                created_at_ms: now_ms,
            }
        })
        .collect()
}

/// The `trade_id` of rows whose trade is not recorded yet.
const TRADE_ID_UNKNOWN: i64 = 0;

/// What the ledger already answered for this trade (`fingerprint`: `Trade::fingerprint`, worked
/// out once per request), if it was posted: `None` if it never was, `Conflict` if its
/// `out_trade_no` was posted with another request.
pub fn replay(
    conn: &mut Conn,
    trade: &Trade,
    fingerprint: &str,
) -> Result<Option<Posted>, PostError> {
    find_posted(conn, trade, fingerprint)
}

fn find_posted(
    conn: &mut Conn,
    trade: &Trade,
    fingerprint: &str,
) -> Result<Option<Posted>, PostError> {
    match repo::recorded_trade(conn, trade.out_trade_no.as_str())? {
        Some((existing, lots)) => posted_of(existing, &lots, fingerprint).map(Some),
        None => Ok(None),
    }
}

/// What the ledger answers again for a request with `fingerprint` whose `out_trade_no` it
/// recorded as `existing`, granting `lots`: the first answer, or a `Conflict` if the request
/// differs.
pub fn posted_of(
    existing: models::TradeRow,
    lots: &[LotRow],
    fingerprint: &str,
) -> Result<Posted, PostError> {
    if existing.request_fingerprint != fingerprint {
        return Err(PostError::Conflict {
            trade_no: existing.trade_no,
        });
    }
    Ok(Posted {
        trade_id: existing.id,
        trade_no: TradeNo::parse(&existing.trade_no).map_err(PostError::Corrupt)?,
        grants: lots.iter().map(grant_of_lot).collect::<Result<_, _>>()?,
        replayed: true,
    })
}

/// Takes `burn` points from the member's usable lots, the soonest to expire first (lots that
/// never expire last; ties by age), writing one burn entry per lot touched.
fn burn_oldest_first(
    conn: &mut Conn,
    member_id: i64,
    (trade_id, numbers): (i64, models::TradeNumbers),
    burn: Points,
    now_ms: i64,
) -> Result<(), PostError> {
    let mut lots = repo::burnable_lots(conn, member_id, now_ms)?;
    lots.retain(|l| l.available_at_ms <= now_ms);
    let usable: i64 = lots.iter().map(|l| l.remaining).sum();
    // Points owed from refunds (allow_negative) come off what can be spent.
    let available = usable - repo::owed_points(conn, member_id)?;
    if available < burn.value() {
        return Err(PostError::InsufficientPoints {
            requested: burn,
            available,
        });
    }
    lots.sort_by_key(|l| burn_order_of(l.expires_at_ms, l.id));
    let mut left = burn.value();
    for lot in &lots {
        if left == 0 {
            break;
        }
        let take = left.min(lot.remaining);
        // The member is locked, so only an expiry running on another instance can have taken
        // the lot in between: the caller retries on a fresh read.
        if !repo::take_from_lot(conn, lot.id, take)? {
            return Err(PostError::Race);
        }
        repo::insert_entry(
            conn,
            &NewEntry {
                member_id,
                lot_id: lot.id,
                trade_id: Some(trade_id),
                refund_id: None,
                kind: "burn",
                points: -take,
                effective_at_ms: now_ms,
                created_at_ms: now_ms,
                point_type: &lot.point_type,
                campaign_code: &lot.campaign_code,
                trade_no: numbers.trade_no,
                out_trade_no: numbers.out_trade_no,
            },
        )?;
        left -= take;
    }
    assert_eq!(left, 0, "the burn was checked against the available points");
    Ok(())
}

/// The order burns take lots in, by a lot's expiry instant and id: soonest to expire first,
/// lots that never expire last, ties by age. The balance lists usable lots in the same order.
pub(crate) fn burn_order_of(expires_at_ms: Option<i64>, id: i64) -> (bool, Option<i64>, i64) {
    (expires_at_ms.is_none(), expires_at_ms, id)
}

fn grant_of_lot(lot: &LotRow) -> Result<Grant, PostError> {
    let corrupt = |what: &str, e: String| PostError::Corrupt(format!("lot {} {what}: {e}", lot.id));
    let campaign_code = if lot.campaign_code.is_empty() {
        None
    } else {
        Some(CampaignCode::parse(&lot.campaign_code).map_err(|e| corrupt("campaign_code", e))?)
    };
    let expire_date = lot
        .expire_date
        .as_deref()
        .map(|d| {
            d.parse::<NaiveDate>()
                .map_err(|e| corrupt("expire_date", e.to_string()))
        })
        .transpose()?;
    Ok(Grant {
        point_type: PointType::parse(&lot.point_type).map_err(|e| corrupt("point_type", e))?,
        points: Points::new(lot.points).map_err(|e| corrupt("points", e))?,
        expire_type: ExpireType::parse(&lot.expire_type).map_err(|e| corrupt("expire_type", e))?,
        expire_date,
        expires_at: lot
            .expires_at_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis),
        available_at: DateTime::<Utc>::from_timestamp_millis(lot.available_at_ms)
            .ok_or_else(|| corrupt("available_at_ms", lot.available_at_ms.to_string()))?,
        remark: lot.remark.as_str().into(),
        campaign_code,
    })
}

/// Keeps the sources of a ruleset version (a JSON text), so that trades it priced can be
/// priced again exactly after the rules change. Idempotent.
pub fn save_ruleset(
    conn: &mut Conn,
    version: &str,
    sources_json: String,
    now: DateTime<Utc>,
) -> Result<(), PostError> {
    Ok(repo::save_ruleset(
        conn,
        &models::NewRuleset {
            version,
            sources: sources_json,
            created_at_ms: ms(now),
        },
    )?)
}

/// The ruleset version saved last, if any.
pub fn latest_ruleset_version(conn: &mut Conn) -> Result<Option<String>, PostError> {
    Ok(repo::latest_ruleset_version(conn)?)
}

/// The sources (JSON text) kept for a ruleset version.
pub fn ruleset_sources(conn: &mut Conn, version: &str) -> Result<Option<String>, PostError> {
    Ok(repo::ruleset_sources(conn, version)?)
}

/// The member these identities lead to, created if none does (a new member's account number
/// comes from the first identity). Identities not yet bound are bound to it (one already bound
/// to another member stays there), and the profile fields that arrived are kept. One write
/// transaction; a concurrent creation of the same member is a `Race` to retry.
pub fn resolve_member(
    conn: &mut Conn,
    identities: &[crate::domain::Identity],
    profile: &crate::domain::Profile,
    now: DateTime<Utc>,
) -> Result<VipAccountNo, PostError> {
    assert!(
        !identities.is_empty(),
        "a member is reached through an identity"
    );
    let now_ms = ms(now);
    connection::write_transaction(conn, |conn| {
        // The first identity known, and its member; the ones before it are not known.
        let mut found = None;
        for (i, identity) in identities.iter().enumerate() {
            let known =
                repo::find_member_by_identity(conn, identity.kind.as_str(), identity.value())?;
            if let Some(member_id) = known {
                found = Some((i, member_id));
                break;
            }
        }
        let first = identities[0].account_number();
        let (member_id, account) = match found {
            Some((_, member_id)) => {
                repo::lock_member(conn, member_id)?;
                (member_id, None)
            }
            None => match repo::find_member_id(conn, first.as_str())? {
                Some(member_id) => {
                    repo::lock_member(conn, member_id)?;
                    (member_id, Some(first))
                }
                // Locked by its insert.
                None => {
                    let new = NewMember {
                        vip_accountno: first.as_str(),
                        created_at_ms: now_ms,
                    };
                    (repo::insert_member(conn, &new)?, Some(first))
                }
            },
        };
        // Linked: the identities before the one found were not known; the ones after it are
        // looked up now. One another writer linked meanwhile fails its insert (unique): a
        // `Race`, and the whole write runs again.
        let looked_up = found.map_or(identities.len(), |(i, _)| i + 1);
        for (i, identity) in identities.iter().enumerate() {
            let (kind, value) = (identity.kind.as_str(), identity.value());
            let known = match (i < looked_up, found) {
                (true, Some((at, _))) => i == at,
                (true, None) => false,
                (false, _) => repo::find_member_by_identity(conn, kind, value)?.is_some(),
            };
            if !known {
                repo::insert_identity(conn, member_id, kind, value, now_ms)?;
            }
        }
        if profile != &crate::domain::Profile::default() {
            let given = (
                profile.name.clone(),
                profile.nick_name.clone(),
                profile.gender.map(|g| g.as_str().to_string()),
                profile.country.clone(),
                profile.province.clone(),
                profile.city.clone(),
            );
            repo::merge_profile(conn, member_id, &given, now_ms)?;
        }
        match account {
            Some(account) => Ok(account),
            None => VipAccountNo::parse(&repo::member_account(conn, member_id)?)
                .map_err(PostError::Corrupt),
        }
    })
}

/// A member's profile as `set_profile` left it: account number, birthday, gender.
pub type StoredProfile = (String, Option<String>, Option<String>);

/// Sets what is given of a member's birthday and gender, in one transaction; `None` when no
/// member has that account number or identity.
pub fn set_profile(
    conn: &mut Conn,
    vip: &VipAccountNo,
    birthday: Option<crate::domain::Birthday>,
    gender: Option<crate::domain::Gender>,
    now: DateTime<Utc>,
) -> Result<Option<StoredProfile>, PostError> {
    connection::write_transaction(conn, |conn| {
        let Some(member_id) = find_member(conn, vip)? else {
            return Ok(None);
        };
        repo::lock_member(conn, member_id)?;
        let mut profile = repo::member_profile(conn, member_id)?.unwrap_or_default();
        if let Some(gender) = gender {
            profile.2 = Some(gender.as_str().to_string());
        }
        repo::merge_profile(conn, member_id, &profile, ms(now))?;
        if let Some(birthday) = birthday {
            repo::save_birthday(conn, member_id, &birthday.text())?;
        }
        Ok(Some((
            repo::member_account(conn, member_id)?,
            repo::member_birthday(conn, member_id)?,
            profile.2,
        )))
    })
}

/// Writes a consistent copy of a SQLite ledger to `to` (which must not exist) while writers go
/// on: `VACUUM INTO` reads one snapshot, as any WAL reader does, and writes a compact file.
pub fn backup_sqlite(conn: &mut Conn, to: &std::path::Path) -> Result<(), PostError> {
    use diesel::RunQueryDsl;
    let Conn::Sqlite(_) = conn else {
        return Err(PostError::Corrupt(
            "only a SQLite ledger is backed up this way".to_string(),
        ));
    };
    diesel::sql_query("VACUUM INTO ?")
        .bind::<diesel::sql_types::Text, _>(to.display().to_string())
        .execute(conn)?;
    Ok(())
}

/// The most identities (phone, openid, card codes) one member may hold besides its account
/// number.
pub const IDENTITIES_PER_MEMBER_MAX: i64 = 16;

/// What linking an identity to a member did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityLink {
    /// The member holds it now (or held it already): its account number, and every identity it
    /// holds as (kind, value).
    Linked {
        account: String,
        identities: Vec<(String, String)>,
    },
    NoMember,
    /// Another member holds it (by identity, or as its account number): that member's account.
    HeldByAnother(String),
    /// The member holds `IDENTITIES_PER_MEMBER_MAX` identities already.
    TooMany,
}

/// Links an identity (a phone, an openid, a card code) to an existing member, so requests
/// arriving under it (a discount card's records, a POS customer) reach that member. Linking an
/// identity the member holds already changes nothing; one another member holds is refused
/// (members are not merged). Two concurrent links of one identity: the unique constraint
/// decides, and the loser, run again, sees it held.
pub fn link_identity(
    conn: &mut Conn,
    vip: &VipAccountNo,
    identity: &crate::domain::Identity,
    now: DateTime<Utc>,
) -> Result<IdentityLink, PostError> {
    connection::write_transaction(conn, |conn| {
        let Some(member_id) = find_member(conn, vip)? else {
            return Ok(IdentityLink::NoMember);
        };
        repo::lock_member(conn, member_id)?;
        let (kind, value) = (identity.kind.as_str(), identity.value());
        let holder = match repo::find_member_by_identity(conn, kind, value)? {
            Some(id) => Some(id),
            // A member first seen under this identity is known by it as an account number.
            None => repo::find_member_id(conn, identity.account_number().as_str())?,
        };
        match holder {
            Some(id) if id != member_id => {
                return Ok(IdentityLink::HeldByAnother(repo::member_account(conn, id)?))
            }
            Some(_) => {}
            None => {
                if repo::member_identities(conn, member_id)?.len() as i64
                    >= IDENTITIES_PER_MEMBER_MAX
                {
                    return Ok(IdentityLink::TooMany);
                }
                repo::insert_identity(conn, member_id, kind, value, ms(now))?;
            }
        }
        Ok(IdentityLink::Linked {
            account: repo::member_account(conn, member_id)?,
            identities: repo::member_identities(conn, member_id)?,
        })
    })
}

/// What one expiry run wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub lots: u64,
    pub points: i64,
}

/// Lots expired per write transaction, so a large backlog never holds the write lock long.
pub const EXPIRE_BATCH_MAX: i64 = 500;

/// Writes an `expire` entry for up to `EXPIRE_BATCH_MAX` lots whose expiry is at or before
/// `as_of` and that still have points, and sets their remaining to zero: one write
/// transaction. Each entry is effective at the lot's expiry instant (or at its creation, for a
/// receipt recorded after its points would have expired). Idempotent: a lot at zero is never
/// picked again, and the batch holds the write lock (or the lots' guarded updates), so two runs
/// (or two processes) never expire a lot twice. Answers how many lots it picked (fewer than
/// the maximum: nothing more is due) and what it expired.
pub fn expire_batch(
    conn: &mut Conn,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(usize, Expired), PostError> {
    connection::write_transaction(conn, |conn| {
        let lots = repo::expired_lots(conn, ms(as_of), EXPIRE_BATCH_MAX)?;
        // The lock order of every write: the members first (here in id order), so that a
        // member's other writers never see its lots change under them.
        let members: std::collections::BTreeSet<i64> = lots.iter().map(|l| l.member_id).collect();
        for member_id in members {
            repo::lock_member(conn, member_id)?;
        }
        let mut expired = Expired::default();
        for lot in &lots {
            let effective_at_ms = lot
                .expiry_effective_at_ms()
                .expect("only lots with an expiry are picked");
            // Guarded: if another writer changed the lot, it is left for the next run.
            if !expire_from_lot(conn, lot, lot.remaining, effective_at_ms, ms(now))? {
                continue;
            }
            expired.lots += 1;
            expired.points += lot.remaining;
        }
        Ok((lots.len(), expired))
    })
}

/// Takes `points` from a lot as an expiry effective at `effective_at_ms`: one `expire` entry.
/// Guarded like `take_from_lot`: `false`, and nothing written, if the lot has fewer left.
fn expire_from_lot(
    conn: &mut Conn,
    lot: &LotRow,
    points: i64,
    effective_at_ms: i64,
    now_ms: i64,
) -> Result<bool, PostError> {
    if !repo::take_from_lot(conn, lot.id, points)? {
        return Ok(false);
    }
    let (trade_no, out_trade_no) = repo::trade_numbers_of(conn, lot.trade_id)?;
    repo::insert_entry(
        conn,
        &NewEntry {
            member_id: lot.member_id,
            lot_id: lot.id,
            trade_id: Some(lot.trade_id),
            refund_id: None,
            kind: "expire",
            points: -points,
            effective_at_ms,
            created_at_ms: now_ms,
            point_type: &lot.point_type,
            campaign_code: &lot.campaign_code,
            trade_no: &trade_no,
            out_trade_no: &out_trade_no,
        },
    )?;
    Ok(true)
}

/// A member's points at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub vip_accountno: VipAccountNo,
    /// Usable now: can be burned.
    pub available: Points,
    /// Not expired, but still in the program's pending period: cannot be burned yet.
    pub pending: Points,
    /// Usable lots, soonest to expire first, each with the points it has left.
    pub lots: Vec<HeldLot>,
    /// Pending lots, soonest to become usable first.
    pub pending_lots: Vec<HeldLot>,
    /// Points owed from refunds under `allow_negative`; later earns pay them off.
    pub owed: Points,
}

impl Balance {
    /// What the member can spend: usable points less what they owe (negative while they owe
    /// more than they hold).
    pub fn spendable(&self) -> i64 {
        self.available.value() - self.owed.value()
    }
}

/// A lot of a balance: the points it has left, of which kind, until when, from which campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLot {
    pub point_type: PointType,
    /// What is left of it: above zero.
    pub points: Points,
    pub expire_type: ExpireType,
    /// The last usable day, `YYYY-MM-DD` as the ledger keeps it; "" when it never expires.
    pub expire_date: String,
    /// "" for E points.
    pub campaign_code: String,
    pub available_at: DateTime<Utc>,
}

impl HeldLot {
    fn of(lot: ShownLot) -> Result<Self, PostError> {
        let corrupt =
            |what: &str, e: String| PostError::Corrupt(format!("lot {} {what}: {e}", lot.id));
        Ok(Self {
            point_type: PointType::parse(&lot.point_type).map_err(|e| corrupt("point_type", e))?,
            points: Points::new(lot.remaining).map_err(|e| corrupt("remaining", e))?,
            expire_type: ExpireType::parse(&lot.expire_type)
                .map_err(|e| corrupt("expire_type", e))?,
            available_at: DateTime::<Utc>::from_timestamp_millis(lot.available_at_ms)
                .ok_or_else(|| corrupt("available_at_ms", lot.available_at_ms.to_string()))?,
            expire_date: lot.expire_date.unwrap_or_default(),
            campaign_code: lot.campaign_code,
        })
    }
}

/// The member's balance as of `as_of`: lots past their expiry never count, whether or not an
/// expiry has been written for them. `None` for a member the ledger has never seen. A balance
/// `known` for the member's ledger version and that moment is answered from memory; one read
/// is kept there.
pub fn balance(
    conn: &mut Conn,
    vip: &VipAccountNo,
    as_of: DateTime<Utc>,
    known: &KnownBalances,
) -> Result<Option<Arc<Balance>>, PostError> {
    let Some((member_id, vip)) = find_member_account(conn, vip)? else {
        return Ok(None);
    };
    // Read before the lots (on PostgreSQL each statement reads what has committed by then): a
    // balance kept under a version is never older than that version.
    let version = repo::member_ledger_version(conn, member_id)?;
    let member = probe::Versioned { member_id, version };
    if let Some(balance) = known.answer(member_id, version, ms(as_of)) {
        return Ok(Some(balance));
    }
    balance_of_member(conn, member, vip, as_of, known).map(Some)
}

/// `balance` of a member already found (by its account number `vip`), its ledger version read
/// before (`Store::member_version`), and not known for it.
pub fn balance_of_member(
    conn: &mut Conn,
    member: probe::Versioned,
    vip: VipAccountNo,
    as_of: DateTime<Utc>,
    known: &KnownBalances,
) -> Result<Arc<Balance>, PostError> {
    let as_of_ms = ms(as_of);
    let open_lots = repo::shown_lots(conn, member.member_id, as_of_ms)?;
    // A member owes only through refunds (`repo::owed_lines_query!`): none, nothing owed.
    let owed = match member.version.1 {
        Some(_) => repo::owed_points(conn, member.member_id)?,
        None => 0,
    };
    balance_of_lots(member, vip, open_lots, owed, as_of_ms, known)
}

/// The balance of `member` as of `as_of_ms` from its lots open then (`repo::shown_lots`) and
/// what it owes, kept in `known` under the member's version.
fn balance_of_lots(
    member: probe::Versioned,
    vip: VipAccountNo,
    open_lots: Vec<ShownLot>,
    owed: i64,
    as_of_ms: i64,
    known: &KnownBalances,
) -> Result<Arc<Balance>, PostError> {
    let probe::Versioned { member_id, version } = member;
    let (mut usable, mut pending): (Vec<ShownLot>, Vec<ShownLot>) = open_lots
        .into_iter()
        .partition(|l| l.available_at_ms <= as_of_ms);
    // The balance holds until the first of its lots expires or of its pending lots becomes
    // usable.
    let until_ms = usable
        .iter()
        .chain(&pending)
        .filter_map(|l| l.expires_at_ms)
        .chain(pending.iter().map(|l| l.available_at_ms))
        .min()
        .unwrap_or(i64::MAX);
    usable.sort_by_key(|l| burn_order_of(l.expires_at_ms, l.id));
    pending.sort_by_key(|l| (l.available_at_ms, l.id));
    let held = |rows: Vec<ShownLot>| -> Result<(Points, Vec<HeldLot>), PostError> {
        let total = rows.iter().map(|l| l.remaining).sum();
        let total = Points::new(total).map_err(PostError::Corrupt)?;
        let lots = rows
            .into_iter()
            .map(HeldLot::of)
            .collect::<Result<_, _>>()?;
        Ok((total, lots))
    };
    let (available, lots) = held(usable)?;
    let (pending, pending_lots) = held(pending)?;
    let owed = Points::new(owed).map_err(PostError::Corrupt)?;
    let balance = Arc::new(Balance {
        owed,
        vip_accountno: vip,
        available,
        pending,
        lots,
        pending_lots,
    });
    known.remember(member_id, version, (as_of_ms, until_ms), &balance);
    Ok(balance)
}

/// The balances of many members found with their versions (`Store::member_version`), each
/// as of its own moment, from two statements for them all (`repo::shown_lots_of_members`, and
/// `repo::owed_of_members` for the members with refunds), each kept in `known`.
pub fn balances_of_members(
    conn: &mut Conn,
    asked: &[(probe::Versioned, &VipAccountNo, DateTime<Utc>)],
    known: &KnownBalances,
) -> Result<Vec<Result<Arc<Balance>, PostError>>, PostError> {
    let Some(first_ms) = asked.iter().map(|(_, _, as_of)| ms(*as_of)).min() else {
        return Ok(Vec::new());
    };
    let ids: Vec<i64> = asked.iter().map(|(m, _, _)| m.member_id).collect();
    let mut lots_of: HashMap<i64, Vec<ShownLot>> = HashMap::new();
    for (member_id, lot) in repo::shown_lots_of_members(conn, &ids, first_ms)? {
        lots_of.entry(member_id).or_default().push(lot);
    }
    let owing: Vec<i64> = asked
        .iter()
        .filter(|(m, _, _)| m.version.1.is_some())
        .map(|(m, _, _)| m.member_id)
        .collect();
    let owed_of: HashMap<i64, i64> = match owing.is_empty() {
        true => HashMap::new(),
        false => repo::owed_of_members(conn, &owing)?.into_iter().collect(),
    };
    Ok(asked
        .iter()
        .map(|(member, vip, as_of)| {
            let as_of_ms = ms(*as_of);
            let open_lots = lots_of
                .get(&member.member_id)
                .map_or_else(Vec::new, |lots| {
                    lots.iter()
                        .filter(|l| l.expires_at_ms.is_none_or(|at| at > as_of_ms))
                        .cloned()
                        .collect()
                });
            let owed = owed_of.get(&member.member_id).copied().unwrap_or(0);
            balance_of_lots(*member, (*vip).clone(), open_lots, owed, as_of_ms, known)
        })
        .collect())
}
