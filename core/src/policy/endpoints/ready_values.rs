//! A value per READY subchannel, kept across pickers: least_request's outstanding counts, and
//! p2c_ewma's and least_latency's meters.

use crate::subchannel::{DenseIdMap, SubchannelId};

/// A value per subchannel that the last picker offered, found by indexing with the handle's
/// slot: building a picker over `n` READY endpoints reads and writes these in the endpoints'
/// order (their subchannels' slots, nearly always ascending) instead of hashing each handle
/// into a set and a map (a cache miss each once they outgrow the cache).
#[derive(Debug)]
pub(crate) struct ReadyValues<V> {
    /// Each value, and the mark of the last picker that offered its subchannel.
    values: DenseIdMap<(bool, V)>,
    /// The mark of the last picker.
    mark: bool,
}

impl<V> Default for ReadyValues<V> {
    fn default() -> Self {
        ReadyValues {
            values: DenseIdMap::default(),
            mark: false,
        }
    }
}

impl<V> ReadyValues<V> {
    /// The value of `subchannel`, if the last picker offered it.
    pub(crate) fn get(&self, subchannel: &SubchannelId) -> Option<&V> {
        self.values.get(subchannel).map(|(_, value)| value)
    }

    /// The value of `subchannel`, if the last picker offered it.
    pub(crate) fn get_mut(&mut self, subchannel: &SubchannelId) -> Option<&mut V> {
        self.values.get_mut(subchannel).map(|(_, value)| value)
    }

    /// Every value.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.values.values_mut().map(|(_, value)| value)
    }

    /// The values of a new picker's `len` subchannels `ready` (each seen by `view`, in order):
    /// a subchannel the last picker offered keeps its value, a new one gets `make()`, and the
    /// values of those no longer offered are dropped.
    pub(crate) fn refresh<T>(
        &mut self,
        ready: impl Iterator<Item = SubchannelId>,
        len: usize,
        mut make: impl FnMut() -> V,
        mut view: impl FnMut(SubchannelId, &V) -> T,
    ) -> Vec<T> {
        // Every value kept holds the last picker's mark; those this picker offers get the
        // other one, and the rest then go.
        let mark = !self.mark;
        self.mark = mark;
        let mut views = Vec::with_capacity(len);
        for subchannel in ready {
            let (seen, value) = self
                .values
                .get_or_insert_with(subchannel, || (mark, make()));
            *seen = mark;
            views.push(view(subchannel, value));
        }
        self.values.retain(|(seen, _)| *seen == mark);
        views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(numbers: &[u64]) -> Vec<SubchannelId> {
        numbers.iter().map(|n| SubchannelId::from_u64(*n)).collect()
    }

    #[test]
    fn values_live_while_pickers_offer_their_subchannel() {
        let mut values = ReadyValues::default();
        let mut made = 0;
        let mut make = || {
            made += 1;
            made
        };
        let first = values.refresh(ids(&[1, 2, 3]).into_iter(), 3, &mut make, |_, v| *v);
        assert_eq!(first, vec![1, 2, 3]);
        let second = values.refresh(ids(&[3, 4, 1]).into_iter(), 3, &mut make, |_, v| *v);
        assert_eq!(second, vec![3, 4, 1], "3 and 1 keep theirs, 4 is new");
        assert_eq!(
            values.get(&SubchannelId::from_u64(2)),
            None,
            "2 was dropped"
        );
        let third = values.refresh(ids(&[2, 3]).into_iter(), 2, &mut make, |_, v| *v);
        assert_eq!(third, vec![5, 3], "2 came back with a new value");
        assert_eq!(values.get(&SubchannelId::from_u64(1)), None);
        assert_eq!(values.values_mut().count(), 2);
    }
}
