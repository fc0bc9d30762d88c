//! prequal, the probing policy, beside p2c_ewma and the shortest-expected-delay reference, in
//! S1 to S5 and in S2 and S3 at 90% load: tables on stdout, S4's picture in `--out DIR`
//! (`sim-pictures/` by default).
//!
//! `cargo run --release -p croupier-sim --example probing [-- --out DIR] [--clients N]
//! [--lognormal SIGMA] [--link MS]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use croupier::policy::PrequalConfig;
use croupier::PolicyConfig;
use croupier_sim::{compare, draw, Router, Scenario, ScenarioName, ServiceTime, DEFAULT_SEEDS};

/// The routers compared: p2c_ewma, prequal with its defaults and with 3 probes per call, the
/// reference.
fn routers() -> Vec<Router> {
    vec![
        Router::policy("p2c_ewma", PolicyConfig::p2c_ewma()),
        Router::policy("prequal", PolicyConfig::prequal()),
        Router::policy(
            "prequal(3 probes per call)",
            PolicyConfig::new(PrequalConfig::default().probes_per_call(3.0)),
        ),
        Router::ShortestExpectedDelay,
    ]
}

/// The scenarios: the built-in ones but S6, then S2 and S3 at 90% of their real capacity.
fn scenarios() -> Vec<Scenario> {
    let mut all: Vec<Scenario> = [
        ScenarioName::S1,
        ScenarioName::S1Heavy,
        ScenarioName::S2,
        ScenarioName::S3,
        ScenarioName::S4,
        ScenarioName::S5,
    ]
    .into_iter()
    .map(Scenario::builtin)
    .collect();
    for name in [ScenarioName::S2, ScenarioName::S3] {
        let mut s = Scenario::builtin(name);
        s.rate = 0.9 * s.capacity();
        s.name = format!("{name}-90");
        s.description
            .push_str("; here at 90% of the fleet's real capacity");
        all.push(s);
    }
    all
}

fn main() -> ExitCode {
    let mut out = PathBuf::from("sim-pictures");
    let mut clients = None;
    let mut lognormal = None;
    let mut link = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--out", Some(dir)) => out = PathBuf::from(dir),
            ("--clients", Some(n)) => clients = n.parse::<usize>().ok().filter(|&n| n > 0),
            ("--lognormal", Some(s)) => lognormal = s.parse::<f64>().ok().filter(|s| *s > 0.0),
            ("--link", Some(ms)) => link = ms.parse::<u64>().ok().map(Duration::from_millis),
            (other, _) => {
                eprintln!("unknown or incomplete option {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(error) = std::fs::create_dir_all(&out) {
        eprintln!("cannot make {}: {error}", out.display());
        return ExitCode::FAILURE;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let routers = routers();
    for mut scenario in scenarios() {
        if let Some(n) = clients {
            scenario.clients = n;
            scenario.description.push_str(&format!("; {n} clients"));
        }
        if let Some(sigma) = lognormal {
            scenario.service = ServiceTime::LogNormal { sigma };
            scenario
                .description
                .push_str(&format!("; lognormal service (sigma {sigma})"));
        }
        if let Some(delay) = link {
            for backend in &mut scenario.backends {
                backend.link_delay = delay;
            }
            scenario
                .description
                .push_str(&format!("; links {} ms each way", delay.as_millis()));
        }
        let comparison = compare(&scenario, &routers, &DEFAULT_SEEDS, threads);
        println!("{comparison}");
        if scenario.name == "S4" {
            let path = out.join("simulator-S4-prequal.svg");
            match draw(&comparison, &path) {
                Ok(()) => println!("picture: {}\n", path.display()),
                Err(error) => eprintln!("cannot draw {}: {error}", path.display()),
            }
        }
    }
    ExitCode::SUCCESS
}
