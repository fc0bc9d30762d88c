//! Compares every policy in a built-in scenario: prints the table and draws the picture.
//!
//! `cargo run --release -p croupier-sim --example simulate -- S2 [--out DIR] [--threads N]
//! [--lognormal SIGMA] [--clients N] [--link-delays MS]`, or `all` for every scenario. Pictures
//! go into `--out` (by default `sim-pictures/`, made if missing). `--lognormal` swaps the
//! exponential service times for lognormal ones of the same means; `--clients` shares the same
//! calls among that many clients (4 by default); `--link-delays` gives the backends one-way
//! network delays spread evenly from 0 to `MS` milliseconds (backend 0 the nearest). Runs are independent, so they go on as many threads as the machine
//! has unless told otherwise; the figures do not depend on it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the pictures go without `--out`: a folder of their own, which the repository ignores.
const DEFAULT_OUT: &str = "sim-pictures";

use croupier_sim::{
    compare, draw, routers_for, Scenario, ScenarioName, ServiceTime, DEFAULT_SEEDS,
};

/// Prints a line; a closed stdout (`| head`) is not an error worth a panic.
fn say(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn main() -> ExitCode {
    let mut names = Vec::new();
    let mut out = PathBuf::from(DEFAULT_OUT);
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut lognormal = None;
    let mut clients = None;
    let mut link_delays = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => match args.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => {
                    eprintln!("--out needs a directory");
                    return ExitCode::FAILURE;
                }
            },
            "--threads" => match args.next().and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n > 0 => threads = n,
                _ => {
                    eprintln!("--threads needs a number above 0");
                    return ExitCode::FAILURE;
                }
            },
            "--lognormal" => {
                match args.next().and_then(|n| n.parse::<f64>().ok()) {
                    Some(sigma) if sigma.is_finite() && sigma > 0.0 => {
                        lognormal = Some(sigma);
                    }
                    _ => {
                        eprintln!("--lognormal needs a sigma above 0 (1.0 gives a p99 about 5 x the mean)");
                        return ExitCode::FAILURE;
                    }
                }
            }
            "--clients" => match args.next().and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n > 0 => clients = Some(n),
                _ => {
                    eprintln!("--clients needs a number above 0");
                    return ExitCode::FAILURE;
                }
            },
            "--link-delays" => match args.next().and_then(|n| n.parse::<f64>().ok()) {
                Some(ms) if ms.is_finite() && ms >= 0.0 => link_delays = Some(ms),
                _ => {
                    eprintln!("--link-delays needs the farthest backend's delay in ms (0 or more)");
                    return ExitCode::FAILURE;
                }
            },
            "all" => names.extend(ScenarioName::ALL),
            other => match other.parse::<ScenarioName>() {
                Ok(name) => names.push(name),
                Err(error) => {
                    eprintln!("{error}; or `all`");
                    return ExitCode::FAILURE;
                }
            },
        }
    }
    if names.is_empty() {
        eprintln!(
            "usage: simulate <scenario>... [--out DIR] [--threads N] [--lognormal SIGMA] \
             [--clients N] [--link-delays MS]\n\
             scenarios: S1, S1-90, S2, S2-90, S3, S3-90, S4, S5, S6, or all"
        );
        return ExitCode::FAILURE;
    }
    if let Err(error) = std::fs::create_dir_all(&out) {
        eprintln!("cannot make {}: {error}", out.display());
        return ExitCode::FAILURE;
    }
    say(&format!("pictures go into {}/", out.display()));
    let started = Instant::now();
    let mut most_routers = 0;
    for name in names {
        let routers = routers_for(name);
        most_routers = most_routers.max(routers.len());
        let mut scenario = Scenario::builtin(name);
        if let Some(sigma) = lognormal {
            // The same scenario with lognormal service times of the same means.
            scenario.service = ServiceTime::LogNormal { sigma };
            scenario.description.push_str(&format!(
                "; here with lognormal service times (sigma {sigma}) of the same means"
            ));
        }
        if let Some(n) = clients {
            scenario.clients = n;
            scenario
                .description
                .push_str(&format!("; here with {n} clients"));
        }
        if let Some(farthest) = link_delays {
            let last = scenario.backends.len().saturating_sub(1).max(1) as f64;
            for (i, backend) in scenario.backends.iter_mut().enumerate() {
                backend.link_delay = Duration::from_secs_f64(farthest * i as f64 / last / 1e3);
            }
            scenario.description.push_str(&format!(
                "; here with link delays from 0 to {farthest} ms each way"
            ));
        }
        let comparison = compare(&scenario, &routers, &DEFAULT_SEEDS, threads);
        say(&format!("{comparison}"));
        let path = out.join(format!("{name}.svg"));
        match draw(&comparison, &path) {
            Ok(()) => say(&format!("picture: {}\n", path.display())),
            Err(error) => {
                eprintln!("cannot draw {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let plural = if threads == 1 { "" } else { "s" };
    say(&format!(
        "{} routers x {} seeds, wall time {:.1} s on {threads} thread{plural}",
        most_routers,
        DEFAULT_SEEDS.len(),
        started.elapsed().as_secs_f64()
    ));
    ExitCode::SUCCESS
}
