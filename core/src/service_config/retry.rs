//! Reading gRFC A6's settings: a method's `retryPolicy` or `hedgingPolicy`, as the
//! [`CallPolicy`] the retry machine runs, and `retryThrottling`. The rules are the retry
//! types' own (their constructors check them); this file reads the JSON and puts a refusal at
//! the field it names.

use serde_json::Value;

use crate::retry::{
    CallPolicy, CodeSet, HedgingPolicy, RetryPolicy, RetryPolicyError, RetryThrottle,
};
use crate::status::Code;

use super::config::RetryThrottling;
use super::error::ServiceConfigError;
use super::json::{Node, Object};

type Result<T> = std::result::Result<T, ServiceConfigError>;

/// A method config's `retryPolicy` and `hedgingPolicy`: one, the other or neither.
pub(crate) fn call_policy(node: &Node<'_>, fields: &Object<'_>) -> Result<CallPolicy> {
    let retry = fields.opt("retryPolicy", retry_policy)?;
    let hedging = fields.opt("hedgingPolicy", hedging_policy)?;
    CallPolicy::from_parts(retry, hedging).map_err(|error| refused(node, fields, &error))
}

/// A required field.
fn required<'a>(node: &Node<'a>, fields: &Object<'a>, key: &'a str) -> Result<Node<'a>> {
    fields
        .get(key)
        .ok_or_else(|| node.invalid(format!("{key} is required")))
}

/// `retryPolicy` (A6): every field required but `perAttemptRecvTimeout`; with it,
/// `retryableStatusCodes` may be left out or empty (the policy then retries timeouts alone, as
/// gRPC's clients allow).
fn retry_policy(node: &Node<'_>) -> Result<RetryPolicy> {
    let fields = node.object()?;
    let max_attempts = required(node, &fields, "maxAttempts")?.u32()?;
    let initial_backoff = required(node, &fields, "initialBackoff")?.duration()?;
    let max_backoff = required(node, &fields, "maxBackoff")?.duration()?;
    let multiplier = required(node, &fields, "backoffMultiplier")?.f64()?;
    let recv_timeout = fields.opt("perAttemptRecvTimeout", Node::duration)?;
    let policy = match recv_timeout {
        Some(timeout) => RetryPolicy::with_recv_timeout(
            max_attempts,
            initial_backoff,
            max_backoff,
            multiplier,
            fields
                .opt("retryableStatusCodes", status_codes)?
                .unwrap_or_default(),
            timeout,
        ),
        None => RetryPolicy::new(
            max_attempts,
            initial_backoff,
            max_backoff,
            multiplier,
            status_codes(&required(node, &fields, "retryableStatusCodes")?)?,
        ),
    };
    policy.map_err(|error| refused(node, &fields, &error))
}

/// `hedgingPolicy` (A6): `maxAttempts` required, `hedgingDelay` 0 and no non-fatal codes unless
/// given.
fn hedging_policy(node: &Node<'_>) -> Result<HedgingPolicy> {
    let fields = node.object()?;
    HedgingPolicy::new(
        required(node, &fields, "maxAttempts")?.u32()?,
        fields
            .opt("hedgingDelay", Node::duration)?
            .unwrap_or_default(),
        fields
            .opt("nonFatalStatusCodes", status_codes)?
            .unwrap_or_default(),
    )
    .map_err(|error| refused(node, &fields, &error))
}

/// The most `tokenRatio` can mean: a success that refills the largest bucket at once.
const MAX_TOKEN_RATIO_MILLIS: u32 = 1_000_000;

/// `retryThrottling` (A6): `maxTokens` from 1 to 1000, `tokenRatio` at least 0.001, to three
/// decimal places (further digits are dropped; a ratio above 1000 is taken as 1000). The values
/// are the ones [`RetryThrottle::with_thousandths`] takes, checked by it.
pub(crate) fn retry_throttling(node: &Node<'_>) -> Result<RetryThrottling> {
    let fields = node.object()?;
    let max_tokens = required(node, &fields, "maxTokens")?.u32()?;
    let ratio = required(node, &fields, "tokenRatio")?;
    let value = ratio.f64()?;
    // The tiny nudge keeps a ratio written as 4.35 from reading as 4.349 through binary
    // rounding; the cast saturates a negative ratio at 0.
    let millis = (value * 1000.0 * (1.0 + 1e-12)).floor();
    let token_ratio_millis = (millis as u32).min(MAX_TOKEN_RATIO_MILLIS);
    match RetryThrottle::with_thousandths(max_tokens, token_ratio_millis) {
        Ok(_) => Ok(RetryThrottling {
            max_tokens,
            token_ratio_millis,
        }),
        // The throttle saw the ratio in thousandths; the reader wrote it as a number.
        Err(RetryPolicyError::BadTokenRatio(_)) => {
            Err(ratio.invalid(format!("must be at least 0.001, got {value}")))
        }
        Err(error) => Err(refused(node, &fields, &error)),
    }
}

/// Puts a retry type's refusal at the field it names, saying what the field must be.
fn refused(node: &Node<'_>, fields: &Object<'_>, error: &RetryPolicyError) -> ServiceConfigError {
    let (key, rule) = match error {
        RetryPolicyError::TooFewAttempts { max_attempts, .. } => (
            "maxAttempts",
            format!("must be at least 2, got {max_attempts}"),
        ),
        RetryPolicyError::NonPositiveBackoff { field } => (*field, "must be more than 0s".into()),
        RetryPolicyError::ZeroPerAttemptRecvTimeout => {
            ("perAttemptRecvTimeout", "must be more than 0s".into())
        }
        RetryPolicyError::BadMultiplier(value) => (
            "backoffMultiplier",
            format!("must be more than 0, got {value}"),
        ),
        RetryPolicyError::NoRetryableCodes => (
            "retryableStatusCodes",
            "must name at least one status code, or perAttemptRecvTimeout be set".into(),
        ),
        RetryPolicyError::BadMaxTokens(value) => {
            ("maxTokens", format!("must be from 1 to 1000, got {value}"))
        }
        RetryPolicyError::BothPolicies => {
            return node
                .invalid("a method config may have a retryPolicy or a hedgingPolicy, not both")
        }
        other => return node.invalid(other.to_string()),
    };
    match fields.get(key) {
        Some(field) => field.invalid(rule),
        None => node.invalid(format!("{key} {rule}")),
    }
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
