//! Members' history pages as last read, kept in memory so that a page asked for again (an app
//! opening its list of movements, a member looking again after a purchase) is answered from one
//! index seek for the member's newest entry instead of a count and a read of the whole page.
//!
//! A member's entries are only ever added to, each with a larger id than the member's earlier
//! ones (a write of a member holds the member: SQLite's one writer, PostgreSQL's row lock), so
//! the newest entry names them all: a page is kept with the newest entry it was read at, and
//! answered from memory only while that is still the newest, whichever process or instance
//! wrote since. Nothing else about a page depends on the moment it is asked.

use super::history::History;
use super::memory::{Budget, Memory};
use std::sync::Arc;

/// Which page: of which member, from 1, at which size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub member_id: i64,
    pub page: i64,
    pub page_size: i64,
}

/// A member's newest entry, `None` for a member of none.
pub type PageVersion = Option<i64>;

/// What a kept page weighs beyond its movements, in movements of about 80 bytes: its key,
/// version, total and place in the memory, so that the bound holds however short the pages.
const WEIGHT_A_PAGE_MOVEMENTS: usize = 2;

/// Enough for the first page (50 movements) of 20,000 members asked for in turn (a
/// million-trade ledger's), which the memory holds while they fit in half its bound: at most
/// about 170 MB (about 80 bytes a movement: 40 besides its texts, pages' headers included;
/// 20,000 first pages measured about 80 MB).
pub const HISTORY_MOVEMENTS_MAX_DEFAULT: usize = 2_097_152;

/// Pages of at most `movements_max` movements in all, the least lately asked forgotten first
/// (`memory::Memory`).
pub struct KnownPages {
    memory: Memory<PageKey, (PageVersion, History)>,
}

impl KnownPages {
    /// Keeps pages of up to `movements_max` movements in all; 0 keeps none.
    pub fn new(movements_max: usize) -> Self {
        Self {
            memory: Memory::new(movements_max, movements_max).promoting(),
        }
    }

    /// Keeping no more than `budget` allows, with the other memories sharing it: about 80
    /// bytes a movement, a page's header weighing `WEIGHT_A_PAGE_MOVEMENTS` movements.
    pub fn sharing(self, budget: &Arc<Budget>) -> Self {
        Self {
            memory: self.memory.sharing(budget, 0, 80),
        }
    }

    pub fn is_off(&self) -> bool {
        self.memory.is_off()
    }

    /// The page `key` if it is known for this `version`.
    pub fn answer(&self, key: PageKey, version: PageVersion) -> Option<History> {
        self.memory.answer(&key, |(kept, history)| {
            (*kept == version).then(|| history.clone())
        })
    }

    /// The page `key` as kept, whatever the version it was kept for (not an answer: the
    /// member may have newer entries since). A first page kept older is read again from the
    /// ledger as only the entries newer than its own (`history::pages_of_members`).
    pub fn kept(&self, key: PageKey) -> Option<History> {
        self.memory.peek(&key, |(_, history)| history.clone())
    }

    /// Keeps the page `key` read at `version`.
    pub fn remember(&self, key: PageKey, version: PageVersion, history: History) {
        let weight = history.movements.len() + WEIGHT_A_PAGE_MOVEMENTS;
        self.memory.remember(key, (version, history), weight);
    }

    /// How many pages are kept now.
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    /// Pages answered from memory so far.
    pub fn answered(&self) -> u64 {
        self.memory.answered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::history::Movements;
    use crate::ledger::models::ShownEntryRow;
    use std::sync::Arc;

    fn page(movements: usize) -> History {
        let rows = (0..movements as i64)
            .map(|id| ShownEntryRow {
                id,
                kind: "earn".into(),
                points: 10 * id,
                point_type: "E".into(),
                campaign_code: String::new(),
                trade_no: format!("PE{id}"),
                out_trade_no: format!("T{id}"),
                effective_at_ms: 1_796_451_221_725,
                created_at_ms: 1_796_451_221_725,
            })
            .collect();
        History {
            total: movements as i64,
            movements: Arc::new(Movements::of(rows).unwrap()),
        }
    }

    fn key(member_id: i64, page: i64) -> PageKey {
        PageKey {
            member_id,
            page,
            page_size: 50,
        }
    }

    #[test]
    fn a_page_is_answered_only_at_the_newest_entry_it_was_read_at() {
        let known = KnownPages::new(1_000);
        known.remember(key(1, 1), Some(7), page(3));
        assert_eq!(known.answer(key(1, 1), Some(7)), Some(page(3)));
        assert_eq!(known.answer(key(1, 1), Some(8)), None, "a newer entry");
        assert_eq!(known.answer(key(1, 1), None), None);
        assert_eq!(known.answer(key(1, 2), Some(7)), None, "another page");
        assert_eq!(known.answer(key(2, 1), Some(7)), None, "another member");
        assert_eq!(known.answered(), 1);
        known.remember(key(1, 1), Some(8), page(4));
        assert_eq!(known.answer(key(1, 1), Some(8)), Some(page(4)));
        assert_eq!(known.len(), 1);
    }

    #[test]
    fn pages_beyond_the_bound_are_forgotten_and_a_bound_of_0_keeps_none() {
        let known = KnownPages::new(100);
        for member_id in 0..10 {
            known.remember(key(member_id, 1), Some(1), page(10));
        }
        // 12 a page: at most 4 in each half of the bound.
        assert!(known.len() <= 8, "{} kept", known.len());
        assert_eq!(known.answer(key(9, 1), Some(1)), Some(page(10)));
        assert_eq!(known.answer(key(0, 1), Some(1)), None);
        let none = KnownPages::new(0);
        none.remember(key(1, 1), Some(1), page(1));
        assert!(none.is_off() && none.is_empty());
    }

    #[test]
    fn movements_give_back_their_texts_as_read() {
        let rows = vec![
            ShownEntryRow {
                id: 1,
                kind: "burn".into(),
                points: -30,
                point_type: "A".into(),
                campaign_code: "DOUBLE".into(),
                trade_no: "PE1A".into(),
                out_trade_no: "\"ü\\n".into(),
                effective_at_ms: 0,
                created_at_ms: 1,
            },
            ShownEntryRow {
                id: 2,
                kind: "expire".into(),
                points: 0,
                point_type: String::new(),
                campaign_code: String::new(),
                trade_no: String::new(),
                out_trade_no: "x".into(),
                effective_at_ms: -1,
                created_at_ms: 2,
            },
        ];
        let movements = Movements::of(rows).unwrap();
        let read: Vec<_> = movements
            .iter()
            .map(|m| {
                (
                    m.id,
                    m.kind,
                    m.points,
                    m.point_type,
                    m.campaign_code,
                    m.trade_no,
                    m.out_trade_no,
                    m.effective_at.timestamp_millis(),
                    m.created_at.timestamp_millis(),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                (1, "burn", -30, "A", "DOUBLE", "PE1A", "\"ü\\n", 0, 1),
                (2, "expire", 0, "", "", "", "x", -1, 2)
            ]
        );
    }

    #[test]
    fn a_corrupt_instant_or_an_overlong_text_is_refused_when_read() {
        let row = |effective_at_ms, kind: &str| ShownEntryRow {
            id: 1,
            kind: kind.into(),
            points: 1,
            point_type: "E".into(),
            campaign_code: String::new(),
            trade_no: String::new(),
            out_trade_no: String::new(),
            effective_at_ms,
            created_at_ms: 0,
        };
        assert!(Movements::of(vec![row(i64::MAX, "earn")]).is_err());
        assert!(Movements::of(vec![row(0, &"k".repeat(256))]).is_err());
        assert!(Movements::of(vec![row(0, &"k".repeat(255))]).is_ok());
    }

    /// Each movement as (id, kind, points, campaign code, trade_no, out_trade_no).
    fn shown(movements: &Movements) -> Vec<(i64, String, i64, String, String, String)> {
        movements
            .iter()
            .map(|m| {
                let text = |t: &str| t.to_string();
                let (kind, code) = (text(m.kind), text(m.campaign_code));
                (
                    m.id,
                    kind,
                    m.points,
                    code,
                    text(m.trade_no),
                    text(m.out_trade_no),
                )
            })
            .collect()
    }

    #[test]
    fn a_first_page_read_again_is_the_newer_entries_then_the_older_it_held() {
        let row = |id: i64, kind: &str, code: &str| ShownEntryRow {
            id,
            kind: kind.into(),
            points: id * 10,
            point_type: "A".into(),
            campaign_code: code.into(),
            trade_no: format!("PE{id}"),
            out_trade_no: "ü".repeat(usize::try_from(id).unwrap()),
            effective_at_ms: id,
            created_at_ms: id,
        };
        let older = Movements::of(vec![
            row(5, "earn", "X"),
            row(3, "burn", ""),
            row(2, "expire", "LONG"),
        ])
        .unwrap();
        let newer = || vec![row(9, "earn", "NEW"), row(7, "burn", "")];
        let whole = Movements::of(vec![
            row(9, "earn", "NEW"),
            row(7, "burn", ""),
            row(5, "earn", "X"),
            row(3, "burn", ""),
            row(2, "expire", "LONG"),
        ])
        .unwrap();
        let read = |len_max| shown(&Movements::newer_then(newer(), &older, len_max).unwrap());
        for len_max in 0..7 {
            // A page never holds fewer than the newer entries read (the read is limited).
            let expected: Vec<_> = shown(&whole).into_iter().take(len_max.max(2)).collect();
            assert_eq!(read(len_max), expected, "{len_max}");
        }
        let all = Movements::newer_then(newer(), &older, 50).unwrap();
        assert_eq!(all, whole);
        assert_eq!(all.first_id(), Some(9));
        // Nothing newer: the page as held.
        assert_eq!(
            Movements::newer_then(Vec::new(), &older, 50).unwrap(),
            older
        );
        // An entry read as newer that is not: refused, never shown out of order.
        assert!(Movements::newer_then(vec![row(5, "earn", "X")], &older, 50).is_err());
        assert!(Movements::newer_then(vec![row(4, "earn", "X")], &older, 50).is_err());
    }
}
