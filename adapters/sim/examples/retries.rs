//! Runs the built-in scenarios with and without retries or hedging and prints what each gains in
//! latency and failures and costs in attempts and server work.
//!
//! `cargo run --release -p croupier-sim --example retries -- [S2] [S4] [S5] [--threads N]`; with
//! no scenario named, all three. The figures do not depend on the number of threads.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use croupier_sim::{RetryStudy, ScenarioName, DEFAULT_SEEDS};

fn main() -> ExitCode {
    let mut names = Vec::new();
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
        match arg.parse::<ScenarioName>() {
            Ok(name) if RetryStudy::builtin(name).is_some() => names.push(name),
            Ok(name) => {
                eprintln!("{name} has no retry study; S2, S4 and S5 have");
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        }
    }
    if names.is_empty() {
        names = vec![ScenarioName::S2, ScenarioName::S4, ScenarioName::S5];
    }
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    for study in names.into_iter().filter_map(RetryStudy::builtin) {
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
