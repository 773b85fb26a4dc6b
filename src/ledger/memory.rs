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
//!
//! Memories may share a `Budget` of bytes besides their own bounds, so that together they
//! never hold more than it: a memory whose item would pass the budget retires its older
//! generation first, and if that is not enough, asks every memory of the budget to retire
//! its older generation at its next use and holds the item no more (`Budget::squeezes`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes the memories sharing it may hold in all, by their own reckoning of an item's size.
pub struct Budget {
    bytes_max: AtomicUsize,
    bytes_held: AtomicUsize,
    /// Times a memory found the budget spent even after retiring its own older generation:
    /// each memory retires its older generation when it sees this grow.
    squeezes: AtomicU64,
}

impl Budget {
    pub fn new(bytes_max: usize) -> Self {
        Self {
            bytes_max: AtomicUsize::new(bytes_max),
            bytes_held: AtomicUsize::new(0),
            squeezes: AtomicU64::new(0),
        }
    }

    pub fn set_bytes_max(&self, bytes_max: usize) {
        self.bytes_max.store(bytes_max, Ordering::Relaxed);
    }

    /// Bytes held now by the memories sharing it.
    pub fn bytes_held(&self) -> usize {
        self.bytes_held.load(Ordering::Relaxed)
    }

    fn has_room(&self, bytes: usize) -> bool {
        self.bytes_held() + bytes <= self.bytes_max.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) {
        self.bytes_held.fetch_add(bytes, Ordering::Relaxed);
    }

    fn give_back(&self, bytes: usize) {
        let before = self.bytes_held.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(before >= bytes, "a budget gave back more than it held");
    }
}

/// A memory's share of a budget and how it reckons an item's bytes.
struct Share {
    budget: Arc<Budget>,
    bytes_an_item: usize,
    bytes_a_weight: usize,
}

impl Share {
    /// The bytes `items` items weighing `weight` in all are reckoned at.
    fn bytes(&self, items: usize, weight: usize) -> usize {
        self.bytes_an_item * items + self.bytes_a_weight * weight
    }
}

pub struct Memory<K, V> {
    generation_max: usize,
    generation_weight_max: usize,
    /// Whether an item answered from the older generation moves to the newer one.
    promoting: bool,
    generations: Mutex<Generations<K, V>>,
    share: Option<Share>,
    /// Lookups answered from memory so far (`/metrics`).
    answered: AtomicU64,
}

struct Generations<K, V> {
    newer: HashMap<K, (V, usize)>,
    /// The weight of the items in `newer`.
    newer_weight: usize,
    older: HashMap<K, (V, usize)>,
    /// The weight of the items in `older`.
    older_weight: usize,
    /// The budget's squeezes when this memory last saw them.
    squeezes_seen: u64,
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
                older_weight: 0,
                squeezes_seen: 0,
            }),
            share: None,
            answered: AtomicU64::new(0),
        }
    }

    /// The memory moving an item answered from the older generation to the newer one.
    pub fn promoting(mut self) -> Self {
        self.promoting = true;
        self
    }

    /// The memory holding no more than `budget` allows besides its own bounds, an item
    /// reckoned at `bytes_an_item` and `bytes_a_weight` a unit of its weight.
    pub fn sharing(
        mut self,
        budget: &Arc<Budget>,
        bytes_an_item: usize,
        bytes_a_weight: usize,
    ) -> Self {
        assert!(
            self.is_empty(),
            "a memory joins a budget before it holds anything"
        );
        self.share = Some(Share {
            budget: budget.clone(),
            bytes_an_item,
            bytes_a_weight,
        });
        self
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
        let mut retired = Vec::new();
        let answered = {
            let mut generations = self.lock();
            retired.extend(self.yield_to_squeezes(&mut generations));
            match generations.newer.get(key) {
                Some((value, _)) => answer(value),
                None => match generations.older.get(key) {
                    None => None,
                    Some((value, _)) => {
                        let answered = answer(value);
                        if answered.is_some() && self.promoting {
                            let (key, (value, weight)) = generations
                                .older
                                .remove_entry(key)
                                .expect("the item was just found");
                            generations.older_weight -= weight;
                            self.give_back(weight);
                            retired.extend(self.hold(&mut generations, key, value, weight));
                        }
                        answered
                    }
                },
            }
        };
        retired.into_iter().for_each(free);
        let answered = answered?;
        self.answered.fetch_add(1, Ordering::Relaxed);
        Some(answered)
    }

    /// What `look` makes of the item held under `key`, if one is: not counted as answered,
    /// and not moved (a look at what is held, not an answer).
    pub fn peek<R>(&self, key: &K, look: impl FnOnce(&V) -> R) -> Option<R> {
        if self.is_off() {
            return None;
        }
        let generations = self.lock();
        let held = generations
            .newer
            .get(key)
            .or_else(|| generations.older.get(key));
        held.map(|(value, _)| look(value))
    }

    /// Holds `value` under `key` (in place of what it held there), weighing `weight`.
    pub fn remember(&self, key: K, value: V, weight: usize) {
        if self.is_off() || weight > self.generation_weight_max {
            return;
        }
        let retired = {
            let mut generations = self.lock();
            let squeezed = self.yield_to_squeezes(&mut generations);
            squeezed
                .into_iter()
                .chain(self.hold(&mut generations, key, value, weight))
                .collect::<Vec<_>>()
        };
        // Freed outside the lock.
        retired.into_iter().for_each(free);
    }

    /// The bytes an item of `weight` is reckoned at in the budget (0 without one).
    fn bytes(&self, weight: usize) -> usize {
        self.share
            .as_ref()
            .map_or(0, |share| share.bytes(1, weight))
    }

    fn give_back(&self, weight: usize) {
        if let Some(share) = &self.share {
            share.budget.give_back(self.bytes(weight));
        }
    }

    /// Retires the older generation, giving its bytes back to the budget; answers it, to be
    /// freed outside the lock.
    fn retire_older(&self, generations: &mut Generations<K, V>) -> HashMap<K, (V, usize)> {
        let newer = std::mem::take(&mut generations.newer);
        let retired = std::mem::replace(&mut generations.older, newer);
        if let Some(share) = &self.share {
            share
                .budget
                .give_back(share.bytes(retired.len(), generations.older_weight));
        }
        generations.older_weight = std::mem::take(&mut generations.newer_weight);
        retired
    }

    /// Retires the older generation if the budget was squeezed since this memory last looked.
    fn yield_to_squeezes(
        &self,
        generations: &mut Generations<K, V>,
    ) -> Option<HashMap<K, (V, usize)>> {
        let squeezes = self.share.as_ref()?.budget.squeezes.load(Ordering::Relaxed);
        if squeezes == generations.squeezes_seen {
            return None;
        }
        generations.squeezes_seen = squeezes;
        Some(self.retire_older(generations))
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
        let bytes = self.bytes(weight);
        let has_room = || {
            self.share
                .as_ref()
                .is_none_or(|share| share.budget.has_room(bytes))
        };
        let full = generations.newer.len() >= self.generation_max
            || generations.newer_weight + weight > self.generation_weight_max
            || !has_room();
        let retired = full.then(|| self.retire_older(generations));
        if !has_room() {
            // Its own older generation was not enough: every memory of the budget gives its
            // older one back at its next use, and this item is not held.
            if let Some(share) = &self.share {
                let squeezes = share.budget.squeezes.fetch_add(1, Ordering::Relaxed) + 1;
                generations.squeezes_seen = squeezes;
            }
            return retired;
        }
        if let Some(share) = &self.share {
            share.budget.take(bytes);
        }
        // An item held in the older generation stays there until it is dropped; lookups
        // find the newer one first.
        if let Some((_, replaced)) = generations.newer.insert(key, (value, weight)) {
            generations.newer_weight -= replaced;
            self.give_back(replaced);
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

impl<K, V> Drop for Memory<K, V> {
    fn drop(&mut self) {
        if let Some(share) = &self.share {
            let generations = self
                .generations
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let items = generations.newer.len() + generations.older.len();
            let weight = generations.newer_weight + generations.older_weight;
            share.budget.give_back(share.bytes(items, weight));
        }
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
    fn memories_sharing_a_budget_hold_no_more_than_it_together() {
        let budget = Arc::new(Budget::new(1_000));
        let first = Memory::new(1_000, 1_000)
            .promoting()
            .sharing(&budget, 10, 1);
        let second = Memory::new(1_000, 1_000).sharing(&budget, 0, 100);
        // The first takes it all: 100 items of 10 bytes.
        for i in 0..100 {
            first.remember(i, i, 0);
        }
        assert_eq!((first.len(), budget.bytes_held()), (100, 1_000));
        // The second's item does not fit: the first gives back its older generation (none
        // yet, all 100 are in the newer one) at its next use, and then its newer one.
        second.remember(0, 0, 1);
        assert!(second.is_empty());
        assert!(first.answer(&5, |v| Some(*v)).is_some());
        assert!(budget.bytes_held() <= 1_000);
        // Still no room: asked again, and at its next use the first gives back the older
        // generation it made of its newer one.
        second.remember(0, 0, 1);
        assert!(first.answer(&6, |v| Some(*v)).is_none(), "given back");
        second.remember(0, 0, 1);
        second.remember(1, 1, 1);
        assert_eq!(second.len(), 2, "room was made");
        assert!(
            first.answer(&5, |v| Some(*v)).is_some(),
            "asked again, kept"
        );
        let held = |memory: &Memory<i32, i32>, item_bytes, weight_bytes| {
            memory.len() * item_bytes + memory.weight() * weight_bytes
        };
        assert_eq!(
            budget.bytes_held(),
            held(&first, 10, 1) + held(&second, 0, 100)
        );
        for i in 0..1_000 {
            first.remember(i % 300, i, 1);
            second.remember(i % 7, i, i as usize % 3);
            first.answer(&(i % 50), |v| Some(*v));
            assert!(budget.bytes_held() <= 1_000, "{} held", budget.bytes_held());
            assert_eq!(
                budget.bytes_held(),
                held(&first, 10, 1) + held(&second, 0, 100)
            );
        }
        drop(first);
        drop(second);
        assert_eq!(budget.bytes_held(), 0);
    }

    #[test]
    fn a_bound_of_zero_holds_nothing() {
        let memory = Memory::new(0, 100);
        memory.remember(1, 1, 1);
        assert!(memory.answer(&1, |v| Some(*v)).is_none());
        assert!(memory.is_empty() && memory.is_off());
    }
}
