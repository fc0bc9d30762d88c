//! What can go wrong between the resolver and its etcd registry, each error naming the member,
//! the prefix or the key it is about.

use std::fmt;
use std::time::Duration;

use croupier::ResolverError;

/// An error of the `etcd` resolver: reported to the channel as a [`ResolverError`] where it
/// leaves the resolver without a list, and to the observer given to
/// [`EtcdResolver::on_event`](crate::EtcdResolver::on_event) always.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EtcdError {
    /// The target does not name etcd members and a key prefix as
    /// `etcd://host:port,host:port/prefix` does.
    InvalidTarget {
        /// The target, as written.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A member could not be reached, or it failed a read or a watch: the resolver moves on to
    /// the next member.
    Member {
        /// The member (`host:port`).
        member: String,
        /// What was asked of it: "connect", "read", "watch".
        operation: &'static str,
        /// The error etcd or the transport gave.
        reason: String,
    },
    /// A member did not answer in time.
    Timeout {
        /// The member (`host:port`).
        member: String,
        /// What was asked of it.
        operation: &'static str,
        /// How long the resolver waited.
        after: Duration,
    },
    /// Every member failed in turn: the channel keeps its last list while the resolver tries
    /// again.
    AllMembersFailed {
        /// The key prefix being resolved.
        prefix: String,
        /// Each member's error, in the order they were tried.
        errors: Vec<EtcdError>,
    },
    /// No key under the prefix names an endpoint: calls fail with this until one does.
    NoEndpoints {
        /// The key prefix.
        prefix: String,
        /// The member that answered (`host:port`).
        member: String,
        /// The revision it answered as of.
        revision: i64,
    },
    /// A key under the prefix holds a value that is not an endpoint: the key is skipped and the
    /// rest of the list applied.
    MalformedValue {
        /// The key (lossily as UTF-8).
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdError::InvalidTarget { target, reason } => {
                write!(f, "invalid etcd target {target:?}: {reason}")
            }
            EtcdError::Member {
                member,
                operation,
                reason,
            } => write!(f, "etcd member {member}: {operation} failed: {reason}"),
            EtcdError::Timeout {
                member,
                operation,
                after,
            } => write!(
                f,
                "etcd member {member}: {operation} did not answer within {after:?}"
            ),
            EtcdError::AllMembersFailed { prefix, errors } => {
                write!(f, "no etcd member could list {prefix:?}")?;
                for (i, error) in errors.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    write!(f, "{error}")?;
                }
                Ok(())
            }
            EtcdError::NoEndpoints {
                prefix,
                member,
                revision,
            } => write!(
                f,
                "no endpoint is registered under etcd prefix {prefix:?} (member {member}, \
                 revision {revision})"
            ),
            EtcdError::MalformedValue { key, reason } => {
                write!(f, "etcd key {key:?} skipped: {reason}")
            }
        }
    }
}

impl std::error::Error for EtcdError {}

impl EtcdError {
    /// `member` failed `operation` with `reason`.
    pub(crate) fn member(member: &str, operation: &'static str, reason: impl fmt::Display) -> Self {
        EtcdError::Member {
            member: member.to_owned(),
            operation,
            reason: reason.to_string(),
        }
    }
}

impl From<&EtcdError> for ResolverError {
    fn from(error: &EtcdError) -> Self {
        ResolverError::new(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_members_error_is_quoted_when_all_failed() {
        let error = EtcdError::AllMembersFailed {
            prefix: "services/echo/".into(),
            errors: vec![
                EtcdError::Member {
                    member: "127.0.0.1:2379".into(),
                    operation: "connect",
                    reason: "connection refused".into(),
                },
                EtcdError::Timeout {
                    member: "127.0.0.1:22379".into(),
                    operation: "read",
                    after: Duration::from_secs(2),
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "no etcd member could list \"services/echo/\": etcd member 127.0.0.1:2379: connect \
             failed: connection refused; etcd member 127.0.0.1:22379: read did not answer \
             within 2s"
        );
        let resolver: ResolverError = (&error).into();
        assert!(resolver.message().contains("127.0.0.1:22379"));
    }
}
