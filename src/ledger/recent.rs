//! The answers of recently recorded trades, kept in memory so that a replay (a till retrying a
//! receipt it sent) is answered without reading the ledger.
//!
//! Only trades this process recorded are kept, once their write has committed.
//! A recorded trade never changes (the ledger is append-only and a trade's grants are fixed
//! when it is posted), so a remembered answer is always the ledger's answer; a trade this
//! process does not remember (another instance's, an older one) is read from the ledger as
//! before, so several instances on one database stay correct.

use super::memory::{Budget, Memory};
use super::{PostError, Posted};
use crate::domain::{Fingerprint, OutTradeNo};
use std::sync::Arc;

/// A recorded trade's request fingerprint and answer. Its texts are shared (`Arc<str>`): only
/// the list of grants is its own.
struct Known {
    fingerprint: Fingerprint,
    posted: Posted,
}

/// At most `trades_max` recent trades' answers, and at most `GRANTS_A_TRADE` times as many
/// grants in all, the oldest forgotten first (`memory::Memory`).
pub struct RecentTrades {
    memory: Memory<OutTradeNo, Known>,
}

/// About 400 bytes a seed-shaped trade (two grants), about 90 bytes more a grant: at most
/// 40 MB at the default.
pub const RECENT_TRADES_MAX_DEFAULT: usize = 65_536;

/// Grants a remembered trade may have on average before fewer trades are remembered.
pub const GRANTS_A_TRADE: usize = 4;

impl RecentTrades {
    /// Remembers up to `trades_max` trades; 0 remembers none.
    pub fn new(trades_max: usize) -> Self {
        Self {
            memory: Memory::new(trades_max, trades_max * GRANTS_A_TRADE),
        }
    }

    /// Remembering no more than `budget` allows, with the other memories sharing it: about 220
    /// bytes a trade and 90 a grant.
    pub fn sharing(self, budget: &Arc<Budget>) -> Self {
        Self {
            memory: self.memory.sharing(budget, 220, 90),
        }
    }

    /// The answer recorded for `out_trade_no` if it is remembered: the trade (as a replay) if
    /// it was recorded with this `fingerprint`, `Conflict` if with another request.
    pub fn answer(
        &self,
        out_trade_no: &OutTradeNo,
        fingerprint: &Fingerprint,
    ) -> Option<Result<Posted, PostError>> {
        self.memory.answer(out_trade_no, |known| {
            Some(match known.fingerprint == *fingerprint {
                true => Ok(known.posted.clone()),
                false => Err(PostError::Conflict {
                    trade_no: known.posted.trade_no.to_string(),
                }),
            })
        })
    }

    /// Remembers the answer of a trade recorded with this request `fingerprint`, once its write
    /// has committed.
    pub fn remember(&self, out_trade_no: &OutTradeNo, fingerprint: Fingerprint, posted: &Posted) {
        if self.memory.is_off() {
            return;
        }
        let known = Known {
            fingerprint,
            posted: Posted {
                replayed: true,
                ..posted.clone()
            },
        };
        let grants = posted.grants.len();
        self.memory.remember(out_trade_no.clone(), known, grants);
    }

    /// How many trades are remembered now.
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    /// Requests answered from memory so far (replays and conflicts).
    pub fn answered(&self) -> u64 {
        self.memory.answered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::trade::tests::sample_trade;
    use crate::domain::TradeNo;

    fn no(text: &str) -> OutTradeNo {
        OutTradeNo::parse(text).unwrap()
    }

    fn posted(out_trade_no: &str) -> Posted {
        let when = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Posted {
            trade_id: 7,
            trade_no: TradeNo::mint(&no(out_trade_no), when),
            grants: Vec::new(),
            replayed: false,
        }
    }

    /// Two requests' fingerprints.
    fn fingerprints() -> (Fingerprint, Fingerprint) {
        let mut other = sample_trade();
        other.remark = "another request".into();
        (sample_trade().fingerprint(), other.fingerprint())
    }

    #[test]
    fn a_remembered_trade_is_answered_as_a_replay_and_another_request_is_a_conflict() {
        let (f1, f2) = fingerprints();
        let recent = RecentTrades::new(8);
        assert!(recent.answer(&no("T1"), &f1).is_none());
        recent.remember(&no("T1"), f1, &posted("T1"));
        let replay = recent.answer(&no("T1"), &f1).unwrap().unwrap();
        assert_eq!(
            replay,
            Posted {
                replayed: true,
                ..posted("T1")
            }
        );
        match recent.answer(&no("T1"), &f2) {
            Some(Err(PostError::Conflict { trade_no })) => {
                assert_eq!(trade_no, posted("T1").trade_no.to_string())
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(recent.answer(&no("T2"), &f1).is_none());
    }

    #[test]
    fn trades_with_many_grants_are_remembered_fewer() {
        let (f, _) = fingerprints();
        let grant = crate::domain::Grant {
            point_type: crate::domain::PointType::A,
            points: crate::domain::Points::new(1).unwrap(),
            expire_type: crate::domain::ExpireType::Kdp,
            expire_date: None,
            expires_at: None,
            available_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            remark: "".into(),
            campaign_code: None,
        };
        let recent = RecentTrades::new(8);
        let grants_max = 8 * GRANTS_A_TRADE;
        for i in 0..100 {
            let text = format!("T{i}");
            let many = Posted {
                grants: vec![grant.clone(); 3 * GRANTS_A_TRADE],
                ..posted(&text)
            };
            recent.remember(&no(&text), f, &many);
            let held = recent.memory.weight();
            assert!(held <= grants_max, "{held} grants remembered");
        }
        assert!(recent.answer(&no("T99"), &f).is_some());
        assert!(recent.answer(&no("T97"), &f).is_none());
    }

    #[test]
    fn a_bound_of_zero_remembers_nothing() {
        let (f, _) = fingerprints();
        let recent = RecentTrades::new(0);
        recent.remember(&no("T1"), f, &posted("T1"));
        assert!(recent.answer(&no("T1"), &f).is_none());
        assert!(recent.is_empty());
    }
}
