//! A slab: values in one dense vector, addressed by a slot index and a generation.
//!
//! The core keeps its subchannels here and round_robin its endpoints. Against a hash map this
//! stores each value once, contiguously, in the order it was made (until slots are reused), and
//! finds it by indexing: at 10,000 endpoints, the memory a resolver update touches, and the page
//! faults of touching it first, are what its time goes to. A freed slot is reused by the next
//! insertion with its generation bumped, so a key to a removed value never finds its successor.

/// A key into a [`Slab`]: where the value sits and which occupant of that slot it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SlabKey {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

#[derive(Debug)]
enum Slot<T> {
    Occupied { generation: u32, value: T },
    Vacant { generation: u32 },
}

/// Values addressed by [`SlabKey`]s.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Vacant slots, the most recently freed last (reused first).
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// How many values it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key of the value in slot `index`, if one is there.
    pub(crate) fn key_at(&self, index: u32) -> Option<SlabKey> {
        self.get_at(index).map(|(key, _)| key)
    }

    /// The value in slot `index` with its key, if one is there.
    pub(crate) fn get_at(&self, index: u32) -> Option<(SlabKey, &T)> {
        match self.slots.get(index as usize) {
            Some(Slot::Occupied { generation, value }) => Some((
                SlabKey {
                    index,
                    generation: *generation,
                },
                value,
            )),
            _ => None,
        }
    }

    /// Makes room for `additional` more values without reallocating.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let new_slots = additional.saturating_sub(self.free.len());
        self.slots.reserve(new_slots);
    }

    /// The key the next [`Slab::insert`] will return.
    pub(crate) fn next_key(&self) -> SlabKey {
        match self.free.last() {
            Some(&index) => {
                let generation = match self.slots.get(index as usize) {
                    Some(Slot::Vacant { generation }) => *generation,
                    _ => 0,
                };
                SlabKey { index, generation }
            }
            None => SlabKey {
                index: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
                generation: 0,
            },
        }
    }

    /// Stores `value`; returns its key.
    pub(crate) fn insert(&mut self, value: T) -> SlabKey {
        let key = self.next_key();
        match self.free.pop() {
            Some(index) => {
                if let Some(slot) = self.slots.get_mut(index as usize) {
                    *slot = Slot::Occupied {
                        generation: key.generation,
                        value,
                    };
                }
            }
            None => self.slots.push(Slot::Occupied {
                generation: 0,
                value,
            }),
        }
        self.len += 1;
        key
    }

    /// The value under `key`, unless it was removed.
    pub(crate) fn get(&self, key: SlabKey) -> Option<&T> {
        match self.slots.get(key.index as usize) {
            Some(Slot::Occupied { generation, value }) if *generation == key.generation => {
                Some(value)
            }
            _ => None,
        }
    }

    /// The value under `key`, unless it was removed.
    pub(crate) fn get_mut(&mut self, key: SlabKey) -> Option<&mut T> {
        match self.slots.get_mut(key.index as usize) {
            Some(Slot::Occupied { generation, value }) if *generation == key.generation => {
                Some(value)
            }
            _ => None,
        }
    }

    /// Whether `key` holds a value.
    pub(crate) fn contains(&self, key: SlabKey) -> bool {
        self.get(key).is_some()
    }

    /// Takes the value under `key` out; its slot's next occupant gets the next generation.
    pub(crate) fn remove(&mut self, key: SlabKey) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        match slot {
            Slot::Occupied { generation, .. } if *generation == key.generation => {}
            _ => return None,
        }
        let vacant = Slot::Vacant {
            generation: key.generation.wrapping_add(1),
        };
        let Slot::Occupied { value, .. } = std::mem::replace(slot, vacant) else {
            return None;
        };
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// Every value with its key, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SlabKey, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Occupied { generation, value } => Some((
                    SlabKey {
                        index: index as u32,
                        generation: *generation,
                    },
                    value,
                )),
                Slot::Vacant { .. } => None,
            })
    }

    /// Every value, in slot order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.iter().map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_find_their_values_until_removed() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!(
            (slab.get(a), slab.get(b), slab.len()),
            (Some(&"a"), Some(&"b"), 2)
        );
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None, "removed once only");
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn a_reused_slot_does_not_answer_to_the_old_key() {
        let mut slab = Slab::default();
        let old = slab.insert(1);
        slab.remove(old);
        assert_eq!(slab.next_key().index, old.index);
        let new = slab.insert(2);
        assert_eq!(new.index, old.index);
        assert_ne!(new, old);
        assert_eq!((slab.get(old), slab.get(new)), (None, Some(&2)));
        assert_eq!(slab.get_mut(old), None);
        assert!(!slab.contains(old));
    }

    #[test]
    fn iteration_follows_the_slots_and_skips_the_vacant() {
        let mut slab = Slab::default();
        let keys: Vec<SlabKey> = (0..5).map(|i| slab.insert(i)).collect();
        slab.remove(keys[1]);
        slab.remove(keys[3]);
        assert_eq!(slab.values().copied().collect::<Vec<_>>(), vec![0, 2, 4]);
        assert_eq!(slab.len(), 3);
        assert!(!slab.is_empty());
        assert_eq!(slab.key_at(2), Some(keys[2]));
        assert_eq!(slab.key_at(1), None);
        assert_eq!(slab.key_at(9), None);
    }
}
