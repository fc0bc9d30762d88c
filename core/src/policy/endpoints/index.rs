//! Finding an endpoint's child by its address list, in a table that holds only slab keys.

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

/// Whether child `key` walks exactly `addresses` (deduplicated).
pub(super) fn holds<E>(children: &Slab<Child<E>>, key: SlabKey, addresses: &[Address]) -> bool {
    children
        .get(key)
        .is_some_and(|child| child.list.has_addresses(addresses))
}

/// The hash child `key` is found by (0 for a key with no child: the table holds none).
pub(super) fn child_hash<E>(children: &Slab<Child<E>>, key: SlabKey) -> u64 {
    children
        .get(key)
        .map_or(0, |child| addresses_hash(child.list.addresses()))
}
