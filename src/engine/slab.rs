//! The connection table of both engines: a slab whose slots carry a
//! generation.
//!
//! A connection is named by its slot's index (the `ConnId` the worker
//! sees) plus the slot's generation at the time (`Key`), and the kernel's
//! work is tagged with both (`token.rs`). Freeing a slot moves its
//! generation on, so a completion or readiness event that names a previous
//! holder of the index is told apart from the connection that holds it
//! now, and dropped, instead of acting on it.
//!
//! Freed slots keep their value: the next connection to take the slot
//! reuses its allocations (send queue, iovec array, `msghdr`), so a
//! connection costs no allocation once the table has grown. What a freed
//! value must let go of at once (descriptors, lent memory) the engine
//! clears when it frees the slot; what the next holder must not inherit
//! it resets when it takes the slot.
//!
//! A well-known crate (`slab`) has no generations and drops the value of
//! a freed slot; `slotmap` has generations but drops the value too, and its
//! keys do not fit the 24-bit generation of a tag. This is small enough to
//! own, and it sits in the hottest loop.

use std::ops::{Index, IndexMut};

use crate::engine::token;

/// A slot and the generation of its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) struct Key {
    pub(in crate::engine) index: u32,
    pub(in crate::engine) gen: u32,
}

struct Slot<T> {
    /// Changes (within the tag's 24 bits) each time the slot is freed.
    gen: u32,
    occupied: bool,
    value: T,
}

pub(in crate::engine) struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Indices of the free slots; the last freed is taken first, while
    /// its memory is still warm.
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Slab<T> {
        Slab::with_capacity(0)
    }
}

impl<T> Slab<T> {
    /// A table with room for `capacity` slots before it reallocates.
    pub(in crate::engine) fn with_capacity(capacity: usize) -> Slab<T> {
        Slab {
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
        }
    }

    /// Take a free slot (the most recently freed one) or add one made by
    /// `new`. The value is handed back as the previous holder left it (or
    /// new): the caller resets what the new holder must not inherit.
    pub(in crate::engine) fn insert(&mut self, new: impl FnOnce() -> T) -> (Key, &mut T) {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len())
                    .expect("a connection table of 2^32 slots cannot be addressed");
                self.slots.push(Slot {
                    gen: 0,
                    occupied: false,
                    value: new(),
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        debug_assert!(!slot.occupied, "a free slot was occupied");
        slot.occupied = true;
        let key = Key {
            index,
            gen: slot.gen,
        };
        (key, &mut slot.value)
    }

    /// Free the slot at `index`: its generation moves on, so keys of the
    /// holder no longer match, and the index may be handed out again.
    /// Returns the value (kept for the next holder) for the caller to
    /// clear; `None` when the slot was not occupied.
    pub(in crate::engine) fn remove(&mut self, index: u32) -> Option<&mut T> {
        let slot = self.slots.get_mut(index as usize)?;
        if !slot.occupied {
            return None;
        }
        slot.occupied = false;
        slot.gen = token::next_gen(slot.gen);
        self.free.push(index);
        Some(&mut slot.value)
    }

    /// The holder `key` names, if it still holds its slot.
    #[inline]
    pub(in crate::engine) fn get(&self, key: Key) -> Option<&T> {
        match self.slots.get(key.index as usize) {
            Some(s) if s.occupied && s.gen == key.gen => Some(&s.value),
            _ => None,
        }
    }

    #[inline]
    pub(in crate::engine) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slots.get_mut(key.index as usize) {
            Some(s) if s.occupied && s.gen == key.gen => Some(&mut s.value),
            _ => None,
        }
    }

    /// The holder of slot `index`, whichever generation: for calls that
    /// name a connection by its `ConnId` only.
    #[inline]
    pub(in crate::engine) fn at(&self, index: u32) -> Option<&T> {
        match self.slots.get(index as usize) {
            Some(s) if s.occupied => Some(&s.value),
            _ => None,
        }
    }

    #[inline]
    pub(in crate::engine) fn at_mut(&mut self, index: u32) -> Option<&mut T> {
        match self.slots.get_mut(index as usize) {
            Some(s) if s.occupied => Some(&mut s.value),
            _ => None,
        }
    }

    /// The key of the holder of slot `index` now (a slot that exists).
    #[inline]
    pub(in crate::engine) fn key(&self, index: u32) -> Key {
        Key {
            index,
            gen: self.slots[index as usize].gen,
        }
    }

    /// Indices of the occupied slots, in order.
    pub(in crate::engine) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.occupied)
            .map(|(i, _)| i as u32)
    }

    /// The values of the occupied slots.
    pub(in crate::engine) fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.slots.iter().filter(|s| s.occupied).map(|s| &s.value)
    }

    /// Occupied slots.
    #[cfg(test)]
    pub(in crate::engine) fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.occupied).count()
    }

    /// Slots made so far, occupied or free.
    #[cfg(test)]
    pub(in crate::engine) fn slots(&self) -> usize {
        self.slots.len()
    }
}

/// The value of slot `index`, occupied or not: for paths that checked
/// the holder already. Panics past the end, as a `Vec` does.
impl<T> Index<u32> for Slab<T> {
    type Output = T;

    #[inline]
    fn index(&self, index: u32) -> &T {
        &self.slots[index as usize].value
    }
}

impl<T> IndexMut<u32> for Slab<T> {
    #[inline]
    fn index_mut(&mut self, index: u32) -> &mut T {
        &mut self.slots[index as usize].value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_hands_out_keys_that_find_their_value() {
        let mut slab = Slab::with_capacity(2);
        let (a, v) = slab.insert(|| 0);
        *v = 10;
        let (b, v) = slab.insert(|| 0);
        *v = 20;
        assert_ne!(a.index, b.index);
        assert_eq!(slab.get(a), Some(&10));
        assert_eq!(slab.get(b), Some(&20));
        assert_eq!(slab.at(b.index), Some(&20));
        assert_eq!(slab.len(), 2);
        *slab.get_mut(a).unwrap() += 1;
        assert_eq!(slab[a.index], 11);
        assert_eq!(slab.key(b.index), b);
    }

    #[test]
    fn remove_frees_the_slot_once() {
        let mut slab = Slab::default();
        let (a, _) = slab.insert(|| 'a');
        assert_eq!(slab.remove(a.index).copied(), Some('a'));
        assert_eq!(slab.remove(a.index), None, "a free slot is freed only once");
        assert_eq!(slab.remove(99), None, "past the end");
        assert_eq!(slab.len(), 0);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.at(a.index), None);
        assert_eq!(slab.at_mut(a.index), None);
        assert_eq!(slab.indices().count(), 0);
    }

    #[test]
    fn reuse_bumps_the_generation_and_keeps_the_value() {
        let mut slab = Slab::default();
        let (old, v) = slab.insert(Vec::<u8>::new);
        v.reserve(64);
        slab.remove(old.index);
        let (new, v) = slab.insert(|| unreachable!("the free slot is reused"));
        assert_eq!(new.index, old.index);
        assert_ne!(new.gen, old.gen);
        assert!(v.capacity() >= 64, "the next holder reuses the memory");
        assert_eq!(slab.slots(), 1);
    }

    #[test]
    fn a_stale_key_is_rejected_after_reuse() {
        let mut slab = Slab::default();
        let (old, _) = slab.insert(|| 1);
        slab.remove(old.index);
        let (new, v) = slab.insert(|| 0);
        *v = 2;
        assert_eq!(slab.get(old), None);
        assert_eq!(slab.get_mut(old), None);
        assert_eq!(slab.get(new), Some(&2));
        assert_eq!(slab.get(Key { index: 7, gen: 0 }), None, "past the end");
    }

    #[test]
    fn generation_wraps_within_the_tag_and_stays_distinct() {
        let mut slab = Slab::default();
        let (first, _) = slab.insert(|| ());
        let mut last = first;
        for _ in 0..3 {
            slab.remove(last.index);
            last = slab.insert(|| ()).0;
        }
        assert_eq!(last.gen, 3);
        slab.slots[0].gen = (1 << 24) - 1;
        slab.remove(0);
        assert_eq!(slab.insert(|| ()).0.gen, 0, "24 bits, as in a tag");
    }

    #[test]
    fn the_table_grows_past_its_capacity() {
        let mut slab = Slab::with_capacity(4);
        let keys: Vec<Key> = (0..100).map(|i| slab.insert(move || i).0).collect();
        assert_eq!(slab.len(), 100);
        assert_eq!(slab.slots(), 100);
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(slab.get(k), Some(&i));
        }
        for k in keys.iter().step_by(2) {
            slab.remove(k.index);
        }
        assert_eq!(slab.len(), 50);
        assert_eq!(slab.values().count(), 50);
        assert!(slab.indices().all(|i| i % 2 == 1));
        assert_eq!(slab.get(keys[1]), Some(&1));
        // Freed slots are taken before the table grows again.
        for _ in 0..50 {
            slab.insert(|| 0);
        }
        assert_eq!(slab.slots(), 100);
        slab.insert(|| 0);
        assert_eq!(slab.slots(), 101);
    }
}
