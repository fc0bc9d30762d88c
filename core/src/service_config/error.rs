//! Why a service config was refused: where in the JSON, and what was wrong there.

use std::fmt;

/// A service config that could not be used, naming the JSON path of the offending value
/// (`loadBalancingConfig[0].ring_hash_experimental.minRingSize`) and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfigError {
    path: String,
    kind: ServiceConfigErrorKind,
}

/// What was wrong with the value at a [`ServiceConfigError`]'s path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceConfigErrorKind {
    /// The text is not JSON at all (serde_json's message, with line and column).
    Syntax(String),
    /// The value has the wrong JSON type or form: `expected` says what was wanted, `got` is the
    /// value found, as compact JSON (shortened when long).
    Type {
        /// What the field takes ("a number", "a duration such as \"1.5s\"").
        expected: &'static str,
        /// The value found.
        got: String,
    },
    /// The value has the right form but is not allowed there (out of range, duplicated, ...).
    Invalid(String),
    /// None of the policies listed in a `loadBalancingConfig` is known.
    NoKnownPolicy(Vec<String>),
    /// A registered policy's own parser refused its config.
    Policy {
        /// The policy's name.
        policy: String,
        /// The parser's message.
        message: String,
    },
}

/// How much of an offending value an error quotes.
const QUOTED_CHARS: usize = 64;

impl ServiceConfigError {
    pub(crate) fn new(path: String, kind: ServiceConfigErrorKind) -> Self {
        ServiceConfigError { path, kind }
    }

    /// The JSON path of the offending value, empty for the whole document.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What was wrong there.
    pub fn kind(&self) -> &ServiceConfigErrorKind {
        &self.kind
    }

    /// Quotes `value` as compact JSON, shortened to a readable length.
    pub(crate) fn quote(value: &serde_json::Value) -> String {
        let mut text = value.to_string();
        if let Some((cut, _)) = text.char_indices().nth(QUOTED_CHARS) {
            text.truncate(cut);
            text.push_str("...");
        }
        text
    }
}

impl fmt::Display for ServiceConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceConfigErrorKind::Syntax(message) => {
                write!(f, "the service config is not valid JSON: {message}")
            }
            ServiceConfigErrorKind::Type { expected, got } => {
                write!(f, "expected {expected}, got {got}")
            }
            ServiceConfigErrorKind::Invalid(message) => f.write_str(message),
            ServiceConfigErrorKind::NoKnownPolicy(names) => {
                f.write_str("no known load-balancing policy among ")?;
                if names.is_empty() {
                    return f.write_str("an empty list");
                }
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name:?}")?;
                }
                Ok(())
            }
            ServiceConfigErrorKind::Policy { policy, message } => {
                write!(f, "policy {policy} refused its config: {message}")
            }
        }
    }
}

impl fmt::Display for ServiceConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.path, self.kind)
        }
    }
}

impl std::error::Error for ServiceConfigError {}
