//! Reading the ledger back: a member's entries page by page, and one trade in full.

use super::models::{RefundRow, ShownEntryRow, TradeDetailRow};
use super::{grant_of_lot, repo, Conn, PostError};
use crate::domain::{Grant, VipAccountNo};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// At most this many entries per page.
pub const PAGE_SIZE_MAX: i64 = 200;

/// One movement of points, with what it moved and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub id: i64,
    /// earn, burn, expire or reverse.
    pub kind: String,
    /// Signed: earns add, the others take.
    pub points: i64,
    pub point_type: String,
    pub campaign_code: String,
    pub trade_no: String,
    pub out_trade_no: String,
    pub effective_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub total: i64,
    pub movements: Vec<Movement>,
}

#[derive(Debug, Clone)]
pub struct TradeDetail {
    pub trade: TradeDetailRow,
    pub vip_accountno: String,
    /// Each grant with the points its lot still holds.
    pub grants: Vec<(Grant, i64)>,
    /// Every entry that names the trade: its earns, its burns, and what later happened to its lots.
    pub movements: Vec<Movement>,
    /// Its refunds, oldest first; what they reversed is among the movements.
    pub refunds: Vec<RefundRow>,
}

fn instant(ms: i64) -> Result<DateTime<Utc>, PostError> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .ok_or_else(|| PostError::Corrupt(format!("instant {ms} ms")))
}

/// An entry as a history shows it.
fn movement(entry: ShownEntryRow) -> Result<Movement, PostError> {
    Ok(Movement {
        id: entry.id,
        kind: entry.kind,
        points: entry.points,
        point_type: entry.point_type,
        campaign_code: entry.campaign_code,
        trade_no: entry.trade_no,
        out_trade_no: entry.out_trade_no,
        effective_at: instant(entry.effective_at_ms)?,
        created_at: instant(entry.created_at_ms)?,
    })
}

fn movements(conn: &mut Conn, of: repo::MovementsOf) -> Result<Vec<Movement>, PostError> {
    repo::movements(conn, of)?
        .into_iter()
        .map(movement)
        .collect()
}

/// Page `page` (from 1) of a member's entries, newest first; `None` for an unknown member.
pub fn member_history(
    conn: &mut Conn,
    vip: &VipAccountNo,
    page: i64,
    page_size: i64,
) -> Result<Option<History>, PostError> {
    assert!(
        page >= 1 && (1..=PAGE_SIZE_MAX).contains(&page_size),
        "paging is validated by the caller"
    );
    let Some(member_id) = super::find_member(conn, vip)? else {
        return Ok(None);
    };
    let total = repo::count_entries_of_member(conn, member_id)?;
    let page = repo::MovementsOf::Member {
        member_id,
        offset: (page - 1).saturating_mul(page_size),
        limit: page_size,
    };
    Ok(Some(History {
        total,
        movements: movements(conn, page)?,
    }))
}

/// A trade by `trade_no` or `out_trade_no`, with its grants and every entry that names it.
pub fn trade_detail(conn: &mut Conn, number: &str) -> Result<Option<TradeDetail>, PostError> {
    let Some((trade, vip_accountno)) = repo::find_trade_detail(conn, number, false)? else {
        return Ok(None);
    };
    let grants = repo::lots_of_trade(conn, trade.id)?
        .iter()
        .map(|lot| Ok((grant_of_lot(lot)?, lot.remaining)))
        .collect::<Result<_, PostError>>()?;
    let movements = movements(conn, repo::MovementsOf::Trade(trade.id))?;
    let refunds = repo::refunds(conn, Some(trade.id))?;
    Ok(Some(TradeDetail {
        trade,
        vip_accountno,
        grants,
        movements,
        refunds,
    }))
}

/// A recorded trade as the rules see it, with what the live rules granted it.
#[derive(Debug, Clone)]
pub struct ReplayTrade {
    pub trade: crate::domain::Trade,
    /// The member's gender and birthday as their profile holds them now.
    pub gender: Option<crate::domain::Gender>,
    pub birthday: Option<crate::domain::Birthday>,
    /// (campaign code, `""` for E; points) of each grant.
    pub live: Vec<(String, i64)>,
}

/// Where a replay has got to: the last trade's (sales instant in ms, id).
pub type ReplayCursor = (i64, i64);

/// How many trades were sold in `[from, to)`.
pub fn count_trades_sold(
    conn: &mut Conn,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64, PostError> {
    Ok(repo::count_trades_sold(
        conn,
        from.timestamp_millis(),
        to.timestamp_millis(),
    )?)
}

/// The next `limit` trades sold in `[from, to)` after `after`, in sales order, rebuilt as
/// domain trades (lines included) with their live grants; and the cursor to go on from.
pub fn trades_for_replay(
    conn: &mut Conn,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<ReplayCursor>,
    limit: i64,
) -> Result<(Vec<ReplayTrade>, Option<ReplayCursor>), PostError> {
    let rows = repo::trades_sold_page(
        conn,
        from.timestamp_millis(),
        to.timestamp_millis(),
        after,
        limit,
    )?;
    let ids: Vec<i64> = rows.iter().map(|(t, _, _)| t.id).collect();
    let mut lines: HashMap<i64, Vec<super::models::TradeLineRow>> = HashMap::new();
    for line in repo::trade_lines_of(conn, &ids)? {
        lines.entry(line.trade_id).or_default().push(line);
    }
    let mut live: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    for (trade_id, code, points) in repo::grants_of_trades(conn, &ids)? {
        live.entry(trade_id).or_default().push((code, points));
    }
    let mut member_ids: Vec<i64> = rows.iter().map(|(t, _, _)| t.member_id).collect();
    member_ids.sort_unstable();
    member_ids.dedup();
    let profiles: HashMap<i64, (Option<String>, Option<String>)> =
        repo::genders_and_birthdays_of(conn, &member_ids)?
            .into_iter()
            .map(|(id, gender, birthday)| (id, (gender, birthday)))
            .collect();
    let cursor = rows.last().map(|(t, _, at)| (*at, t.id));
    let trades = rows
        .iter()
        .map(|(row, vip, _)| {
            Ok(ReplayTrade {
                trade: super::refund::trade_of_row(
                    row,
                    vip,
                    lines.get(&row.id).map_or(&[][..], |l| &l[..]),
                )?,
                gender: profiles
                    .get(&row.member_id)
                    .and_then(|(g, _)| crate::domain::Gender::parse(g.as_deref()?).ok()),
                birthday: profiles
                    .get(&row.member_id)
                    .and_then(|(_, b)| crate::domain::Birthday::parse(b.as_deref()?).ok()),
                live: live.remove(&row.id).unwrap_or_default(),
            })
        })
        .collect::<Result<_, PostError>>()?;
    Ok((trades, cursor))
}
