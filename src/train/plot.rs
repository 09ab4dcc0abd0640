//! Loss, accuracy and learning-rate curves (PNG and SVG, through plotters),
//! written next to the metrics at the end of a run, with the test result as
//! a point after the last epoch.
//!
//! Text needs a font: plotters is built without system font discovery, so
//! a TrueType font is read from the usual Debian locations (the
//! `fonts-dejavu-core` and `fonts-liberation2` packages). Without one the
//! plots are skipped with a note; the metrics file is unaffected.

use super::metrics::{EpochRecord, Stats};
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers the first font found as "sans-serif"; false when none is.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        for path in FONTS {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Writes `stem.png` and `stem.svg`; returns their paths, or why not.
pub fn write(
    records: &[EpochRecord],
    test: Option<&Stats>,
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>, String> {
    if records.is_empty() {
        return Err("no epoch to plot".into());
    }
    if !font_ready() {
        return Err(format!(
            "no font found for the plots (looked for {}); install fonts-dejavu-core",
            FONTS[0]
        ));
    }
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, records, test, title)
            .map_err(|e| format!("cannot draw `{}`: {e}", png.display()))?;
        root.present()
            .map_err(|e| format!("cannot write `{}`: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, records, test, title)
            .map_err(|e| format!("cannot draw `{}`: {e}", svg.display()))?;
        root.present()
            .map_err(|e| format!("cannot write `{}`: {e}", svg.display()))?;
    }
    Ok(vec![png, svg])
}

const SIZE: (u32, u32) = (1400, 420);

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A curve: its label, colour and points (epoch, value).
type Curve = (&'static str, RGBColor, Vec<(i64, f64)>);

/// A panel: its name, its curves, and the test result to mark after the
/// last epoch.
struct Panel {
    name: &'static str,
    curves: Vec<Curve>,
    test: Option<f64>,
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    records: &[EpochRecord],
    test: Option<&Stats>,
    title: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let areas = root.split_evenly((1, 3));
    let first = records.first().map_or(1, |r| r.epoch) as i64;
    let last = records.last().map_or(1, |r| r.epoch) as i64;
    // Integer coordinates: epochs are whole, and so are the ticks.
    let x_range = (first - 1)..(last + 1);
    let series = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(i64, f64)> {
        records
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as i64, v)))
            .collect()
    };
    let panels = [
        Panel {
            name: "loss",
            curves: vec![
                ("train", BLUE, series(&|r| Some(r.train.loss))),
                (
                    "validation",
                    RED,
                    series(&|r| r.val.as_ref().map(|v| v.loss)),
                ),
            ],
            test: test.map(|t| t.loss),
        },
        Panel {
            name: "accuracy",
            curves: vec![
                ("train", BLUE, series(&|r| Some(r.train.accuracy))),
                (
                    "validation",
                    RED,
                    series(&|r| r.val.as_ref().map(|v| v.accuracy)),
                ),
            ],
            test: test.map(|t| t.accuracy),
        },
        Panel {
            name: "learning rate (last step of each epoch)",
            curves: vec![("lr", BLACK, series(&|r| Some(r.lr)))],
            test: None,
        },
    ];
    for (area, panel) in areas.iter().zip(panels) {
        let ys = panel
            .curves
            .iter()
            .flat_map(|c| c.2.iter().map(|p| p.1))
            .chain(panel.test)
            .filter(|v| v.is_finite());
        let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let pad = ((hi - lo) * 0.1).max(1e-3);
        let (lo, hi) = if lo.is_finite() {
            (lo - pad, hi + pad)
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .caption(panel.name, ("sans-serif", 16))
            .x_label_area_size(32)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range.clone(), lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(((last - first + 3) as usize).min(12))
            .label_style(("sans-serif", 12))
            .draw()?;
        for (label, colour, points) in panel.curves {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, colour.filled())))?;
        }
        if let Some(t) = panel.test {
            let green = RGBColor(0, 150, 0);
            chart
                .draw_series(std::iter::once(TriangleMarker::new(
                    (last, t),
                    7,
                    green.filled(),
                )))?
                .label("test")
                .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 5, green.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    Ok(())
}
