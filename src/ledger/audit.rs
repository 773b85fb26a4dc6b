//! Ledger invariants. `post_trade` checks them in debug builds after every write; tests check
//! them after every scenario.

use super::connection::Conn;
use super::repo;
use std::collections::BTreeMap;

/// The member's invariants, as a list of violations (empty: all hold):
/// - each lot's remaining is within 0..=points and equals the sum of its entries;
/// - each lot has exactly one earn entry, of its points;
/// - the member's entries sum to the member's remaining points.
pub fn check_member(conn: &mut Conn, member_id: i64) -> Result<Vec<String>, diesel::result::Error> {
    let lots = repo::lots_of_member(conn, member_id)?;
    let entries = repo::entries_of_member(conn, member_id)?;
    let mut violations = Vec::new();
    let mut by_lot: BTreeMap<i64, (i64, Vec<i64>)> = BTreeMap::new();
    for entry in &entries {
        let (sum, earns) = by_lot.entry(entry.lot_id).or_default();
        *sum += entry.points;
        if entry.kind == "earn" {
            earns.push(entry.points);
        }
    }
    for lot in &lots {
        if lot.remaining < 0 || lot.remaining > lot.points {
            violations.push(format!(
                "lot {}: remaining {} outside 0..={}",
                lot.id, lot.remaining, lot.points
            ));
        }
        let (sum, earns) = by_lot.remove(&lot.id).unwrap_or_default();
        if sum != lot.remaining {
            violations.push(format!(
                "lot {}: entries sum to {sum}, remaining is {}",
                lot.id, lot.remaining
            ));
        }
        if earns != [lot.points] {
            violations.push(format!(
                "lot {}: earn entries {earns:?}, points are {}",
                lot.id, lot.points
            ));
        }
    }
    for lot_id in by_lot.keys() {
        violations.push(format!(
            "entries of member {member_id} name lot {lot_id}, not the member's"
        ));
    }
    let entries_total: i64 = entries.iter().map(|e| e.points).sum();
    let remaining_total: i64 = lots.iter().map(|l| l.remaining).sum();
    if entries_total != remaining_total {
        violations.push(format!(
            "member {member_id}: entries sum to {entries_total}, lots hold {remaining_total}"
        ));
    }
    Ok(violations)
}

/// Every member's invariants.
pub fn check_all(conn: &mut Conn) -> Result<Vec<String>, diesel::result::Error> {
    let mut violations = Vec::new();
    for member_id in repo::member_ids(conn)? {
        violations.extend(check_member(conn, member_id)?);
    }
    Ok(violations)
}
