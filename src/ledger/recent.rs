//! The answers of recently recorded trades, kept in memory so that a replay (a till retrying a
//! receipt it sent) is answered without reading the ledger.
//!
//! Only trades this process recorded are kept, once their write has committed.
//! A recorded trade never changes (the ledger is append-only and a trade's grants are fixed
//! when it is posted), so a remembered answer is always the ledger's answer; a trade this
//! process does not remember (another instance's, an older one) is read from the ledger as
//! before, so several instances on one database stay correct.

use super::{PostError, Posted};
use crate::domain::{Fingerprint, OutTradeNo};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A recorded trade's request fingerprint and answer. Its texts are shared (`Arc<str>`): only
/// the list of grants is its own.
struct Known {
    fingerprint: Fingerprint,
    posted: Posted,
}

/// At most `trades_max` recent trades' answers, and at most `GRANTS_A_TRADE` times as many
/// grants in all, the oldest forgotten first (in two generations: when the newer fills up to
/// half of either bound, the older is dropped and the newer takes its place, so a lookup and a
/// remember are O(1) and the memory never exceeds the bounds, however many grants a program's
/// trades earn).
pub struct RecentTrades {
    generation_max: usize,
    generation_grants_max: usize,
    generations: Mutex<Generations>,
    /// Replays answered from memory so far (`/metrics`).
    answered: AtomicU64,
}

#[derive(Default)]
struct Generations {
    newer: HashMap<OutTradeNo, Known>,
    /// The grants of the trades in `newer`.
    newer_grants: usize,
    older: HashMap<OutTradeNo, Known>,
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
            generation_max: trades_max / 2,
            generation_grants_max: trades_max / 2 * GRANTS_A_TRADE,
            generations: Mutex::default(),
            answered: AtomicU64::new(0),
        }
    }

    /// The answer recorded for `out_trade_no` if it is remembered: the trade (as a replay) if
    /// it was recorded with this `fingerprint`, `Conflict` if with another request.
    pub fn answer(
        &self,
        out_trade_no: &OutTradeNo,
        fingerprint: &Fingerprint,
    ) -> Option<Result<Posted, PostError>> {
        if self.generation_max == 0 {
            return None;
        }
        let generations = self.lock();
        let known = generations.newer.get(out_trade_no);
        let known = known.or_else(|| generations.older.get(out_trade_no))?;
        self.answered.fetch_add(1, Ordering::Relaxed);
        Some(match known.fingerprint == *fingerprint {
            true => Ok(known.posted.clone()),
            false => Err(PostError::Conflict {
                trade_no: known.posted.trade_no.to_string(),
            }),
        })
    }

    /// Remembers the answer of a trade recorded with this request `fingerprint`, once its write
    /// has committed.
    pub fn remember(&self, out_trade_no: &OutTradeNo, fingerprint: Fingerprint, posted: &Posted) {
        if self.generation_max == 0 {
            return;
        }
        let grants = posted.grants.len();
        let known = Known {
            fingerprint,
            posted: Posted {
                replayed: true,
                ..posted.clone()
            },
        };
        let retired = {
            let mut generations = self.lock();
            let full = generations.newer.len() >= self.generation_max
                || generations.newer_grants + grants > self.generation_grants_max;
            let retired = match full {
                true => {
                    let newer = HashMap::with_capacity(self.generation_max);
                    let newer = std::mem::replace(&mut generations.newer, newer);
                    generations.newer_grants = 0;
                    Some(std::mem::replace(&mut generations.older, newer))
                }
                false => None,
            };
            generations.newer.insert(out_trade_no.clone(), known);
            generations.newer_grants += grants;
            retired
        };
        // Freed outside the lock.
        drop(retired);
    }

    /// How many trades are remembered now.
    pub fn len(&self) -> usize {
        let generations = self.lock();
        generations.newer.len() + generations.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests answered from memory so far (replays and conflicts).
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // A panic while holding it leaves two maps that are still whole.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    fn no_more_than_the_bound_is_remembered_and_the_oldest_go_first() {
        let (f, _) = fingerprints();
        let recent = RecentTrades::new(8);
        for i in 0..100 {
            let text = format!("T{i}");
            recent.remember(&no(&text), f, &posted(&text));
            assert!(recent.len() <= 8, "{} remembered", recent.len());
        }
        for (i, remembered) in [(99, true), (92, true), (91, false), (0, false)] {
            let answer = recent.answer(&no(&format!("T{i}")), &f);
            assert_eq!(answer.is_some(), remembered, "T{i}");
        }
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
            let generations = recent.lock();
            let held: usize = [&generations.newer, &generations.older]
                .iter()
                .flat_map(|generation| generation.values())
                .map(|known| known.posted.grants.len())
                .sum();
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
