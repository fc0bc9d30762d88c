//! Timer tokens: how a policy names its timers, and how a policy that wraps others (children
//! per endpoint, a wrapped child policy) keeps its children's timers apart from its own.
//!
//! A token is a kind (the `u32` its maker chose) and a path of up to [`TimerToken::MAX_DEPTH`]
//! child slots (`u32`s), one per wrapping controller it passed through on the way up; 24 bytes,
//! copied, never allocated. A wrapping controller adds its child's slot with
//! [`TimerToken::child`] when the child sets a timer, and takes it off again with
//! [`TimerToken::split`] when the timer fires, so each state machine only ever sees the tokens it
//! made itself. Tokens of different children, or of a child and its parent, never compare equal.
//! Timers due at the same instant fire in token order: a policy's children's timers (by slot)
//! before its own (by kind).

use std::fmt;

/// The path segment that ends a path: the token belongs to the policy that reads it. Slots are
/// below it.
const OWN: u32 = u32::MAX;
/// Path segments: the slots and the segment that ends them.
const SEGMENTS: usize = TimerToken::MAX_DEPTH + 1;

/// Names a timer set with [`Controller::set_timer`](crate::policy::Controller::set_timer) and
/// given back to [`Policy::timer`](crate::policy::Policy::timer).
///
/// Make one from your own value with [`TimerToken::new`] and read it back with
/// [`TimerToken::kind`]; a token never needs packing or unpacking by hand.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerToken {
    /// Child slots, outermost first, then [`OWN`], then zeros. (Compared first: a policy's
    /// children's timers order before its own.)
    path: [u32; SEGMENTS],
    kind: u32,
}

impl TimerToken {
    /// How many wrapping controllers a token can pass through: a policy's timer can sit this many
    /// levels below the balancer's policy (outlier_detection over outlier_detection over
    /// round_robin's endpoints is three). [`TimerToken::child`] refuses to go deeper.
    pub const MAX_DEPTH: usize = 4;

    /// A token of this policy's own, of kind `kind` (a number or an enum's discriminant).
    pub const fn new(kind: u32) -> Self {
        let mut path = [0; SEGMENTS];
        path[0] = OWN;
        TimerToken { path, kind }
    }

    /// The kind given to [`TimerToken::new`].
    pub const fn kind(self) -> u32 {
        self.kind
    }

    /// `inner`, a token of the child in slot `slot`, as its parent hands it upward. `None` when
    /// `slot` is `u32::MAX` (reserved) or `inner` already passed through
    /// [`TimerToken::MAX_DEPTH`] wrapping controllers; such a timer cannot be named without
    /// colliding with another, so the caller must not set it.
    pub fn child(slot: u32, inner: TimerToken) -> Option<Self> {
        let (last, kept) = inner.path.split_last()?;
        if slot == OWN || *last != 0 {
            return None;
        }
        let mut path = [slot; SEGMENTS];
        path[1..].copy_from_slice(kept);
        Some(TimerToken {
            path,
            kind: inner.kind,
        })
    }

    /// For a token made by [`TimerToken::child`]: the child's slot and its own token. `None` for a
    /// token of the policy that reads it.
    pub fn split(self) -> Option<(u32, TimerToken)> {
        let (&slot, rest) = self.path.split_first()?;
        if slot == OWN {
            return None;
        }
        let mut path = [0; SEGMENTS];
        path[..SEGMENTS - 1].copy_from_slice(rest);
        Some((
            slot,
            TimerToken {
                path,
                kind: self.kind,
            },
        ))
    }
}

impl fmt::Debug for TimerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tuple = f.debug_tuple("TimerToken");
        let mut token = *self;
        while let Some((slot, inner)) = token.split() {
            tuple.field(&format_args!("child {slot}"));
            token = inner;
        }
        tuple.field(&format_args!("kind {}", token.kind())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_keeps_its_kind_and_path() {
        let own = TimerToken::new(7);
        assert_eq!(own.kind(), 7);
        assert_eq!(own.split(), None);
        let once = TimerToken::child(3, own).unwrap();
        assert_ne!(once, own);
        assert_eq!(once.split(), Some((3, own)));
        let twice = TimerToken::child(0, once).unwrap();
        assert_eq!(twice.split(), Some((0, once)));
        assert_eq!(format!("{twice:?}"), "TimerToken(child 0, child 3, kind 7)");
        let far = TimerToken::child(u32::MAX - 1, TimerToken::new(u32::MAX)).unwrap();
        assert_eq!(far.split(), Some((u32::MAX - 1, TimerToken::new(u32::MAX))));
    }

    #[test]
    fn tokens_of_different_owners_differ() {
        let kinds = [
            TimerToken::new(0),
            TimerToken::new(1),
            TimerToken::new(u32::MAX),
        ];
        let mut all = Vec::new();
        for kind in kinds {
            all.push(kind);
            for slot in [0, 1, u32::MAX - 1] {
                let one = TimerToken::child(slot, kind).unwrap();
                all.push(one);
                for outer in [0, 1] {
                    all.push(TimerToken::child(outer, one).unwrap());
                }
            }
        }
        let mut deduped = all.clone();
        deduped.sort();
        deduped.dedup();
        assert_eq!(deduped.len(), all.len());
    }

    #[test]
    fn a_token_is_small() {
        assert_eq!(std::mem::size_of::<TimerToken>(), 24);
    }

    #[test]
    fn nesting_past_the_limit_is_refused() {
        let mut token = TimerToken::new(1);
        for _ in 0..TimerToken::MAX_DEPTH {
            token = TimerToken::child(2, token).unwrap();
        }
        assert_eq!(TimerToken::child(2, token), None);
        assert_eq!(TimerToken::child(u32::MAX, TimerToken::new(1)), None);
    }

    #[test]
    fn children_fire_before_their_parent_at_the_same_instant() {
        let own = TimerToken::new(0);
        let child = TimerToken::child(u32::MAX - 1, TimerToken::new(u32::MAX)).unwrap();
        assert!(child < own);
        let first = TimerToken::child(1, TimerToken::new(9)).unwrap();
        let second = TimerToken::child(2, TimerToken::new(0)).unwrap();
        assert!(first < second);
    }
}
