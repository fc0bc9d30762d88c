//! Compares every policy in a built-in scenario: prints the table and draws the picture.
//!
//! `cargo run --release -p croupier-sim --example simulate -- S2 [--out DIR] [--threads N]`, or
//! `all` for every scenario. Runs are independent, so they go on as many threads as the machine
//! has unless told otherwise; the figures do not depend on it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use croupier_sim::{builtin_routers, compare, draw, Scenario, ScenarioName, DEFAULT_SEEDS};

fn main() -> ExitCode {
    let mut names = Vec::new();
    let mut out = PathBuf::from(".");
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
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
            "usage: simulate <scenario>... [--out DIR], scenarios: S1, S1-90, S2, S3, S4, S5, all"
        );
        return ExitCode::FAILURE;
    }
    let routers = builtin_routers();
    let started = Instant::now();
    for name in names {
        let scenario = Scenario::builtin(name);
        let comparison = compare(&scenario, &routers, &DEFAULT_SEEDS, threads);
        println!("{comparison}");
        let path = out.join(format!("{name}.svg"));
        match draw(&comparison, &path) {
            Ok(()) => println!("picture: {}\n", path.display()),
            Err(error) => {
                eprintln!("cannot draw {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let plural = if threads == 1 { "" } else { "s" };
    println!(
        "{} routers x {} seeds, wall time {:.1} s on {threads} thread{plural}",
        routers.len(),
        DEFAULT_SEEDS.len(),
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
