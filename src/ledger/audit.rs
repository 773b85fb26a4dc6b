//! Ledger invariants. `post_trade` checks a member's after every write in debug builds; the
//! `audit` command and endpoint check the whole ledger; tests check after every scenario.
//!
//! - each lot: `0 <= remaining <= points`; its entries sum to its remaining; exactly one earn
//!   entry, of its points, from its own trade; at most one expire entry, only if it expires;
//! - each entry: names a lot of its own member;
//! - each trade: its burn entries sum to its `burn_point`;
//! - totals: by point type, the entries sum to the lots' remaining points.

use super::connection::Conn;
use super::models::{EntryRow, LotRow};
use super::repo;
use std::collections::{BTreeMap, HashMap};

/// What an audit found: the counts it read and every violation, one line each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub trades: usize,
    pub lots: usize,
    pub entries: usize,
    pub violations: Vec<String>,
}

impl Report {
    pub fn is_consistent(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The whole ledger.
pub fn audit(conn: &mut Conn) -> Result<Report, diesel::result::Error> {
    let trades = repo::trade_burns(conn, None)?;
    let lots = repo::all_lots(conn, None)?;
    let entries = repo::all_entries(conn, None)?;
    Ok(check(&trades, &lots, &entries))
}

/// One member's part of the ledger, as a list of violations (empty: all hold).
pub fn check_member(conn: &mut Conn, member_id: i64) -> Result<Vec<String>, diesel::result::Error> {
    let trades = repo::trade_burns(conn, Some(member_id))?;
    let lots = repo::all_lots(conn, Some(member_id))?;
    let entries = repo::all_entries(conn, Some(member_id))?;
    Ok(check(&trades, &lots, &entries).violations)
}

/// Every member's invariants, as a list of violations.
pub fn check_all(conn: &mut Conn) -> Result<Vec<String>, diesel::result::Error> {
    Ok(audit(conn)?.violations)
}

#[derive(Default)]
struct LotMovements {
    sum: i64,
    earns: Vec<(i64, Option<i64>)>,
    expires: usize,
}

fn check(trades: &[(i64, i64)], lots: &[LotRow], entries: &[EntryRow]) -> Report {
    let mut violations = Vec::new();
    let lot_by_id: HashMap<i64, &LotRow> = lots.iter().map(|l| (l.id, l)).collect();
    let mut by_lot: BTreeMap<i64, LotMovements> = BTreeMap::new();
    let mut burns_by_trade: HashMap<i64, i64> = HashMap::new();
    let mut entries_by_type: BTreeMap<&str, i64> = BTreeMap::new();
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
            "expire" => movements.expires += 1,
            "burn" => {
                if let Some(trade_id) = entry.trade_id {
                    *burns_by_trade.entry(trade_id).or_default() -= entry.points;
                } else {
                    violations.push(format!("entry {}: a burn with no trade", entry.id));
                }
            }
            _ => {}
        }
        *entries_by_type.entry(lot.point_type.as_str()).or_default() += entry.points;
    }
    let mut remaining_by_type: BTreeMap<&str, i64> = BTreeMap::new();
    for lot in lots {
        *remaining_by_type
            .entry(lot.point_type.as_str())
            .or_default() += lot.remaining;
        if lot.remaining < 0 || lot.remaining > lot.points {
            violations.push(format!(
                "lot {}: remaining {} outside 0..={}",
                lot.id, lot.remaining, lot.points
            ));
        }
        let movements = by_lot.remove(&lot.id).unwrap_or_default();
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
        if movements.expires > 1 || (movements.expires == 1 && lot.expires_at_ms.is_none()) {
            violations.push(format!(
                "lot {}: {} expire entries",
                lot.id, movements.expires
            ));
        }
    }
    for &(trade_id, burn_point) in trades {
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
    if entries_by_type != remaining_by_type {
        violations.push(format!(
            "totals by type: entries {entries_by_type:?}, lots remaining {remaining_by_type:?}"
        ));
    }
    Report {
        trades: trades.len(),
        lots: lots.len(),
        entries: entries.len(),
        violations,
    }
}
