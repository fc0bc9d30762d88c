//! Reading a whole service config: its top-level fields, `methodConfig` and the retry
//! settings, each checked as gRPC checks it (grpc/grpc `doc/service_config.md`, gRFC A6).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::status::Code;

use super::config::{LoadBalancingConfig, RetryThrottling, ServiceConfig};
use super::error::ServiceConfigError;
use super::json::{Node, Object};
use super::method::{
    CodeSet, HedgingPolicy, MethodConfig, MethodConfigs, MethodName, RetryPolicy,
    MAX_ATTEMPTS_LIMIT,
};
use super::registry::ServiceConfigParser;

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
    let retry_policy = fields.opt("retryPolicy", retry_policy)?;
    let hedging_policy = fields.opt("hedgingPolicy", hedging_policy)?;
    if retry_policy.is_some() && hedging_policy.is_some() {
        return Err(
            node.invalid("a method config may have a retryPolicy or a hedgingPolicy, not both")
        );
    }
    Ok(MethodConfig {
        timeout: fields.opt("timeout", Node::duration)?,
        wait_for_ready: fields.opt("waitForReady", Node::bool)?,
        max_request_message_bytes: fields.opt("maxRequestMessageBytes", Node::u64)?,
        max_response_message_bytes: fields.opt("maxResponseMessageBytes", Node::u64)?,
        retry_policy,
        hedging_policy,
    })
}

/// A required field.
fn required<'a>(node: &Node<'a>, fields: &Object<'a>, key: &'a str) -> Result<Node<'a>> {
    fields
        .get(key)
        .ok_or_else(|| node.invalid(format!("{key} is required")))
}

/// `maxAttempts`: at least 2; more than 5 is taken as 5 (A6).
fn max_attempts(node: &Node<'_>) -> Result<u32> {
    match node.u32()? {
        attempts @ 0..=1 => Err(node.invalid(format!("must be at least 2, got {attempts}"))),
        attempts => Ok(attempts.min(MAX_ATTEMPTS_LIMIT)),
    }
}

/// A duration that must be more than zero.
fn positive_duration(node: &Node<'_>) -> Result<std::time::Duration> {
    match node.duration()? {
        zero if zero.is_zero() => Err(node.invalid("must be more than 0s")),
        duration => Ok(duration),
    }
}

/// `retryPolicy` (A6): every field required but `perAttemptRecvTimeout`.
fn retry_policy(node: &Node<'_>) -> Result<RetryPolicy> {
    let fields = node.object()?;
    let multiplier = required(node, &fields, "backoffMultiplier")?;
    let backoff_multiplier = multiplier.f64()?;
    if backoff_multiplier <= 0.0 {
        return Err(multiplier.invalid(format!("must be more than 0, got {backoff_multiplier}")));
    }
    let codes = required(node, &fields, "retryableStatusCodes")?;
    let retryable_status_codes = status_codes(&codes)?;
    if retryable_status_codes.is_empty() {
        return Err(codes.invalid("must name at least one status code"));
    }
    Ok(RetryPolicy {
        max_attempts: max_attempts(&required(node, &fields, "maxAttempts")?)?,
        initial_backoff: positive_duration(&required(node, &fields, "initialBackoff")?)?,
        max_backoff: positive_duration(&required(node, &fields, "maxBackoff")?)?,
        backoff_multiplier,
        retryable_status_codes,
        per_attempt_recv_timeout: fields.opt("perAttemptRecvTimeout", positive_duration)?,
    })
}

/// `hedgingPolicy` (A6): `maxAttempts` required, `hedgingDelay` 0 and no non-fatal codes unless
/// given.
fn hedging_policy(node: &Node<'_>) -> Result<HedgingPolicy> {
    let fields = node.object()?;
    Ok(HedgingPolicy {
        max_attempts: max_attempts(&required(node, &fields, "maxAttempts")?)?,
        hedging_delay: fields
            .opt("hedgingDelay", Node::duration)?
            .unwrap_or_default(),
        non_fatal_status_codes: fields
            .opt("nonFatalStatusCodes", status_codes)?
            .unwrap_or_default(),
    })
}

/// A list of status codes, each by name in any case (`"UNAVAILABLE"`, `"unavailable"`) or by
/// number (`14`), as A6 allows.
fn status_codes(list: &Node<'_>) -> Result<CodeSet> {
    let mut set = CodeSet::new();
    for item in list.items()? {
        set = set.with(status_code(&item)?);
    }
    Ok(set)
}

fn status_code(node: &Node<'_>) -> Result<Code> {
    const CODES: u32 = 17;
    let found = match node.value() {
        Value::String(name) => (0..CODES)
            .map(Code::from_value)
            .find(|code| code.as_str().eq_ignore_ascii_case(name)),
        Value::Number(_) => Some(node.u32()?)
            .filter(|value| *value < CODES)
            .map(Code::from_value),
        _ => return Err(node.type_error("a status code name or number")),
    };
    found.ok_or_else(|| {
        node.invalid(format!(
            "is not a gRPC status code, got {}",
            ServiceConfigError::quote(node.value())
        ))
    })
}

/// The most `tokenRatio` can mean: a success that refills the largest bucket at once.
const MAX_TOKEN_RATIO_MILLIS: u32 = 1_000_000;

/// `retryThrottling` (A6): `maxTokens` from 1 to 1000, `tokenRatio` more than 0, to three
/// decimal places (further digits are dropped; a ratio above 1000 is taken as 1000).
fn retry_throttling(node: &Node<'_>) -> Result<RetryThrottling> {
    let fields = node.object()?;
    let tokens = required(node, &fields, "maxTokens")?;
    let max_tokens = match tokens.u32()? {
        max @ 1..=1000 => max,
        max => return Err(tokens.invalid(format!("must be from 1 to 1000, got {max}"))),
    };
    let ratio = required(node, &fields, "tokenRatio")?;
    let value = ratio.f64()?;
    // The tiny nudge keeps a ratio written as 4.35 from reading as 4.349 through binary
    // rounding.
    let millis = (value * 1000.0 * (1.0 + 1e-12)).floor();
    if millis < 1.0 {
        return Err(ratio.invalid(format!("must be at least 0.001, got {value}")));
    }
    let token_ratio_millis = if millis >= f64::from(MAX_TOKEN_RATIO_MILLIS) {
        MAX_TOKEN_RATIO_MILLIS
    } else {
        millis as u32
    };
    Ok(RetryThrottling {
        max_tokens,
        token_ratio_millis,
    })
}
