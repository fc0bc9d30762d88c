//! gRPC service configs (grpc/grpc `doc/service_config.md`): the JSON a channel is configured
//! with, by its user or by its resolver, parsed into typed values.
//!
//! A service config chooses the load-balancing policy and its settings (`loadBalancingConfig`,
//! gRFC A24), sets per-method call settings (`methodConfig`: timeout, wait-for-ready, message
//! size limits, and a retry or hedging policy per gRFC A6), throttles retries
//! (`retryThrottling`) and names the health-check service (`healthCheckConfig`, gRFC A17).
//!
//! The retry settings are read into [`crate::retry`]'s types: a method's policy is the
//! [`CallPolicy`](crate::retry::CallPolicy) a [`RetryCall`](crate::retry::RetryCall) takes, and
//! [`RetryThrottling::throttle`] builds a channel's
//! [`RetryThrottle`](crate::retry::RetryThrottle). Their constructors check A6's rules, so a
//! config that parses holds policies the machine can run.
//!
//! ```
//! use std::time::Duration;
//! use croupier::retry::CallPolicy;
//! use croupier::service_config::{LoadBalancingConfig, ServiceConfigParser};
//!
//! let json = r#"{
//!     "loadBalancingConfig": [
//!         {"some_policy_this_client_lacks": {}},
//!         {"ring_hash_experimental": {"minRingSize": 64, "requestHashHeader": "user-id"}}
//!     ],
//!     "methodConfig": [{
//!         "name": [{"service": "echo.Echo"}],
//!         "timeout": "1.5s",
//!         "retryPolicy": {
//!             "maxAttempts": 3,
//!             "initialBackoff": "0.1s",
//!             "maxBackoff": "1s",
//!             "backoffMultiplier": 2,
//!             "retryableStatusCodes": ["UNAVAILABLE"]
//!         }
//!     }]
//! }"#;
//! let config = ServiceConfigParser::new().parse(json)?;
//!
//! // The first policy this client knows wins; its settings are typed.
//! let Some(LoadBalancingConfig::RingHash(ring)) = &config.load_balancing else {
//!     panic!("ring_hash was chosen");
//! };
//! assert_eq!(ring.min_ring_size, 64);
//! let policy = config.policy().unwrap(); // what a Balancer is configured with
//! assert_eq!(policy.name(), "ring_hash");
//!
//! // Method settings are found by a call's path, without allocating.
//! let method = config.methods.for_path("/echo.Echo/UnaryEcho").unwrap();
//! assert_eq!(method.timeout, Some(Duration::from_millis(1500)));
//! // Its retry policy is the one the retry machine runs (croupier::retry).
//! let CallPolicy::Retry(retry) = &method.call_policy else { panic!("a retry policy") };
//! assert_eq!(retry.max_attempts(), 3);
//! assert!(config.methods.for_path("/other.Service/Call").is_none());
//!
//! // A mistake is reported with its place in the document.
//! let error = ServiceConfigParser::new()
//!     .parse(r#"{"loadBalancingConfig": [{"ring_hash_experimental": {"minRingSize": "big"}}]}"#)
//!     .unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     r#"loadBalancingConfig[0].ring_hash_experimental.minRingSize: expected a number, got "big""#
//! );
//! # Ok::<(), croupier::service_config::ServiceConfigError>(())
//! ```
//!
//! ## How values are read
//!
//! - Fields are gRPC's, in protobuf's JSON form (camelCase). Fields this parser does not know are
//!   ignored, as gRPC ignores them, so configs written for newer clients still parse; a `null`
//!   field is the same as an absent one.
//! - Durations are protobuf JSON strings: `"10s"`, `"0.5s"`, `"1.000340012s"`, at most nine
//!   fractional digits. A negative duration, or one beyond protobuf's range (315,576,000,000 s),
//!   is an error, never clamped (gRPC's C++ parser refuses both too).
//! - Integers may be written as JSON numbers (`5`, also `5.0`) or as strings (`"5"`), as
//!   protobuf's JSON mapping allows and gRPC's C++ parser accepts (grpc-go's takes numbers
//!   only); floating-point fields likewise. A fraction, a negative number or one past the
//!   field's range is an error. Booleans are `true` or `false`, never strings.
//! - `loadBalancingConfig` is a list of one-field objects; the first whose policy the
//!   [`ServiceConfigParser`] knows is parsed and the rest are not looked at; unknown ones before
//!   it are skipped; none known is an error. Without it, the deprecated `loadBalancingPolicy`
//!   (a policy name, any case) is read; an unknown name is an error there too (grpc-go would fall
//!   back to pick_first).
//! - Out-of-range values gRPC clamps are clamped the same way: least_request's `choiceCount`
//!   above 10 is 10, a retry or hedging `maxAttempts` above 5 counts as 5 (the policy keeps
//!   the number written, and prints it), weighted_round_robin's `weightUpdatePeriod` below
//!   100 ms is 100 ms; `retryThrottling.tokenRatio` keeps three decimal places (A6), and above
//!   1000 is 1000. Everything else out of range is an error.
//! - A retry policy that breaks gRFC A6's rules is an error (grpc-go drops it with a warning
//!   instead), so the mistake is seen.
//! - In `methodConfig`, an entry without `name` applies to no call; a name given twice, in one
//!   entry or two, is an error, and so is a `method` without a `service`.
//! - An object that names a key twice is an error (gRPC's C++ reader refuses it too; a plain
//!   JSON reader would keep the last one and drop the other without a word).
//! - [`ServiceConfig::to_json`] writes a config back, every setting explicit; parsing that gives
//!   the same config.

mod config;
mod dns;
mod duration;
mod error;
mod json;
mod method;
mod parser;
mod policies;
mod printer;
mod registry;
mod retry;
mod strict;
mod trees;

pub use config::{
    CustomPolicy, IntoServiceConfig, LoadBalancingConfig, RetryThrottling, ServiceConfig,
};
pub use dns::{ClientCriteria, CLIENT_LANGUAGE, DNS_TXT_PREFIX};
pub use error::{ServiceConfigError, ServiceConfigErrorKind};
pub use method::{MethodConfig, MethodConfigs, MethodName};
pub use registry::ServiceConfigParser;

impl std::str::FromStr for ServiceConfig {
    type Err = ServiceConfigError;

    /// Parses with the built-in policies only; see [`ServiceConfigParser`] to add your own.
    fn from_str(json: &str) -> Result<Self, Self::Err> {
        ServiceConfigParser::new().parse(json)
    }
}
