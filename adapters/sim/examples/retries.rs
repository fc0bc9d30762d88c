//! Runs the built-in scenarios with and without retries or hedging and prints what each gains in
//! latency and failures and costs in attempts and server work.
//!
//! `cargo run --release -p croupier-sim --example retries -- [S2] [S4] [S5] [outage]
//! [--threads N]`; with no study named, all four. The figures do not depend on the number of
//! threads.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use croupier_sim::{RetryStudy, ScenarioName, DEFAULT_SEEDS};

fn main() -> ExitCode {
    let mut studies = Vec::new();
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--threads" {
            match args.next().and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n > 0 => threads = n,
                _ => {
                    eprintln!("--threads needs a number above 0");
                    return ExitCode::FAILURE;
                }
            }
            continue;
        }
        if arg == "outage" {
            studies.push(RetryStudy::outage());
            continue;
        }
        match arg.parse::<ScenarioName>() {
            Ok(name) => match RetryStudy::builtin(name) {
                Some(study) => studies.push(study),
                None => {
                    eprintln!("{name} has no retry study; S2, S4, S5 and outage have");
                    return ExitCode::FAILURE;
                }
            },
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        }
    }
    if studies.is_empty() {
        let names = [ScenarioName::S2, ScenarioName::S4, ScenarioName::S5];
        studies.extend(names.into_iter().filter_map(RetryStudy::builtin));
        studies.push(RetryStudy::outage());
    }
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    for study in studies {
        let comparison = study.run(&DEFAULT_SEEDS, threads);
        // A closed stdout (`| head`) is not an error worth a panic.
        let _ = writeln!(out, "{comparison}");
    }
    let _ = writeln!(
        out,
        "wall time {:.1} s on {threads} thread{}",
        started.elapsed().as_secs_f64(),
        if threads == 1 { "" } else { "s" }
    );
    ExitCode::SUCCESS
}
