//! Loss and accuracy curves (PNG and SVG, through plotters), written next
//! to the metrics at the end of a run.
//!
//! Text needs a font: plotters is built without system font discovery, so
//! a TrueType font is read from the usual Debian locations (the
//! `fonts-dejavu-core` and `fonts-liberation2` packages). Without one the
//! plots are skipped with a note; the metrics file is unaffected.

use super::metrics::EpochRecord;
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
pub fn write(records: &[EpochRecord], title: &str, stem: &Path) -> Result<Vec<PathBuf>, String> {
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
        let root = BitMapBackend::new(&png, (1000, 420)).into_drawing_area();
        draw(&root, records, title).map_err(|e| format!("cannot draw `{}`: {e}", png.display()))?;
        root.present()
            .map_err(|e| format!("cannot write `{}`: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, (1000, 420)).into_drawing_area();
        draw(&root, records, title).map_err(|e| format!("cannot draw `{}`: {e}", svg.display()))?;
        root.present()
            .map_err(|e| format!("cannot write `{}`: {e}", svg.display()))?;
    }
    Ok(vec![png, svg])
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A panel: its name, the training curve and the validation curve.
type Panel = (&'static str, Vec<(f64, f64)>, Vec<(f64, f64)>);

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    records: &[EpochRecord],
    title: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let panels = root.split_evenly((1, 2));
    let last = records.last().map_or(1, |r| r.epoch) as f64;
    let first = records.first().map_or(1, |r| r.epoch) as f64;
    let x_range = (first - 0.2).min(last - 1.0).max(0.0)..last + 0.2;
    let series = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    let panels_spec: [Panel; 2] = [
        (
            "loss",
            series(&|r| Some(r.train.loss)),
            series(&|r| r.val.as_ref().map(|v| v.loss)),
        ),
        (
            "accuracy",
            series(&|r| Some(r.train.accuracy)),
            series(&|r| r.val.as_ref().map(|v| v.accuracy)),
        ),
    ];
    for (area, (name, train, val)) in panels.iter().zip(panels_spec) {
        let ys = train
            .iter()
            .chain(val.iter())
            .map(|p| p.1)
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
            .caption(name, ("sans-serif", 16))
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(x_range.clone(), lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .label_style(("sans-serif", 12))
            .draw()?;
        chart
            .draw_series(LineSeries::new(train.clone(), BLUE.stroke_width(2)))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        chart.draw_series(train.iter().map(|p| Circle::new(*p, 3, BLUE.filled())))?;
        if !val.is_empty() {
            chart
                .draw_series(LineSeries::new(val.clone(), RED.stroke_width(2)))?
                .label("validation")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
            chart.draw_series(val.iter().map(|p| Circle::new(*p, 3, RED.filled())))?;
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
