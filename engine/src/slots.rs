//! The shard's connection table: a slab (stable `usize` keys, vacant slots chained into a
//! free list and reused most recent first), like the `slab` crate's, plus one thing that
//! crate does not offer: [`Slots::prefetch`], a hint for the slot of a key computed from the
//! key alone.
//!
//! A per-user publish knows its recipients' keys long before it writes to them (it first
//! updates the user's state, history and enrichment, and serializes the frame). Hinting the
//! slots as soon as the keys are known lets those cache misses overlap that work; asking the
//! `slab` crate for the entry instead loads its tag, and the publish waits for it right there.

use std::ops::{Index, IndexMut};

use crate::prefetch::prefetch_write;

enum Slot<T> {
    Full(T),
    /// Vacant; the next vacant key, or `usize::MAX` at the end of the list.
    Free(usize),
}

/// See the [module docs](self).
pub(crate) struct Slots<T> {
    slots: Vec<Slot<T>>,
    /// The first vacant key, or `usize::MAX`.
    free: usize,
    len: usize,
}

impl<T> Slots<T> {
    pub(crate) fn new() -> Slots<T> {
        Slots {
            slots: Vec::new(),
            free: usize::MAX,
            len: 0,
        }
    }

    /// Occupied slots.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The number of slots, vacant ones included: one past the highest key handed out since
    /// the last [`clear`](Self::clear). Every key is below it.
    pub(crate) fn key_bound(&self) -> usize {
        self.slots.len()
    }

    /// Stores `value` and returns its key (a vacant one if any, most recently freed first).
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if self.free == usize::MAX {
            self.slots.push(Slot::Full(value));
            return self.slots.len() - 1;
        }
        let key = self.free;
        match std::mem::replace(&mut self.slots[key], Slot::Full(value)) {
            Slot::Free(next) => self.free = next,
            Slot::Full(_) => unreachable!("the free list holds only vacant slots"),
        }
        key
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.slots.get(key) {
            Some(Slot::Full(v)) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.slots.get_mut(key) {
            Some(Slot::Full(v)) => Some(v),
            _ => None,
        }
    }

    /// Removes and returns the value of `key`, if occupied.
    pub(crate) fn try_remove(&mut self, key: usize) -> Option<T> {
        let slot = self.slots.get_mut(key)?;
        if matches!(slot, Slot::Free(_)) {
            return None;
        }
        self.len -= 1;
        match std::mem::replace(slot, Slot::Free(self.free)) {
            Slot::Full(v) => {
                self.free = key;
                Some(v)
            }
            Slot::Free(_) => unreachable!("checked occupied above"),
        }
    }

    /// Occupied slots with their keys, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots.iter().enumerate().filter_map(|(k, s)| match s {
            Slot::Full(v) => Some((k, v)),
            Slot::Free(_) => None,
        })
    }

    /// Removes every value (keeps the memory).
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.free = usize::MAX;
        self.len = 0;
    }

    /// Hints the CPU to fetch every cache line of `key`'s slot, for writing (see
    /// [`crate::prefetch`]). Computes the address only: loads nothing, and does nothing for a
    /// key at or beyond [`key_bound`](Self::key_bound).
    #[inline]
    pub(crate) fn prefetch(&self, key: usize) {
        if key < self.slots.len() {
            let start = self.slots.as_ptr().wrapping_add(key) as usize;
            let end = start + std::mem::size_of::<Slot<T>>();
            let mut line = start & !63;
            while line < end {
                prefetch_write(line as *const u8);
                line += 64;
            }
        }
    }
}

impl<T> Index<usize> for Slots<T> {
    type Output = T;

    fn index(&self, key: usize) -> &T {
        self.get(key).expect("no value at this key")
    }
}

impl<T> IndexMut<usize> for Slots<T> {
    fn index_mut(&mut self, key: usize) -> &mut T {
        self.get_mut(key).expect("no value at this key")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::Slots;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(usize),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => any::<u32>().prop_map(Op::Insert),
            4 => (0usize..64).prop_map(Op::Remove),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Against a map from key to value: the same values at the same keys, keys stay
        /// below `key_bound`, and a freed key is reused before the table grows.
        #[test]
        fn behaves_like_a_map_of_keys(ops in proptest::collection::vec(op(), 0..200)) {
            let mut slots = Slots::new();
            let mut model: HashMap<usize, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(v) => {
                        let had_hole = model.len() < slots.key_bound();
                        let bound = slots.key_bound();
                        let k = slots.insert(v);
                        prop_assert!(!model.contains_key(&k), "key {k} handed out twice");
                        if had_hole {
                            prop_assert!(k < bound, "grew although a slot was free");
                        }
                        model.insert(k, v);
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(slots.try_remove(k), model.remove(&k));
                    }
                    Op::Clear => {
                        slots.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(slots.len(), model.len());
                for k in 0..slots.key_bound() + 2 {
                    prop_assert_eq!(slots.get(k), model.get(&k));
                    slots.prefetch(k);
                }
                let mut listed: Vec<(usize, u32)> = slots.iter().map(|(k, v)| (k, *v)).collect();
                let mut expected: Vec<(usize, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                listed.sort_unstable();
                expected.sort_unstable();
                prop_assert_eq!(listed, expected);
            }
        }
    }

    #[test]
    fn freed_keys_are_reused_most_recent_first() {
        let mut s = Slots::new();
        let keys: Vec<usize> = (0..4).map(|v| s.insert(v)).collect();
        assert_eq!(keys, [0, 1, 2, 3]);
        assert_eq!(s.try_remove(1), Some(1));
        assert_eq!(s.try_remove(3), Some(3));
        assert_eq!(s.try_remove(3), None);
        assert_eq!(s.insert(30), 3);
        assert_eq!(s.insert(10), 1);
        assert_eq!(s.insert(40), 4);
        s[4] += 1;
        assert_eq!(s[4], 41);
        assert_eq!(s.len(), 5);
    }
}
