//! Finding an endpoint's child by its address list, in a table that holds only slot numbers.

use std::hash::{Hash, Hasher};

use crate::address::Address;
use crate::hasher::FastHasher;
use crate::slab::{Slab, SlabKey};

use super::Child;

/// The hash an endpoint's (deduplicated) address list is found by: the same whether the list
/// comes from an endpoint or from the child that holds it.
pub(super) fn addresses_hash<'a>(addresses: impl ExactSizeIterator<Item = &'a Address>) -> u64 {
    let mut hasher = FastHasher::default();
    hasher.write_usize(addresses.len());
    for address in addresses {
        address.hash(&mut hasher);
    }
    hasher.finish()
}

/// The child in slot `slot`, if there is one.
fn child_at<E>(children: &Slab<Child<E>>, slot: u32) -> Option<&Child<E>> {
    children.key_at(slot).and_then(|key| children.get(key))
}

/// Whether child `key` walks exactly `addresses` (deduplicated).
pub(super) fn holds<E>(children: &Slab<Child<E>>, key: SlabKey, addresses: &[Address]) -> bool {
    children
        .get(key)
        .is_some_and(|child| child.list.has_addresses(addresses))
}

/// Whether the child in slot `slot` walks exactly `addresses` (deduplicated).
pub(super) fn holds_at<E>(children: &Slab<Child<E>>, slot: u32, addresses: &[Address]) -> bool {
    child_at(children, slot).is_some_and(|child| child.list.has_addresses(addresses))
}

/// The hash the child in slot `slot` is found by (0 for an empty slot: the table holds none).
pub(super) fn slot_hash<E>(children: &Slab<Child<E>>, slot: u32) -> u64 {
    child_at(children, slot).map_or(0, |child| addresses_hash(child.list.addresses()))
}
