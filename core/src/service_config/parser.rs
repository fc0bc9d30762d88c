//! Reading a whole service config: its top-level fields and `methodConfig`, each checked as gRPC
//! checks it (grpc/grpc `doc/service_config.md`); the retry settings (gRFC A6) are read by
//! [`super::retry`].

use std::sync::Arc;

use serde_json::{Map, Value};

use super::config::{LoadBalancingConfig, ServiceConfig};
use super::error::ServiceConfigError;
use super::json::{Node, Object};
use super::method::{MethodConfig, MethodConfigs, MethodName};
use super::registry::ServiceConfigParser;
use super::retry::{call_policy, retry_throttling};

type Result<T> = std::result::Result<T, ServiceConfigError>;

/// The whole document at `root`.
pub(crate) fn service_config(
    parser: &ServiceConfigParser,
    root: &Node<'_>,
) -> Result<ServiceConfig> {
    let fields = root.object()?;
    let load_balancing = match fields.get("loadBalancingConfig") {
        Some(list) => Some(parser.choose(&list)?),
        None => fields
            .get("loadBalancingPolicy")
            .map(|name| legacy_policy(parser, &name))
            .transpose()?,
    };
    let methods = match fields.get("methodConfig") {
        Some(list) => method_configs(&list)?,
        None => MethodConfigs::default(),
    };
    let retry_throttling = fields
        .get("retryThrottling")
        .map(|node| retry_throttling(&node))
        .transpose()?;
    let health_check_service_name = match fields.get("healthCheckConfig") {
        Some(health) => health
            .object()?
            .opt("serviceName", |name| name.string().map(str::to_owned))?,
        None => None,
    };
    Ok(ServiceConfig {
        load_balancing,
        methods,
        retry_throttling,
        health_check_service_name,
    })
}

/// The deprecated `loadBalancingPolicy`: a policy name, read case-insensitively as gRPC's C++ and
/// Java clients do, with no settings. Unlike grpc-go, which falls back to pick_first, an unknown
/// name is an error, as it is in `loadBalancingConfig`.
fn legacy_policy(parser: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    let name = node.string()?.to_ascii_lowercase();
    let empty = Value::Object(Map::new());
    let settings = Node::root(&empty);
    match parser.parse_named(&name, &settings) {
        Some(parsed) => {
            parsed.map_err(|error| node.invalid(format!("policy {name} needs settings: {error}")))
        }
        None => Err(node.invalid(format!("unknown load-balancing policy {name:?}"))),
    }
}

/// `methodConfig`: every entry's settings filed under each of its names, no name twice.
fn method_configs(list: &Node<'_>) -> Result<MethodConfigs> {
    let mut table = MethodConfigs::default();
    for item in list.items()? {
        let fields = item.object()?;
        // An entry without names applies to no call (and gRPC skips it as well).
        let Some(names) = fields.get("name") else {
            continue;
        };
        let config = Arc::new(method_config(&item, &fields)?);
        for name_node in names.items()? {
            let name = method_name(&name_node)?;
            if !table.insert(&name, &config) {
                return Err(name_node.invalid(match name {
                    MethodName::Default => "a second default method config ({})".to_owned(),
                    MethodName::Service(service) => {
                        format!("service {service:?} is named by an earlier method config")
                    }
                    MethodName::Method { service, method } => {
                        format!("method {service}/{method} is named by an earlier method config")
                    }
                }));
            }
        }
    }
    Ok(table)
}

/// One `name` entry: `{service, method}`, `{service}` or `{}`.
fn method_name(node: &Node<'_>) -> Result<MethodName> {
    let fields = node.object()?;
    let text = |key| -> Result<String> {
        Ok(fields
            .opt(key, |value| value.string().map(str::to_owned))?
            .unwrap_or_default())
    };
    let (service, method) = (text("service")?, text("method")?);
    match (service.is_empty(), method.is_empty()) {
        (true, true) => Ok(MethodName::Default),
        (true, false) => Err(node.invalid(format!(
            "method {method:?} needs a service: an empty service may only go with an empty method"
        ))),
        (false, true) => Ok(MethodName::Service(service)),
        (false, false) => Ok(MethodName::Method { service, method }),
    }
}

/// One entry's settings.
fn method_config(node: &Node<'_>, fields: &Object<'_>) -> Result<MethodConfig> {
    Ok(MethodConfig {
        timeout: fields.opt("timeout", Node::duration)?,
        wait_for_ready: fields.opt("waitForReady", Node::bool)?,
        max_request_message_bytes: fields.opt("maxRequestMessageBytes", Node::u64)?,
        max_response_message_bytes: fields.opt("maxResponseMessageBytes", Node::u64)?,
        call_policy: call_policy(node, fields)?,
    })
}
