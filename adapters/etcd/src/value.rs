//! An endpoint key's value, in the format etcd's Go `client/v3/naming/endpoints` package writes:
//! `{"Op":0,"Addr":"10.0.0.1:50051","Metadata":...}`, so that a Go service registering itself
//! with etcd's own client is found as it is.
//!
//! `Op` is 0 (add) in every value that package stores (a delete removes the key), and may be left
//! out; `Addr` is the address to connect to; `Metadata` is free JSON. When `Metadata` is an
//! object, croupier reads from it:
//!
//! - `weight`: a whole number, the endpoint's static weight (for weighted policies);
//! - `server_name`: the name its server answers to (TLS verification and `:authority`);
//! - `hierarchy`: an array of strings, its place in a tree of policies (`["p0", "zone-a"]`);
//! - every member whose value is a string, a number or a boolean also becomes a label of the
//!   same name (`zone`, `hash_key` for ring_hash, ...).

use std::net::SocketAddr;
use std::path::PathBuf;

use croupier::{Address, Endpoint};
use serde_json::{Map, Value};

/// `value` as an endpoint, or what is wrong with it.
pub(crate) fn decode(value: &[u8]) -> Result<Endpoint, String> {
    let json: Value = serde_json::from_slice(value)
        .map_err(|error| format!("the value is not JSON ({error})"))?;
    let Value::Object(fields) = json else {
        return Err("the value is not a JSON object with an Addr".into());
    };
    match fields.get("Op") {
        None => {}
        Some(op) if op.as_u64() == Some(0) => {}
        Some(op) => {
            return Err(format!(
                "Op is {op}, not 0 (add): only additions are stored as endpoints"
            ))
        }
    }
    let address = match fields.get("Addr") {
        Some(Value::String(address)) if !address.trim().is_empty() => parse_address(address),
        Some(Value::String(_)) => return Err("Addr is empty".into()),
        Some(other) => return Err(format!("Addr is {other}, not a string")),
        None => return Err("the value has no Addr".into()),
    };
    let mut endpoint = Endpoint::new(address);
    if let Some(Value::Object(metadata)) = fields.get("Metadata") {
        apply_metadata(&mut endpoint, metadata)?;
    }
    Ok(endpoint)
}

/// An `Addr` as croupier's address: an IP socket address, `unix:` and `unix-abstract:` paths,
/// or else a name the connector resolves (`host:port`).
fn parse_address(text: &str) -> Address {
    let text = text.trim();
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Address::Socket(socket);
    }
    if let Some(name) = text.strip_prefix("unix-abstract:") {
        return Address::UnixAbstract(name.to_owned());
    }
    if let Some(path) = text.strip_prefix("unix:") {
        return Address::Unix(PathBuf::from(path.trim_start_matches("//")));
    }
    Address::Opaque(text.into())
}

/// Reads the attributes croupier knows from `metadata` into `endpoint`.
fn apply_metadata(endpoint: &mut Endpoint, metadata: &Map<String, Value>) -> Result<(), String> {
    let attributes = endpoint.attributes_mut();
    for (name, value) in metadata {
        match value {
            Value::String(text) => attributes.set_label(name, text),
            Value::Number(number) => attributes.set_label(name, &number.to_string()),
            Value::Bool(flag) => attributes.set_label(name, if *flag { "true" } else { "false" }),
            _ => {}
        }
    }
    if let Some(weight) = metadata.get("weight") {
        let weight = weight
            .as_u64()
            .and_then(|weight| u32::try_from(weight).ok())
            .ok_or_else(|| format!("Metadata.weight is {weight}, not a whole number of 32 bits"))?;
        attributes.set_weight(weight);
    }
    match metadata.get("server_name") {
        None => {}
        Some(Value::String(name)) if !name.is_empty() => attributes.set_server_name(name),
        Some(other) => {
            return Err(format!(
                "Metadata.server_name is {other}, not a non-empty string"
            ))
        }
    }
    match metadata.get("hierarchy") {
        None => {}
        Some(Value::Array(path)) if path.iter().all(Value::is_string) => {
            attributes.set_hierarchy(path.iter().filter_map(Value::as_str));
        }
        Some(other) => {
            return Err(format!(
                "Metadata.hierarchy is {other}, not an array of strings"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_go_naming_format_reads_as_an_endpoint() {
        let endpoint = decode(br#"{"Op":0,"Addr":"127.0.0.1:50051","Metadata":null}"#).unwrap();
        assert_eq!(
            endpoint,
            Endpoint::new("127.0.0.1:50051".parse::<SocketAddr>().unwrap())
        );
        // Without Op, as `endpoints.Endpoint` marshals itself.
        let endpoint = decode(br#"{"Addr":"[::1]:7"}"#).unwrap();
        assert_eq!(endpoint.addresses()[0].to_string(), "[::1]:7");
    }

    #[test]
    fn metadata_sets_weight_server_name_hierarchy_and_labels() {
        let endpoint = decode(
            br#"{"Op":0,"Addr":"backend.internal:443","Metadata":{"weight":5,"zone":"eu-1a",
                "server_name":"api.example.com","hierarchy":["p0","eu-1a"],"canary":true,
                "nested":{"ignored":1}}}"#,
        )
        .unwrap();
        assert_eq!(
            endpoint.addresses(),
            [Address::Opaque("backend.internal:443".into())]
        );
        let attributes = endpoint.attributes();
        assert_eq!(attributes.weight(), 5);
        assert_eq!(attributes.label("zone"), Some("eu-1a"));
        assert_eq!(attributes.label("canary"), Some("true"));
        assert_eq!(attributes.label("weight"), Some("5"));
        assert_eq!(attributes.label("nested"), None);
        assert_eq!(attributes.server_name(), Some("api.example.com"));
        let hierarchy: Vec<&str> = attributes.hierarchy().iter().map(|s| &**s).collect();
        assert_eq!(hierarchy, ["p0", "eu-1a"]);
    }

    #[test]
    fn metadata_that_is_not_an_object_carries_nothing() {
        let endpoint = decode(br#"{"Addr":"127.0.0.1:1","Metadata":"free text"}"#).unwrap();
        assert_eq!(endpoint.attributes().labels().count(), 0);
    }

    #[test]
    fn unix_addresses_are_paths() {
        let endpoint = decode(br#"{"Addr":"unix:///run/app.sock"}"#).unwrap();
        assert_eq!(
            endpoint.addresses(),
            [Address::Unix(PathBuf::from("/run/app.sock"))]
        );
    }

    #[test]
    fn malformed_values_say_what_is_wrong() {
        for (value, expected) in [
            (&b"not json"[..], "not JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"Op":1,"Addr":"127.0.0.1:1"}"#, "Op is 1"),
            (br#"{"Op":0}"#, "no Addr"),
            (br#"{"Addr":""}"#, "Addr is empty"),
            (br#"{"Addr":7}"#, "Addr is 7"),
            (
                br#"{"Addr":"127.0.0.1:1","Metadata":{"weight":-2}}"#,
                "Metadata.weight is -2",
            ),
            (
                br#"{"Addr":"127.0.0.1:1","Metadata":{"weight":1e12}}"#,
                "Metadata.weight",
            ),
            (
                br#"{"Addr":"127.0.0.1:1","Metadata":{"server_name":3}}"#,
                "Metadata.server_name is 3",
            ),
            (
                br#"{"Addr":"127.0.0.1:1","Metadata":{"hierarchy":"p0"}}"#,
                "Metadata.hierarchy",
            ),
        ] {
            let error = decode(value).unwrap_err();
            assert!(
                error.contains(expected),
                "{}: {error}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
