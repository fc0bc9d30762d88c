//! What is simulated: the fleet, the clients, the load, and what happens over time; and the
//! built-in scenarios S1-S5.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::dist::ServiceTime;
use crate::retry::RetrySpec;

/// One backend: a FIFO server with `slots` calls in service at once, queueing the rest.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BackendSpec {
    /// Calls served at once.
    pub slots: usize,
    /// Mean service time of one call (before any slowdown).
    pub mean_service: Duration,
    /// One-way network delay between each client and this backend (requests, responses and
    /// connection set-up); see also [`Scenario::client_delays`].
    pub link_delay: Duration,
    /// Whether the resolver lists it from the start (a backend added later starts unlisted).
    pub listed: bool,
    /// Its place in a tree of policies, as the resolver lists it (croupier's
    /// `Attributes::hierarchy`: `["zone-a"]` puts it under a `priority` or `weighted_target`
    /// child named `zone-a`); empty for none.
    pub hierarchy: Vec<String>,
}

impl BackendSpec {
    /// A listed backend with no network delay.
    pub fn new(slots: usize, mean_service: Duration) -> Self {
        BackendSpec {
            slots,
            mean_service,
            link_delay: Duration::ZERO,
            listed: true,
            hierarchy: Vec::new(),
        }
    }

    /// Calls per second it can serve at full load.
    pub fn capacity(&self) -> f64 {
        self.slots as f64 / self.mean_service.as_secs_f64()
    }
}

/// Something that happens to the fleet at a given time.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum FleetEvent {
    /// Service times of `backend` become `factor` x its nominal mean (1.0 restores it).
    Slowdown {
        /// Index of the backend.
        backend: usize,
        /// Multiplier of the mean service time.
        factor: f64,
    },
    /// `backend` crashes: its connections close and every call it holds fails.
    Crash {
        /// Index of the backend.
        backend: usize,
    },
    /// `backend` comes back and accepts connections again.
    Restart {
        /// Index of the backend.
        backend: usize,
    },
    /// The resolver starts listing `backend`.
    Add {
        /// Index of the backend.
        backend: usize,
    },
    /// The resolver stops listing `backend` (calls it already holds still finish).
    Remove {
        /// Index of the backend.
        backend: usize,
    },
    /// From now on `backend` fails this share of the calls it serves with UNAVAILABLE, once it
    /// has served them (a dependency of its is down; its connections stay up). 0 heals it.
    Errors {
        /// Index of the backend.
        backend: usize,
        /// The chance that a call it serves fails, from 0 to 1.
        probability: f64,
    },
}

/// How connection attempts go.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ConnectSpec {
    /// How long an attempt takes to succeed or fail (on top of the link's round trip).
    pub setup: Duration,
    /// The chance that an attempt to a running backend fails anyway.
    pub failure_probability: f64,
}

impl Default for ConnectSpec {
    fn default() -> Self {
        ConnectSpec {
            setup: Duration::from_millis(1),
            failure_probability: 0.0,
        }
    }
}

/// A whole simulation setup. Build one with [`Scenario::builtin`] or by hand.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Scenario {
    /// A short name (`S2`).
    pub name: String,
    /// One line saying what it shows.
    pub description: String,
    /// The fleet, indexed from 0.
    pub backends: Vec<BackendSpec>,
    /// The shape of every backend's service times.
    pub service: ServiceTime,
    /// How many clients, each with its own balancer, share the load equally.
    pub clients: usize,
    /// Extra one-way delay on every link of client `i` (`client_delays[i]`, added to each
    /// backend's own `link_delay`); clients not listed have none.
    pub client_delays: Vec<Duration>,
    /// Calls per second offered by all clients together (a Poisson process).
    pub rate: f64,
    /// Calls are issued from 0 until this time.
    pub duration: Duration,
    /// Calls issued before this time are not counted (the fleet is connecting and queues fill).
    pub warmup: Duration,
    /// After `duration`, how long calls in progress may still finish before the run stops.
    pub grace: Duration,
    /// What happens to the fleet, and when.
    pub events: Vec<(Duration, FleetEvent)>,
    /// Connection attempts.
    pub connect: ConnectSpec,
    /// Width of the time buckets of the pictures.
    pub bucket: Duration,
    /// How calls are retried or hedged; `None`: each call is one attempt.
    pub retry: Option<RetrySpec>,
}

impl Scenario {
    /// `n` listed backends with `slots` slots and exponential service of mean `mean`, offered
    /// `load` (a fraction) of their total capacity by 4 clients, for `duration`.
    pub fn uniform(n: usize, slots: usize, mean: Duration, load: f64, duration: Duration) -> Self {
        let backends = vec![BackendSpec::new(slots, mean); n];
        let capacity: f64 = backends.iter().map(BackendSpec::capacity).sum();
        Scenario {
            name: "custom".to_owned(),
            description: String::new(),
            backends,
            service: ServiceTime::Exponential,
            clients: 4,
            client_delays: Vec::new(),
            rate: load * capacity,
            duration,
            warmup: Duration::from_secs(1),
            grace: Duration::from_secs(2),
            events: Vec::new(),
            connect: ConnectSpec::default(),
            bucket: Duration::from_secs(1),
            retry: None,
        }
    }

    /// The total capacity of the fleet at nominal speed, in calls per second.
    pub fn capacity(&self) -> f64 {
        self.backends.iter().map(BackendSpec::capacity).sum()
    }

    /// A built-in scenario.
    pub fn builtin(name: ScenarioName) -> Scenario {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        let mut scenario = match name {
            ScenarioName::S1 | ScenarioName::S1Heavy => {
                let load = if name == ScenarioName::S1 { 0.7 } else { 0.9 };
                let mut s = Scenario::uniform(10, 4, ms(10), load, secs(30));
                s.description = format!(
                    "10 equal backends x 4 slots, exponential service of mean 10 ms, load {:.0}%",
                    load * 100.0
                );
                s
            }
            ScenarioName::S2 => {
                let mut s = Scenario::uniform(10, 4, ms(10), 0.6, secs(30));
                s.backends[0].mean_service = ms(50);
                s.description = "S1 with backend 0 five times slower, load 60% of nominal \
                                 capacity (65% of the real one)"
                    .to_owned();
                s
            }
            ScenarioName::S2Heavy => {
                let mut s = Scenario::uniform(10, 4, ms(10), 0.6, secs(30));
                s.backends[0].mean_service = ms(50);
                s.rate = 0.9 * s.capacity();
                s.description = "S2 at load 90% of the real capacity".to_owned();
                s
            }
            ScenarioName::S3 | ScenarioName::S3Heavy => {
                let load = if name == ScenarioName::S3 { 0.7 } else { 0.9 };
                let mut s = Scenario::uniform(10, 4, ms(10), load, secs(30));
                for (backend, capacity) in s.backends.iter_mut().zip([1, 1, 1, 1, 1, 2, 2, 2, 4, 4])
                {
                    backend.mean_service = ms(10) / capacity;
                }
                s.rate = load * s.capacity();
                s.description = format!(
                    "capacities 1,1,1,1,1,2,2,2,4,4 (mean 10 ms / capacity, 4 slots each), \
                     load {:.0}%",
                    load * 100.0
                );
                s
            }
            ScenarioName::S4 => {
                let mut s = Scenario::uniform(10, 4, ms(10), 0.7, secs(60));
                s.events = vec![
                    (
                        secs(20),
                        FleetEvent::Slowdown {
                            backend: 0,
                            factor: 10.0,
                        },
                    ),
                    (
                        secs(40),
                        FleetEvent::Slowdown {
                            backend: 0,
                            factor: 1.0,
                        },
                    ),
                ];
                s.description =
                    "S1, with backend 0 ten times slower from 20 s to 40 s, then recovered"
                        .to_owned();
                s
            }
            ScenarioName::S5 => {
                let mut s = Scenario::uniform(10, 4, ms(10), 0.7, secs(30));
                s.events = vec![
                    (secs(10), FleetEvent::Crash { backend: 0 }),
                    (secs(15), FleetEvent::Restart { backend: 0 }),
                ];
                s.description =
                    "S1, with backend 0 crashing at 10 s and restarting at 15 s".to_owned();
                s
            }
            ScenarioName::S6 => crate::localities::scenario(),
        };
        scenario.name = name.to_string();
        scenario
    }
}

/// The name of a built-in scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ScenarioName {
    /// 10 equal backends x 4 slots, exponential service of mean 10 ms, load 70%.
    S1,
    /// S1 at load 90% (`S1-90`).
    S1Heavy,
    /// S1 with backend 0 five times slower, load 60% of nominal capacity.
    S2,
    /// S2 at load 90% of its real capacity (`S2-90`).
    S2Heavy,
    /// Capacities 1,1,1,1,1,2,2,2,4,4, load 70%.
    S3,
    /// S3 at load 90% (`S3-90`).
    S3Heavy,
    /// S1 with backend 0 ten times slower from 20 s to 40 s.
    S4,
    /// S1 with backend 0 crashing at 10 s and back at 15 s.
    S5,
    /// Two localities of 5 backends; the preferred one's fail one by one and come back
    /// (see [`routers_for`](crate::routers_for)).
    S6,
}

impl ScenarioName {
    /// Every built-in scenario, in order.
    pub const ALL: [ScenarioName; 9] = [
        ScenarioName::S1,
        ScenarioName::S1Heavy,
        ScenarioName::S2,
        ScenarioName::S2Heavy,
        ScenarioName::S3,
        ScenarioName::S3Heavy,
        ScenarioName::S4,
        ScenarioName::S5,
        ScenarioName::S6,
    ];

    /// The name as typed (`S1-90`).
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioName::S1 => "S1",
            ScenarioName::S1Heavy => "S1-90",
            ScenarioName::S2 => "S2",
            ScenarioName::S2Heavy => "S2-90",
            ScenarioName::S3 => "S3",
            ScenarioName::S3Heavy => "S3-90",
            ScenarioName::S4 => "S4",
            ScenarioName::S5 => "S5",
            ScenarioName::S6 => "S6",
        }
    }
}

impl fmt::Display for ScenarioName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scenario name that is not built in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScenario(pub String);

impl fmt::Display for UnknownScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = ScenarioName::ALL.iter().map(|n| n.as_str()).collect();
        write!(
            f,
            "unknown scenario {:?} (known: {})",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownScenario {}

impl FromStr for ScenarioName {
    type Err = UnknownScenario;

    /// Case-insensitive: `s2` is `S2`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ScenarioName::ALL
            .into_iter()
            .find(|name| name.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownScenario(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_names_list_the_known_ones() {
        for name in ScenarioName::ALL {
            assert_eq!(name.as_str().parse::<ScenarioName>(), Ok(name));
            assert_eq!(Scenario::builtin(name).name, name.as_str());
        }
        assert_eq!("s1-90".parse::<ScenarioName>(), Ok(ScenarioName::S1Heavy));
        let error = "S9".parse::<ScenarioName>().unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown scenario \"S9\" (known: S1, S1-90, S2, S2-90, S3, S3-90, S4, S5, S6)"
        );
    }

    #[test]
    fn builtin_loads_are_the_stated_fractions_of_capacity() {
        let s1 = Scenario::builtin(ScenarioName::S1);
        assert!((s1.capacity() - 4000.0).abs() < 1e-6);
        assert!((s1.rate - 2800.0).abs() < 1e-6);
        let s2 = Scenario::builtin(ScenarioName::S2);
        assert!((s2.rate - 2400.0).abs() < 1e-6);
        assert!((s2.capacity() - 3680.0).abs() < 1e-6);
        let s3 = Scenario::builtin(ScenarioName::S3);
        assert!((s3.capacity() - 7600.0).abs() < 1e-6);
        assert!((s3.rate - 5320.0).abs() < 1e-6);
        assert!((Scenario::builtin(ScenarioName::S2Heavy).rate - 3312.0).abs() < 1e-6);
        assert!((Scenario::builtin(ScenarioName::S3Heavy).rate - 6840.0).abs() < 1e-6);
    }
}
