//! The `service_config` fuzz target's check.

use croupier::service_config::MethodName;
use croupier::ServiceConfigParser;

/// Parses `bytes` as a service config: never a panic; an error's message starts with its path;
/// a config that parses prints as JSON that parses to the same config, and its lookup table
/// answers each of its names.
pub fn check_service_config(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let parser = ServiceConfigParser::new();
    let config = match parser.parse(text) {
        Ok(config) => config,
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with(error.path()),
                "{message:?} does not start with its path {:?}",
                error.path()
            );
            return;
        }
    };
    let printed = config.to_json();
    let again = parser
        .parse_value(&printed)
        .unwrap_or_else(|error| panic!("{text:?} printed as {printed}, which fails: {error}"));
    assert_eq!(again.to_json(), printed, "{text:?} printed as {printed}");
    assert_eq!(
        again.methods, config.methods,
        "{text:?} printed as {printed}"
    );
    for (name, method) in config.methods.iter() {
        let path = match name {
            MethodName::Method { service, method } => format!("/{service}/{method}"),
            MethodName::Service(service) => format!("/{service}/"),
            _ => continue,
        };
        assert_eq!(config.methods.for_path(&path), Some(method), "{path}");
    }
    let _ = config.methods.for_path(text);
    if let Some(policy) = config.policy() {
        let _ = policy.builder().build();
    }
}
