//! What an `etcd` target names: the members to ask (the authority) and the key prefix whose keys
//! are the endpoints (the endpoint, that is the path without its leading `/`).

use croupier::Target;

use crate::error::EtcdError;

/// An `etcd://member,member/prefix` target, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EtcdTarget {
    /// The members, `host:port` each, in the target's order.
    pub(crate) members: Vec<String>,
    /// The prefix every endpoint key starts with: the target's endpoint and a `/`, as etcd's
    /// `naming/endpoints` manager requires of the keys it writes.
    pub(crate) prefix: String,
}

impl EtcdTarget {
    /// Takes `target` apart; `default_port` is used for a member that names no port (etcd's
    /// client port is 2379).
    pub(crate) fn parse(target: &Target) -> Result<EtcdTarget, EtcdError> {
        let invalid = |reason: String| EtcdError::InvalidTarget {
            target: redacted(&target.to_string()),
            reason,
        };
        let mut members = Vec::new();
        for member in target.authority().split(',') {
            let member = member.trim();
            if member.is_empty() {
                continue;
            }
            if member.contains('@') {
                return Err(invalid(
                    "a member carries credentials: give them to EtcdResolver::user, never \
                     to the target"
                        .into(),
                ));
            }
            members.push(with_port(member));
        }
        if members.is_empty() {
            return Err(invalid(
                "it names no etcd member: write etcd://127.0.0.1:2379,127.0.0.1:22379/prefix"
                    .into(),
            ));
        }
        let endpoint = target.endpoint().trim_end_matches('/');
        if endpoint.is_empty() {
            return Err(invalid(
                "it names no key prefix: write etcd://127.0.0.1:2379/services/echo".into(),
            ));
        }
        Ok(EtcdTarget {
            members,
            prefix: format!("{endpoint}/"),
        })
    }
}

/// `target` with any user information in its authority (`user:password@`) blanked out, so that
/// an error about it never repeats a password.
fn redacted(target: &str) -> String {
    let Some(at) = target.rfind('@') else {
        return target.to_owned();
    };
    let start = target.find("//").map_or(0, |slashes| slashes + 2);
    if start > at {
        return target.to_owned();
    }
    format!("{}<redacted>{}", &target[..start], &target[at..])
}

/// `member` with etcd's client port if it names none (`[::1]` -> `[::1]:2379`).
fn with_port(member: &str) -> String {
    let has_port = match member.rfind(']') {
        Some(bracket) => member[bracket..].contains(':'),
        None => member.contains(':'),
    };
    if has_port {
        member.to_owned()
    } else {
        format!("{member}:2379")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<EtcdTarget, EtcdError> {
        EtcdTarget::parse(&Target::parse(input, |scheme| scheme == "etcd").unwrap())
    }

    #[test]
    fn the_authority_lists_the_members_and_the_path_the_prefix() {
        let target = parse("etcd://127.0.0.1:2379,127.0.0.1:22379/services/echo").unwrap();
        assert_eq!(target.members, ["127.0.0.1:2379", "127.0.0.1:22379"]);
        assert_eq!(target.prefix, "services/echo/");
    }

    #[test]
    fn a_member_without_a_port_gets_etcds_client_port() {
        let target = parse("etcd://localhost,[::1],[::1]:3/a/b/").unwrap();
        assert_eq!(target.members, ["localhost:2379", "[::1]:2379", "[::1]:3"]);
        assert_eq!(target.prefix, "a/b/");
    }

    #[test]
    fn a_target_without_members_or_prefix_says_what_to_write() {
        let error = parse("etcd:///services/echo").unwrap_err().to_string();
        assert!(error.contains("names no etcd member"), "{error}");
        let error = parse("etcd://127.0.0.1:2379/").unwrap_err().to_string();
        assert!(error.contains("names no key prefix"), "{error}");
    }

    #[test]
    fn credentials_in_the_authority_are_refused() {
        let error = parse("etcd://root:secret@127.0.0.1:2379/services/echo")
            .unwrap_err()
            .to_string();
        assert!(error.contains("EtcdResolver::user"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
