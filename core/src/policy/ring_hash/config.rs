//! ring_hash's settings, and how a resolver's parameters set them.

use std::fmt;

use http::header::HeaderName;

use super::RingHash;
use crate::policy::{parse_whole, Policy, PolicyBuilder, PolicyConfig, PolicyParamError};

/// The default smallest ring: 1024 entries.
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// The default largest ring: 4096 entries.
pub const DEFAULT_MAX_RING_SIZE: u64 = 4096;
/// No ring is larger than this, whatever the settings say: 8M entries (gRPC's cap).
pub const MAX_RING_SIZE_CAP: u64 = 8 * 1024 * 1024;

/// Settings of ring_hash.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingHashConfig {
    /// The smallest ring to build (clamped to 1..=8M, and to at most `max_ring_size`).
    pub min_ring_size: u64,
    /// The largest ring to build (clamped to 1..=8M).
    pub max_ring_size: u64,
    request_hash_header: Option<HeaderName>,
}

impl Default for RingHashConfig {
    fn default() -> Self {
        RingHashConfig {
            min_ring_size: DEFAULT_MIN_RING_SIZE,
            max_ring_size: DEFAULT_MAX_RING_SIZE,
            request_hash_header: None,
        }
    }
}

/// Why a ring_hash setting was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingHashConfigError {
    /// The request hash header is not a valid HTTP header name.
    InvalidHeaderName(String),
    /// The request hash header is a binary (`-bin`) header, whose bytes are not meant as a key.
    BinaryHeader(String),
    /// A ring size is 0, or the smallest ring is larger than the largest.
    RingSize {
        /// The smallest ring asked for.
        min: u64,
        /// The largest ring asked for.
        max: u64,
    },
}

impl fmt::Display for RingHashConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingHashConfigError::InvalidHeaderName(name) => write!(
                f,
                "ring_hash request_hash_header {name:?} is not a valid header name"
            ),
            RingHashConfigError::BinaryHeader(name) => write!(
                f,
                "ring_hash request_hash_header {name:?} is a binary header; name a text header"
            ),
            RingHashConfigError::RingSize { min, max } => write!(
                f,
                "ring_hash ring sizes must satisfy 1 <= min_ring_size <= max_ring_size, \
                 got min {min}, max {max}"
            ),
        }
    }
}

impl std::error::Error for RingHashConfigError {}

impl RingHashConfig {
    /// Sets [`RingHashConfig::min_ring_size`].
    pub fn min_ring_size(mut self, entries: u64) -> Self {
        self.min_ring_size = entries;
        self
    }

    /// Sets [`RingHashConfig::max_ring_size`].
    pub fn max_ring_size(mut self, entries: u64) -> Self {
        self.max_ring_size = entries;
        self
    }

    /// Hashes requests by the values of header `name` (gRFC A76). An empty name hashes by
    /// [`PickRequest::hash`](crate::PickRequest::hash) only. Binary (`-bin`) headers and invalid names are refused.
    pub fn request_hash_header(mut self, name: &str) -> Result<Self, RingHashConfigError> {
        if name.is_empty() {
            self.request_hash_header = None;
            return Ok(self);
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| RingHashConfigError::InvalidHeaderName(name.to_owned()))?;
        if header.as_str().ends_with("-bin") {
            return Err(RingHashConfigError::BinaryHeader(name.to_owned()));
        }
        self.request_hash_header = Some(header);
        Ok(self)
    }

    /// The header requests are hashed by, if one is set.
    pub fn hash_header(&self) -> Option<&HeaderName> {
        self.request_hash_header.as_ref()
    }

    /// The ring sizes in force: both within 1..=8M, the smallest no larger than the largest.
    pub(super) fn ring_sizes(&self) -> (u64, u64) {
        let max = self.max_ring_size.clamp(1, MAX_RING_SIZE_CAP);
        (self.min_ring_size.clamp(1, max), max)
    }
}

impl PolicyBuilder for RingHashConfig {
    fn name(&self) -> &str {
        "ring_hash"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(RingHash::new(self.clone()))
    }

    fn with_params(&self, params: &[(String, String)]) -> Result<PolicyConfig, PolicyParamError> {
        let mut config = self.clone();
        for (key, value) in params {
            match key.as_str() {
                "min_ring_size" | "minRingSize" => {
                    config.min_ring_size = parse_whole(self.name(), key, value)?
                }
                "max_ring_size" | "maxRingSize" => {
                    config.max_ring_size = parse_whole(self.name(), key, value)?
                }
                "request_hash_header" | "requestHashHeader" => {
                    config = config.request_hash_header(value).map_err(|error| {
                        let expected = match error {
                            RingHashConfigError::BinaryHeader(_) => {
                                "a text header, not a binary header (-bin)"
                            }
                            _ => "a valid header name",
                        };
                        PolicyParamError::invalid_value(self.name(), key, value, expected)
                    })?;
                }
                other => {
                    return Err(PolicyParamError::unknown_parameter(
                        self.name(),
                        other,
                        "min_ring_size, max_ring_size, request_hash_header",
                    ))
                }
            }
        }
        let (min, max) = (config.min_ring_size, config.max_ring_size);
        if min == 0 || max == 0 || min > max {
            let error = RingHashConfigError::RingSize { min, max };
            return Err(PolicyParamError::inconsistent(
                self.name(),
                error.to_string(),
            ));
        }
        Ok(PolicyConfig::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked() {
        let config = RingHashConfig::default();
        let ok = |k: &str, v: &str| config.with_params(&[(k.into(), v.into())]);
        assert!(ok("min_ring_size", "10").is_ok());
        assert!(ok("min_ring_size", "0").is_err());
        assert!(ok("min_ring_size", "5000").is_err(), "min above max");
        assert!(ok("maxRingSize", "x").is_err());
        assert!(ok("request_hash_header", "user-id").is_ok());
        assert!(ok("request_hash_header", "bad header").is_err());
        assert!(ok("bogus", "1").is_err());
    }

    #[test]
    fn oversized_settings_are_capped() {
        let config = RingHashConfig::default()
            .min_ring_size(u64::MAX)
            .max_ring_size(u64::MAX);
        assert_eq!(config.ring_sizes(), (MAX_RING_SIZE_CAP, MAX_RING_SIZE_CAP));
        let config = RingHashConfig::default().min_ring_size(0).max_ring_size(0);
        assert_eq!(config.ring_sizes(), (1, 1));
    }
}
