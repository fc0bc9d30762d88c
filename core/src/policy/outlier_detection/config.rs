//! outlier_detection's settings, and how a resolver's parameters set them.

use std::time::Duration;

use super::OutlierDetection;
use crate::policy::{
    builtins, parse_bool, parse_millis, parse_whole, Policy, PolicyBuilder, PolicyConfig,
    PolicyParamError,
};

/// Settings of success-rate ejection (gRFC A50); see the [policy docs](super).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SuccessRateEjection {
    /// How many standard deviations below the mean, times 1000, a success rate may fall (1900).
    pub stdev_factor: u32,
    /// The chance, in percent, that an outlier is really ejected (100).
    pub enforcement_percentage: u32,
    /// How many addresses must have enough calls for the algorithm to run (5).
    pub minimum_hosts: u32,
    /// How many calls in an interval an address needs to be judged (100).
    pub request_volume: u32,
}

impl Default for SuccessRateEjection {
    fn default() -> Self {
        SuccessRateEjection {
            stdev_factor: 1900,
            enforcement_percentage: 100,
            minimum_hosts: 5,
            request_volume: 100,
        }
    }
}

impl SuccessRateEjection {
    /// Sets [`SuccessRateEjection::stdev_factor`].
    pub fn stdev_factor(mut self, factor: u32) -> Self {
        self.stdev_factor = factor;
        self
    }

    /// Sets [`SuccessRateEjection::enforcement_percentage`] (capped at 100).
    pub fn enforcement_percentage(mut self, percent: u32) -> Self {
        self.enforcement_percentage = percent;
        self
    }

    /// Sets [`SuccessRateEjection::minimum_hosts`].
    pub fn minimum_hosts(mut self, hosts: u32) -> Self {
        self.minimum_hosts = hosts;
        self
    }

    /// Sets [`SuccessRateEjection::request_volume`].
    pub fn request_volume(mut self, calls: u32) -> Self {
        self.request_volume = calls;
        self
    }
}

/// Settings of failure-percentage ejection (gRFC A50); see the [policy docs](super).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailurePercentageEjection {
    /// The failure percentage above which an address is ejected (85).
    pub threshold: u32,
    /// The chance, in percent, that an outlier is really ejected (0: off unless set).
    pub enforcement_percentage: u32,
    /// How many addresses there must be for the algorithm to run (5).
    pub minimum_hosts: u32,
    /// How many calls in an interval an address needs to be judged (50).
    pub request_volume: u32,
}

impl Default for FailurePercentageEjection {
    fn default() -> Self {
        FailurePercentageEjection {
            threshold: 85,
            enforcement_percentage: 0,
            minimum_hosts: 5,
            request_volume: 50,
        }
    }
}

impl FailurePercentageEjection {
    /// Sets [`FailurePercentageEjection::threshold`] (capped at 100).
    pub fn threshold(mut self, percent: u32) -> Self {
        self.threshold = percent;
        self
    }

    /// Sets [`FailurePercentageEjection::enforcement_percentage`] (capped at 100).
    pub fn enforcement_percentage(mut self, percent: u32) -> Self {
        self.enforcement_percentage = percent;
        self
    }

    /// Sets [`FailurePercentageEjection::minimum_hosts`].
    pub fn minimum_hosts(mut self, hosts: u32) -> Self {
        self.minimum_hosts = hosts;
        self
    }

    /// Sets [`FailurePercentageEjection::request_volume`].
    pub fn request_volume(mut self, calls: u32) -> Self {
        self.request_volume = calls;
        self
    }
}

/// Settings of outlier_detection: the child policy, the timings and the two algorithms.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OutlierDetectionConfig {
    /// The policy that balances over the addresses not ejected.
    pub child_policy: PolicyConfig,
    /// How often ejections are decided (10 s; at least 1 ms).
    pub interval: Duration,
    /// How long a first ejection lasts (30 s).
    pub base_ejection_time: Duration,
    /// The longest ejection (300 s, or `base_ejection_time` if that is longer).
    pub max_ejection_time: Duration,
    /// The largest share of addresses ejected at once, in percent (10); one always may be.
    pub max_ejection_percent: u32,
    /// Success-rate ejection, if enabled (it is by default).
    pub success_rate_ejection: Option<SuccessRateEjection>,
    /// Failure-percentage ejection, if configured (it is, with enforcement 0: off).
    pub failure_percentage_ejection: Option<FailurePercentageEjection>,
}

impl OutlierDetectionConfig {
    /// Outlier detection around `child_policy`, with A50's defaults.
    pub fn new(child_policy: PolicyConfig) -> Self {
        OutlierDetectionConfig {
            child_policy,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            success_rate_ejection: Some(SuccessRateEjection::default()),
            failure_percentage_ejection: Some(FailurePercentageEjection::default()),
        }
    }

    /// Sets [`OutlierDetectionConfig::child_policy`].
    pub fn child_policy(mut self, child: PolicyConfig) -> Self {
        self.child_policy = child;
        self
    }

    /// Sets [`OutlierDetectionConfig::interval`].
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets [`OutlierDetectionConfig::base_ejection_time`].
    pub fn base_ejection_time(mut self, time: Duration) -> Self {
        self.base_ejection_time = time;
        self
    }

    /// Sets [`OutlierDetectionConfig::max_ejection_time`].
    pub fn max_ejection_time(mut self, time: Duration) -> Self {
        self.max_ejection_time = time;
        self
    }

    /// Sets [`OutlierDetectionConfig::max_ejection_percent`] (capped at 100).
    pub fn max_ejection_percent(mut self, percent: u32) -> Self {
        self.max_ejection_percent = percent;
        self
    }

    /// Sets (or, with `None`, disables) success-rate ejection.
    pub fn success_rate_ejection(mut self, settings: Option<SuccessRateEjection>) -> Self {
        self.success_rate_ejection = settings;
        self
    }

    /// Sets (or, with `None`, disables) failure-percentage ejection.
    pub fn failure_percentage_ejection(
        mut self,
        settings: Option<FailurePercentageEjection>,
    ) -> Self {
        self.failure_percentage_ejection = settings;
        self
    }

    pub(super) fn enabled(&self) -> bool {
        self.success_rate_ejection.is_some() || self.failure_percentage_ejection.is_some()
    }

    /// How long an ejection with this multiplier lasts.
    pub(super) fn ejection_time(&self, multiplier: u32) -> Duration {
        let longest = self.base_ejection_time.max(self.max_ejection_time);
        self.base_ejection_time
            .saturating_mul(multiplier)
            .min(longest)
    }
}

impl Default for OutlierDetectionConfig {
    /// Outlier detection around round_robin.
    fn default() -> Self {
        OutlierDetectionConfig::new(PolicyConfig::round_robin())
    }
}

const NAME: &str = "outlier_detection";

fn number(key: &str, value: &str) -> Result<u32, PolicyParamError> {
    parse_whole(NAME, key, value)
}

fn percent(key: &str, value: &str) -> Result<u32, PolicyParamError> {
    match number(key, value)? {
        p if p <= 100 => Ok(p),
        _ => Err(PolicyParamError::invalid_value(
            NAME,
            key,
            value,
            "a percentage, at most 100",
        )),
    }
}

impl PolicyBuilder for OutlierDetectionConfig {
    fn name(&self) -> &str {
        NAME
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(OutlierDetection::new(self.clone()))
    }

    /// Takes `child_policy=<name>` (a built-in policy, or the configured child's own name),
    /// `child_policy.<key>=<value>` for the child's parameters, `interval_ms`,
    /// `base_ejection_time_ms`, `max_ejection_time_ms`, `max_ejection_percent`,
    /// `success_rate=true|false` with `success_rate_stdev_factor`,
    /// `success_rate_enforcement_percentage`, `success_rate_minimum_hosts`,
    /// `success_rate_request_volume`, and `failure_percentage=true|false` with
    /// `failure_percentage_threshold`, `failure_percentage_enforcement_percentage`,
    /// `failure_percentage_minimum_hosts`, `failure_percentage_request_volume`.
    fn with_params(&self, params: &[(String, String)]) -> Result<PolicyConfig, PolicyParamError> {
        let mut config = self.clone();
        let mut child_params = Vec::new();
        for (key, value) in params {
            let sr = config.success_rate_ejection.clone().unwrap_or_default();
            let fp = config
                .failure_percentage_ejection
                .clone()
                .unwrap_or_default();
            match key.as_str() {
                "child_policy" | "childPolicy" => {
                    config.child_policy = if config.child_policy.name() == value {
                        config.child_policy.clone()
                    } else {
                        let builtins = builtins();
                        match builtins.iter().find(|policy| policy.name() == value) {
                            Some(policy) => policy.clone(),
                            None => {
                                let names: Vec<&str> =
                                    builtins.iter().map(PolicyConfig::name).collect();
                                let expected = format!("a built-in policy ({})", names.join(", "));
                                return Err(PolicyParamError::invalid_value(
                                    NAME, key, value, &expected,
                                ));
                            }
                        }
                    };
                }
                "interval_ms" => config.interval = parse_millis(NAME, key, value)?,
                "base_ejection_time_ms" => {
                    config.base_ejection_time = parse_millis(NAME, key, value)?
                }
                "max_ejection_time_ms" => {
                    config.max_ejection_time = parse_millis(NAME, key, value)?
                }
                "max_ejection_percent" => config.max_ejection_percent = percent(key, value)?,
                "success_rate" => {
                    config.success_rate_ejection = parse_bool(NAME, key, value)?.then_some(sr);
                }
                "success_rate_stdev_factor" => {
                    config.success_rate_ejection = Some(sr.stdev_factor(number(key, value)?));
                }
                "success_rate_enforcement_percentage" => {
                    let p = percent(key, value)?;
                    config.success_rate_ejection = Some(sr.enforcement_percentage(p));
                }
                "success_rate_minimum_hosts" => {
                    config.success_rate_ejection = Some(sr.minimum_hosts(number(key, value)?));
                }
                "success_rate_request_volume" => {
                    config.success_rate_ejection = Some(sr.request_volume(number(key, value)?));
                }
                "failure_percentage" => {
                    config.failure_percentage_ejection =
                        parse_bool(NAME, key, value)?.then_some(fp);
                }
                "failure_percentage_threshold" => {
                    config.failure_percentage_ejection = Some(fp.threshold(percent(key, value)?));
                }
                "failure_percentage_enforcement_percentage" => {
                    let p = percent(key, value)?;
                    config.failure_percentage_ejection = Some(fp.enforcement_percentage(p));
                }
                "failure_percentage_minimum_hosts" => {
                    let hosts = number(key, value)?;
                    config.failure_percentage_ejection = Some(fp.minimum_hosts(hosts));
                }
                "failure_percentage_request_volume" => {
                    let calls = number(key, value)?;
                    config.failure_percentage_ejection = Some(fp.request_volume(calls));
                }
                other => match other.strip_prefix("child_policy.") {
                    Some(child_key) => child_params.push((child_key.to_owned(), value.clone())),
                    None => {
                        return Err(PolicyParamError::unknown_parameter(
                            NAME,
                            other,
                            "child_policy, child_policy.<key>, interval_ms, \
                             base_ejection_time_ms, max_ejection_time_ms, max_ejection_percent, \
                             success_rate[_stdev_factor|_enforcement_percentage|_minimum_hosts|\
                             _request_volume], failure_percentage[_threshold|\
                             _enforcement_percentage|_minimum_hosts|_request_volume]",
                        ))
                    }
                },
            }
        }
        config.child_policy = config.child_policy.with_params(&child_params)?;
        Ok(PolicyConfig::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn ejection_time_grows_with_the_multiplier_up_to_the_max() {
        let config = OutlierDetectionConfig::default();
        assert_eq!(config.ejection_time(1), Duration::from_secs(30));
        assert_eq!(config.ejection_time(3), Duration::from_secs(90));
        assert_eq!(config.ejection_time(50), Duration::from_secs(300));
        let long_base = config.base_ejection_time(Duration::from_secs(600));
        assert_eq!(long_base.ejection_time(2), Duration::from_secs(600));
        assert_eq!(long_base.ejection_time(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn params_set_the_child_and_the_knobs() {
        let config = OutlierDetectionConfig::new(PolicyConfig::pick_first());
        let built = config
            .with_params(&params(&[
                ("child_policy", "round_robin"),
                ("interval_ms", "500"),
                ("failure_percentage_enforcement_percentage", "100"),
                ("success_rate", "false"),
            ]))
            .unwrap();
        let text = format!("{built:?}");
        assert!(text.contains("RoundRobinConfig"), "{text}");
        assert!(text.contains("interval: 500ms"), "{text}");
        assert!(text.contains("success_rate_ejection: None"), "{text}");
        assert!(text.contains("enforcement_percentage: 100"), "{text}");
        let child = config
            .with_params(&params(&[("child_policy.shuffle_address_list", "true")]))
            .unwrap();
        assert!(format!("{child:?}").contains("shuffle_address_list: true"));
    }

    #[test]
    fn bad_params_are_refused_with_the_key_named() {
        let config = OutlierDetectionConfig::default();
        for (key, value) in [
            ("child_policy", "no_such_policy"),
            ("max_ejection_percent", "101"),
            ("failure_percentage_threshold", "x"),
            ("interval_ms", "-1"),
            ("bogus", "1"),
            ("child_policy.bogus", "1"),
        ] {
            let error = config.with_params(&params(&[(key, value)])).unwrap_err();
            let (policy, key) = match key.strip_prefix("child_policy.") {
                Some(child_key) => ("round_robin", child_key),
                None => ("outlier_detection", key),
            };
            assert_eq!(error.policy, policy, "{error}");
            assert!(error.to_string().contains(key), "{error}");
        }
    }
}
