//! A bounded memory of answers the ledger gave, shared by the memory of recent trades
//! (`recent`) and of members' balances (`balances`): at most so many items and so much weight
//! (grants, lots) in all, the oldest forgotten first.
//!
//! Two generations of hash maps: when the newer fills up to half of either bound, the older is
//! dropped and the newer takes its place, so a lookup and a remember are O(1) and the memory
//! never exceeds its bounds, however heavy its items. A memory made `promoting` moves an item
//! answered from the older generation to the newer one, so that what is asked about again and
//! again keeps being held (whatever was asked about within the last half of its bounds at
//! least): members' balances. Recent trades are not moved (a replay is a till retrying within
//! seconds): moving them made replays of more trades than it holds, asked in turn, 10% dearer
//! (each move fills the newer generation sooner). A retired generation of many items is freed
//! on a thread of its own, so that no request waits for a few hundred thousand frees.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub struct Memory<K, V> {
    generation_max: usize,
    generation_weight_max: usize,
    /// Whether an item answered from the older generation moves to the newer one.
    promoting: bool,
    generations: Mutex<Generations<K, V>>,
    /// Lookups answered from memory so far (`/metrics`).
    answered: AtomicU64,
}

struct Generations<K, V> {
    newer: HashMap<K, (V, usize)>,
    /// The weight of the items in `newer`.
    newer_weight: usize,
    older: HashMap<K, (V, usize)>,
}

/// A retired generation of more items than this is freed on a thread of its own.
const FREED_ASIDE_ITEMS_MIN: usize = 1_024;

impl<K: Eq + Hash + Send + 'static, V: Send + 'static> Memory<K, V> {
    /// Holds up to `items_max` items weighing `weight_max` in all; 0 items holds none.
    pub fn new(items_max: usize, weight_max: usize) -> Self {
        Self {
            generation_max: items_max / 2,
            generation_weight_max: weight_max / 2,
            promoting: false,
            generations: Mutex::new(Generations {
                newer: HashMap::new(),
                newer_weight: 0,
                older: HashMap::new(),
            }),
            answered: AtomicU64::new(0),
        }
    }

    /// The memory moving an item answered from the older generation to the newer one.
    pub fn promoting(self) -> Self {
        Self {
            promoting: true,
            ..self
        }
    }

    /// Whether it holds nothing, ever (a bound of 0).
    pub fn is_off(&self) -> bool {
        self.generation_max == 0
    }

    /// What `answer` makes of the item held under `key`, if one is and `answer` makes an answer
    /// of it (counted as answered). In a `promoting` memory, an item answered from the older
    /// generation moves to the newer one.
    pub fn answer<R>(&self, key: &K, answer: impl FnOnce(&V) -> Option<R>) -> Option<R> {
        if self.is_off() {
            return None;
        }
        let (answered, retired) = {
            let mut generations = self.lock();
            match generations.newer.get(key) {
                Some((value, _)) => (answer(value)?, None),
                None => {
                    let (value, _) = generations.older.get(key)?;
                    let answered = answer(value)?;
                    let retired = match self.promoting {
                        true => {
                            let (key, (value, weight)) = generations
                                .older
                                .remove_entry(key)
                                .expect("the item was just found");
                            self.hold(&mut generations, key, value, weight)
                        }
                        false => None,
                    };
                    (answered, retired)
                }
            }
        };
        if let Some(retired) = retired {
            free(retired);
        }
        self.answered.fetch_add(1, Ordering::Relaxed);
        Some(answered)
    }

    /// Holds `value` under `key` (in place of what it held there), weighing `weight`.
    pub fn remember(&self, key: K, value: V, weight: usize) {
        if self.is_off() || weight > self.generation_weight_max {
            return;
        }
        let retired = self.hold(&mut self.lock(), key, value, weight);
        // Freed outside the lock.
        if let Some(retired) = retired {
            free(retired);
        }
    }

    /// Puts an item in the newer generation, first retiring the older one if the newer is
    /// full; answers the retired generation, to be freed outside the lock.
    fn hold(
        &self,
        generations: &mut Generations<K, V>,
        key: K,
        value: V,
        weight: usize,
    ) -> Option<HashMap<K, (V, usize)>> {
        let full = generations.newer.len() >= self.generation_max
            || generations.newer_weight + weight > self.generation_weight_max;
        let retired = match full {
            true => {
                let newer = std::mem::take(&mut generations.newer);
                generations.newer_weight = 0;
                Some(std::mem::replace(&mut generations.older, newer))
            }
            false => None,
        };
        // An item held in the older generation stays there until it is dropped; lookups
        // find the newer one first.
        if let Some((_, replaced)) = generations.newer.insert(key, (value, weight)) {
            generations.newer_weight -= replaced;
        }
        generations.newer_weight += weight;
        retired
    }

    /// How many items are held now.
    pub fn len(&self) -> usize {
        let generations = self.lock();
        generations.newer.len() + generations.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weight of every item held now.
    #[cfg(test)]
    pub fn weight(&self) -> usize {
        let generations = self.lock();
        [&generations.newer, &generations.older]
            .iter()
            .flat_map(|generation| generation.values())
            .map(|(_, weight)| weight)
            .sum()
    }

    /// Lookups answered from memory so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations<K, V>> {
        // A panic while holding it leaves two maps that are still whole.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Frees a retired generation: a large one on a thread of its own (here, with the closure, if
/// none can start).
fn free<K: Send + 'static, V: Send + 'static>(retired: HashMap<K, V>) {
    if retired.len() < FREED_ASIDE_ITEMS_MIN {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("memory-free".into())
        .spawn(move || drop(retired));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_than_the_bounds_are_held_and_the_oldest_go_first() {
        let memory = Memory::new(8, 1_000);
        for i in 0..100 {
            memory.remember(i, i * 10, 1);
            assert!(memory.len() <= 8, "{} held", memory.len());
        }
        for (i, held) in [(99, true), (92, true), (91, false), (0, false)] {
            assert_eq!(memory.answer(&i, |v| Some(*v)).is_some(), held, "{i}");
        }
        assert_eq!(memory.answer(&99, |v| Some(*v)), Some(990));
        assert_eq!(memory.answered(), 3);
    }

    #[test]
    fn heavy_items_are_held_fewer() {
        let memory = Memory::new(8, 16);
        // One a generation.
        for i in 0..100 {
            memory.remember(i, (), 5);
            assert!(memory.weight() <= 16, "{} weight held", memory.weight());
        }
        assert!(memory.answer(&98, |_| Some(())).is_some());
        assert!(memory.answer(&97, |_| Some(())).is_none());
        // Heavier than a generation may hold: never held.
        memory.remember(1_000, (), 9);
        assert!(memory.answer(&1_000, |_| Some(())).is_none());
    }

    #[test]
    fn an_item_answered_from_the_older_generation_moves_to_the_newer() {
        let memory = Memory::new(8, 1_000).promoting();
        for i in 0..4 {
            memory.remember(i, i, 1);
        }
        // The fifth fills the newer generation: 0..4 are the older one.
        memory.remember(4, 4, 1);
        assert_eq!(memory.answer(&0, |v| Some(*v)), Some(0));
        // 4, 0, 5, 6 fill the newer generation; 7 retires the older one (1, 2, 3).
        for i in 5..8 {
            memory.remember(i, i, 1);
        }
        assert_eq!(memory.answer(&0, |v| Some(*v)), Some(0));
        assert_eq!(memory.answer(&1, |v| Some(*v)), None);
        assert!(memory.answer(&4, |_| Some(())).is_some());
        assert!(memory.answer(&2, |_| Some(())).is_none());
        assert_eq!(memory.len(), 5);
    }

    #[test]
    fn an_item_answered_from_the_older_generation_stays_there_unless_promoting() {
        let memory = Memory::new(8, 1_000);
        for i in 0..5 {
            memory.remember(i, i, 1);
        }
        assert_eq!(memory.answer(&0, |v| Some(*v)), Some(0));
        // 4, 5, 6, 7 fill the newer generation; 8 retires the older one, 0 with it.
        for i in 5..9 {
            memory.remember(i, i, 1);
        }
        assert_eq!(memory.answer(&0, |v| Some(*v)), None);
    }

    #[test]
    fn an_item_held_again_replaces_the_first() {
        let memory = Memory::new(8, 100);
        memory.remember("a", 1, 5);
        memory.remember("a", 2, 6);
        assert_eq!(memory.answer(&"a", |v| Some(*v)), Some(2));
        assert_eq!((memory.len(), memory.weight()), (1, 6));
    }

    #[test]
    fn an_item_that_makes_no_answer_is_not_counted() {
        let memory = Memory::new(8, 16);
        memory.remember(1, 10, 1);
        assert_eq!(memory.answer(&1, |v| (*v > 10).then_some(*v)), None);
        assert_eq!(memory.answered(), 0);
    }

    #[test]
    fn a_bound_of_zero_holds_nothing() {
        let memory = Memory::new(0, 100);
        memory.remember(1, 1, 1);
        assert!(memory.answer(&1, |v| Some(*v)).is_none());
        assert!(memory.is_empty() && memory.is_off());
    }
}
