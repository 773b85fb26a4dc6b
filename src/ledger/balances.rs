//! Members' balances as last read, kept in memory so that a member asked about again (an app
//! refreshing, a till checking before a burn) is answered from one read of the member's ledger
//! version instead of a read of every lot.
//!
//! A balance is kept with the member's ledger version it was read at (`repo::member_ledger_version`:
//! its newest entry and refund) and the span of moments it holds for: from the moment it was
//! read for until the first of its lots expires or of its pending lots becomes usable (nothing
//! else about a balance depends on the moment). A balance is answered from memory only for the
//! same version and a moment in that span, so it is always what a read of the ledger would
//! answer, whichever process or instance wrote since (a write of the member changes its version).

use super::memory::{Budget, Memory};
use super::{Balance, HeldLot};
use crate::domain::{ExpireType, PointType, Points, VipAccountNo};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A member's ledger version: its newest entry and its newest refund.
pub type LedgerVersion = (Option<i64>, Option<i64>);

/// A balance as kept: its lots in 24 bytes each, their texts (campaign codes, expiry days)
/// shared by all balances (`Texts`).
struct Known {
    version: LedgerVersion,
    /// The moments (ms) the balance holds for: `from_ms..until_ms`.
    from_ms: i64,
    until_ms: i64,
    vip_accountno: VipAccountNo,
    available: Points,
    pending: Points,
    owed: Points,
    /// The usable lots, then the pending ones.
    lots: Box<[KeptLot]>,
    usable_lots: usize,
}

struct KeptLot {
    points: Points,
    available_at_ms: i64,
    /// `Texts` indexes.
    campaign_code: u16,
    expire_date: u16,
    point_type: PointType,
    expire_type: ExpireType,
}

/// The texts of kept lots, each kept once: a few thousand campaign codes and expiry days.
#[derive(Default)]
struct Texts {
    index: HashMap<Arc<str>, u16>,
    texts: Vec<Arc<str>>,
}

/// At most this many distinct texts are kept; a balance with a text beyond them is not kept.
const TEXTS_MAX: usize = u16::MAX as usize;

/// What a kept balance weighs beyond its lots, in lots of 24 bytes: about 200 bytes for its
/// member, version and totals and its place in the memory, so that the bound holds whatever
/// the members' lots (a member of no lots weighs as much as 9 lots).
const WEIGHT_A_BALANCE_LOTS: usize = 9;

/// Balances of at most `lots_max` lots in all, the least lately asked forgotten first
/// (`memory::Memory`).
pub struct KnownBalances {
    memory: Memory<i64, Arc<Known>>,
    texts: RwLock<Texts>,
}

/// Enough for every balance of 20,000 members of about 80 lots each asked about in turn (a
/// million-trade ledger's), which the memory holds while they fit in half its bound: at most
/// about 110 MB (about 26 bytes a lot, members' headers included). Kept balances answered
/// those members 1.3× as fast as none, and 1.5× during new receipts (docs/performance.md,
/// 2026-12-04, night).
pub const BALANCES_LOTS_MAX_DEFAULT: usize = 4_194_304;

/// A bound that keeps a few thousand members' balances (tests, and an example to set).
pub const BALANCES_LOTS_MAX_EXAMPLE: usize = 262_144;

impl KnownBalances {
    /// Keeps balances of up to `lots_max` lots in all; 0 keeps none.
    pub fn new(lots_max: usize) -> Self {
        Self {
            memory: Memory::new(lots_max, lots_max).promoting(),
            texts: RwLock::default(),
        }
    }

    /// Keeping no more than `budget` allows, with the other memories sharing it: about 26
    /// bytes a lot, a member's header weighing `WEIGHT_A_BALANCE_LOTS` lots.
    pub fn sharing(self, budget: &Arc<Budget>) -> Self {
        Self {
            memory: self.memory.sharing(budget, 0, 26),
            ..self
        }
    }

    /// The balance of member `member_id` at `as_of_ms` if it is known for this `version` and
    /// that moment.
    pub fn answer(
        &self,
        member_id: i64,
        version: LedgerVersion,
        as_of_ms: i64,
    ) -> Option<Arc<Balance>> {
        let known = self.memory.answer(&member_id, |known| {
            let holds =
                known.version == version && (known.from_ms..known.until_ms).contains(&as_of_ms);
            holds.then(|| known.clone())
        })?;
        let texts = self.texts.read().unwrap_or_else(|e| e.into_inner());
        Some(Arc::new(known.balance(&texts.texts)))
    }

    /// Keeps the balance of member `member_id` read at `version` for moments
    /// `from_ms..until_ms` (unless its texts are beyond those that can be kept).
    pub fn remember(
        &self,
        member_id: i64,
        version: LedgerVersion,
        (from_ms, until_ms): (i64, i64),
        balance: &Balance,
    ) {
        if self.is_off() {
            return;
        }
        let lots = balance.lots.iter().chain(&balance.pending_lots);
        let Some(lots) = self.kept_lots(lots) else {
            return;
        };
        let weight = WEIGHT_A_BALANCE_LOTS + lots.len();
        let known = Known {
            version,
            from_ms,
            until_ms,
            vip_accountno: balance.vip_accountno.clone(),
            available: balance.available,
            pending: balance.pending,
            owed: balance.owed,
            lots,
            usable_lots: balance.lots.len(),
        };
        self.memory.remember(member_id, Arc::new(known), weight);
    }

    /// The lots in their kept form, their texts kept once; `None` past `TEXTS_MAX` texts.
    fn kept_lots<'a>(&self, lots: impl Iterator<Item = &'a HeldLot>) -> Option<Box<[KeptLot]>> {
        let mut texts = self.texts.write().unwrap_or_else(|e| e.into_inner());
        lots.map(|lot| {
            Some(KeptLot {
                points: lot.points,
                available_at_ms: lot.available_at.timestamp_millis(),
                campaign_code: texts.index_of(&lot.campaign_code)?,
                expire_date: texts.index_of(&lot.expire_date)?,
                point_type: lot.point_type,
                expire_type: lot.expire_type,
            })
        })
        .collect()
    }

    /// Whether it keeps nothing (a bound of 0).
    pub fn is_off(&self) -> bool {
        self.memory.is_off()
    }

    /// How many members' balances are kept now.
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    /// Balances answered from memory so far.
    pub fn answered(&self) -> u64 {
        self.memory.answered()
    }
}

impl Texts {
    /// The index of `text`, kept now if it was not; `None` when `TEXTS_MAX` are kept.
    fn index_of(&mut self, text: &str) -> Option<u16> {
        if let Some(index) = self.index.get(text) {
            return Some(*index);
        }
        if self.texts.len() >= TEXTS_MAX {
            return None;
        }
        let index = self.texts.len() as u16;
        let text: Arc<str> = Arc::from(text);
        self.texts.push(text.clone());
        self.index.insert(text, index);
        Some(index)
    }
}

impl Known {
    fn balance(&self, texts: &[Arc<str>]) -> Balance {
        let held = |lot: &KeptLot| HeldLot {
            point_type: lot.point_type,
            points: lot.points,
            expire_type: lot.expire_type,
            expire_date: texts[usize::from(lot.expire_date)].to_string(),
            campaign_code: texts[usize::from(lot.campaign_code)].to_string(),
            available_at: chrono::DateTime::from_timestamp_millis(lot.available_at_ms)
                .expect("kept from a DateTime"),
        };
        let (usable, pending) = self.lots.split_at(self.usable_lots);
        Balance {
            vip_accountno: self.vip_accountno.clone(),
            available: self.available,
            pending: self.pending,
            lots: usable.iter().map(held).collect(),
            pending_lots: pending.iter().map(held).collect(),
            owed: self.owed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn balance(points: i64) -> Balance {
        Balance {
            vip_accountno: VipAccountNo::parse("M-1").unwrap(),
            available: Points::new(points).unwrap(),
            lots: Vec::new(),
            pending: Points::ZERO,
            pending_lots: Vec::new(),
            owed: Points::ZERO,
        }
    }

    fn lot(points: i64, code: &str, expire_date: &str, available_at_ms: i64) -> HeldLot {
        HeldLot {
            point_type: match code {
                "" => PointType::E,
                _ => PointType::A,
            },
            points: Points::new(points).unwrap(),
            expire_type: ExpireType::Quarter,
            expire_date: expire_date.into(),
            campaign_code: code.into(),
            available_at: DateTime::<Utc>::from_timestamp_millis(available_at_ms).unwrap(),
        }
    }

    #[test]
    fn a_kept_balance_is_answered_as_it_was_read() {
        let known = KnownBalances::new(1_024);
        let read = Balance {
            vip_accountno: VipAccountNo::parse("M-1").unwrap(),
            available: Points::new(30).unwrap(),
            lots: vec![lot(10, "", "2027-03-31", 1_000), lot(20, "DP01", "", 1_001)],
            pending: Points::new(5).unwrap(),
            pending_lots: vec![lot(5, "DP02", "2027-06-30", 9_000)],
            owed: Points::new(2).unwrap(),
        };
        known.remember(7, (Some(3), Some(1)), (1_500, 9_000), &read);
        let answered = known.answer(7, (Some(3), Some(1)), 1_500).unwrap();
        assert_eq!(answered.vip_accountno, read.vip_accountno);
        assert_eq!(
            (answered.available, answered.pending, answered.owed),
            (read.available, read.pending, read.owed)
        );
        assert_eq!(answered.lots, read.lots);
        assert_eq!(answered.pending_lots, read.pending_lots);
        // Each text kept once: "", "2027-03-31", "DP01", "DP02", "2027-06-30".
        known.remember(8, (Some(4), None), (0, 1), &read);
        assert_eq!(known.texts.read().unwrap().texts.len(), 5);
    }

    #[test]
    fn a_balance_is_answered_for_its_version_and_its_moments_only() {
        let known = KnownBalances::new(64);
        let version = (Some(10), None);
        known.remember(7, version, (1_000, 2_000), &balance(5));
        let answer = |member, version, at| known.answer(member, version, at).map(|b| b.available);
        assert_eq!(answer(7, version, 1_000), Some(Points::new(5).unwrap()));
        assert_eq!(answer(7, version, 1_999), Some(Points::new(5).unwrap()));
        // Past the first expiry or availability, before the moment read for.
        assert_eq!(answer(7, version, 2_000), None);
        assert_eq!(answer(7, version, 999), None);
        // Written since: a newer entry, a refund.
        assert_eq!(answer(7, (Some(11), None), 1_500), None);
        assert_eq!(answer(7, (Some(10), Some(1)), 1_500), None);
        assert_eq!(answer(8, version, 1_500), None);
        assert_eq!(known.answered(), 2);
    }

    #[test]
    fn a_bound_of_zero_keeps_nothing() {
        let known = KnownBalances::new(0);
        known.remember(7, (None, None), (0, i64::MAX), &balance(0));
        assert!(known.answer(7, (None, None), 1).is_none());
        assert!(known.is_empty() && known.is_off());
    }
}
