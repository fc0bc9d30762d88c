//! The keys under the prefix as the resolver last read and watched them: each one an endpoint,
//! or the reason its value is not one.

use std::collections::BTreeMap;

use croupier::{Endpoint, ResolverUpdate};

use crate::error::EtcdError;
use crate::value;

/// The endpoints by key, in key order (the order etcd lists them in, so that the same keys give
/// the same list whatever order the changes came in).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    entries: BTreeMap<Vec<u8>, Result<Endpoint, String>>,
}

impl Registry {
    /// `key` now holds `value` (a put, or a key of a full read).
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) {
        self.entries.insert(key.to_vec(), value::decode(value));
    }

    /// `key` was deleted.
    pub(crate) fn delete(&mut self, key: &[u8]) {
        self.entries.remove(key);
    }

    /// The list to report: every well-formed endpoint, in key order.
    pub(crate) fn update(&self) -> ResolverUpdate {
        ResolverUpdate::new(
            self.entries
                .values()
                .filter_map(|entry| entry.as_ref().ok())
                .cloned(),
        )
    }

    /// The keys skipped for their values, each with the reason, in key order.
    pub(crate) fn malformed(&self) -> Vec<EtcdError> {
        self.entries
            .iter()
            .filter_map(|(key, entry)| {
                let reason = entry.as_ref().err()?;
                Some(EtcdError::MalformedValue {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: reason.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(address: &str) -> Vec<u8> {
        format!(r#"{{"Op":0,"Addr":"{address}","Metadata":null}}"#).into_bytes()
    }

    fn addresses(update: &ResolverUpdate) -> Vec<String> {
        update
            .endpoints
            .iter()
            .map(|endpoint| endpoint.addresses()[0].to_string())
            .collect()
    }

    #[test]
    fn puts_and_deletes_give_the_list_in_key_order() {
        let mut registry = Registry::default();
        registry.put(b"s/b", &value("127.0.0.1:2"));
        registry.put(b"s/a", &value("127.0.0.1:1"));
        registry.put(b"s/c", &value("127.0.0.1:3"));
        registry.delete(b"s/b");
        registry.put(b"s/a", &value("127.0.0.1:9"));
        assert_eq!(
            addresses(&registry.update()),
            ["127.0.0.1:9", "127.0.0.1:3"]
        );
    }

    #[test]
    fn a_malformed_value_is_skipped_and_named_and_a_fix_restores_it() {
        let mut registry = Registry::default();
        registry.put(b"s/a", &value("127.0.0.1:1"));
        registry.put(b"s/bad", b"{oops");
        assert_eq!(addresses(&registry.update()), ["127.0.0.1:1"]);
        let malformed = registry.malformed();
        assert_eq!(malformed.len(), 1);
        assert!(
            malformed[0]
                .to_string()
                .starts_with("etcd key \"s/bad\" skipped: the value is not JSON"),
            "{}",
            malformed[0]
        );
        registry.put(b"s/bad", &value("127.0.0.1:2"));
        assert!(registry.malformed().is_empty());
        assert_eq!(
            addresses(&registry.update()),
            ["127.0.0.1:1", "127.0.0.1:2"]
        );
    }
}
