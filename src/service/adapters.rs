//! Use cases of the adapters: members reached through identities, orders of the other
//! contracts, and discount-card records. Each maps onto the same pricing and ledger as the
//! native contract, and each request is one write: all it does lands, or none of it.

use super::{create_trade_in, refund_in, ServiceError};
use crate::domain::{Amount, Refund, ShortfallPolicy, Trade, VipAccountNo};
use crate::ledger::Replay;
use crate::ledger::{self, Conn, PostError, Posted, Store};
use crate::rules::Ruleset;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The member these identities lead to (created if none does), with the profile fields that
/// arrived kept. A concurrent request creating the same member first is a `Race`: the writer
/// runs the whole write again.
fn resolve_member(
    conn: &mut Conn,
    identities: &[crate::domain::Identity],
    profile: &crate::domain::Profile,
    now: DateTime<Utc>,
) -> Result<VipAccountNo, ServiceError> {
    Ok(ledger::resolve_member(conn, identities, profile, now)?)
}

/// An order of another contract, as it arrived.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub source: &'static str,
    pub external_id: String,
    pub status: String,
    pub updated_at: String,
    pub body: String,
}

/// Posts a trade of another contract for the member its identities lead to: the member is
/// resolved (or created), the trade is priced and recorded as trade-create would, and the
/// order's state is kept.
pub fn post_for_identities(
    store: &Store,
    rules: Arc<Ruleset>,
    identities: Vec<crate::domain::Identity>,
    profile: crate::domain::Profile,
    trade: Trade,
    order: OrderRecord,
    now: DateTime<Utc>,
) -> Result<Posted, ServiceError> {
    store.writer.write(move |conn| {
        let mut trade = trade.clone();
        trade.vip_accountno = resolve_member(conn, &identities, &profile, now)?;
        let posted = create_trade_in(
            conn,
            &rules,
            &trade,
            Replay::unknown(&trade.fingerprint()),
            now,
        )?;
        ledger::external::save(
            conn,
            order.source,
            &order.external_id,
            Some(posted.trade_id),
            &order.status,
            &order.updated_at,
            &order.body,
            now,
        )?;
        Ok(posted)
    })
}

/// Where POS transaction syncs are recorded, and the `resource` of their trades.
pub const TRANSACTION_SYNC_SOURCE: &str = "transaction_sync";

/// Where cblink orders are recorded, and the `resource` of their trades.
pub const CBLINK_SOURCE: &str = "cblink";

/// A cblink order as it arrived, parsed.
#[derive(Debug, Clone)]
pub struct CblinkOrder {
    /// The order's key among the cblink orders: its app and its `tid` (`app_id/tid`).
    pub order_key: String,
    /// The refund that reverses the order's points, should it be closed or refunded.
    pub out_refund_no: crate::domain::OutRefundNo,
    pub status: String,
    pub refund_status: Option<String>,
    /// The update's instant in UTC, `yyyy-mm-ddTHH:MM:SSZ` (fixed width: ordered as text).
    pub updated_at: String,
    pub updated_at_time: chrono::DateTime<chrono::FixedOffset>,
    pub identities: Vec<crate::domain::Identity>,
    pub profile: crate::domain::Profile,
    /// The trade it becomes when it earns (its member filled in here).
    pub trade: Trade,
}

/// What an update of a cblink order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CblinkOutcome {
    /// Older than the last update seen: ignored.
    Stale,
    /// Recorded; its points (if any) are as they were.
    Recorded,
    /// It reached an earning status: its points were granted.
    Granted,
    /// It was closed or refunded after earning: its points were reversed.
    Reversed,
}

/// Applies one update of a cblink order: grants its points when it first reaches an earning
/// status, reverses them (a full refund) when it reaches a reversing one, ignores an update
/// older than the last one seen, and keeps the order's latest state.
pub fn cblink_order(
    store: &Store,
    rules: Arc<Ruleset>,
    app: crate::clients::CblinkApp,
    order: CblinkOrder,
    body: String,
    policy: ShortfallPolicy,
    now: DateTime<Utc>,
) -> Result<CblinkOutcome, ServiceError> {
    let outcome = store
        .writer
        .write(move |conn| cblink_order_in(conn, &rules, &app, &order, &body, policy, now));
    match outcome {
        Err(ServiceError::StaleUpdate) => Ok(CblinkOutcome::Stale),
        other => other,
    }
}

/// `cblink_order` inside a write.
fn cblink_order_in(
    conn: &mut Conn,
    rules: &Ruleset,
    app: &crate::clients::CblinkApp,
    order: &CblinkOrder,
    body: &str,
    policy: ShortfallPolicy,
    now: DateTime<Utc>,
) -> Result<CblinkOutcome, ServiceError> {
    let source = CBLINK_SOURCE;
    // The member's row is locked first (the lock order of every write), so the updates of one
    // order take turns: each reads the state the one before it left.
    let mut trade = order.trade.clone();
    trade.vip_accountno = resolve_member(conn, &order.identities, &order.profile, now)?;
    let existing = ledger::external::find(conn, source, &order.order_key)?;
    if existing
        .as_ref()
        .is_some_and(|e| order.updated_at < e.updated_at)
    {
        // Nothing of this update is kept (the member it reached, if new, included).
        return Err(ServiceError::StaleUpdate);
    }
    let mut trade_id = existing.as_ref().and_then(|e| e.trade_id);
    let mut outcome = CblinkOutcome::Recorded;
    if app.earning_statuses.contains(&order.status) && trade_id.is_none() {
        trade_id = Some(
            create_trade_in(
                conn,
                rules,
                &trade,
                Replay::unknown(&trade.fingerprint()),
                now,
            )?
            .trade_id,
        );
        outcome = CblinkOutcome::Granted;
    }
    if app.reversing_statuses.contains(&order.status) && trade_id.is_some() {
        let refundable = ledger::refund::refundable_trade(conn, &trade.out_trade_no)?
            .ok_or_else(|| ServiceError::TradeNotFound(trade.out_trade_no.to_string()))?;
        let left = refundable.refundable();
        if left != Amount::ZERO {
            let refund = Refund::new(
                order.out_refund_no.clone(),
                trade.out_trade_no.clone(),
                left,
                order.updated_at_time.max(refundable.trade.sales_time),
            );
            refund_in(conn, rules, &refund, policy, now)?;
            outcome = CblinkOutcome::Reversed;
        }
    }
    ledger::external::save(
        conn,
        source,
        &order.order_key,
        trade_id,
        &order.status,
        &order.updated_at,
        body,
        now,
    )?;
    Ok(outcome)
}

/// A card record's key in trade and refund numbers: the first 32 hex digits of SHA-256 over
/// the card code and the serial number. A serial is unique within its card only, and card codes
/// and serials may hold any character, so the two are hashed together rather than joined.
pub fn card_record_key(card_code: &str, serial_no: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(card_code.as_bytes())
        .chain_update([0u8])
        .chain_update(serial_no.as_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The trade that holds an objective completion record's points: `DC-O-<card_record_key>`.
pub fn card_trade_no(card_code: &str, serial_no: &str) -> crate::domain::OutTradeNo {
    crate::domain::OutTradeNo::parse(&format!("DC-O-{}", card_record_key(card_code, serial_no)))
        .expect("37 characters of hex fit an out_trade_no")
}

/// The `resource` of trades that hold objective completions of the discount-card contract.
pub const CARD_SOURCE: &str = "discount_card";

/// One objective completion or reward usage record of the discount-card contract.
#[derive(Debug, Clone)]
pub struct CardRecord {
    pub serial_no: String,
    /// `objective_id` or `reward_id`.
    pub item_id: String,
    pub at: chrono::DateTime<chrono::FixedOffset>,
    pub increase: bool,
    pub count: i64,
    /// Reward usages only.
    pub amount: Option<i64>,
    pub description: String,
    /// The record as sent (canonical JSON): the same serial with another body is refused.
    pub body: String,
}

/// A card's records, as one add-user-records request sends them.
#[derive(Debug, Clone)]
pub struct CardRecords {
    pub card_code: crate::domain::Identity,
    pub card_template_id: String,
    pub objectives: Vec<CardRecord>,
    pub rewards: Vec<CardRecord>,
}

/// Applies a card's records of one signed request, whose `(mchid, nonce, window_s)` is accepted
/// once (`NonceReused` otherwise): each objective completion earns through the ruleset's
/// objectives (INCREASE grants, DECREASE takes back the latest completions' points in
/// proportion), each reward usage is kept. Idempotent on each serial number; a serial seen with
/// another body is `CardRecordConflict`.
pub fn add_card_records(
    store: &Store,
    rules: Arc<Ruleset>,
    (mchid, nonce, window_s): (String, String, i64),
    records: CardRecords,
    policy: ShortfallPolicy,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    store.writer.write(move |conn| {
        if !ledger::card::use_nonce(conn, &mchid, &nonce, now, window_s)? {
            // The same signed request again (a retry that crossed its first answer): every
            // record of it is already kept as sent, so it answers as the first did. Anything
            // else under a used nonce is a replay, refused.
            return match already_recorded(conn, &records)? {
                true => Ok(()),
                false => Err(ServiceError::NonceReused),
            };
        }
        add_card_records_in(conn, &rules, &records, policy, now)
    })
}

/// Whether every record of a request is kept already, with the same body.
fn already_recorded(conn: &mut Conn, records: &CardRecords) -> Result<bool, ServiceError> {
    let card_code = records.card_code.value();
    for (kind, list) in [
        ("objective", &records.objectives),
        ("reward", &records.rewards),
    ] {
        for record in list {
            let kept = ledger::card::find_record(conn, kind, card_code, &record.serial_no)?;
            if kept.as_deref() != Some(record.body.as_str()) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The records of `add_card_records`, inside its write.
fn add_card_records_in(
    conn: &mut Conn,
    rules: &Ruleset,
    records: &CardRecords,
    policy: ShortfallPolicy,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let member = resolve_member(
        conn,
        std::slice::from_ref(&records.card_code),
        &crate::domain::Profile::default(),
        now,
    )?;
    let card_code = records.card_code.value();
    for (kind, list) in [
        ("objective", &records.objectives),
        ("reward", &records.rewards),
    ] {
        for record in list {
            if let Some(body) = ledger::card::find_record(conn, kind, card_code, &record.serial_no)?
            {
                if body != record.body {
                    return Err(ServiceError::CardRecordConflict(record.serial_no.clone()));
                }
                continue;
            }
            let trade_id = if kind == "objective" {
                objective_record(conn, rules, (&member, card_code), record, policy, now)?
            } else {
                None
            };
            ledger::card::insert_record(
                conn,
                &member,
                &ledger::card::NewCardRecord {
                    kind,
                    serial_no: &record.serial_no,
                    card_code,
                    card_template_id: &records.card_template_id,
                    item_id: &record.item_id,
                    increase: record.increase,
                    count: record.count,
                    amount: record.amount,
                    occurred_at: &record.at.to_rfc3339(),
                    body: &record.body,
                    trade_id,
                },
                now,
            )?;
        }
    }
    Ok(())
}

/// One objective completion record: the trade holding its grants (INCREASE), or the refunds
/// taking back the latest completions' points (DECREASE).
fn objective_record(
    conn: &mut Conn,
    rules: &Ruleset,
    (member, card_code): (&VipAccountNo, &str),
    record: &CardRecord,
    policy: ShortfallPolicy,
    now: DateTime<Utc>,
) -> Result<Option<i64>, ServiceError> {
    use crate::domain::{
        CurrencyCode, InvoiceId, ObjectiveId, OutTradeNo, PaymentMethod, Points, StoreCode,
    };
    let corrupt = |e: String| ServiceError::Post(PostError::Corrupt(e));
    let (completions, trades) = ledger::card::objective_history(conn, member, &record.item_id)?;
    if !record.increase {
        // Take back `count` completions, the latest first, each in proportion.
        let mut left = record.count;
        for (i, trade_id) in trades.iter().enumerate() {
            if left == 0 {
                break;
            }
            let Some(out) = ledger::card::out_trade_no_of(conn, *trade_id)? else {
                continue;
            };
            let out = OutTradeNo::parse(&out).map_err(corrupt)?;
            let Some(refundable) = ledger::refund::refundable_trade(conn, &out)? else {
                continue;
            };
            let units = refundable.refundable().to_minor() / 100;
            let take = units.min(left);
            if take == 0 {
                continue;
            }
            let refund = Refund::new(
                crate::domain::OutRefundNo::parse(&format!(
                    "DC-D-{}-{i}",
                    card_record_key(card_code, &record.serial_no)
                ))
                .map_err(corrupt)?,
                out,
                Amount::from_minor(take * 100).map_err(corrupt)?,
                record.at.max(refundable.trade.sales_time),
            );
            refund_in(conn, rules, &refund, policy, now)?;
            left -= take;
        }
        return Ok(None);
    }
    let Ok(objective) = ObjectiveId::parse(&record.item_id) else {
        return Ok(None);
    };
    let at = record.at.to_utc();
    let mut grants: Vec<crate::domain::Grant> = Vec::new();
    for k in 0..record.count {
        if let Some(grant) = rules.objective_grant(&objective, (completions + k) as u64, at) {
            match grants.first_mut() {
                Some(first) => {
                    first.points =
                        Points::new(first.points.value() + grant.points.value()).map_err(corrupt)?
                }
                None => grants.push(grant),
            }
        }
    }
    if grants.is_empty() {
        return Ok(None);
    }
    let amount = Amount::from_minor(record.count * 100).map_err(corrupt)?;
    let trade = Trade {
        vip_accountno: member.clone(),
        out_trade_no: card_trade_no(card_code, &record.serial_no),
        store_code: StoreCode::parse("DISCOUNT-CARD").expect("a valid code"),
        invoice_id: InvoiceId::parse(&record.serial_no).map_err(corrupt)?,
        total_amount: amount,
        payment_amount: amount,
        payment_method: PaymentMethod::parse("DISCOUNT-CARD").expect("a valid method"),
        currency: CurrencyCode::parse(rules.program.base_currency.as_str()).expect("valid"),
        sales_time: record.at,
        submit_time: record.at,
        approval_time: record.at,
        burn_point: Points::ZERO,
        resource: CARD_SOURCE.to_string(),
        remark: crate::domain::trade::parse_free_text(&record.description, Trade::REMARK_LEN_MAX)
            .unwrap_or_default(),
        receipt_image_urls: Vec::new(),
        payment_image_urls: Vec::new(),
        lines: Vec::new(),
        post_fee: Amount::ZERO,
        discount: Amount::ZERO,
    };
    let priced = crate::domain::Priced {
        grants,
        ..crate::domain::Priced::default()
    };
    let price = |_: &crate::domain::MemberContext| Ok(priced.clone());
    let needs = crate::domain::ContextNeeds::default();
    let fingerprint = trade.fingerprint();
    let posted = ledger::post_trade(
        conn,
        &trade,
        Replay::unknown(&fingerprint),
        &needs,
        price,
        &rules.version,
        now,
    )?;
    Ok(Some(posted.trade_id))
}
