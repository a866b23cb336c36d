//! The `--svg` plot: latency p50/p99 and throughput, second by second of the measuring phase.
//!
//! Drawn with plotters' SVG backend and line series only (text is written as SVG `<text>`, so no font
//! files are needed). Two panels share the time axis: latency (ms) on top, messages per second below.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Point;

/// Writes the plot of `timeline` to `path`, titled with `title`.
pub fn write_svg(path: &Path, title: &str, timeline: &[Point]) -> Result<(), String> {
    draw(path, title, timeline).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn draw(path: &Path, title: &str, timeline: &[Point]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let (top, bottom) = root.split_vertically(300);
    let x_max = (timeline.len().max(1)) as f64;
    let lat_max = timeline
        .iter()
        .map(|p| p.p99_ms)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let mut lat = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..lat_max)?;
    lat.configure_mesh()
        .x_desc("seconds")
        .y_desc("latency ms")
        .draw()?;
    let mid = |p: &Point| p.t as f64 + 0.5;
    lat.draw_series(LineSeries::new(
        timeline.iter().map(|p| (mid(p), p.p50_ms)),
        &BLUE,
    ))?
    .label("p50")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    lat.draw_series(LineSeries::new(
        timeline.iter().map(|p| (mid(p), p.p99_ms)),
        &RED,
    ))?
    .label("p99")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    lat.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    let rate_max = timeline
        .iter()
        .map(|p| p.received.max(p.sent) as f64)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let mut thr = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..rate_max)?;
    thr.configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .draw()?;
    thr.draw_series(LineSeries::new(
        timeline.iter().map(|p| (mid(p), p.received as f64)),
        &GREEN,
    ))?
    .label("received")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    thr.draw_series(LineSeries::new(
        timeline.iter().map(|p| (mid(p), p.sent as f64)),
        &MAGENTA,
    ))?
    .label("sent")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    thr.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg() {
        let path = std::env::temp_dir().join(format!("loadtest-plot-{}.svg", std::process::id()));
        let points: Vec<Point> = (0..5)
            .map(|t| Point {
                t,
                sent: 100 * t,
                received: 90 * t,
                p50_ms: 0.1 * t as f64,
                p99_ms: 0.3 * t as f64,
            })
            .collect();
        write_svg(&path, "test", &points).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{svg}"
        );
        write_svg(&path, "empty", &[]).unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
