//! The report's SVG figures, drawn with plotters' SVG backend (no fonts, no bitmaps: text
//! is laid out with plotters' size estimate and rendered by the viewer).
//!
//! Heatmap cells are not drawn as one plotters rectangle each (about 90 bytes a cell):
//! cells are quantised to [`LEVELS`] colours and each colour becomes a single SVG path of
//! merged horizontal runs (about 15 bytes a run), appended after plotters has drawn the
//! axes. That keeps a 128 x 128 heatmap well under the 300 KB budget.
use crate::log::Eval;
use crate::stats::{self, Histogram, Summary};
use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Largest SVG the report writes (the budget for committed figures).
pub const MAX_SVG_BYTES: usize = 300 * 1024;

/// Okabe-Ito colours (readable for colour-blind viewers), one per run.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// The colour of run `i`.
pub fn run_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const FONT: &str = "sans-serif";

fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().into()
}

type Svg<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws into an SVG of `size` pixels with `draw` and returns the SVG text.
fn draw_svg(size: (u32, u32), draw: impl FnOnce(&Svg<'_>) -> Result<()>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(svg)
}

/// Writes `svg` to `path`, refusing files over [`MAX_SVG_BYTES`].
fn write_svg(path: &Path, svg: &str) -> Result<()> {
    if svg.len() > MAX_SVG_BYTES {
        bail!(
            "{}: {} bytes, over the {} byte budget",
            path.display(),
            svg.len(),
            MAX_SVG_BYTES
        );
    }
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

/// [`draw_svg`] then [`write_svg`].
fn render(path: &Path, size: (u32, u32), draw: impl FnOnce(&Svg<'_>) -> Result<()>) -> Result<()> {
    write_svg(path, &draw_svg(size, draw)?)
}

/// `lo..hi` widened by `pad` of its span on both sides (and never empty).
fn padded(lo: f64, hi: f64, pad: f64) -> std::ops::Range<f64> {
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
    (lo - pad * span)..(hi + pad * span)
}

/// Train (dashed) and val (solid) loss against iteration, every run on one chart.
pub fn loss_curves(path: &Path, runs: &[(&str, &[Eval])]) -> Result<()> {
    let evals = || runs.iter().flat_map(|(_, l)| l.iter());
    let max_iter = evals().map(|e| e.iter).max().unwrap_or(1).max(1) as f64;
    let lo = evals()
        .map(|e| e.train_loss.min(e.val_loss))
        .fold(f64::INFINITY, f64::min);
    let hi = evals()
        .map(|e| e.train_loss.max(e.val_loss))
        .fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        bail!("loss curves: no finite losses in the logs");
    }
    render(path, (900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Loss vs iteration (solid: val, dashed: train)", font(22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..max_iter * 1.02, padded(lo, hi, 0.05))?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("cross-entropy loss (nats)")
            .label_style(font(14))
            .axis_desc_style(font(16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, (name, log)) in runs.iter().enumerate() {
            let c = run_color(i);
            let val: Vec<(f64, f64)> = log.iter().map(|e| (e.iter as f64, e.val_loss)).collect();
            let train: Vec<(f64, f64)> =
                log.iter().map(|e| (e.iter as f64, e.train_loss)).collect();
            chart
                .draw_series(LineSeries::new(val.clone(), c.stroke_width(2)))?
                .label(format!("{name} val"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))
                });
            chart.draw_series(val.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            chart
                .draw_series(DashedLineSeries::new(train, 6, 4, c.stroke_width(1)))?
                .label(format!("{name} train"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 8, y)], c.stroke_width(1))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, 14)?;
        Ok(())
    })
}

/// One run's train and val loss, with the learning rate on a second axis.
pub fn loss_run(path: &Path, name: &str, color: RGBColor, log: &[Eval]) -> Result<()> {
    let max_iter = log.iter().map(|e| e.iter).max().unwrap_or(1).max(1) as f64;
    let lo = log
        .iter()
        .map(|e| e.train_loss.min(e.val_loss))
        .fold(f64::INFINITY, f64::min);
    let hi = log
        .iter()
        .map(|e| e.train_loss.max(e.val_loss))
        .fold(f64::NEG_INFINITY, f64::max);
    let lr_hi = log.iter().map(|e| e.lr).fold(0.0, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        bail!("{name}: no finite losses in the log");
    }
    let grey = RGBColor(120, 120, 120);
    render(path, (900, 500), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("{name}: loss and learning rate"), font(22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .right_y_label_area_size(72)
            .build_cartesian_2d(0.0..max_iter * 1.02, padded(lo, hi, 0.05))?
            .set_secondary_coord(0.0..max_iter * 1.02, 0.0..(lr_hi * 1.1).max(1e-12));
        chart
            .configure_mesh()
            .x_desc("iteration")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("loss (nats)")
            .label_style(font(14))
            .axis_desc_style(font(16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("learning rate")
            .label_style(font(14))
            .axis_desc_style(font(16))
            .y_label_formatter(&|v| {
                if *v == 0.0 {
                    "0".to_string()
                } else {
                    format!("{v:.0e}")
                }
            })
            .draw()?;
        let pts = |f: fn(&Eval) -> f64| -> Vec<(f64, f64)> {
            log.iter().map(|e| (e.iter as f64, f(e))).collect()
        };
        chart
            .draw_series(LineSeries::new(pts(|e| e.val_loss), color.stroke_width(2)))?
            .label("val loss")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        chart
            .draw_series(DashedLineSeries::new(
                pts(|e| e.train_loss),
                6,
                4,
                color.stroke_width(1),
            ))?
            .label("train loss")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(1))
            });
        chart
            .draw_secondary_series(LineSeries::new(pts(|e| e.lr), grey.stroke_width(1)))?
            .label("learning rate (right axis)")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], grey.stroke_width(1))
            });
        legend(&mut chart, SeriesLabelPosition::UpperRight, 14)?;
        Ok(())
    })
}

/// The legend of the series drawn so far, in a framed box at `pos`.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
    size: u32,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: plotters::coord::CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(pos)
        .label_font(font(size))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()
        .map_err(|e| anyhow::anyhow!("drawing a legend: {e:?}"))
}

/// Draws `names` centred under category positions `0..n` of a chart's x axis.
fn category_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    at: impl Fn(usize) -> (i32, i32),
    names: &[&str],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let style = font(15).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, name) in names.iter().enumerate() {
        let (x, y) = at(i);
        root.draw(&Text::new(name.to_string(), (x, y + 8), style.clone()))
            .map_err(|e| anyhow::anyhow!("drawing a label: {e:?}"))?;
    }
    Ok(())
}

/// Word accuracy as a distribution: per run, a box of the per-sample shares (0..=1, shown
/// in percent) with every sample as a dot and the mean as a labelled diamond; dashed
/// reference lines.
pub fn word_accuracy(path: &Path, runs: &[(&str, Vec<f64>)], refs: &[(&str, f64)]) -> Result<()> {
    let n = runs.len().max(1);
    let width = (330 + 150 * n as u32).max(760);
    render(path, (width, 540), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Word accuracy: generated words found in the train text, per sample",
                font(20),
            )
            .margin(16)
            .margin_right(190)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..105.0)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("words found (%)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(font(14))
            .axis_desc_style(font(16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, (_, shares)) in runs.iter().enumerate() {
            let pct: Vec<f64> = shares.iter().map(|v| v * 100.0).collect();
            let Some(s) = stats::summary(&pct) else {
                continue;
            };
            let x = i as f64;
            draw_box(&mut chart, x, &pct, &s, run_color(i))?;
            // The mean: a white diamond with a black outline.
            let diamond = [
                (0.0, 1.6),
                (0.06, 0.0),
                (0.0, -1.6),
                (-0.06, 0.0),
                (0.0, 1.6),
            ]
            .map(|(dx, dy)| (x + dx, s.mean + dy));
            chart.draw_series(std::iter::once(Polygon::new(diamond, WHITE.filled())))?;
            chart.draw_series(std::iter::once(PathElement::new(
                diamond,
                BLACK.stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("mean {:.1}%", s.mean),
                (x + 0.3, s.mean),
                font(13).pos(Pos::new(HPos::Left, VPos::Center)),
            )))?;
        }
        for (label, share) in refs {
            let v = share * 100.0;
            let c = RGBColor(90, 90, 90);
            chart.draw_series(DashedLineSeries::new(
                vec![(-0.5, v), (n as f64 - 0.5, v)],
                8,
                5,
                c.stroke_width(1),
            ))?;
            // Names of the reference lines, right of the plot area.
            let (px, py) = chart.backend_coord(&(n as f64 - 0.5, v));
            root.draw(&Text::new(
                format!("{label} {v:.1}%"),
                (px + 8, py),
                font(13).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        let names: Vec<&str> = runs.iter().map(|(n, _)| *n).collect();
        category_labels(root, |i| chart.backend_coord(&(i as f64, 0.0)), &names)?;
        Ok(())
    })
}

/// Most dots drawn per box: larger samples show every k-th value (in their order), which
/// keeps a 5,000-step distribution inside the SVG budget.
const MAX_DOTS: usize = 400;

/// One line of a [`LinePanel`].
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Colour.
    pub color: RGBColor,
    /// `(x, y)` points, in order.
    pub points: Vec<(f64, f64)>,
    /// Dashed (a reference or a train curve) instead of solid with dots.
    pub dashed: bool,
}

/// One chart of [`line_panels`].
pub struct LinePanel {
    /// Caption.
    pub title: String,
    /// Axis descriptions.
    pub x_desc: String,
    /// Axis descriptions.
    pub y_desc: String,
    /// Logarithmic axes (non-positive values are then left out).
    pub x_log: bool,
    /// Logarithmic axes (non-positive values are then left out).
    pub y_log: bool,
    /// y values are seconds (labelled with units).
    pub y_seconds: bool,
    /// The lines.
    pub series: Vec<Series>,
    /// Labelled points (a crossover, a value at initialisation).
    pub marks: Vec<(f64, f64, String)>,
}

/// Line charts side by side (`cols` a row), each with its own axes and legend.
pub fn line_panels(path: &Path, caption: &str, cols: usize, panels: &[LinePanel]) -> Result<()> {
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    // Wide enough for the caption (about 10 px a character at 20 px).
    let width = (560 * cols as u32).max(40 + 10 * caption.chars().count() as u32);
    render(path, (width, 44 + 420 * rows as u32), |root| {
        let (title, body) = root.split_vertically(44);
        title.draw(&Text::new(
            caption.to_string(),
            (16, 12),
            font(20).pos(Pos::new(HPos::Left, VPos::Top)),
        ))?;
        for (area, p) in body.split_evenly((rows, cols)).iter().zip(panels) {
            let keep = |&(x, y): &(f64, f64)| {
                x.is_finite() && y.is_finite() && (!p.x_log || x > 0.0) && (!p.y_log || y > 0.0)
            };
            let pts: Vec<(f64, f64)> = p
                .series
                .iter()
                .flat_map(|s| s.points.iter().copied())
                .chain(p.marks.iter().map(|m| (m.0, m.1)))
                .filter(keep)
                .collect();
            let (Some(x0), Some(x1), Some(y0), Some(y1)) = (
                pts.iter().map(|p| p.0).reduce(f64::min),
                pts.iter().map(|p| p.0).reduce(f64::max),
                pts.iter().map(|p| p.1).reduce(f64::min),
                pts.iter().map(|p| p.1).reduce(f64::max),
            ) else {
                continue;
            };
            let span = |lo: f64, hi: f64, log: bool| {
                if log {
                    (lo / 1.3)..(hi * 1.3)
                } else {
                    padded(lo, hi, 0.06)
                }
            };
            let (xr, yr) = (span(x0, x1, p.x_log), span(y0, y1, p.y_log));
            match (p.x_log, p.y_log) {
                (false, false) => draw_lines(area, p, xr, yr, &keep)?,
                (true, false) => draw_lines(area, p, xr.log_scale(), yr, &keep)?,
                (false, true) => draw_lines(area, p, xr, yr.log_scale(), &keep)?,
                (true, true) => draw_lines(area, p, xr.log_scale(), yr.log_scale(), &keep)?,
            }
        }
        Ok(())
    })
}

fn draw_lines<X, Y>(
    area: &Svg<'_>,
    p: &LinePanel,
    x: X,
    y: Y,
    keep: &dyn Fn(&(f64, f64)) -> bool,
) -> Result<()>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, font(16))
        .margin(12)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?;
    let label = |v: &f64| {
        if v.abs() < 0.01 && *v != 0.0 {
            format!("{v:.0e}")
        } else {
            fmt_plain(*v)
        }
    };
    let y_label = |v: &f64| {
        if p.y_seconds {
            fmt_seconds(*v)
        } else {
            label(v)
        }
    };
    chart
        .configure_mesh()
        .x_desc(p.x_desc.as_str())
        .y_desc(p.y_desc.as_str())
        .x_label_formatter(&label)
        .y_label_formatter(&y_label)
        .label_style(font(13))
        .axis_desc_style(font(14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for s in &p.series {
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|q| keep(q)).collect();
        let c = s.color;
        let dashed = s.dashed;
        if dashed {
            chart.draw_series(DashedLineSeries::new(pts, 6, 4, c.stroke_width(2)))?
        } else {
            if pts.len() <= 40 {
                chart.draw_series(pts.iter().map(|&q| Circle::new(q, 3, c.filled())))?;
            }
            chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))?
        }
        .label(s.name.as_str())
        .legend(move |(x, y)| {
            if dashed {
                PathElement::new(vec![(x, y), (x + 8, y)], c.stroke_width(2))
            } else {
                PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))
            }
        });
    }
    for (mx, my, text) in &p.marks {
        if !keep(&(*mx, *my)) {
            continue;
        }
        chart.draw_series(std::iter::once(Circle::new(
            (*mx, *my),
            6,
            BLACK.stroke_width(2),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            text.clone(),
            (*mx, *my),
            font(13).pos(Pos::new(HPos::Right, VPos::Bottom)),
        )))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft, 13)?;
    Ok(())
}

/// Picks a time unit for values in seconds: (multiplier, unit name).
pub fn time_unit(typical_s: f64) -> (f64, &'static str) {
    if typical_s < 1e-3 {
        (1e6, "µs")
    } else if typical_s < 1.0 {
        (1e3, "ms")
    } else {
        (1.0, "s")
    }
}

/// Per-token decode latency histograms (seconds in), one panel per run. Bins are equal
/// in log space so the common single-forward tokens and the rare window re-encodes both
/// show.
pub fn latency_histograms(path: &Path, runs: &[(&str, &[f64])]) -> Result<()> {
    let n = runs.len().max(1);
    render(path, (900, 60 + 260 * n as u32), |root| {
        let (title, body) = root.split_vertically(44);
        title.draw(&Text::new(
            "Decode latency per generated token (folio runtime, this machine)",
            (450, 14),
            font(22).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        for (i, (panel, (name, lat))) in body.split_evenly((n, 1)).iter().zip(runs).enumerate() {
            let positive: Vec<f64> = lat.iter().copied().filter(|v| *v > 0.0).collect();
            let Some(s) = stats::summary(&positive) else {
                continue;
            };
            let (mul, unit) = time_unit(s.median);
            let (lo, hi) = (s.min * mul / 1.1, s.max * mul * 1.1);
            let logs: Vec<f64> = positive.iter().map(|v| (v * mul).ln()).collect();
            let h = Histogram::new(&logs, lo.ln(), hi.ln(), 60);
            let top = h.counts.iter().copied().max().unwrap_or(1).max(1) as f64;
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!(
                        "{name}: p50 {}, p99 {}, max {} (n = {})",
                        fmt_seconds(s.median),
                        fmt_seconds(s.p99),
                        fmt_seconds(s.max),
                        s.n
                    ),
                    font(16),
                )
                .margin(10)
                .margin_right(24)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d((lo..hi).log_scale(), 0.0..top * 1.1)?;
            chart
                .configure_mesh()
                .x_desc(format!("{unit} per token (log scale)"))
                .y_desc("tokens")
                .x_label_formatter(&|v| {
                    if is_125(*v) {
                        fmt_plain(*v)
                    } else {
                        String::new()
                    }
                })
                .max_light_lines(1)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style(font(13))
                .axis_desc_style(font(14))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            let c = run_color(i);
            chart.draw_series(h.counts.iter().enumerate().filter(|(_, &k)| k > 0).map(
                |(b, &k)| {
                    Rectangle::new(
                        [(h.edge(b).exp(), 0.0), (h.edge(b + 1).exp(), k as f64)],
                        c.mix(0.8).filled(),
                    )
                },
            ))?;
            for (q, label) in [(s.median, "p50"), (s.p99, "p99")] {
                let x = q * mul;
                chart.draw_series(DashedLineSeries::new(
                    vec![(x, 0.0), (x, top * 1.1)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))?;
                chart.draw_series(std::iter::once(Text::new(
                    label,
                    (x, top * 1.05),
                    font(12).pos(Pos::new(HPos::Left, VPos::Center)),
                )))?;
            }
        }
        Ok(())
    })
}

/// `v` with at most 3 significant digits and no trailing `.0`.
pub fn fmt_plain(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}").trim_end_matches(".0").to_string()
    } else if a >= 1.0 {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// One panel of [`time_boxes`]: its title and `(run, values)` per box.
pub type BoxPanel<'a> = (&'a str, Vec<(&'a str, Vec<f64>)>);

/// Box plots (min, quartiles, median, max) with the values as dots (every k-th beyond
/// [`MAX_DOTS`]), one box per run, on a log axis; one panel per `(title, runs)` entry.
/// Values in seconds.
pub fn time_boxes(path: &Path, panels: &[BoxPanel<'_>]) -> Result<()> {
    let n_panels = panels.len().max(1);
    let n_runs = panels
        .iter()
        .map(|(_, r)| r.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let panel_w = (200 + 110 * n_runs as u32).max(460);
    render(path, (panel_w * n_panels as u32, 540), |root| {
        for (area, (title, runs)) in root.split_evenly((1, n_panels)).iter().zip(panels) {
            let all: Vec<f64> = runs
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .filter(|v| *v > 0.0)
                .collect();
            let (Some(lo), Some(hi)) = (
                all.iter().copied().reduce(f64::min),
                all.iter().copied().reduce(f64::max),
            ) else {
                continue;
            };
            let y = (lo / 2.0)..(hi * 2.0);
            let mut chart = ChartBuilder::on(area)
                .caption(*title, font(17))
                .margin(14)
                .x_label_area_size(44)
                .y_label_area_size(72)
                .build_cartesian_2d(-0.5..runs.len() as f64 - 0.5, y.clone().log_scale())?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .y_desc("seconds (log scale)")
                .y_label_formatter(&|v| {
                    if is_125(*v) {
                        fmt_seconds(*v)
                    } else {
                        String::new()
                    }
                })
                .label_style(font(13))
                .axis_desc_style(font(15))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            for (i, (_, vals)) in runs.iter().enumerate() {
                let Some(s) = stats::summary(vals) else {
                    continue;
                };
                let x = i as f64;
                let positive: Vec<f64> = vals.iter().copied().filter(|v| *v > 0.0).collect();
                draw_box(&mut chart, x, &positive, &s, run_color(i))?;
                chart.draw_series(std::iter::once(Text::new(
                    fmt_seconds(s.median),
                    (x + 0.3, s.median),
                    font(13).pos(Pos::new(HPos::Left, VPos::Center)),
                )))?;
            }
            let names: Vec<&str> = runs.iter().map(|(n, _)| *n).collect();
            category_labels(root, |i| chart.backend_coord(&(i as f64, y.start)), &names)?;
        }
        Ok(())
    })
}

/// A box (min, quartiles, median, max) at `x`, then `vals` as dots spread
/// deterministically across it.
fn draw_box<DB: DrawingBackend, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    x: f64,
    vals: &[f64],
    s: &Summary,
    c: RGBColor,
) -> Result<()>
where
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    DB::ErrorType: 'static,
{
    let e = |e| anyhow::anyhow!("drawing a box: {e:?}");
    let w = 0.25;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(x - w, s.q1), (x + w, s.q3)],
            c.mix(0.25).filled(),
        )))
        .map_err(e)?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(x - w, s.q1), (x + w, s.q3)],
            c.stroke_width(2),
        )))
        .map_err(e)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(x - w, s.median), (x + w, s.median)],
            c.stroke_width(3),
        )))
        .map_err(e)?;
    for (a, b) in [(s.min, s.q1), (s.q3, s.max)] {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, a), (x, b)],
                c.stroke_width(1),
            )))
            .map_err(e)?;
    }
    for v in [s.min, s.max] {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x - w / 2.0, v), (x + w / 2.0, v)],
                c.stroke_width(1),
            )))
            .map_err(e)?;
    }
    let stride = vals.len().div_ceil(MAX_DOTS).max(1);
    let shown: Vec<f64> = vals.iter().step_by(stride).copied().collect();
    let k = shown.len().max(2) as f64 - 1.0;
    chart
        .draw_series(shown.iter().enumerate().map(|(j, &v)| {
            let dx = if shown.len() > 1 {
                -0.22 + 0.44 * j as f64 / k
            } else {
                0.0
            };
            Circle::new((x + dx, v), 2, BLACK.mix(0.5).filled())
        }))
        .map_err(|e| anyhow::anyhow!("drawing dots: {e:?}"))?;
    Ok(())
}

/// True for 1, 2 and 5 times a power of ten (the labelled ticks of a log axis).
pub fn is_125(v: f64) -> bool {
    if !(v.is_finite() && v > 0.0) {
        return false;
    }
    let m = v / 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|k| (m - k).abs() < 1e-6 * k)
}

/// `v` seconds with a readable unit (`850 µs`, `12.5 ms`, `3.2 s`).
pub fn fmt_seconds(v: f64) -> String {
    let (mul, unit) = time_unit(v);
    let x = v * mul;
    if x >= 100.0 {
        format!("{x:.0} {unit}")
    } else if x >= 10.0 {
        format!("{x:.1} {unit}")
    } else {
        format!("{x:.2} {unit}")
    }
}

/// Colours of a heatmap.
pub const LEVELS: usize = 33;

/// Diverging colour of level `l` of [`LEVELS`]: blue (low), white (middle), red (high).
pub fn diverging(l: usize) -> RGBColor {
    let (lo, mid, hi) = (
        (59.0, 76.0, 192.0),
        (247.0, 247.0, 247.0),
        (180.0, 4.0, 38.0),
    );
    let t = l.min(LEVELS - 1) as f64 / (LEVELS - 1) as f64;
    let (a, b, u) = if t < 0.5 {
        (lo, mid, t * 2.0)
    } else {
        (mid, hi, t * 2.0 - 1.0)
    };
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The colour level of `v` on the scale `lo..=hi` (clamped).
pub fn level(v: f64, lo: f64, hi: f64) -> usize {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || !v.is_finite() {
        return LEVELS / 2;
    }
    let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
    (t * (LEVELS - 1) as f64).round() as usize
}

/// A heatmap panel: `values` is `(ys.len(), xs.len())`, row-major; row `i` shows
/// positions `ys[i] .. ys[i+1]` (the last up to `y_extent`), likewise for columns.
pub struct Heatmap {
    /// Panel title.
    pub title: String,
    /// X axis name.
    pub x_desc: String,
    /// Y axis name.
    pub y_desc: String,
    /// Column indices shown (ascending, from 0).
    pub xs: Vec<usize>,
    /// Columns in all.
    pub x_extent: usize,
    /// Row indices shown (ascending, from 0).
    pub ys: Vec<usize>,
    /// Rows in all.
    pub y_extent: usize,
    /// Cell values.
    pub values: Vec<f64>,
    /// Colour scale (values outside are clamped).
    pub range: (f64, f64),
}

/// Horizontal runs of equal colour level in one heatmap row: `(first column, past-the-end
/// column, level)` in column indices.
pub fn runs_of(levels: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for (j, &l) in levels.iter().enumerate() {
        match out.last_mut() {
            Some(last) if last.2 == l && last.1 == j => last.1 = j + 1,
            _ => out.push((j, j + 1, l)),
        }
    }
    out
}

/// Heatmap panels side by side, each with its colour bar.
pub fn heatmaps(path: &Path, caption: &str, panels: &[Heatmap]) -> Result<()> {
    let n = panels.len().max(1) as u32;
    // SVG paths for the cells, filled in while the axes are drawn.
    let mut cells = String::new();
    let mut svg = draw_svg((640 * n, 600), |root| {
        let (title, body) = root.split_vertically(40);
        title.draw(&Text::new(
            caption,
            ((320 * n) as i32, 12),
            font(21).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        for (area, hm) in body
            .split_evenly((1, panels.len().max(1)))
            .iter()
            .zip(panels)
        {
            if hm.values.len() != hm.xs.len() * hm.ys.len() || hm.xs.is_empty() || hm.ys.is_empty()
            {
                bail!(
                    "heatmap {:?}: {} values for {} x {} cells",
                    hm.title,
                    hm.values.len(),
                    hm.ys.len(),
                    hm.xs.len()
                );
            }
            let (map_area, bar_area) = area.split_horizontally(area.dim_in_pixel().0 as i32 - 96);
            let (x_ext, y_ext) = (hm.x_extent as f64, hm.y_extent as f64);
            let mut chart = ChartBuilder::on(&map_area)
                .caption(&hm.title, font(16))
                .margin(10)
                .x_label_area_size(44)
                .y_label_area_size(56)
                // Index i is centred on i: ticks at integers label cells.
                .build_cartesian_2d(-0.5..x_ext - 0.5, y_ext - 0.5..-0.5)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(hm.x_desc.as_str())
                .y_desc(hm.y_desc.as_str())
                .x_labels(hm.x_extent.min(11))
                .y_labels(hm.y_extent.min(11))
                .x_label_formatter(&integer_label)
                .y_label_formatter(&integer_label)
                .label_style(font(13))
                .axis_desc_style(font(14))
                .draw()?;
            cells.push_str(&heatmap_paths(hm, |x, y| chart.backend_coord(&(x, y))));
            // The colour bar: LEVELS bands.
            let (lo, hi) = hm.range;
            let step = (hi - lo) / LEVELS as f64;
            let mut bar = ChartBuilder::on(&bar_area)
                .margin_top(40)
                .margin_bottom(54)
                .margin_right(8)
                .y_label_area_size(52)
                .build_cartesian_2d(0.0..1.0, lo..hi)?;
            bar.configure_mesh()
                .disable_mesh()
                .disable_x_axis()
                .y_labels(7)
                .y_label_formatter(&|v| format!("{:.2}", if v.abs() < 5e-3 { 0.0 } else { *v }))
                .label_style(font(12))
                .draw()?;
            bar.draw_series((0..LEVELS).map(|l| {
                let a = lo + l as f64 * step;
                Rectangle::new([(0.0, a), (1.0, a + step)], diverging(l).filled())
            }))?;
        }
        Ok(())
    })?;
    let at = svg.rfind("</svg>").context("plotters wrote no </svg>")?;
    svg.insert_str(at, &cells);
    write_svg(path, &svg)
}

/// An axis label for integer ticks only.
fn integer_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// The cells of `hm` as one `<path>` per colour level, plus a frame; `to_px` maps chart
/// coordinates (column, row) to pixels, cell `i` spanning `i - 0.5 .. i + 0.5`.
fn heatmap_paths(hm: &Heatmap, to_px: impl Fn(f64, f64) -> (i32, i32)) -> String {
    let to_px = |x: f64, y: f64| to_px(x - 0.5, y - 0.5);
    let edge =
        |idx: &[usize], i: usize, extent: usize| idx.get(i + 1).copied().unwrap_or(extent) as f64;
    let mut by_level: BTreeMap<usize, String> = BTreeMap::new();
    let (lo, hi) = hm.range;
    for (i, row) in hm.values.chunks_exact(hm.xs.len()).enumerate() {
        let levels: Vec<usize> = row.iter().map(|&v| level(v, lo, hi)).collect();
        let (y0, y1) = (hm.ys[i] as f64, edge(&hm.ys, i, hm.y_extent));
        for (a, b, l) in runs_of(&levels) {
            let (px0, py0) = to_px(hm.xs[a] as f64, y0);
            let (px1, py1) = to_px(edge(&hm.xs, b - 1, hm.x_extent), y1);
            let d = by_level.entry(l).or_default();
            let _ = write!(d, "M{px0} {py0}h{}v{}h{}z", px1 - px0, py1 - py0, px0 - px1);
        }
    }
    let mut out = String::from("<g shape-rendering=\"crispEdges\">\n");
    for (l, d) in by_level {
        let c = diverging(l);
        let _ = writeln!(
            out,
            "<path fill=\"#{:02X}{:02X}{:02X}\" d=\"{d}\"/>",
            c.0, c.1, c.2
        );
    }
    let (fx0, fy0) = to_px(0.0, 0.0);
    let (fx1, fy1) = to_px(hm.x_extent as f64, hm.y_extent as f64);
    let _ = writeln!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#000000\"/>\n</g>",
        fx0.min(fx1),
        fy0.min(fy1),
        (fx1 - fx0).abs(),
        (fy1 - fy0).abs()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_equal_neighbours() {
        assert_eq!(
            runs_of(&[3, 3, 5, 5, 5, 3]),
            [(0, 2, 3), (2, 5, 5), (5, 6, 3)]
        );
        assert_eq!(runs_of(&[1]), [(0, 1, 1)]);
        assert!(runs_of(&[]).is_empty());
    }

    #[test]
    fn levels_span_the_scale_and_clamp() {
        assert_eq!(level(-1.0, -1.0, 1.0), 0);
        assert_eq!(level(0.0, -1.0, 1.0), LEVELS / 2);
        assert_eq!(level(1.0, -1.0, 1.0), LEVELS - 1);
        assert_eq!(level(7.0, -1.0, 1.0), LEVELS - 1);
        assert_eq!(level(-7.0, -1.0, 1.0), 0);
        assert_eq!(level(f64::NAN, -1.0, 1.0), LEVELS / 2);
        // The middle of a symmetric scale is white, the ends blue and red.
        assert_eq!(diverging(LEVELS / 2), RGBColor(247, 247, 247));
        assert_eq!(diverging(0), RGBColor(59, 76, 192));
        assert_eq!(diverging(LEVELS - 1), RGBColor(180, 4, 38));
    }

    #[test]
    fn seconds_are_printed_in_a_fitting_unit() {
        assert_eq!(fmt_seconds(0.000_012_34), "12.3 µs");
        assert_eq!(fmt_seconds(0.0025), "2.50 ms");
        assert_eq!(fmt_seconds(0.25), "250 ms");
        assert_eq!(fmt_seconds(4.0), "4.00 s");
        assert_eq!(fmt_plain(250.0), "250");
        assert_eq!(fmt_plain(12.0), "12");
        assert_eq!(fmt_plain(2.5), "2.5");
        assert_eq!(fmt_plain(0.05), "0.05");
        assert_eq!(fmt_plain(0.0), "0");
        assert_eq!(integer_label(&3.0), "3");
        assert!(is_125(0.002) && is_125(50.0) && is_125(1e-6) && is_125(0.1));
        assert!(!is_125(0.003) && !is_125(70.0) && !is_125(0.0) && !is_125(-2.0));
        assert_eq!(integer_label(&2.5), "");
    }

    #[test]
    fn heatmap_paths_cover_every_cell_once() {
        // 2 x 3 cells; row 0 is one colour (one run), row 1 has three levels.
        let hm = Heatmap {
            title: String::new(),
            x_desc: String::new(),
            y_desc: String::new(),
            xs: vec![0, 2, 4],
            x_extent: 6,
            ys: vec![0, 1],
            y_extent: 2,
            values: vec![0.5, 0.5, 0.5, -1.0, 0.0, 1.0],
            range: (-1.0, 1.0),
        };
        // 10 px per unit, cell 0 starting at pixel 0.
        let svg = heatmap_paths(&hm, |x, y| {
            (((x + 0.5) * 10.0) as i32, ((y + 0.5) * 10.0) as i32)
        });
        assert_eq!(svg.matches('M').count(), 4);
        assert!(svg.contains("M0 0h60v10h-60z"), "{svg}");
        assert!(
            svg.contains("M0 10h20v10h-20z") && svg.contains("M40 10h20v10h-20z"),
            "{svg}"
        );
        assert!(svg.contains("width=\"60\" height=\"20\""), "{svg}");
    }
}
