//! Policy parameters from a resolver's [`PolicyChoice`](crate::PolicyChoice): why a list of them is
//! refused ([`PolicyParamError`]), and the readers every policy parses its values with.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a policy refused the parameters a resolver chose it with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyParamError {
    /// The name of the policy that refused them.
    pub policy: String,
    /// What was wrong with them.
    pub kind: PolicyParamErrorKind,
}

/// What was wrong with a policy's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyParamErrorKind {
    /// The policy has no settings, and the list was not empty.
    TakesNoParameters {
        /// The keys given.
        keys: Vec<String>,
    },
    /// The policy has no parameter of this name.
    UnknownParameter {
        /// The key given.
        key: String,
        /// The parameters the policy does know, as a list for people.
        known: String,
    },
    /// The parameter's value is not one the policy accepts.
    InvalidValue {
        /// The parameter.
        key: String,
        /// The value given.
        value: String,
        /// What the value must be, as a phrase ("a number of milliseconds").
        expected: String,
    },
    /// Each value is well-formed, but together they describe no valid setting.
    Inconsistent {
        /// Which values contradict each other, and how.
        reason: String,
    },
}

impl PolicyParamError {
    /// `policy` takes no parameters, and was given `keys`.
    pub fn takes_no_parameters<'a>(policy: &str, keys: impl IntoIterator<Item = &'a str>) -> Self {
        let keys = keys.into_iter().map(str::to_owned).collect();
        PolicyParamError::new(policy, PolicyParamErrorKind::TakesNoParameters { keys })
    }

    /// `policy` has no parameter `key`; `known` lists the ones it has.
    pub fn unknown_parameter(policy: &str, key: &str, known: &str) -> Self {
        let (key, known) = (key.to_owned(), known.to_owned());
        PolicyParamError::new(
            policy,
            PolicyParamErrorKind::UnknownParameter { key, known },
        )
    }

    /// `policy`'s parameter `key` must be `expected`, and was `value`.
    pub fn invalid_value(policy: &str, key: &str, value: &str, expected: &str) -> Self {
        let kind = PolicyParamErrorKind::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        PolicyParamError::new(policy, kind)
    }

    /// `policy`'s parameters contradict each other, as `reason` says.
    pub fn inconsistent(policy: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        PolicyParamError::new(policy, PolicyParamErrorKind::Inconsistent { reason })
    }

    fn new(policy: &str, kind: PolicyParamErrorKind) -> Self {
        PolicyParamError {
            policy: policy.to_owned(),
            kind,
        }
    }
}

impl fmt::Display for PolicyParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = &self.policy;
        match &self.kind {
            PolicyParamErrorKind::TakesNoParameters { keys } => write!(
                f,
                "policy {policy} takes no parameters, got {}",
                keys.join(", ")
            ),
            PolicyParamErrorKind::UnknownParameter { key, known } => {
                write!(
                    f,
                    "policy {policy} has no parameter {key:?} (known: {known})"
                )
            }
            PolicyParamErrorKind::InvalidValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "policy {policy} parameter {key} must be {expected}, got {value:?}"
            ),
            PolicyParamErrorKind::Inconsistent { reason } => {
                write!(
                    f,
                    "policy {policy} parameters do not fit together: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for PolicyParamError {}

/// Reads a boolean parameter value (`true`/`false`).
pub(crate) fn parse_bool(policy: &str, key: &str, value: &str) -> Result<bool, PolicyParamError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(PolicyParamError::invalid_value(
            policy,
            key,
            value,
            "true or false",
        )),
    }
}

/// Reads a duration parameter given in whole milliseconds.
pub(crate) fn parse_millis(
    policy: &str,
    key: &str,
    value: &str,
) -> Result<Duration, PolicyParamError> {
    value.parse().map(Duration::from_millis).map_err(|_| {
        PolicyParamError::invalid_value(policy, key, value, "a number of milliseconds")
    })
}

/// Reads a whole-number parameter (a count, a size, a percentage before its bound is checked).
pub(crate) fn parse_whole<T: FromStr>(
    policy: &str,
    key: &str,
    value: &str,
) -> Result<T, PolicyParamError> {
    value
        .parse()
        .map_err(|_| PolicyParamError::invalid_value(policy, key, value, "a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_policy_the_key_and_the_value() {
        let error = parse_millis("p2c_ewma", "decay_ms", "soon").unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy p2c_ewma parameter decay_ms must be a number of milliseconds, got \"soon\""
        );
        let error = PolicyParamError::takes_no_parameters("random", ["a", "b"]);
        assert_eq!(
            error.to_string(),
            "policy random takes no parameters, got a, b"
        );
        let error = PolicyParamError::unknown_parameter("least_request", "x", "choice_count");
        assert_eq!(
            error.to_string(),
            "policy least_request has no parameter \"x\" (known: choice_count)"
        );
        assert!(parse_bool("pick_first", "shuffle_address_list", "yes").is_err());
        assert_eq!(
            parse_whole::<u32>("ring_hash", "min_ring_size", "12"),
            Ok(12)
        );
    }
}
