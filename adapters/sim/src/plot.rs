//! Pictures: for each router, per-backend request rate and p99 latency over time, as one SVG.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::compare::Comparison;
use crate::record::Timeline;

/// Drawing a picture failed (the file could not be written, most likely).
#[derive(Debug)]
pub struct PlotError(String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drawing failed: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

fn error(e: impl fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

const ROW_HEIGHT: u32 = 190;
const WIDTH: u32 = 1200;
const HEADER: u32 = 56;

/// Backend 0 (the one the scenarios slow down or crash) is drawn thick and red; the others in
/// thin, distinct colours.
fn colour(backend: usize) -> RGBColor {
    const OTHERS: [RGBColor; 9] = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(255, 127, 14),
    ];
    match backend {
        0 => RGBColor(214, 39, 40),
        n => OTHERS[(n - 1) % OTHERS.len()],
    }
}

fn mark_style() -> ShapeStyle {
    RGBColor(150, 150, 150).stroke_width(1)
}

fn width(backend: usize) -> u32 {
    if backend == 0 {
        3
    } else {
        1
    }
}

/// Draws `comparison` to an SVG file at `path`: one row per router, the request rate per backend
/// on the left, the p99 latency per backend (log scale) on the right.
pub fn draw(comparison: &Comparison, path: &Path) -> Result<(), PlotError> {
    let rows = comparison.timelines.len().max(1) as u32;
    let root = SVGBackend::new(path, (WIDTH, HEADER + rows * ROW_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(error)?;
    let (header, body) = root.split_vertically(HEADER);
    let scenario = &comparison.scenario;
    header
        .draw_text(
            &format!("{}: {}", scenario.name, scenario.description),
            &("sans-serif", 18).into_text_style(&header),
            (10, 8),
        )
        .map_err(error)?;
    header
        .draw_text(
            &format!(
                "seed {}; left: calls sent per second to each backend; right: p99 latency (ms, \
                 log scale) of calls to each backend, per {} ms; backend 0 thick red; grey: the events",
                comparison.seeds.first().copied().unwrap_or(0),
                scenario.bucket.as_millis()
            ),
            &("sans-serif", 13).into_text_style(&header),
            (10, 32),
        )
        .map_err(error)?;
    // The scenario's events (a slowdown, a crash, a restart, ...), as vertical lines.
    let mut marks: Vec<f64> = scenario
        .events
        .iter()
        .map(|(at, _)| at.as_secs_f64())
        .filter(|&at| at < scenario.duration.as_secs_f64())
        .collect();
    marks.dedup();
    let areas = body.split_evenly((rows as usize, 2));
    for (index, (label, timeline)) in comparison.timelines.iter().enumerate() {
        let (Some(left), Some(right)) = (areas.get(2 * index), areas.get(2 * index + 1)) else {
            break;
        };
        let buckets = drawn(timeline, scenario.duration);
        draw_rates(left, label, timeline, buckets, &marks)?;
        draw_p99(right, label, timeline, buckets, &marks)?;
    }
    root.present().map_err(error)
}

fn seconds(timeline: &Timeline, bucket: usize) -> f64 {
    (bucket as f64 + 0.5) * timeline.bucket.as_secs_f64()
}

/// How many buckets to draw: those that start before calls stop being issued (the grace period
/// after it only drains queues).
fn drawn(timeline: &Timeline, until: Duration) -> usize {
    let buckets = timeline.rate.first().map_or(0, Vec::len);
    let within = until.as_nanos().div_ceil(timeline.bucket.as_nanos().max(1));
    buckets.min(usize::try_from(within).unwrap_or(usize::MAX))
}

fn draw_rates<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
    timeline: &Timeline,
    buckets: usize,
    marks: &[f64],
) -> Result<(), PlotError> {
    let span = buckets as f64 * timeline.bucket.as_secs_f64();
    let top = timeline
        .rate
        .iter()
        .flat_map(|series| series.iter().take(buckets))
        .copied()
        .fold(1.0f64, f64::max)
        * 1.08;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{label}: calls/s"), ("sans-serif", 14))
        .margin(6)
        .x_label_area_size(22)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..span, 0.0..top)
        .map_err(error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_labels(8)
        .y_labels(5)
        .x_label_formatter(&|x| format!("{x:.0} s"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(error)?;
    for &at in marks {
        chart
            .draw_series(LineSeries::new([(at, 0.0), (at, top)], mark_style()))
            .map_err(error)?;
    }
    // Backend 0 last, so it is drawn on top.
    for backend in (0..timeline.rate.len()).rev() {
        let points = timeline.rate[backend]
            .iter()
            .take(buckets)
            .enumerate()
            .map(|(bucket, &rate)| (seconds(timeline, bucket), rate));
        let style = colour(backend).stroke_width(width(backend));
        chart
            .draw_series(LineSeries::new(points, style))
            .map_err(error)?;
    }
    Ok(())
}

fn draw_p99<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
    timeline: &Timeline,
    buckets: usize,
    marks: &[f64],
) -> Result<(), PlotError> {
    let span = buckets as f64 * timeline.bucket.as_secs_f64();
    let values = timeline
        .p99
        .iter()
        .flat_map(|series| series.iter().take(buckets))
        .flatten()
        .copied();
    let (low, high) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (low, high) = if high > 0.0 {
        ((low * 0.7).max(0.01), high * 1.5)
    } else {
        (1.0, 10.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{label}: p99 ms"), ("sans-serif", 14))
        .margin(6)
        .x_label_area_size(22)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..span, (low..high).log_scale())
        .map_err(error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_labels(8)
        .y_labels(5)
        .x_label_formatter(&|x| format!("{x:.0} s"))
        .y_label_formatter(&|y| {
            if *y >= 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .draw()
        .map_err(error)?;
    for &at in marks {
        chart
            .draw_series(LineSeries::new([(at, low), (at, high)], mark_style()))
            .map_err(error)?;
    }
    for backend in (0..timeline.p99.len()).rev() {
        let style = colour(backend).stroke_width(width(backend));
        // A bucket with too few calls leaves a gap: draw each unbroken stretch on its own.
        let mut stretch: Vec<(f64, f64)> = Vec::new();
        let cells = timeline.p99[backend]
            .iter()
            .take(buckets)
            .chain(std::iter::once(&None));
        for (bucket, cell) in cells.enumerate() {
            match cell {
                Some(p99) => stretch.push((seconds(timeline, bucket), *p99)),
                None if !stretch.is_empty() => {
                    let points = std::mem::take(&mut stretch);
                    if points.len() == 1 {
                        chart
                            .draw_series(points.iter().map(|&p| Circle::new(p, 2, style.filled())))
                            .map_err(error)?;
                    } else {
                        chart
                            .draw_series(LineSeries::new(points, style))
                            .map_err(error)?;
                    }
                }
                None => {}
            }
        }
    }
    Ok(())
}
