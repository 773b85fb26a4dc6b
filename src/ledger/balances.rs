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

use super::memory::Memory;
use super::Balance;
use std::sync::Arc;

/// A member's ledger version: its newest entry and its newest refund.
pub type LedgerVersion = (Option<i64>, Option<i64>);

struct Known {
    version: LedgerVersion,
    /// The moments (ms) the balance holds for: `from_ms..until_ms`.
    from_ms: i64,
    until_ms: i64,
    balance: Arc<Balance>,
}

/// Balances of at most `lots_max` lots in all, the oldest forgotten first (`memory::Memory`).
pub struct KnownBalances {
    memory: Memory<i64, Known>,
}

/// None by default: keeping balances pays only while the members asked about fit (measured
/// 2026-12-04, docs/performance.md): 262,144 lots (about 34 MB, about 130 bytes a lot) answered
/// a new ledger's balances 1.14× faster, but 20,000 members of a million-trade ledger (~80 lots
/// each, 1.6 million in all) 0.7× as fast as none, every ask a miss that also reads the version.
pub const BALANCES_LOTS_MAX_DEFAULT: usize = 0;

/// A bound that keeps a few thousand members' balances (tests, and an example to set).
pub const BALANCES_LOTS_MAX_EXAMPLE: usize = 262_144;

impl KnownBalances {
    /// Keeps balances of up to `lots_max` lots in all; 0 keeps none.
    pub fn new(lots_max: usize) -> Self {
        Self {
            memory: Memory::new(lots_max, lots_max),
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
        self.memory.answer(&member_id, |known| {
            let holds =
                known.version == version && (known.from_ms..known.until_ms).contains(&as_of_ms);
            holds.then(|| known.balance.clone())
        })
    }

    /// Keeps the balance of member `member_id` read at `version` for moments
    /// `from_ms..until_ms`.
    pub fn remember(
        &self,
        member_id: i64,
        version: LedgerVersion,
        (from_ms, until_ms): (i64, i64),
        balance: Arc<Balance>,
    ) {
        let lots = balance.lots.len() + balance.pending_lots.len();
        let known = Known {
            version,
            from_ms,
            until_ms,
            balance,
        };
        self.memory.remember(member_id, known, 1 + lots);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Points, VipAccountNo};

    fn balance(points: i64) -> Arc<Balance> {
        Arc::new(Balance {
            vip_accountno: VipAccountNo::parse("M-1").unwrap(),
            available: Points::new(points).unwrap(),
            lots: Vec::new(),
            pending: Points::ZERO,
            pending_lots: Vec::new(),
            owed: Points::ZERO,
        })
    }

    #[test]
    fn a_balance_is_answered_for_its_version_and_its_moments_only() {
        let known = KnownBalances::new(16);
        let version = (Some(10), None);
        known.remember(7, version, (1_000, 2_000), balance(5));
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
        known.remember(7, (None, None), (0, i64::MAX), balance(0));
        assert!(known.answer(7, (None, None), 1).is_none());
        assert!(known.is_empty() && known.is_off());
    }
}
