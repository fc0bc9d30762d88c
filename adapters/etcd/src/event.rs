//! What the resolver tells an observer as it works, for logs and metrics.

use crate::error::EtcdError;

/// One thing the resolver did or met, as given to
/// [`EtcdResolver::on_event`](crate::EtcdResolver::on_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EtcdEvent {
    /// A list went to the channel, as one update: after a full read of the prefix, or after one
    /// watch response (every change of one etcd transaction arrives in one).
    Resolved {
        /// The key prefix.
        prefix: String,
        /// The member that answered (`host:port`).
        member: String,
        /// The etcd revision the list is as of.
        revision: i64,
        /// How many endpoints the list holds.
        endpoints: usize,
        /// How many keys were skipped for their values.
        skipped: usize,
        /// Whether it came from a full read (else from the watch).
        full_read: bool,
    },
    /// An error: a member that failed (the resolver moves on), every member failed, or a key
    /// skipped for its value (told once, when that value appears).
    Error(EtcdError),
}
