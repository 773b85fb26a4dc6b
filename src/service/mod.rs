//! Use cases: each takes validated domain input, runs the pure rules, and records the outcome
//! as one atomic write through the ledger's writer (`ledger::writer`). Reads use pooled
//! connections and never wait for the writer. Blocking: call from `web::block`.

use crate::domain::{
    Amount, ContextNeeds, Fingerprint, MemberContext, OutTradeNo, Priced, ProgramTz, Refund,
    ShortfallPolicy, Trade, VipAccountNo,
};
use crate::ledger::balances::KnownBalances;
use crate::ledger::refund::Refunded;
use crate::ledger::together::PricedReceipt;
use crate::ledger::writer::{Answer, Busy, WriteError, WriteFailure};
use crate::ledger::{self, Balance, Conn, PooledConn, PostError, Posted, Replay, Store};
use crate::rules::{self, EvaluateError, Ruleset, Source};
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

mod adapters;
pub use adapters::*;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Evaluate(#[from] EvaluateError),
    #[error(transparent)]
    Post(#[from] PostError),
    /// Nothing was written; the caller may retry.
    #[error(transparent)]
    Unavailable(#[from] Busy),
    /// The write was tried, and nothing of it was written.
    #[error(transparent)]
    Write(WriteError),
    #[error("no trade has out_trade_no {0}")]
    TradeNotFound(String),
    #[error("serial number {0} was already used with a different record")]
    CardRecordConflict(String),
    #[error("the request's nonce was already used")]
    NonceReused,
    /// An order update older than the last one seen: nothing of it is kept.
    #[error("the update is older than the last one seen")]
    StaleUpdate,
    /// A refund of nothing, of a trade that was paid (only a trade paid wholly with points is
    /// refunded with 0).
    #[error("refund_amount must be more than 0 (0 refunds only a trade paid wholly with points)")]
    ZeroRefund,
    #[error("refund_time {refund_time} is before the trade's sales_time {sales_time}")]
    RefundBeforeSale {
        refund_time: String,
        sales_time: String,
    },
    #[error("the ruleset version {version} that priced the trade cannot be used: {problem}")]
    RulesetUnavailable { version: String, problem: String },
}

impl From<diesel::r2d2::PoolError> for ServiceError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        Self::Unavailable(Busy::Pool(error))
    }
}

impl From<diesel::result::Error> for ServiceError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Post(error.into())
    }
}

impl From<WriteError> for ServiceError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Busy(busy) => Self::Unavailable(busy),
            other => Self::Write(other),
        }
    }
}

impl WriteFailure for ServiceError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Post(PostError::Race))
    }
}

/// Keeps the sources of the running ruleset in the ledger under its version, each under its
/// file name (the version hashes file names, not folders).
pub fn save_ruleset(
    store: &Store,
    ruleset: &Ruleset,
    sources: &[Source],
) -> Result<(), ServiceError> {
    let json = sources_json(sources);
    let version = ruleset.version.clone();
    let now = Utc::now();
    store.writer.write(move |conn| {
        Ok::<_, ServiceError>(ledger::save_ruleset(conn, &version, json.clone(), now)?)
    })
}

/// The ruleset of `version`: the running one, or one compiled again from the ledger's copy.
/// Rule files as the ledger keeps them (`save_ruleset`): JSON, each under its file name.
pub fn sources_json(sources: &[Source]) -> String {
    let named: Vec<Source> = sources
        .iter()
        .map(|s| Source {
            name: Path::new(&s.name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| s.name.clone()),
            text: s.text.clone(),
        })
        .collect();
    serde_json::to_string(&named).expect("sources serialize")
}

fn ruleset_of_version<'r>(
    conn: &mut Conn,
    running: &'r Ruleset,
    version: &str,
) -> Result<Cow<'r, Ruleset>, ServiceError> {
    if running.version == version {
        return Ok(Cow::Borrowed(running));
    }
    stored_ruleset(conn, version).map(Cow::Owned)
}

/// The ruleset of `version`, compiled from the sources the ledger keeps of it.
fn stored_ruleset(conn: &mut Conn, version: &str) -> Result<Ruleset, ServiceError> {
    let unavailable = |problem: String| ServiceError::RulesetUnavailable {
        version: version.to_string(),
        problem,
    };
    let json = ledger::ruleset_sources(conn, version)?
        .ok_or_else(|| unavailable("the ledger does not hold it".to_string()))?;
    let sources: Vec<Source> =
        serde_json::from_str(&json).map_err(|e| unavailable(e.to_string()))?;
    let ruleset = rules::from_sources(&sources).map_err(|e| unavailable(e.to_string()))?;
    if ruleset.version != version {
        return Err(unavailable(format!(
            "its sources hash to {}",
            ruleset.version
        )));
    }
    Ok(ruleset)
}

/// Refunds part or all of a trade: prices it again at its net amount under the ruleset version
/// that priced it, and reverses the difference. The same refund again answers as it did (from
/// a read, without waiting for the writer).
pub fn refund_trade(
    store: &Store,
    rules: Arc<Ruleset>,
    refund: Refund,
    policy: ShortfallPolicy,
    now: DateTime<Utc>,
) -> Result<Refunded, ServiceError> {
    if let Some(done) = ledger::refund::replay_refund(&mut *store.pool.get()?, &refund)? {
        return Ok(done);
    }
    store
        .writer
        .write(move |conn| refund_in(conn, &rules, &refund, policy, now))
}

/// `refund_trade` inside a write. Another refund of the same trade landing first (on
/// PostgreSQL) makes this a `Race`: the writer runs it again on a fresh read.
pub(super) fn refund_in(
    conn: &mut Conn,
    rules: &Ruleset,
    refund: &Refund,
    policy: ShortfallPolicy,
    now: DateTime<Utc>,
) -> Result<Refunded, ServiceError> {
    if let Some(done) = ledger::refund::replay_refund(conn, refund)? {
        return Ok(done);
    }
    let refundable = ledger::refund::refundable_trade(conn, &refund.out_trade_no)?
        .ok_or_else(|| ServiceError::TradeNotFound(refund.out_trade_no.to_string()))?;
    if refund.refund_time < refundable.trade.sales_time {
        return Err(ServiceError::RefundBeforeSale {
            refund_time: refund.refund_time.to_rfc3339(),
            sales_time: refundable.trade.sales_time.to_rfc3339(),
        });
    }
    if refund.refund_amount == Amount::ZERO && refundable.trade.payment_amount != Amount::ZERO {
        return Err(ServiceError::ZeroRefund);
    }
    let refundable_amount = refundable.refundable();
    if refund.refund_amount > refundable_amount {
        return Err(PostError::OverRefund {
            requested: refund.refund_amount,
            refundable: refundable_amount,
        }
        .into());
    }
    let refunded_after =
        Amount::from_minor(refundable.refunded.to_minor() + refund.refund_amount.to_minor())
            .expect("at most the payment");
    let repriced = if refundable.trade.resource == CARD_SOURCE {
        // An objective's completions: no receipt to price again; each grant is kept in
        // proportion to the completions left.
        ledger::history::trade_detail(conn, refundable.trade.out_trade_no.as_str())?
            .map(|detail| detail.grants.into_iter().map(|(grant, _)| grant).collect())
            .unwrap_or_default()
    } else {
        let pricing = ruleset_of_version(conn, rules, &refundable.ruleset_version)?;
        let net = refundable.trade.net_of_refunds(refunded_after);
        pricing.price(&net, &refundable.repricing_context())?.grants
    };
    Ok(ledger::refund::post_refund(
        conn,
        refund,
        &refundable,
        &repriced,
        policy,
        now,
    )?)
}

/// Prices a trade under the ruleset and records it. A trade already recorded is answered as it
/// was (from a read, without waiting for the writer), even if today's rules would no longer
/// price it; the same `out_trade_no` with another request is a `Conflict`.
///
/// Blocking for the read (call from `web::block`, or use `create_trade_with` and a connection
/// from `Store::conn_here`); the write is awaited (`Answer::outcome`), so the thread is free
/// while the trade waits for its group's commit.
///
/// `fingerprint` is `trade.fingerprint()`. A trade this process recorded lately is answered
/// first by `recent_answer`, without a read; the caller gives each trade it records to
/// `remember`.
pub fn create_trade(
    store: &Store,
    rules: Arc<Ruleset>,
    fingerprint: Fingerprint,
    trade: Trade,
    now: DateTime<Utc>,
) -> Answer<Posted, ServiceError> {
    match store.pool.get() {
        Ok(conn) => create_trade_with(conn, store, rules, fingerprint, trade, now),
        Err(error) => Answer::Ready(Err(error.into())),
    }
}

/// The answer of a trade this process recorded lately, with no read of the ledger: `None` if it
/// does not remember `trade`'s `out_trade_no` (then `create_trade` reads the ledger).
pub fn recent_answer(
    store: &Store,
    trade: &Trade,
    fingerprint: &Fingerprint,
) -> Option<Result<Posted, ServiceError>> {
    let answer = store.recent.answer(&trade.out_trade_no, fingerprint)?;
    Some(answer.map_err(ServiceError::from))
}

/// Remembers a trade `create_trade` recorded (its answer is known once the write is durable)
/// for `recent_answer`. Replays read from the ledger are not remembered: a run of replays of
/// older trades (a till resending a day's receipts) would push out the recent ones that a
/// retry asks for.
pub fn remember(store: &Store, trade: &OutTradeNo, fingerprint: Fingerprint, posted: &Posted) {
    if !posted.replayed {
        store.recent.remember(trade, fingerprint, posted);
    }
}

/// `create_trade`, the replay read on `conn` (given back before the write: on PostgreSQL the
/// write takes a pooled connection of its own).
pub fn create_trade_with(
    mut conn: PooledConn,
    store: &Store,
    rules: Arc<Ruleset>,
    fingerprint: Fingerprint,
    trade: Trade,
    now: DateTime<Utc>,
) -> Answer<Posted, ServiceError> {
    let replayed = ledger::replay(&mut conn, &trade, &fingerprint);
    drop(conn);
    match replayed.map_err(ServiceError::from) {
        Ok(None) => create_new_trade(store, rules, fingerprint, trade, now),
        Ok(Some(posted)) => Answer::Ready(Ok(posted)),
        Err(error) => Answer::Ready(Err(error)),
    }
}

/// `create_trade` once a read found nothing recorded under the trade's `out_trade_no`: queued
/// for its member's writer lane (PostgreSQL; on SQLite the writer).
pub fn create_new_trade(
    store: &Store,
    rules: Arc<Ruleset>,
    fingerprint: Fingerprint,
    trade: Trade,
    now: DateTime<Utc>,
) -> Answer<Posted, ServiceError> {
    let key = member_key(&trade.vip_accountno);
    // Known new on its first run only: a run again (after a `Race`) looks.
    let mut known_new = true;
    if store.writer.lanes() > 0 {
        if let Some(Priced { grants, tier, .. }) = priced_before_write(&rules, &trade) {
            let receipt = PricedReceipt {
                trade,
                fingerprint,
                grants,
                tier,
                ruleset_version: rules.version.clone(),
                now,
            };
            return store
                .writer
                .submit_receipt(key, receipt, move |conn, receipt| {
                    let replay = Replay {
                        fingerprint: &receipt.fingerprint,
                        known_new: std::mem::take(&mut known_new),
                    };
                    create_trade_in(conn, &rules, &receipt.trade, replay, receipt.now)
                });
        }
    }
    store.writer.submit_for(key, move |conn| {
        let replay = Replay {
            fingerprint: &fingerprint,
            known_new: std::mem::take(&mut known_new),
        };
        create_trade_in(conn, &rules, &trade, replay, now)
    })
}

/// A trade's price when it reads nothing of the member's (no member condition, cap or budget)
/// and the trade burns nothing: then what its write records is known before the write, and a
/// writer lane posts it together with other such receipts (`ledger::together`).
fn priced_before_write(rules: &Ruleset, trade: &Trade) -> Option<Priced> {
    if !trade.burn_point.is_zero() || rules.needs(trade).ok()? != ContextNeeds::default() {
        return None;
    }
    let priced = rules.price(trade, &MemberContext::default()).ok()?;
    priced.budget_use.is_empty().then_some(priced)
}

/// The key of a member among PostgreSQL's writer lanes: one member's trades always go to the
/// same lane.
pub fn member_key(vip: &VipAccountNo) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    vip.as_str().hash(&mut hasher);
    hasher.finish()
}

/// `create_trade` inside a write. A concurrent duplicate (from another process, on PostgreSQL)
/// that wins the race makes this a `Race`: the writer runs the write again, and it answers by
/// replaying the winner's result.
pub(super) fn create_trade_in(
    conn: &mut Conn,
    rules: &Ruleset,
    trade: &Trade,
    replay: Replay,
    now: DateTime<Utc>,
) -> Result<Posted, ServiceError> {
    let needs = match rules.needs(trade) {
        Ok(needs) => needs,
        Err(error) => {
            return ledger::replay(conn, trade, replay.fingerprint)?
                .ok_or(ServiceError::Evaluate(error))
        }
    };
    let price = |ctx: &MemberContext| rules.price(trade, ctx);
    match ledger::post_trade(conn, trade, replay, &needs, price, &rules.version, now) {
        Err(PostError::Evaluate(error)) => Err(ServiceError::Evaluate(error)),
        other => Ok(other?),
    }
}

/// Links an identity to an existing member (`ledger::link_identity`), as one write.
pub fn link_identity(
    store: &Store,
    vip: VipAccountNo,
    identity: crate::domain::Identity,
    now: DateTime<Utc>,
) -> Result<ledger::IdentityLink, ServiceError> {
    store
        .writer
        .write(move |conn| Ok(ledger::link_identity(conn, &vip, &identity, now)?))
}

/// Sets a member's birthday and gender (what is given of them).
pub fn set_profile(
    store: &Store,
    vip: VipAccountNo,
    birthday: Option<crate::domain::Birthday>,
    gender: Option<crate::domain::Gender>,
    now: DateTime<Utc>,
) -> Result<Option<ledger::StoredProfile>, ServiceError> {
    store
        .writer
        .write(move |conn| Ok(ledger::set_profile(conn, &vip, birthday, gender, now)?))
}

/// Prices a trade as trade-create would, against the member's real history, and explains
/// every campaign. Writes nothing.
pub fn simulate_trade(
    store: &Store,
    rules: &Ruleset,
    trade: &Trade,
) -> Result<(crate::domain::Priced, crate::rules::engine::Explanation), ServiceError> {
    let needs = rules.needs(trade)?;
    let mut conn = store.pool.get()?;
    let ctx = ledger::read_member_context(&mut conn, &trade.vip_accountno, &needs)?;
    Ok(rules.explain(trade, &ctx)?)
}

/// Expires every lot past its expiry at `as_of`, a bounded batch per write so that trades
/// never wait long behind it.
pub fn expire_due(store: &Store, as_of: DateTime<Utc>) -> Result<ledger::Expired, ServiceError> {
    expire_due_with(store, as_of, &mut |_| {})
}

/// `expire_due`, telling `progress` the running total after each batch.
pub fn expire_due_with(
    store: &Store,
    as_of: DateTime<Utc>,
    progress: &mut dyn FnMut(&ledger::Expired),
) -> Result<ledger::Expired, ServiceError> {
    let mut total = ledger::Expired::default();
    loop {
        let (picked, expired) = store.writer.write(move |conn| {
            Ok::<_, ServiceError>(ledger::expire_batch(conn, as_of, Utc::now())?)
        })?;
        total.lots += expired.lots;
        total.points += expired.points;
        progress(&total);
        if picked < ledger::EXPIRE_BATCH_MAX as usize {
            return Ok(total);
        }
    }
}

/// Whether the ledger answers reads now (a pooled connection runs a query).
pub fn ready(store: &Store) -> Result<(), ServiceError> {
    Ok(ledger::ping(&mut *store.pool.get()?)?)
}

/// Checks every ledger invariant.
/// Trades the audit re-prices per read.
const AUDIT_TRADES_PER_READ: i64 = 1_000;

/// Every ledger invariant (`ledger::audit`), and every trade's grants against the rules that
/// priced it: each trade is priced again under its ruleset version, as the most it can have
/// earned (member conditions held, no limit or budget applied, only the campaigns that granted
/// it), and a grant above that is a violation naming the trade and the campaign.
pub fn audit(store: &Store) -> Result<ledger::audit::Report, ServiceError> {
    let mut conn = store.pool.get()?;
    // Times in the program's zone: the rules saved last say which.
    let zone = match ledger::latest_ruleset_version(&mut conn)? {
        Some(version) => stored_ruleset(&mut conn, &version)
            .map_or(ProgramTz::UTC, |ruleset| ruleset.program.time_zone),
        None => ProgramTz::UTC,
    };
    let mut report = ledger::audit::audit_in(&mut conn, &zone).map_err(PostError::from)?;
    report.violations.extend(repricing_violations(&mut conn)?);
    Ok(report)
}

fn repricing_violations(conn: &mut Conn) -> Result<Vec<String>, ServiceError> {
    let mut violations = Vec::new();
    let mut rulesets: std::collections::HashMap<String, Option<Ruleset>> =
        std::collections::HashMap::new();
    let mut after_id = 0;
    loop {
        let (trades, last) =
            ledger::refund::granted_trades_after(conn, after_id, AUDIT_TRADES_PER_READ)?;
        let Some(last) = last else {
            return Ok(violations);
        };
        after_id = last;
        for granted_trade in trades {
            let ledger::refund::GrantedTrade {
                out_trade_no,
                resource,
                ruleset_version: version,
                tier,
                trade,
                granted,
            } = granted_trade;
            // An objective's completions have no receipt to price.
            if resource == CARD_SOURCE {
                continue;
            }
            if !rulesets.contains_key(&version) {
                let loaded = match stored_ruleset(conn, &version) {
                    Ok(ruleset) => Some(ruleset),
                    Err(ServiceError::RulesetUnavailable { problem, .. }) => {
                        violations.push(format!(
                            "trade {out_trade_no}: its ruleset {version} cannot be read: {problem}"
                        ));
                        None
                    }
                    Err(other) => return Err(other),
                };
                rulesets.insert(version.clone(), loaded);
            }
            let Some(ruleset) = rulesets[&version].as_ref() else {
                continue;
            };
            let codes = granted
                .keys()
                .filter_map(|(_, code)| crate::domain::CampaignCode::parse(code).ok())
                .collect();
            let most = match trade.map_err(ServiceError::from).and_then(|trade| {
                let ctx = MemberContext {
                    tier: (!tier.is_empty()).then_some(tier),
                    ..MemberContext::audit(codes)
                };
                Ok(ruleset.price(&trade, &ctx)?)
            }) {
                Ok(priced) => priced.grants,
                Err(e) => {
                    violations.push(format!(
                        "trade {out_trade_no}: its rules ({version}) do not price it: {e}"
                    ));
                    continue;
                }
            };
            let mut allowed: std::collections::HashMap<(&str, &str), i64> =
                std::collections::HashMap::new();
            for grant in &most {
                *allowed
                    .entry((grant.point_type.as_str(), grant.campaign_code_text()))
                    .or_default() += grant.points.value();
            }
            for ((point_type, code), points) in &granted {
                let at_most = allowed.get(&(point_type.as_str(), code.as_str())).copied();
                if at_most.is_none_or(|most| *points > most) {
                    let what = match code.as_str() {
                        "" => format!("its {point_type} points"),
                        code => format!("campaign {code}"),
                    };
                    violations.push(format!(
                        "trade {out_trade_no}: {what} granted {points} points, its rules \
                         ({version}) grant at most {}",
                        at_most.unwrap_or(0)
                    ));
                }
            }
        }
    }
}

pub fn member_balance(
    conn: &mut Conn,
    vip: &VipAccountNo,
    as_of: DateTime<Utc>,
    known: &KnownBalances,
) -> Result<Option<std::sync::Arc<Balance>>, ServiceError> {
    Ok(ledger::balance(conn, vip, as_of, known)?)
}

/// `member_balance` of a member found with its ledger version (`Store::member_version`).
pub fn found_member_balance(
    conn: &mut Conn,
    member: ledger::probe::Versioned,
    vip: &VipAccountNo,
    as_of: DateTime<Utc>,
    known: &KnownBalances,
) -> Result<std::sync::Arc<Balance>, ServiceError> {
    Ok(ledger::balance_of_member(
        conn,
        member,
        vip.clone(),
        as_of,
        known,
    )?)
}

/// Whether a member's tier at `at` reads the ledger (`member_tier`): not without tiers.
pub fn tier_reads_ledger(rules: &Ruleset, at: DateTime<Utc>) -> bool {
    rules.program.tiers.is_some() && rules.tier_need(at).is_some()
}

/// A member's tier at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberTier {
    pub name: String,
    /// What qualifies them (points, or spend in base currency) in the current window.
    pub qualifying: rust_decimal::Decimal,
    /// The next tier up and what it needs, at the top `None`.
    pub next: Option<(String, rust_decimal::Decimal)>,
}

/// A member's tier at `at`, from the ledger; `None` when the program has no tiers.
pub fn member_tier(
    conn: &mut Conn,
    rules: &Ruleset,
    vip: &VipAccountNo,
    at: DateTime<Utc>,
) -> Result<Option<MemberTier>, ServiceError> {
    let (Some(tiers), Some(need)) = (&rules.program.tiers, rules.tier_need(at)) else {
        return Ok(None);
    };
    let needs = crate::domain::ContextNeeds {
        tier: Some(need),
        ..Default::default()
    };
    let ctx = ledger::read_member_context(conn, vip, &needs)?;
    let qualifying = ctx.qualifying.unwrap_or_default();
    let level = tiers.level(qualifying);
    Ok(Some(MemberTier {
        name: tiers.name(level).to_string(),
        qualifying: qualifying[0],
        next: tiers.levels.get(level + 1).cloned(),
    }))
}

pub fn member_history(
    conn: &mut Conn,
    vip: &VipAccountNo,
    page: i64,
    page_size: i64,
    known: &ledger::pages::KnownPages,
) -> Result<Option<ledger::history::History>, ServiceError> {
    Ok(ledger::history::member_history(
        conn, vip, page, page_size, known,
    )?)
}

/// `member_history` of a member found with its ledger version (`Store::member_version`).
pub fn found_member_history(
    conn: &mut Conn,
    member: ledger::probe::Versioned,
    page: i64,
    page_size: i64,
    known: &ledger::pages::KnownPages,
) -> Result<ledger::history::History, ServiceError> {
    let newest_entry = member.version.0;
    Ok(ledger::history::page_of_member(
        conn,
        member.member_id,
        newest_entry,
        page,
        page_size,
        known,
    )?)
}

pub fn trade_detail(
    store: &Store,
    number: &str,
) -> Result<Option<ledger::history::TradeDetail>, ServiceError> {
    let mut conn = store.pool.get()?;
    ledger::one_read(&mut conn, |conn| {
        Ok(ledger::history::trade_detail(conn, number)?)
    })
}

/// What the program owes its members as of `as_of` (at most `now`).
pub fn liability_report(
    store: &Store,
    rules: &Ruleset,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
    point_cost: Option<rust_decimal::Decimal>,
) -> Result<ledger::report::Liability, ServiceError> {
    let mut conn = store.pool.get()?;
    Ok(ledger::report::liability(
        &mut conn,
        as_of,
        now,
        rules.program.base_currency.as_str(),
        point_cost,
    )?)
}

/// Points moved over `[from, to)` (`to` at most `now`), grouped `by`.
pub fn movements_report(
    store: &Store,
    rules: &Ruleset,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: ledger::report::GroupBy,
    point_cost: Option<rust_decimal::Decimal>,
    now: DateTime<Utc>,
) -> Result<ledger::report::Movements, ServiceError> {
    let mut conn = store.pool.get()?;
    let pricing = ledger::report::Pricing {
        currency: rules.program.base_currency.as_str(),
        point_cost,
    };
    Ok(ledger::report::movements(
        &mut conn,
        (from, to),
        by,
        &rules.program.time_zone,
        pricing,
        now,
    )?)
}

/// A draft ruleset replayed over the ledger's real trades.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BacktestReport {
    pub from: String,
    pub to: String,
    pub draft_version: String,
    pub trades: u64,
    pub campaigns: Vec<crate::rules::backtest::CampaignReplay>,
}

/// Trades read per batch while replaying.
const BACKTEST_BATCH: i64 = 5_000;

/// Replays the trades sold in `[from, to)` under `draft`, in sales order, writing nothing;
/// `progress(done, total)` is called after each batch.
pub fn backtest(
    store: &Store,
    draft: &Ruleset,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BacktestReport, ServiceError> {
    let mut conn = store.pool.get()?;
    let total = ledger::history::count_trades_sold(&mut conn, from, to)? as u64;
    let mut replay = crate::rules::backtest::Backtest::new(draft);
    let mut cursor = None;
    loop {
        let (batch, next) =
            ledger::history::trades_for_replay(&mut conn, from, to, cursor, BACKTEST_BATCH)?;
        for item in &batch {
            replay.feed(&item.trade, (item.gender, item.birthday), &item.live)?;
        }
        progress(replay.trades, total);
        if (batch.len() as i64) < BACKTEST_BATCH {
            break;
        }
        cursor = next;
    }
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(BacktestReport {
        from: time(from),
        to: time(to),
        draft_version: draft.version.clone(),
        trades: replay.trades,
        campaigns: replay.finish(),
    })
}
