//! Reading the ledger back: a member's entries page by page, and one trade in full.

use super::models::{RefundRow, ShownEntryRow, TradeDetailRow};
use super::pages::{KnownPages, PageKey, PageVersion};
use super::probe::Versioned;
use super::{grant_of_lot, repo, Conn, PostError};
use crate::domain::{Grant, VipAccountNo};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

/// At most this many entries per page.
pub const PAGE_SIZE_MAX: i64 = 200;

/// One movement of points, with what it moved and why, as `Movements` hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Movement<'a> {
    pub id: i64,
    /// earn, burn, expire or reverse.
    pub kind: &'a str,
    /// Signed: earns add, the others take.
    pub points: i64,
    pub point_type: &'a str,
    pub campaign_code: &'a str,
    pub trade_no: &'a str,
    pub out_trade_no: &'a str,
    pub effective_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Movements in the order read, their texts held side by side in one allocation: 40 bytes a
/// movement besides its text, so that pages of them can be kept (`pages::KnownPages`).
#[derive(Debug, PartialEq, Eq)]
pub struct Movements {
    held: Box<[HeldMovement]>,
    /// The texts of every movement, one after another (`HeldMovement`'s lengths).
    text: Box<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeldMovement {
    id: i64,
    points: i64,
    /// Valid instants (`instant`), checked when read.
    effective_at_ms: i64,
    created_at_ms: i64,
    /// The lengths of its kind and point type (a few letters each) in `text`,
    kind_len: u8,
    point_type_len: u8,
    /// then of its campaign code, trade_no and out_trade_no.
    text_lens: [u16; 3],
}

const _: () = assert!(std::mem::size_of::<HeldMovement>() == 40);

impl HeldMovement {
    /// The bytes of its texts in `Movements::text`.
    fn text_len(&self) -> usize {
        let [campaign_code, trade_no, out_trade_no] = self.text_lens;
        usize::from(self.kind_len)
            + usize::from(self.point_type_len)
            + usize::from(campaign_code)
            + usize::from(trade_no)
            + usize::from(out_trade_no)
    }
}

impl Movements {
    /// The entries as a history shows them; a corrupt instant or an overlong text is an error
    /// here, never later.
    pub fn of(rows: Vec<ShownEntryRow>) -> Result<Self, PostError> {
        Self::newer_then(rows, &Self::none(), 0)
    }

    /// No movements.
    fn none() -> Self {
        Self {
            held: Box::new([]),
            text: "".into(),
        }
    }

    /// `newer` (newest first, each newer than every movement of `older`), then as many of
    /// `older`'s first movements as make `len_max` in all: a first page kept earlier, read again
    /// as only the entries newer than its own (`pages_of_members`).
    pub fn newer_then(
        newer: Vec<ShownEntryRow>,
        older: &Movements,
        len_max: usize,
    ) -> Result<Self, PostError> {
        if let (Some(oldest_newer), Some(newest_older)) = (newer.last(), older.held.first()) {
            if oldest_newer.id <= newest_older.id {
                return Err(PostError::Corrupt(format!(
                    "entry {} read as newer than entry {}",
                    oldest_newer.id, newest_older.id
                )));
            }
        }
        let kept = older.held.len().min(len_max.saturating_sub(newer.len()));
        let older_text_len: usize = older.held[..kept].iter().map(HeldMovement::text_len).sum();
        let newer_text_len: usize = newer.iter().map(ShownEntryRow::text_len).sum();
        let mut text = String::with_capacity(newer_text_len + older_text_len);
        let mut held = Vec::with_capacity(newer.len() + kept);
        for row in newer {
            fn length<T: TryFrom<usize>>(part: &str) -> Result<T, PostError> {
                T::try_from(part.len()).map_err(|_| {
                    PostError::Corrupt(format!("an entry's text of {} bytes", part.len()))
                })
            }
            instant(row.effective_at_ms)?;
            instant(row.created_at_ms)?;
            held.push(HeldMovement {
                id: row.id,
                points: row.points,
                effective_at_ms: row.effective_at_ms,
                created_at_ms: row.created_at_ms,
                kind_len: length(&row.kind)?,
                point_type_len: length(&row.point_type)?,
                text_lens: [
                    length(&row.campaign_code)?,
                    length(&row.trade_no)?,
                    length(&row.out_trade_no)?,
                ],
            });
            for part in [
                row.kind,
                row.point_type,
                row.campaign_code,
                row.trade_no,
                row.out_trade_no,
            ] {
                text.push_str(&part);
            }
        }
        held.extend_from_slice(&older.held[..kept]);
        text.push_str(&older.text[..older_text_len]);
        Ok(Self {
            held: held.into_boxed_slice(),
            text: text.into_boxed_str(),
        })
    }

    /// The id of the newest movement (the first, as pages are read).
    pub fn first_id(&self) -> Option<i64> {
        self.held.first().map(|m| m.id)
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Movement<'_>> {
        let mut rest = &*self.text;
        self.held.iter().map(move |m| {
            let [campaign_code, trade_no, out_trade_no] = m.text_lens;
            let lens = [
                usize::from(m.kind_len),
                usize::from(m.point_type_len),
                usize::from(campaign_code),
                usize::from(trade_no),
                usize::from(out_trade_no),
            ];
            let [kind, point_type, campaign_code, trade_no, out_trade_no] = lens.map(|len| {
                let (part, after) = rest.split_at(len);
                rest = after;
                part
            });
            let at = |ms| DateTime::<Utc>::from_timestamp_millis(ms).expect("checked when read");
            Movement {
                id: m.id,
                kind,
                points: m.points,
                point_type,
                campaign_code,
                trade_no,
                out_trade_no,
                effective_at: at(m.effective_at_ms),
                created_at: at(m.created_at_ms),
            }
        })
    }
}

/// One page of a member's movements: cheap to clone, kept as read (`pages::KnownPages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Every movement of the member's.
    pub total: i64,
    pub movements: Arc<Movements>,
}

#[derive(Debug, Clone)]
pub struct TradeDetail {
    pub trade: TradeDetailRow,
    pub vip_accountno: String,
    /// Each grant with the points its lot still holds.
    pub grants: Vec<(Grant, i64)>,
    /// Every entry that names the trade: its earns, its burns, and what later happened to its lots.
    pub movements: Arc<Movements>,
    /// Its refunds, oldest first; what they reversed is among the movements.
    pub refunds: Vec<RefundRow>,
}

fn instant(ms: i64) -> Result<DateTime<Utc>, PostError> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .ok_or_else(|| PostError::Corrupt(format!("instant {ms} ms")))
}

fn movements(conn: &mut Conn, of: repo::MovementsOf) -> Result<Movements, PostError> {
    Movements::of(repo::movements(conn, of)?)
}

/// Page `page` (from 1) of a member's entries, newest first; `None` for an unknown member. A
/// page `known` for the member's newest entry is answered from memory; one read is kept there.
pub fn member_history(
    conn: &mut Conn,
    vip: &VipAccountNo,
    page: i64,
    page_size: i64,
    known: &KnownPages,
) -> Result<Option<History>, PostError> {
    let Some(member_id) = super::find_member(conn, vip)? else {
        return Ok(None);
    };
    // Read before the page (on PostgreSQL each statement reads what has committed by then): a
    // page kept under a version is never older than that version.
    let version = match known.is_off() {
        true => None,
        false => repo::newest_entry_of_member(conn, member_id)?,
    };
    page_of_member(conn, member_id, version, page, page_size, known).map(Some)
}

/// `member_history` of a member already found, its newest entry `version` read before
/// (`Store::member_version`).
pub fn page_of_member(
    conn: &mut Conn,
    member_id: i64,
    version: PageVersion,
    page: i64,
    page_size: i64,
    known: &KnownPages,
) -> Result<History, PostError> {
    assert!(
        page >= 1 && (1..=PAGE_SIZE_MAX).contains(&page_size),
        "paging is validated by the caller"
    );
    let key = PageKey {
        member_id,
        page,
        page_size,
    };
    if let Some(history) = known.answer(key, version) {
        return Ok(history);
    }
    let total = repo::count_entries_of_member(conn, member_id)?;
    let of = repo::MovementsOf::Member {
        member_id,
        offset: (page - 1).saturating_mul(page_size),
        limit: page_size,
    };
    let history = History {
        total,
        movements: Arc::new(movements(conn, of)?),
    };
    known.remember(key, version, history.clone());
    Ok(history)
}

/// `page_of_member` for many pages at once (PostgreSQL), each `(member, page, page_size)`: one
/// statement for them all (`repo::member_pages_pg`, each page with its member's count read at
/// the same moment), each page kept in `known` under its member's newest entry. A first page
/// kept earlier is read as only the entries newer than its own, the rest taken from it: a
/// member's entries are only ever added to, each newer than the member's earlier ones
/// (`pages`), so its older entries are those it holds. A page of no entries is counted by a
/// second statement.
pub fn pages_of_members(
    conn: &mut Conn,
    asked: &[(Versioned, i64, i64)],
    known: &KnownPages,
) -> Result<Vec<Result<History, PostError>>, PostError> {
    assert!(
        asked
            .iter()
            .all(|(_, page, size)| *page >= 1 && (1..=PAGE_SIZE_MAX).contains(size)),
        "paging is validated by the caller"
    );
    let key = |(member, page, page_size): &(Versioned, i64, i64)| PageKey {
        member_id: member.member_id,
        page: *page,
        page_size: *page_size,
    };
    let older: Vec<Option<History>> = asked
        .iter()
        .map(|ask| match ask.1 {
            1 => known
                .kept(key(ask))
                .filter(|kept| !kept.movements.is_empty()),
            _ => None,
        })
        .collect();
    let pages: Vec<repo::PageAsked> = asked
        .iter()
        .zip(&older)
        .map(|((member, page, size), older)| repo::PageAsked {
            member_id: member.member_id,
            after: older.as_ref().and_then(|o| o.movements.first_id()),
            offset: (page - 1).saturating_mul(*size),
            limit: *size,
        })
        .collect();
    let Conn::Postgres(c) = conn else {
        let only = "history pages are read together on PostgreSQL only";
        return Err(diesel::result::Error::QueryBuilderError(only.into()).into());
    };
    let mut read: Vec<(Option<i64>, Vec<ShownEntryRow>)> = vec![(None, Vec::new()); asked.len()];
    for (n, total, row) in repo::member_pages_pg(c, &pages)? {
        let place = usize::try_from(n).ok().filter(|n| *n < asked.len());
        let place = place.ok_or_else(|| PostError::Corrupt(format!("page {n} not asked")))?;
        read[place].0 = Some(total);
        read[place].1.push(row);
    }
    let uncounted: Vec<i64> = asked
        .iter()
        .zip(&read)
        .filter(|(_, (total, _))| total.is_none())
        .map(|((member, _, _), _)| member.member_id)
        .collect();
    let totals: HashMap<i64, i64> = match uncounted.is_empty() {
        true => HashMap::new(),
        false => repo::count_entries_of_members(conn, &uncounted)?
            .into_iter()
            .collect(),
    };
    Ok(asked
        .iter()
        .zip(read)
        .zip(older)
        .map(|((ask, (total, rows)), older)| {
            let (member, _, page_size) = ask;
            let total =
                total.unwrap_or_else(|| totals.get(&member.member_id).copied().unwrap_or(0));
            let movements = match older {
                Some(older) => {
                    let len_max = usize::try_from(*page_size).expect("a validated page size");
                    Movements::newer_then(rows, &older.movements, len_max)?
                }
                None => Movements::of(rows)?,
            };
            let history = History {
                total,
                movements: Arc::new(movements),
            };
            known.remember(key(ask), member.version.0, history.clone());
            Ok(history)
        })
        .collect())
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
    let movements = Arc::new(movements(conn, repo::MovementsOf::Trade(trade.id))?);
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
