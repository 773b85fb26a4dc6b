//! Ledger invariants. `post_trade` checks a member's after every write in debug builds; the
//! `audit` command and endpoint check the whole ledger; tests check after every scenario.
//!
//! - each lot: `0 <= remaining <= points`; its entries sum to its remaining; exactly one earn
//!   entry, of its points, from its own trade; at most one expire entry, only if it expires;
//!   expire entries only on a lot that expires, none effective before its expiry;
//! - each entry: names a lot of its own member; a reverse names a refund of its trade;
//! - each trade: its burn entries sum to its `burn_point`; its refunds take at most its
//!   payment and give back at most its burn;
//! - each refund: its negative reverse entries are what its lines took (due less shortfall,
//!   plus debts paid since under allow_negative), its positive ones are its `burn_returned`;
//!   points are owed (a negative balance) only under allow_negative; a grant loses no more to
//!   refunds than it was granted; what a refund line owes is what its debt movements owed less
//!   what they paid (the reports read the movements);
//! - each campaign budget: what it has used is what its campaign's lots were granted;
//! - totals: by point type, the entries sum to the lots' remaining points.

use super::connection::Conn;
use super::models::{DebtMovementRow, EntryRow, LotRow, RefundLineRow, RefundRow};
use super::repo;
use crate::domain::ProgramTz;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// What an audit found: the counts it read and every violation, one line each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub trades: usize,
    pub refunds: usize,
    pub lots: usize,
    pub entries: usize,
    pub violations: Vec<String>,
}

impl Report {
    pub fn is_consistent(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Members an audit reads at a time: it holds one batch of members' rows, whatever the
/// ledger's size.
pub const MEMBERS_PER_BATCH: i64 = 500;

/// The rows an audit reads for members `first..=last`: their trades, lots, refunds (with their
/// lines and debt movements) and the entries of their lots.
struct Rows {
    /// (id, burn_point, payment in minor units, sales instant in ms).
    trades: Vec<(i64, i64, i64, i64)>,
    lots: Vec<LotRow>,
    entries: Vec<EntryRow>,
    refunds: Vec<RefundRow>,
    lines: Vec<RefundLineRow>,
    /// The debt movements of those lines.
    debts: Vec<DebtMovementRow>,
    /// (refund line, points, restored) of what other lots stood in with for those lines.
    takes: Vec<(i64, i64, i64)>,
    /// (refund line, points) of what returned burns settled of those lines.
    settlements: Vec<(i64, i64)>,
    /// Those members' entries that do not show what their lot and trade hold.
    misshown: Vec<i64>,
}

fn read(conn: &mut Conn, members: (i64, i64)) -> Result<Rows, diesel::result::Error> {
    Ok(Rows {
        trades: repo::trade_burns(conn, members)?,
        lots: repo::member_lots(conn, members)?,
        entries: repo::member_lot_entries(conn, members)?,
        refunds: repo::member_refunds(conn, members)?,
        lines: repo::member_refund_lines(conn, members)?,
        debts: repo::member_debt_movements(conn, members)?,
        takes: repo::member_refund_takes(conn, members)?,
        settlements: repo::member_refund_settlements(conn, members)?,
        misshown: repo::misshown_entries(conn, members)?,
    })
}

/// What every campaign budget has used: (campaign, used) of whole budgets and (campaign, period,
/// used) of per-day and per-month ones.
struct Budgets {
    whole: Vec<(String, i64)>,
    periods: Vec<(String, String, i64)>,
}

/// What the checks sum across batches, compared once every batch is read.
#[derive(Default)]
struct Totals {
    trades: usize,
    refunds: usize,
    lots: usize,
    entries: usize,
    entries_by_type: BTreeMap<String, i64>,
    remaining_by_type: BTreeMap<String, i64>,
    granted_by_campaign: HashMap<String, i64>,
    /// By (campaign, local day or month of the sale): what per-period budgets are checked
    /// against.
    granted_by_campaign_period: HashMap<(String, String), i64>,
    /// The campaigns with per-period budgets: only their lots are summed by period.
    period_budgeted: std::collections::HashSet<String>,
}

impl Totals {
    /// The whole-ledger checks: the totals by type, and (given) each campaign budget against
    /// what its campaign's lots were granted.
    fn violations(&self, budgets: Option<&Budgets>) -> Vec<String> {
        let mut violations = Vec::new();
        let (budgets, periods) = match budgets {
            Some(b) => (Some(&b.whole[..]), &b.periods[..]),
            None => (None, &[][..]),
        };
        for (code, period, used) in periods {
            let points = self
                .granted_by_campaign_period
                .get(&(code.clone(), period.clone()))
                .copied()
                .unwrap_or(0);
            if *used != points {
                violations.push(format!(
                    "budget of campaign {code} for {period}: {used} used, its lots of sales then hold {points} granted points"
                ));
            }
        }
        for (code, used) in budgets.unwrap_or_default() {
            let points = self
                .granted_by_campaign
                .get(code.as_str())
                .copied()
                .unwrap_or(0);
            if *used != points {
                violations.push(format!(
                    "budget of campaign {code}: {used} used, its lots hold {points} granted points"
                ));
            }
        }
        if self.entries_by_type != self.remaining_by_type {
            violations.push(format!(
                "totals by type: entries {:?}, lots remaining {:?}",
                self.entries_by_type, self.remaining_by_type
            ));
        }
        violations
    }
}

/// The whole ledger, times in violations shown in UTC.
pub fn audit(conn: &mut Conn) -> Result<Report, diesel::result::Error> {
    audit_in(conn, &ProgramTz::UTC)
}

/// The whole ledger, times in violations shown in `zone` (the program's).
pub fn audit_in(conn: &mut Conn, zone: &ProgramTz) -> Result<Report, diesel::result::Error> {
    audit_in_batches(conn, zone, MEMBERS_PER_BATCH)
}

/// `audit_in`, reading `members_per_batch` members at a time, all from one snapshot (checks
/// read in separate statements would see writes landing in between).
pub fn audit_in_batches(
    conn: &mut Conn,
    zone: &ProgramTz,
    members_per_batch: i64,
) -> Result<Report, diesel::result::Error> {
    super::connection::read_snapshot(conn, |conn| {
        let budgets = Budgets {
            whole: repo::all_budgets(conn)?,
            periods: repo::all_budget_periods(conn)?,
        };
        let mut totals = Totals {
            period_budgeted: budgets.periods.iter().map(|p| p.0.clone()).collect(),
            ..Totals::default()
        };
        let mut violations = Vec::new();
        let mut after_id = 0;
        loop {
            let ids = repo::member_ids_after(conn, after_id, members_per_batch)?;
            let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
                break;
            };
            after_id = last;
            violations.extend(check(&read(conn, (first, last))?, zone, &mut totals));
        }
        violations.extend(totals.violations(Some(&budgets)));
        Ok(Report {
            trades: totals.trades,
            refunds: totals.refunds,
            lots: totals.lots,
            entries: totals.entries,
            violations,
        })
    })
}

/// One member's part of the ledger, as a list of violations (empty: all hold).
pub fn check_member(conn: &mut Conn, member_id: i64) -> Result<Vec<String>, diesel::result::Error> {
    let mut totals = Totals::default();
    let rows = read(conn, (member_id, member_id))?;
    let mut violations = check(&rows, &ProgramTz::UTC, &mut totals);
    violations.extend(totals.violations(None));
    Ok(violations)
}

/// Every member's invariants, as a list of violations.
pub fn check_all(conn: &mut Conn) -> Result<Vec<String>, diesel::result::Error> {
    Ok(audit(conn)?.violations)
}

#[derive(Default)]
struct LotMovements {
    sum: i64,
    earns: Vec<(i64, Option<i64>)>,
    /// Effective moments of its expire entries.
    expires: Vec<i64>,
    expired_points: i64,
}

/// Checks one batch of members' rows, adding to `totals` what is compared across batches.
fn check(rows: &Rows, zone: &ProgramTz, totals: &mut Totals) -> Vec<String> {
    let Rows {
        trades,
        lots,
        entries,
        refunds,
        lines,
        debts,
        takes,
        settlements,
        misshown,
    } = rows;
    let mut violations: Vec<String> = misshown
        .iter()
        .map(|id| {
            format!("entry {id}: does not show its lot's point type and campaign and its trade's numbers")
        })
        .collect();
    // Per refund: (points its negative reverse entries took, points its positive ones gave).
    let mut reversed_by_refund: HashMap<i64, (i64, i64)> = HashMap::new();
    let lot_by_id: HashMap<i64, &LotRow> = lots.iter().map(|l| (l.id, l)).collect();
    let sold_at_of: HashMap<i64, i64> = trades.iter().map(|t| (t.0, t.3)).collect();
    let mut by_lot: BTreeMap<i64, LotMovements> = BTreeMap::new();
    let mut burns_by_trade: HashMap<i64, i64> = HashMap::new();
    for entry in entries {
        let Some(lot) = lot_by_id.get(&entry.lot_id) else {
            violations.push(format!(
                "entry {}: names lot {}, which does not exist",
                entry.id, entry.lot_id
            ));
            continue;
        };
        if entry.member_id != lot.member_id {
            violations.push(format!(
                "entry {}: member {} but lot {} belongs to member {}",
                entry.id, entry.member_id, lot.id, lot.member_id
            ));
        }
        let movements = by_lot.entry(entry.lot_id).or_default();
        movements.sum += entry.points;
        match entry.kind.as_str() {
            "earn" => movements.earns.push((entry.points, entry.trade_id)),
            "expire" => {
                movements.expires.push(entry.effective_at_ms);
                movements.expired_points -= entry.points;
            }
            "reverse" => {
                let refund = entry.refund_id.unwrap_or_default();
                let slot = reversed_by_refund.entry(refund).or_default();
                if entry.points < 0 {
                    slot.0 -= entry.points;
                } else {
                    slot.1 += entry.points;
                }
            }
            "burn" => {
                if let Some(trade_id) = entry.trade_id {
                    *burns_by_trade.entry(trade_id).or_default() -= entry.points;
                } else {
                    violations.push(format!("entry {}: a burn with no trade", entry.id));
                }
            }
            _ => {}
        }
        *totals
            .entries_by_type
            .entry(lot.point_type.clone())
            .or_default() += entry.points;
    }
    // Per lot, what refunds took from its expired points.
    let mut from_expired: HashMap<i64, i64> = HashMap::new();
    for line in lines {
        *from_expired.entry(line.lot_id).or_default() += line.from_expired;
    }
    for lot in lots {
        *totals
            .remaining_by_type
            .entry(lot.point_type.clone())
            .or_default() += lot.remaining;
        *totals
            .granted_by_campaign
            .entry(lot.campaign_code.clone())
            .or_default() += lot.points;
        if totals.period_budgeted.contains(&lot.campaign_code) {
            if let Some(sold_at) = sold_at_of
                .get(&lot.trade_id)
                .and_then(|&ms| chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms))
            {
                let day = zone.local_date(sold_at);
                for period in [day.format("%Y-%m-%d"), day.format("%Y-%m")] {
                    *totals
                        .granted_by_campaign_period
                        .entry((lot.campaign_code.clone(), period.to_string()))
                        .or_default() += lot.points;
                }
            }
        }
        if lot.remaining < 0 || lot.remaining > lot.points {
            violations.push(format!(
                "lot {}: remaining {} outside 0..={}",
                lot.id, lot.remaining, lot.points
            ));
        }
        let movements = by_lot.remove(&lot.id).unwrap_or_default();
        let refunded_expired = from_expired.get(&lot.id).copied().unwrap_or(0);
        if refunded_expired > movements.expired_points {
            violations.push(format!(
                "lot {}: refunds took {refunded_expired} of its expired points, it expired {}",
                lot.id, movements.expired_points
            ));
        }
        if movements.sum != lot.remaining {
            violations.push(format!(
                "lot {}: entries sum to {}, remaining is {}",
                lot.id, movements.sum, lot.remaining
            ));
        }
        if movements.earns != [(lot.points, Some(lot.trade_id))] {
            violations.push(format!(
                "lot {}: earn entries (points, trade) {:?}, expected [({}, Some({}))]",
                lot.id, movements.earns, lot.points, lot.trade_id
            ));
        }
        // Booked at the end of the last usable day: the millisecond before the expiry instant.
        let early = |at: &i64| lot.expires_at_ms.is_none_or(|expiry| *at < expiry - 1);
        if movements.expires.iter().any(early) {
            let at = |ms: i64| {
                DateTime::<Utc>::from_timestamp_millis(ms)
                    .map_or_else(|| format!("{ms} ms"), |t| zone.readable(t))
            };
            let booked: Vec<String> = movements.expires.iter().map(|ms| at(*ms)).collect();
            let usable = lot.expires_at_ms.map_or_else(
                || "it never expires".to_string(),
                |ms| format!("it is usable until {}", at(ms)),
            );
            violations.push(format!(
                "lot {}: expired at {}, but {usable}",
                lot.id,
                booked.join(", ")
            ));
        }
    }
    let extras = line_extras(lines, debts, takes, settlements, &mut violations);
    check_refunds(
        trades,
        lots,
        refunds,
        lines,
        &extras,
        &reversed_by_refund,
        &mut violations,
    );
    check_debts(lines, debts, &mut violations);
    for &(trade_id, burn_point, _, _) in trades {
        let burned = burns_by_trade.remove(&trade_id).unwrap_or(0);
        if burned != burn_point {
            violations.push(format!(
                "trade {trade_id}: burn entries take {burned}, burn_point is {burn_point}"
            ));
        }
    }
    for (trade_id, burned) in burns_by_trade {
        violations.push(format!(
            "burn entries of {burned} points name trade {trade_id}, which does not exist"
        ));
    }
    totals.trades += trades.len();
    totals.refunds += refunds.len();
    totals.lots += lots.len();
    totals.entries += entries.len();
    violations
}

/// What moved a refund line's points after its refund was made.
#[derive(Default)]
struct LineExtras {
    /// Taken from other lots when the refund was made (allow_negative), and given back since.
    taken_elsewhere: i64,
    restored: i64,
    /// Debt paid by later lots (not by burns returned to the grant's lot).
    paid_by_later: i64,
    /// Settled by burns returned to the grant's lot.
    settled: i64,
}

/// Per refund line, what its takes, debt movements and settlements moved; and each line's
/// takes and settlements within its points.
fn line_extras(
    lines: &[RefundLineRow],
    debts: &[DebtMovementRow],
    takes: &[(i64, i64, i64)],
    settlements: &[(i64, i64)],
    violations: &mut Vec<String>,
) -> HashMap<i64, LineExtras> {
    let lot_of_line: HashMap<i64, i64> = lines.iter().map(|l| (l.id, l.lot_id)).collect();
    let mut extras: HashMap<i64, LineExtras> = HashMap::new();
    for &(line, points, restored) in takes {
        let slot = extras.entry(line).or_default();
        slot.taken_elsewhere += points;
        slot.restored += restored;
    }
    for debt in debts {
        let slot = extras.entry(debt.refund_line_id).or_default();
        slot.restored += debt.restored;
        let by_later = debt.paid_by_lot_id != lot_of_line.get(&debt.refund_line_id).copied();
        if debt.kind == "paid" && by_later {
            slot.paid_by_later += debt.points;
        }
    }
    for &(line, points) in settlements {
        extras.entry(line).or_default().settled += points;
    }
    for line in lines {
        let extra = extras.get(&line.id);
        let (elsewhere, settled) = extra.map_or((0, 0), |e| (e.taken_elsewhere, e.settled));
        if line.from_grant + line.from_expired + elsewhere != line.points - line.shortfall {
            violations.push(format!(
                "refund line {}: took {} from its grant, {} from what expired of it and \
                 {elsewhere} elsewhere, {} of {} due",
                line.id,
                line.from_grant,
                line.from_expired,
                line.points - line.shortfall,
                line.points
            ));
        }
        let not_from_grant = line.points - line.from_grant - line.from_expired;
        if settled > not_from_grant {
            violations.push(format!(
                "refund line {}: returned burns settled {settled}, more than the \
                 {not_from_grant} it did not take from its grant",
                line.id,
            ));
        }
    }
    extras
}

/// Each refund line owes what its debt movements owed less what they paid.
fn check_debts(lines: &[RefundLineRow], debts: &[DebtMovementRow], violations: &mut Vec<String>) {
    let mut by_line: BTreeMap<i64, i64> = BTreeMap::new();
    for debt in debts {
        *by_line.entry(debt.refund_line_id).or_default() += match debt.kind.as_str() {
            "owed" => debt.points,
            _ => -debt.points,
        };
    }
    // (A movement always names a line: the foreign key holds it.)
    for line in lines {
        let moved = by_line.get(&line.id).copied().unwrap_or(0);
        if moved != line.owed {
            violations.push(format!(
                "refund line {}: owes {}, its debt movements leave {moved}",
                line.id, line.owed
            ));
        }
    }
}

fn check_refunds(
    trades: &[(i64, i64, i64, i64)],
    lots: &[LotRow],
    refunds: &[RefundRow],
    lines: &[RefundLineRow],
    extras: &HashMap<i64, LineExtras>,
    reversed_by_refund: &HashMap<i64, (i64, i64)>,
    violations: &mut Vec<String>,
) {
    let mut lines_by_refund: HashMap<i64, Vec<&RefundLineRow>> = HashMap::new();
    let mut due_by_lot: HashMap<i64, i64> = HashMap::new();
    for line in lines {
        lines_by_refund
            .entry(line.refund_id)
            .or_default()
            .push(line);
        *due_by_lot.entry(line.lot_id).or_default() += line.points;
    }
    let mut by_trade: HashMap<i64, (i64, i64)> = HashMap::new();
    for refund in refunds {
        let slot = by_trade.entry(refund.trade_id).or_default();
        slot.0 += refund.refund_amount_minor;
        slot.1 += refund.burn_returned;
        let allow_negative = refund.shortfall_policy == "allow_negative";
        let mut taken = 0;
        let mut given = refund.burn_returned;
        for line in lines_by_refund.remove(&refund.id).unwrap_or_default() {
            if line.shortfall < 0 || line.shortfall > line.points {
                violations.push(format!(
                    "refund line {}: shortfall {} outside 0..={}",
                    line.id, line.shortfall, line.points
                ));
            }
            if line.owed < 0 || line.owed > line.shortfall || (line.owed > 0 && !allow_negative) {
                violations.push(format!(
                    "refund line {}: owes {} of a shortfall of {} under {}",
                    line.id, line.owed, line.shortfall, refund.shortfall_policy
                ));
            }
            // When the refund was made, then from later lots paying its debt, then from
            // returned burns settling it; and given back to the lots that stood in.
            taken += line.points - line.shortfall - line.from_expired;
            if let Some(extra) = extras.get(&line.id) {
                taken += extra.paid_by_later + extra.settled;
                given += extra.restored;
            }
        }
        let (took, gave) = reversed_by_refund
            .get(&refund.id)
            .copied()
            .unwrap_or_default();
        if took != taken || gave != given {
            violations.push(format!(
                "refund {}: reverse entries take {took} and give {gave}, its lines take {taken} \
                 and it gave back {given} points ({} of them burned)",
                refund.id, refund.burn_returned
            ));
        }
    }
    for (refund_id, lines) in lines_by_refund {
        violations.push(format!(
            "{} refund lines name refund {refund_id}, which does not exist",
            lines.len()
        ));
    }
    let refund_ids: std::collections::HashSet<i64> = refunds.iter().map(|r| r.id).collect();
    for refund_id in reversed_by_refund.keys() {
        if !refund_ids.contains(refund_id) {
            violations.push(format!(
                "reverse entries name refund {refund_id}, which does not exist"
            ));
        }
    }
    for &(trade_id, burn_point, payment, _) in trades {
        let (refunded, returned) = by_trade.get(&trade_id).copied().unwrap_or_default();
        if refunded > payment || returned > burn_point {
            violations.push(format!(
                "trade {trade_id}: refunds take {refunded} of a payment of {payment} and give \
                 back {returned} of a burn of {burn_point}"
            ));
        }
    }
    for lot in lots {
        let due = due_by_lot.get(&lot.id).copied().unwrap_or(0);
        if due > lot.points {
            violations.push(format!(
                "lot {}: refunds take {due} of a grant of {}",
                lot.id, lot.points
            ));
        }
    }
}
