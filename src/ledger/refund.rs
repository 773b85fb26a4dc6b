//! Refunds. After a refund a trade keeps what it would have earned at its net amount under the
//! ruleset version that priced it: a grant the net amount no longer earns (below a minimum
//! spend) goes; one it still earns is kept in proportion to the payment left, and never above
//! its re-priced points. The difference is reversed, and a burn is given back in proportion to
//! the amount refunded. Points the member no longer holds follow the `ShortfallPolicy`.

use super::models::{
    EntryRow, LotRow, NewDebtMovement, NewEntry, RefundLineRow, RefundRow, TradeDetailRow,
    TradeLineRow,
};
use super::{connection, expire_from_lot, grant_of_lot, ms, repo, Conn, PostError};
use crate::domain::trade::{parse_free_text, parse_rfc3339};
use crate::domain::{
    Amount, CurrencyCode, Grant, ImageUrl, InvoiceId, OutTradeNo, PaymentMethod, Points, Refund,
    ShortfallPolicy, Sku, StoreCode, Trade, TradeLine, TradeNo, VipAccountNo,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// A trade as the ledger holds it, with what has been refunded of it so far.
#[derive(Debug, Clone)]
pub struct RefundableTrade {
    pub id: i64,
    pub trade_no: TradeNo,
    pub trade: Trade,
    pub ruleset_version: String,
    pub refunded: Amount,
    /// The member's tier it was priced at ("" when no campaign asked).
    pub tier: String,
    /// The campaigns that granted it: only they may grant it when it is priced again.
    pub granted_campaigns: std::collections::HashSet<crate::domain::CampaignCode>,
}

impl RefundableTrade {
    /// The context it is priced again in: as the audit does, only its own campaigns, at the
    /// tier it was priced at.
    pub fn repricing_context(&self) -> crate::domain::MemberContext {
        crate::domain::MemberContext {
            tier: (!self.tier.is_empty()).then(|| self.tier.clone()),
            ..crate::domain::MemberContext::audit(self.granted_campaigns.clone())
        }
    }

    /// What is left of the payment to refund.
    pub fn refundable(&self) -> Amount {
        Amount::from_minor(self.trade.payment_amount.to_minor() - self.refunded.to_minor())
            .expect("refunds never exceed the payment")
    }
}

/// What a refund took back from one grant of its trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundLine {
    /// The grant as the trade earned it.
    pub grant: Grant,
    /// Points the grant lost to this refund.
    pub points: i64,
    /// Of those, what had expired from the grant before the refund was made: they had left the
    /// balance already, so nothing more is taken for them.
    pub expired: i64,
    /// Of those, what the member's points could not cover when the refund was made.
    pub shortfall: i64,
    /// Of the shortfall, what the member still owes (`allow_negative` only).
    pub owed: i64,
}

/// Returned burned points that settled an earlier refund of the trade they had been earned by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The earlier refunded trade.
    pub out_trade_no: String,
    /// Its grant the points had been burned from.
    pub grant: Grant,
    pub points: i64,
}

/// What a refund did (or, for a replay, had done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refunded {
    pub out_refund_no: String,
    pub trade_no: TradeNo,
    pub out_trade_no: String,
    pub refund_amount: Amount,
    /// Every refund of the trade up to and including this one.
    pub refunded_total: Amount,
    pub payment_amount: Amount,
    /// Burned points given back to the member.
    pub burn_returned: i64,
    /// Of `burn_returned`, what settled earlier refunds of the trades the points were earned by
    /// (what those refunds could not take when they were made); the rest is the member's again.
    pub settled: Vec<Settlement>,
    pub policy: ShortfallPolicy,
    pub lines: Vec<RefundLine>,
    pub replayed: bool,
}

impl Refunded {
    pub fn reversed_points(&self) -> i64 {
        self.lines.iter().map(|l| l.points).sum()
    }

    pub fn shortfall_points(&self) -> i64 {
        self.lines.iter().map(|l| l.shortfall).sum()
    }
}

fn corrupt(what: &str, id: i64, problem: String) -> PostError {
    PostError::Corrupt(format!("trade {id} {what}: {problem}"))
}

/// Rebuilds the domain trade from its rows, to price it again.
pub(crate) fn trade_of_row(
    row: &TradeDetailRow,
    vip_accountno: &str,
    lines: &[TradeLineRow],
) -> Result<Trade, PostError> {
    let id = row.id;
    let urls = |what: &str, text: &str| -> Result<Vec<ImageUrl>, PostError> {
        let list: Vec<String> =
            serde_json::from_str(text).map_err(|e| corrupt(what, id, e.to_string()))?;
        list.iter()
            .map(|u| ImageUrl::parse(u).map_err(|e| corrupt(what, id, e)))
            .collect()
    };
    let amount = |what: &str, minor| Amount::from_minor(minor).map_err(|e| corrupt(what, id, e));
    let time = |what: &str, text: &str| parse_rfc3339(text).map_err(|e| corrupt(what, id, e));
    Ok(Trade {
        vip_accountno: VipAccountNo::parse(vip_accountno).map_err(|e| corrupt("vip", id, e))?,
        out_trade_no: OutTradeNo::parse(&row.out_trade_no)
            .map_err(|e| corrupt("out_trade_no", id, e))?,
        store_code: StoreCode::parse(&row.store_code).map_err(|e| corrupt("store", id, e))?,
        invoice_id: InvoiceId::parse(&row.invoice_id).map_err(|e| corrupt("invoice", id, e))?,
        total_amount: amount("total_amount", row.total_amount_minor)?,
        payment_amount: amount("payment_amount", row.payment_amount_minor)?,
        payment_method: PaymentMethod::parse(&row.payment_method)
            .map_err(|e| corrupt("payment_method", id, e))?,
        currency: CurrencyCode::parse(&row.currency).map_err(|e| corrupt("currency", id, e))?,
        sales_time: time("sales_time", &row.sales_time)?,
        submit_time: time("submit_time", &row.submit_time)?,
        approval_time: time("approval_time", &row.approval_time)?,
        burn_point: Points::new(row.burn_point).map_err(|e| corrupt("burn_point", id, e))?,
        resource: parse_free_text(&row.resource, Trade::RESOURCE_LEN_MAX)
            .map_err(|e| corrupt("resource", id, e))?,
        remark: parse_free_text(&row.remark, Trade::REMARK_LEN_MAX)
            .map_err(|e| corrupt("remark", id, e))?,
        receipt_image_urls: urls("receipt_image_urls", &row.receipt_image_urls)?,
        payment_image_urls: urls("payment_image_urls", &row.payment_image_urls)?,
        lines: lines
            .iter()
            .map(|l| {
                let sku = Sku::parse(&l.sku).map_err(|e| corrupt("line sku", id, e))?;
                let amount = amount("line amount", l.amount_minor)?;
                TradeLine::new(sku, &l.name, l.quantity, amount).map_err(|e| corrupt("line", id, e))
            })
            .collect::<Result<_, _>>()?,
        post_fee: amount("post_fee", row.post_fee_minor)?,
        discount: amount("discount", row.discount_minor)?,
    })
}

/// A recorded trade with the points each of its grants was given, as the audit re-prices it.
#[derive(Debug)]
pub struct GrantedTrade {
    pub out_trade_no: String,
    pub resource: String,
    pub ruleset_version: String,
    /// The member's tier it was priced at ("" when no campaign asked).
    pub tier: String,
    /// The trade as it was priced (or why its rows do not make one).
    pub trade: Result<Trade, PostError>,
    /// Points granted per (point type, campaign code; "" for E).
    pub granted: std::collections::BTreeMap<(String, String), i64>,
}

/// Up to `limit` trades after `after_id`, in id order, with their grants: a few reads for the
/// whole batch. The last trade's id, to read on from.
pub fn granted_trades_after(
    conn: &mut Conn,
    after_id: i64,
    limit: i64,
) -> Result<(Vec<GrantedTrade>, Option<i64>), PostError> {
    let rows = repo::trade_details_after(conn, after_id, limit)?;
    let ids: Vec<i64> = rows.iter().map(|(row, _)| row.id).collect();
    let mut lines: HashMap<i64, Vec<TradeLineRow>> = HashMap::new();
    for line in repo::trade_lines_of(conn, &ids)? {
        lines.entry(line.trade_id).or_default().push(line);
    }
    let mut granted: HashMap<i64, std::collections::BTreeMap<(String, String), i64>> =
        HashMap::new();
    for lot in repo::lots_of_trades(conn, &ids)? {
        *granted
            .entry(lot.trade_id)
            .or_default()
            .entry((lot.point_type, lot.campaign_code))
            .or_default() += lot.points;
    }
    let trades = rows
        .iter()
        .map(|(row, vip)| GrantedTrade {
            out_trade_no: row.out_trade_no.clone(),
            resource: row.resource.clone(),
            ruleset_version: row.ruleset_version.clone(),
            tier: row.tier.clone(),
            trade: trade_of_row(row, vip, lines.get(&row.id).map_or(&[], Vec::as_slice)),
            granted: granted.remove(&row.id).unwrap_or_default(),
        })
        .collect();
    Ok((trades, ids.last().copied()))
}

/// The trade with this `out_trade_no` and what was refunded of it; `None` if never posted.
pub fn refundable_trade(
    conn: &mut Conn,
    out_trade_no: &OutTradeNo,
) -> Result<Option<RefundableTrade>, PostError> {
    let Some((row, vip)) = repo::find_trade_detail(conn, out_trade_no.as_str(), true)? else {
        return Ok(None);
    };
    let lines = repo::trade_lines_of(conn, &[row.id])?;
    let refunded: i64 = repo::refunds(conn, Some(row.id))?
        .iter()
        .map(|r| r.refund_amount_minor)
        .sum();
    let granted_campaigns = repo::lots_of_trade(conn, row.id)?
        .into_iter()
        .filter_map(|lot| crate::domain::CampaignCode::parse(&lot.campaign_code).ok())
        .collect();
    Ok(Some(RefundableTrade {
        tier: row.tier.clone(),
        granted_campaigns,
        id: row.id,
        trade_no: TradeNo::parse(&row.trade_no).map_err(PostError::Corrupt)?,
        trade: trade_of_row(&row, &vip, &lines)?,
        ruleset_version: row.ruleset_version.clone(),
        refunded: Amount::from_minor(refunded).map_err(|e| corrupt("refunds", row.id, e))?,
    }))
}

/// What the ledger already answered for this refund: `None` if it was never made,
/// `RefundConflict` if its `out_refund_no` was used with another request.
pub fn replay_refund(conn: &mut Conn, refund: &Refund) -> Result<Option<Refunded>, PostError> {
    let Some(row) = repo::find_refund(conn, refund.out_refund_no.as_str())? else {
        return Ok(None);
    };
    if row.request_fingerprint != refund.fingerprint() {
        return Err(PostError::RefundConflict {
            out_refund_no: row.out_refund_no,
        });
    }
    let Some((trade, _)) = repo::find_trade_detail(conn, refund.out_trade_no.as_str(), true)?
    else {
        return Err(corrupt("refund", row.id, "names no trade".to_string()));
    };
    let refunds = repo::refunds(conn, Some(row.trade_id))?;
    let refunded_total: i64 = refunds
        .iter()
        .filter(|r| r.id <= row.id)
        .map(|r| r.refund_amount_minor)
        .sum();
    let lots: HashMap<i64, LotRow> = repo::lots_of_trade(conn, row.trade_id)?
        .into_iter()
        .map(|l| (l.id, l))
        .collect();
    let policy = ShortfallPolicy::parse(&row.shortfall_policy).map_err(PostError::Corrupt)?;
    let lines = repo::refund_lines(conn, Some(&[row.id]))?
        .iter()
        .map(|line| {
            let lot = lots
                .get(&line.lot_id)
                .ok_or_else(|| corrupt("refund line", line.id, "names no lot".to_string()))?;
            Ok(RefundLine {
                grant: grant_of_lot(lot)?,
                points: line.points,
                expired: line.from_expired,
                shortfall: line.shortfall,
                // What the refund left owing when it was made (`line.owed` is what is still
                // owed, after later lots paid some of it).
                owed: match policy {
                    ShortfallPolicy::AllowNegative => line.shortfall,
                    ShortfallPolicy::RecordShortfall => 0,
                },
            })
        })
        .collect::<Result<_, PostError>>()?;
    let settled = repo::settlements_by_refund(conn, row.id)?;
    let settled_lots: HashMap<i64, LotRow> = repo::lots_by_ids(
        conn,
        &settled.iter().map(|(_, lot, _)| *lot).collect::<Vec<_>>(),
    )?
    .into_iter()
    .map(|l| (l.id, l))
    .collect();
    let settled = settled
        .into_iter()
        .map(|(out_trade_no, lot_id, points)| {
            let lot = settled_lots
                .get(&lot_id)
                .ok_or_else(|| corrupt("settlement", row.id, "names no lot".to_string()))?;
            Ok(Settlement {
                out_trade_no,
                grant: grant_of_lot(lot)?,
                points,
            })
        })
        .collect::<Result<_, PostError>>()?;
    let amount = |minor| Amount::from_minor(minor).map_err(|e| corrupt("refund", row.id, e));
    Ok(Some(Refunded {
        out_refund_no: row.out_refund_no.clone(),
        trade_no: TradeNo::parse(&trade.trade_no).map_err(PostError::Corrupt)?,
        out_trade_no: trade.out_trade_no.clone(),
        refund_amount: amount(row.refund_amount_minor)?,
        refunded_total: amount(refunded_total)?,
        payment_amount: amount(trade.payment_amount_minor)?,
        burn_returned: row.burn_returned,
        settled,
        policy,
        lines,
        replayed: true,
    }))
}

/// Writes one reverse entry against a lot and moves its remaining points by `points`
/// (negative: taken back; positive: a burn given back). Guarded both ways.
fn reverse(
    conn: &mut Conn,
    lot: &LotRow,
    points: i64,
    trade_id: i64,
    refund_id: i64,
    now_ms: i64,
) -> Result<(), PostError> {
    assert_ne!(points, 0, "no empty reversals");
    let moved = if points < 0 {
        repo::take_from_lot(conn, lot.id, -points)?
    } else {
        repo::give_back_to_lot(conn, lot.id, points)?
    };
    if !moved {
        // The member is locked: only another instance's expiry can have changed the lot.
        return Err(PostError::Race);
    }
    let (trade_no, out_trade_no) = repo::trade_numbers_of(conn, trade_id)?;
    repo::insert_entry(
        conn,
        &NewEntry {
            member_id: lot.member_id,
            lot_id: lot.id,
            trade_id: Some(trade_id),
            refund_id: Some(refund_id),
            kind: "reverse",
            points,
            effective_at_ms: now_ms,
            created_at_ms: now_ms,
            point_type: &lot.point_type,
            campaign_code: &lot.campaign_code,
            trade_no: &trade_no,
            out_trade_no: &out_trade_no,
        },
    )?;
    Ok(())
}

/// What a refund takes back from one grant: `due` points, `from_grant` of them from the grant's
/// own lot or `from_expired` from what expired of it. The rest is the shortfall: written off, or
/// owed under allow_negative. No other lot stands in for it, so what a refund takes never
/// depends on what else the member holds when it is made, and refunds end the same in any
/// order, before or after an expiry.
struct ClawBack {
    grant: LotRow,
    due: i64,
    from_grant: i64,
    from_expired: i64,
}

impl ClawBack {
    fn taken(&self) -> i64 {
        self.from_grant + self.from_expired
    }
}

fn is_expired(lot: &LotRow, now_ms: i64) -> bool {
    lot.expires_at_ms.is_some_and(|at| at <= now_ms)
}

/// Records a refund in one write transaction. `refundable` is the trade as the caller read it
/// and `repriced` its grants at the net amount after this refund; if another refund of the
/// trade landed in between, this answers `Race` and the caller prices again.
pub fn post_refund(
    conn: &mut Conn,
    refund: &Refund,
    refundable: &RefundableTrade,
    repriced: &[Grant],
    policy: ShortfallPolicy,
    now: DateTime<Utc>,
) -> Result<Refunded, PostError> {
    connection::write_transaction(conn, |conn| {
        let member_id = repo::find_member_id(conn, refundable.trade.vip_accountno.as_str())?
            .ok_or_else(|| corrupt("member", refundable.id, "is missing".to_string()))?;
        repo::lock_member(conn, member_id)?;
        if let Some(done) = replay_refund(conn, refund)? {
            return Ok(done);
        }
        let trade_id = refundable.id;
        let prior = repo::refunds(conn, Some(trade_id))?;
        let refunded_before: i64 = prior.iter().map(|r| r.refund_amount_minor).sum();
        if refunded_before != refundable.refunded.to_minor() {
            return Err(PostError::Race);
        }
        let payment = refundable.trade.payment_amount.to_minor();
        let amount = refund.refund_amount.to_minor();
        // A trade paid wholly with points has nothing to refund in money: its one refund (of
        // 0) is a full refund, and gives all its burned points back.
        let points_only = payment == 0;
        if points_only && !prior.is_empty() {
            return Err(PostError::RefundedInFull {
                out_trade_no: refundable.trade.out_trade_no.to_string(),
            });
        }
        if amount > payment - refunded_before {
            return Err(PostError::OverRefund {
                requested: refund.refund_amount,
                refundable: refundable.refundable(),
            });
        }
        let refunded_after = refunded_before + amount;
        let now_ms = ms(now);

        // The burn comes back in proportion to the payment refunded (all of it on a full
        // refund), less what earlier refunds gave back.
        let burn_point = refundable.trade.burn_point.value();
        let burn_target = match points_only {
            true => burn_point,
            false => i64::try_from(
                i128::from(burn_point) * i128::from(refunded_after) / i128::from(payment),
            )
            .expect("at most the burn"),
        };
        let burn_returned = burn_target - prior.iter().map(|r| r.burn_returned).sum::<i64>();
        assert!(burn_returned >= 0, "returned burns only grow with refunds");

        let refund_id = repo::insert_refund(
            conn,
            &RefundRow {
                id: 0,
                out_refund_no: refund.out_refund_no.to_string(),
                request_fingerprint: refund.fingerprint(),
                trade_id,
                member_id,
                refund_amount_minor: amount,
                refund_time: refund.refund_time.to_rfc3339(),
                burn_returned,
                shortfall_policy: policy.as_str().to_string(),
                created_at_ms: now_ms,
            },
        )?;

        // Each grant keeps its re-priced points (never more than it had); the rest is due.
        let mut target: HashMap<(&str, &str), i64> = HashMap::new();
        for grant in repriced {
            *target
                .entry((grant.point_type.as_str(), grant.campaign_code_text()))
                .or_default() += grant.points.value();
        }
        let prior_ids: Vec<i64> = prior.iter().map(|r| r.id).collect();
        // Per lot, what earlier refunds took: (due, of it from what had expired).
        let mut before: HashMap<i64, (i64, i64)> = HashMap::new();
        for line in repo::refund_lines(conn, Some(&prior_ids))? {
            let slot = before.entry(line.lot_id).or_default();
            slot.0 += line.points;
            slot.1 += line.from_expired;
        }
        let trade_lots = repo::lots_of_trade(conn, trade_id)?;
        let mut lines: Vec<ClawBack> = Vec::new();
        for lot in &trade_lots {
            // A grant the net amount still earns is kept in proportion to what is left of the
            // payment (a fixed award too), and never above what the net amount earns.
            let share = match points_only {
                true => 0,
                false => {
                    i128::from(lot.points) * i128::from(payment - refunded_after)
                        / i128::from(payment)
                }
            };
            let kept = target
                .get(&(lot.point_type.as_str(), lot.campaign_code.as_str()))
                .copied()
                .unwrap_or(0)
                .min(i64::try_from(share).expect("at most the grant"));
            let (due_before, expired_before) = before.get(&lot.id).copied().unwrap_or_default();
            let due = lot.points - kept - due_before;
            if due <= 0 {
                continue;
            }
            // First from the grant itself, pending or not; once it has expired, from what
            // expired of it (those points left the balance already, so they cover the due as
            // they are), its expiry booked first, at its moment, if the task has not yet.
            let (from_grant, from_expired) = if is_expired(lot, now_ms) {
                if lot.remaining > 0 {
                    let at = lot
                        .expiry_effective_at_ms()
                        .expect("an expired lot has an expiry");
                    if !expire_from_lot(conn, lot, lot.remaining, at, now_ms)? {
                        return Err(PostError::Race);
                    }
                }
                let expired = repo::expired_points(conn, lot.id)? - expired_before;
                (0, due.min(expired))
            } else {
                (due.min(lot.remaining), 0)
            };
            if from_grant > 0 {
                reverse(conn, lot, -from_grant, trade_id, refund_id, now_ms)?;
            }
            lines.push(ClawBack {
                grant: lot.clone(),
                due,
                from_grant,
                from_expired,
            });
        }
        let mut refund_lines = Vec::with_capacity(lines.len());
        for line in lines {
            let shortfall = line.due - line.taken();
            let owed = match policy {
                ShortfallPolicy::AllowNegative => shortfall,
                ShortfallPolicy::RecordShortfall => 0,
            };
            let line_id = repo::insert_refund_line(
                conn,
                &RefundLineRow {
                    id: 0,
                    refund_id,
                    lot_id: line.grant.id,
                    points: line.due,
                    shortfall,
                    owed,
                    from_grant: line.from_grant,
                    from_expired: line.from_expired,
                },
            )?;
            if owed > 0 {
                repo::insert_debt_movement(
                    conn,
                    &NewDebtMovement {
                        refund_line_id: line_id,
                        kind: "owed",
                        points: owed,
                        paid_by_lot_id: None,
                        effective_at_ms: now_ms,
                        created_at_ms: now_ms,
                    },
                )?;
            }
            refund_lines.push(RefundLine {
                grant: grant_of_lot(&line.grant)?,
                points: line.due,
                expired: line.from_expired,
                shortfall,
                owed,
            });
        }

        let settled = give_back_burn(conn, trade_id, refund_id, burn_returned, now_ms)?;

        if cfg!(debug_assertions) {
            let violations = super::audit::check_member(conn, member_id)?;
            assert!(
                violations.is_empty(),
                "ledger invariant broken: {violations:?}"
            );
        }
        let total = |minor| Amount::from_minor(minor).map_err(PostError::Corrupt);
        Ok(Refunded {
            out_refund_no: refund.out_refund_no.to_string(),
            trade_no: refundable.trade_no.clone(),
            out_trade_no: refund.out_trade_no.to_string(),
            refund_amount: refund.refund_amount,
            refunded_total: total(refunded_after)?,
            payment_amount: refundable.trade.payment_amount,
            burn_returned,
            settled,
            policy,
            lines: refund_lines,
            replayed: false,
        })
    })
}

/// Gives `points` of a trade's burn back to the lots it took them from, the last taken first.
/// A lot whose own trade was refunded meanwhile settles that refund first (`settle`): the
/// returned points go where that refund could not take them from the lot, and only the rest
/// stays. A lot that has expired since gets the rest back and loses it at once to an expiry
/// effective now, so the return shows and the balance never counts expired points.
fn give_back_burn(
    conn: &mut Conn,
    trade_id: i64,
    refund_id: i64,
    points: i64,
    now_ms: i64,
) -> Result<Vec<Settlement>, PostError> {
    let mut settled = Vec::new();
    if points == 0 {
        return Ok(settled);
    }
    let entries = repo::entries_of_trade(conn, trade_id)?;
    // Per lot the trade burned from: (last burn entry id, burned).
    let mut burned: HashMap<i64, (i64, i64)> = HashMap::new();
    for entry in &entries {
        let EntryRow {
            id, lot_id, points, ..
        } = *entry;
        if entry.kind == "burn" {
            let slot = burned.entry(lot_id).or_default();
            slot.0 = slot.0.max(id);
            slot.1 -= points;
        }
    }
    // Earlier refunds gave back the same way, the last taken first: what each lot has had back
    // is that order filled with what they gave (this refund's row is written already).
    let mut earlier: i64 = repo::refunds(conn, Some(trade_id))?
        .iter()
        .map(|r| r.burn_returned)
        .sum::<i64>()
        - points;
    let mut order: Vec<(i64, i64, i64, i64)> = burned
        .into_iter()
        .map(|(lot, (last, b))| (last, lot, b, 0))
        .collect();
    order.sort_unstable_by(|a, b| b.cmp(a));
    for (_, _, burned, returned) in order.iter_mut() {
        *returned = earlier.min(*burned);
        earlier -= *returned;
    }
    let lot_ids: Vec<i64> = order.iter().map(|o| o.1).collect();
    let lots: HashMap<i64, LotRow> = repo::lots_by_ids(conn, &lot_ids)?
        .into_iter()
        .map(|l| (l.id, l))
        .collect();
    let mut left = points;
    for (_, lot_id, burned, returned) in order {
        if left == 0 {
            break;
        }
        let give = left.min(burned - returned);
        if give <= 0 {
            continue;
        }
        settled.extend(give_back(
            conn,
            &lots[&lot_id],
            give,
            (trade_id, refund_id),
            refund_id,
            now_ms,
        )?);
        left -= give;
    }
    assert_eq!(left, 0, "a trade gives back no more than it burned");
    Ok(settled)
}

/// Gives `points` back to `lot` for refund `refund_id` of trade `trade_id` (a burn returned, a
/// debt payment given back, or points that stood in for a grant under an older release): they
/// first settle what refunds of the lot's own trade could not take from it, and what is left
/// stays (it pays no other debt: that would depend on whether the debt came first). A lot that
/// has expired since loses what is left at once to an expiry effective now, so the return
/// shows and the balance never counts expired points. What was settled, each settlement
/// recorded as made by `returning_refund_id` (the refund being posted, whose answer lists them).
fn give_back(
    conn: &mut Conn,
    lot: &LotRow,
    points: i64,
    (trade_id, refund_id): (i64, i64),
    returning_refund_id: i64,
    now_ms: i64,
) -> Result<Vec<Settlement>, PostError> {
    reverse(conn, lot, points, trade_id, refund_id, now_ms)?;
    let (taken, settled) = settle(conn, lot, points, returning_refund_id, now_ms)?;
    let kept = points - taken;
    if kept > 0 && is_expired(lot, now_ms) && !expire_from_lot(conn, lot, kept, now_ms, now_ms)? {
        return Err(PostError::Corrupt(format!("lot {} lost points", lot.id)));
    }
    Ok(settled)
}

/// Burned points just given back to `lot` (`returned` of them, by refund `returning_refund_id`)
/// first settle what refunds of the lot's own trade could not take from it: those refunds take
/// them now, and in return pay the line's debt, give back what later lots paid of it, give
/// back what other lots stood in with (refunds of older releases), and recover what was written
/// off. So a refund finds the
/// same points whichever of the trades is refunded first. The points taken from `lot`, and
/// every settlement made (the lots that stood in may settle refunds of their own in turn).
fn settle(
    conn: &mut Conn,
    lot: &LotRow,
    returned: i64,
    returning_refund_id: i64,
    now_ms: i64,
) -> Result<(i64, Vec<Settlement>), PostError> {
    // In the order they are recorded (a nested one before the settlement that made it), so a
    // replay's answer, read back in that order, lists them as the first answer did.
    let mut settled = Vec::new();
    let mut settled_points = 0;
    for (line, (refund_trade_id, out_trade_no), done) in repo::refund_lines_of_lot(conn, lot.id)? {
        let open = line.points - line.from_grant - line.from_expired - done;
        let points = open.min(returned - settled_points);
        if points <= 0 {
            continue;
        }
        reverse(conn, lot, -points, refund_trade_id, line.refund_id, now_ms)?;
        let mut left = points;
        // Read again: a lot that stood in for an earlier line may have paid this one's debt.
        let owed = repo::refund_line_owed(conn, line.id)?;
        let pay = left.min(owed);
        if pay > 0 {
            if !repo::pay_owed(conn, line.id, pay)? {
                return Err(PostError::Race);
            }
            repo::insert_debt_movement(
                conn,
                &NewDebtMovement {
                    refund_line_id: line.id,
                    kind: "paid",
                    points: pay,
                    paid_by_lot_id: Some(lot.id),
                    effective_at_ms: now_ms,
                    created_at_ms: now_ms,
                },
            )?;
            left -= pay;
        }
        let (payments, takes) = repo::restorable_of_line(conn, &line)?;
        for (is_payment, (row_id, lot_id, open)) in payments
            .into_iter()
            .map(|p| (true, p))
            .chain(takes.into_iter().map(|t| (false, t)))
        {
            let give = left.min(open);
            if give == 0 {
                break;
            }
            let stood_in = repo::lots_by_ids(conn, &[lot_id])?
                .pop()
                .ok_or_else(|| PostError::Corrupt(format!("lot {lot_id} is missing")))?;
            let marked = match is_payment {
                true => repo::restore_debt_payment(conn, row_id, give)?,
                false => repo::restore_take(conn, row_id, give)?,
            };
            if !marked {
                return Err(PostError::Race);
            }
            // The lot that stood in gets them back as a returned burn would.
            settled.extend(give_back(
                conn,
                &stood_in,
                give,
                (refund_trade_id, line.refund_id),
                returning_refund_id,
                now_ms,
            )?);
            left -= give;
        }
        // What is left was written off (record_shortfall): recovered.
        repo::insert_refund_settlement(conn, line.id, returning_refund_id, points, now_ms)?;
        settled_points += points;
        settled.push(Settlement {
            out_trade_no,
            grant: grant_of_lot(lot)?,
            points,
        });
    }
    Ok((settled_points, settled))
}

/// Pays what a member owes from refunds (`allow_negative`) out of new lots, oldest debt first.
/// Each payment is a reverse entry of the refund that left the debt.
pub(super) fn pay_debts(
    conn: &mut Conn,
    member_id: i64,
    new_lot_ids: &[i64],
    now_ms: i64,
) -> Result<(), PostError> {
    let debts = repo::owed_lines(conn, member_id)?;
    if debts.is_empty() {
        return Ok(());
    }
    let mut lots = repo::lots_by_ids(conn, new_lot_ids)?;
    lots.sort_by_key(|l| l.id);
    let mut lots = lots.into_iter().peekable();
    for (line, refund_trade_id) in debts {
        let mut owed = line.owed;
        while owed > 0 {
            let Some(lot) = lots.peek_mut() else {
                return Ok(());
            };
            let take = owed.min(lot.remaining);
            if take > 0 {
                reverse(conn, lot, -take, refund_trade_id, line.refund_id, now_ms)?;
                if !repo::pay_owed(conn, line.id, take)? {
                    return Err(PostError::Corrupt(format!(
                        "refund line {} owes less than {take}",
                        line.id
                    )));
                }
                repo::insert_debt_movement(
                    conn,
                    &NewDebtMovement {
                        refund_line_id: line.id,
                        kind: "paid",
                        points: take,
                        paid_by_lot_id: Some(lot.id),
                        effective_at_ms: now_ms,
                        created_at_ms: now_ms,
                    },
                )?;
                lot.remaining -= take;
                owed -= take;
            }
            if lot.remaining == 0 {
                lots.next();
            }
        }
    }
    Ok(())
}
