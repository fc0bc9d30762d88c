//! Service configs published in DNS (gRFC A2): a TXT record `grpc_config=[...]` at
//! `_grpc_config.<host>` lists service config choices, each with criteria (the client's
//! language, its host name, a percentage of clients); the first choice that matches the client
//! wins. The choosing is here, pure; the lookup is the adapter's.
//!
//! ```
//! use croupier::service_config::{ClientCriteria, ServiceConfigParser, DNS_TXT_PREFIX};
//!
//! let record = r#"grpc_config=[
//!     {"clientLanguage": ["go"], "serviceConfig": {"loadBalancingPolicy": "pick_first"}},
//!     {"percentage": 25, "serviceConfig": {"loadBalancingConfig": [{"ring_hash": {}}]}},
//!     {"serviceConfig": {"loadBalancingConfig": [{"round_robin": {}}]}}
//! ]"#;
//! assert!(record.starts_with(DNS_TXT_PREFIX));
//! // A client that drew 60 (of 1 to 100): not among the 25 %.
//! let client = ClientCriteria::new(60).hostname("web-1");
//! let chosen = client.choose([record], &ServiceConfigParser::new())?.expect("a choice");
//! assert_eq!(chosen.policy().unwrap().name(), "round_robin");
//! // One that drew 20 is.
//! let chosen = ClientCriteria::new(20).choose([record], &ServiceConfigParser::new())?;
//! assert_eq!(chosen.unwrap().policy().unwrap().name(), "ring_hash");
//! # Ok::<(), croupier::ServiceConfigError>(())
//! ```

use super::error::{ServiceConfigError, ServiceConfigErrorKind};
use super::json::{Node, Object};
use super::registry::ServiceConfigParser;
use super::{parser, strict, ServiceConfig};

/// What starts the TXT record that holds a service config (RFC 1464's attribute form).
pub const DNS_TXT_PREFIX: &str = "grpc_config=";

/// The language a croupier client names itself by in `clientLanguage`.
pub const CLIENT_LANGUAGE: &str = "rust";

/// The fields a choice may have; any other makes the record invalid (gRFC A2).
const CHOICE_FIELDS: [&str; 4] = [
    "clientLanguage",
    "percentage",
    "clientHostname",
    "serviceConfig",
];

type Result<T> = std::result::Result<T, ServiceConfigError>;

/// The client as a TXT record's choices see it: its language ([`CLIENT_LANGUAGE`]), its host
/// name if it knows one, and the number from 1 to 100 it drew for `percentage` (draw it once
/// per client, from the channel's seed, so a client keeps its choice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCriteria {
    hostname: Option<String>,
    draw: u8,
}

impl ClientCriteria {
    /// A client that drew `draw` (taken into 1 to 100) and has no host name: a choice with a
    /// `percentage` of at least `draw` matches it.
    pub fn new(draw: u8) -> Self {
        ClientCriteria {
            hostname: None,
            draw: draw.clamp(1, 100),
        }
    }

    /// The client's host name, as the system knows it (`clientHostname` matches it exactly).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// The service config that the TXT records of `_grpc_config.<host>` give this client:
    /// `records` are the records' texts (each one's strings joined, as RFC 4408 says); the one
    /// that starts with [`DNS_TXT_PREFIX`] is read. `Ok(None)` when no record is one, or no
    /// choice matches; an error, naming its place in the list, when the record is not a valid
    /// list of choices or the chosen config is invalid (gRFC A21 then applies to it).
    pub fn choose<'a>(
        &self,
        records: impl IntoIterator<Item = &'a str>,
        parser: &ServiceConfigParser,
    ) -> Result<Option<ServiceConfig>> {
        let Some(text) = records
            .into_iter()
            .find_map(|record| record.strip_prefix(DNS_TXT_PREFIX))
        else {
            return Ok(None);
        };
        let value = strict::read_json(text).map_err(|error| {
            ServiceConfigError::new(
                String::new(),
                ServiceConfigErrorKind::Syntax(error.to_string()),
            )
        })?;
        let root = Node::root(&value);
        let mut chosen = None;
        for choice in root.items()? {
            let fields = choice.object()?;
            let matches = self.matches(&choice, &fields)?;
            let config = fields
                .get("serviceConfig")
                .ok_or_else(|| choice.invalid("serviceConfig is required"))?;
            config.object()?;
            if matches && chosen.is_none() {
                chosen = Some(parser::service_config(parser, &config)?);
            }
        }
        Ok(chosen)
    }

    /// Whether `choice`'s criteria all match this client; an error if one is malformed.
    fn matches(&self, choice: &Node<'_>, fields: &Object<'_>) -> Result<bool> {
        if let Some(unknown) = fields.keys().find(|key| !CHOICE_FIELDS.contains(key)) {
            return Err(choice.invalid(format!(
                "unknown field {unknown:?} in a service config choice (known: {})",
                CHOICE_FIELDS.join(", ")
            )));
        }
        let language = strings(fields, "clientLanguage")?;
        let language_matches = language.is_empty()
            || language
                .iter()
                .any(|name| name.eq_ignore_ascii_case(CLIENT_LANGUAGE));
        let hosts = strings(fields, "clientHostname")?;
        let host_matches = hosts.is_empty()
            || self
                .hostname
                .as_deref()
                .is_some_and(|host| hosts.iter().any(|name| name == host));
        let percentage = match fields.get("percentage") {
            None => 100,
            Some(node) => match node.value().as_u64() {
                Some(percent @ 0..=100) => percent,
                _ => return Err(node.invalid("must be a whole number from 0 to 100")),
            },
        };
        Ok(language_matches && host_matches && u64::from(self.draw) <= percentage)
    }
}

/// The list of strings at `key` (empty when absent).
fn strings<'a>(fields: &Object<'a>, key: &'a str) -> Result<Vec<String>> {
    let Some(list) = fields.get(key) else {
        return Ok(Vec::new());
    };
    let names = list
        .items()?
        .map(|item| item.string().map(str::to_owned))
        .collect();
    names
}
