//! New receipts posted together: on PostgreSQL a writer lane posts every waiting receipt whose
//! price reads nothing of its member's in three statements for the whole group, where alone
//! each costs two or three (`post_trade`). A statement costs PostgreSQL its start (planning
//! the executor, parsing the tables' checks again) and a round trip whatever it writes: per
//! receipt they were most of its CPU (profiled: see docs/performance.md).

use super::models::NewLot;
use super::{line_rows, lot_rows, ms, repo, trade_row, Conn, PostError, Posted, TradeRowOf};
use crate::domain::{Fingerprint, Grant, Points, Trade, TradeNo};
use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// A new receipt priced before its write: its price read nothing of its member's (no member
/// condition, cap or budget: `ContextNeeds` empty) and it burns nothing, so what it writes is
/// known before the ledger is read. A read just found its `out_trade_no` unrecorded.
pub struct PricedReceipt {
    pub trade: Trade,
    pub fingerprint: Fingerprint,
    pub grants: Vec<Grant>,
    pub tier: Option<String>,
    pub ruleset_version: String,
    pub now: DateTime<Utc>,
}

/// Posts `receipts` in one transaction already open (a writer lane's), as `post_trade` would one
/// after another, and answers each one's outcome, or `None` for one to post alone after (its
/// new member was inserted meanwhile by another writer). A receipt whose `out_trade_no` came
/// earlier in `receipts` replays the first (or, with another request, conflicts with it).
///
/// Their members' rows are locked first, in id order; new members are inserted, in account
/// order. A member whose balance the receipts would take over `Points::MAX` fails the whole
/// call (`BalanceLimit`): the writer then posts each receipt alone, and only that one fails.
pub fn post_receipts(
    conn: &mut Conn,
    receipts: &[&PricedReceipt],
) -> Result<Vec<Option<Result<Posted, PostError>>>, PostError> {
    let mut posted: Vec<Option<Result<Posted, PostError>>> = Vec::new();
    posted.resize_with(receipts.len(), || None);
    let Conn::Postgres(c) = conn else {
        return Ok(posted);
    };
    // The first receipt of each `out_trade_no`, and the copies of each (answered once it is
    // posted).
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut copies: Vec<(usize, usize)> = Vec::new();
    let mut together: Vec<usize> = Vec::with_capacity(receipts.len());
    for (i, receipt) in receipts.iter().enumerate() {
        match first_of.entry(receipt.trade.out_trade_no.as_str()) {
            Entry::Vacant(vacant) => {
                vacant.insert(i);
                together.push(i);
            }
            Entry::Occupied(first) => copies.push((i, *first.get())),
        }
    }
    let vip = |i: usize| receipts[i].trade.vip_accountno.as_str();
    let mut vips: Vec<&str> = together.iter().map(|&i| vip(i)).collect();
    vips.sort_unstable();
    vips.dedup();
    let mut members: HashMap<String, i64> = repo::lock_members_pg(c, &vips)?
        .into_iter()
        .map(|(id, vip)| (vip, id))
        .collect();
    let new_members: Vec<&str> = vips
        .iter()
        .copied()
        .filter(|vip| !members.contains_key(*vip))
        .collect();
    if !new_members.is_empty() {
        let first_seen_ms: Vec<i64> = new_members
            .iter()
            .map(|new| {
                let first = together.iter().find(|&&i| vip(i) == *new);
                ms(receipts[*first.expect("a receipt of each member")].now)
            })
            .collect();
        members.extend(
            repo::insert_members_pg(c, &new_members, &first_seen_ms)?
                .into_iter()
                .map(|(id, vip)| (vip, id)),
        );
    }
    together.retain(|&i| members.contains_key(vip(i)));
    if together.is_empty() {
        return Ok(posted);
    }
    let trade_nos: Vec<TradeNo> = together
        .iter()
        .map(|&i| TradeNo::mint(&receipts[i].trade.out_trade_no, receipts[i].now))
        .collect();
    let lines: Vec<Vec<_>> = together
        .iter()
        .map(|&i| line_rows(&receipts[i].trade))
        .collect();
    let lots: Vec<Vec<NewLot>> = together
        .iter()
        .map(|&i| {
            let r = receipts[i];
            lot_rows(&r.grants, members[vip(i)], &r.ruleset_version, ms(r.now))
        })
        .collect();
    let rows: Vec<repo::ReceiptRows> = together
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let r = receipts[i];
            let of = TradeRowOf {
                trade_no: &trade_nos[k],
                fingerprint: &r.fingerprint,
                member_id: members[vip(i)],
                tier: r.tier.as_deref(),
                ruleset_version: &r.ruleset_version,
                now_ms: ms(r.now),
            };
            repo::ReceiptRows {
                trade: trade_row(&r.trade, of),
                lines: &lines[k],
                lots: &lots[k],
            }
        })
        .collect();
    let recorded = repo::insert_receipts_pg(c, &rows).map_err(|error| match error {
        // An `out_trade_no` another writer recorded since the read that found it new: not worth
        // running the group again as it is, for a deadlock's sake (`Race`). Each receipt is
        // posted alone instead, and that one answers the other's.
        unique @ Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            PostError::Database(unique)
        }
        other => other.into(),
    })?;
    // A balance is one `Points` value: no member may hold more than it can show.
    let mut granted_of: HashMap<i64, (i64, i64)> = HashMap::new();
    for (k, recorded) in recorded.iter().enumerate() {
        let granted: i64 = lots[k].iter().map(|lot| lot.points).sum();
        let (held, all_granted) = granted_of
            .entry(rows[k].trade.member_id)
            .or_insert((recorded.before.held, 0));
        *all_granted += granted;
        if *all_granted > 0 && *held + *all_granted > Points::MAX {
            return Err(PostError::BalanceLimit {
                held: *held,
                granted: *all_granted,
            });
        }
    }
    for (k, recorded) in recorded.iter().enumerate() {
        if recorded.before.owes {
            let member_id = rows[k].trade.member_id;
            super::refund::pay_debts(
                conn,
                member_id,
                &recorded.lot_ids,
                rows[k].trade.created_at_ms,
            )?;
        }
    }
    if cfg!(debug_assertions) {
        for member_id in granted_of.keys() {
            let violations = super::audit::check_member(conn, *member_id)?;
            assert!(
                violations.is_empty(),
                "ledger invariant broken: {violations:?}"
            );
        }
    }
    for ((k, &i), trade_no) in together.iter().enumerate().zip(trade_nos) {
        posted[i] = Some(Ok(Posted {
            trade_id: recorded[k].trade_id,
            trade_no,
            grants: receipts[i].grants.clone(),
            replayed: false,
        }));
    }
    for (copy, first) in copies {
        posted[copy] = match &posted[first] {
            Some(Ok(first_posted)) => Some(
                if receipts[copy].fingerprint.as_str() == receipts[first].fingerprint.as_str() {
                    Ok(Posted {
                        replayed: true,
                        ..first_posted.clone()
                    })
                } else {
                    Err(PostError::Conflict {
                        trade_no: first_posted.trade_no.to_string(),
                    })
                },
            ),
            // The first is posted alone: so is the copy, after it.
            _ => None,
        };
    }
    Ok(posted)
}
