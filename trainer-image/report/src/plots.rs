//! Every plot of the report, drawn by plotters into an SVG string for inline embedding.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 400;
const FONT: &str = "sans-serif";

fn draw(
    size: (u32, u32),
    paint: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> std::result::Result<(), String>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        paint(&root).map_err(Error::Plot)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error(error: impl std::fmt::Display) -> Error {
    Error::Plot(error.to_string())
}

/// Axis ticks with at most four significant digits: 35000000 reads 3.5e7, 0.25 reads 0.25.
fn tick(value: &f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.2e}").replace(".00e", "e").replace("0e", "e")
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// A padded `[min, max]` of finite values, never empty.
fn range_of(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
    (lo - pad, hi + pad)
}

type NumericChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A titled chart with numeric axes, its grid, ticks and axis names drawn.
fn numeric_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_label, y_label): (&str, &str),
) -> std::result::Result<NumericChart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(text)?;
    chart
        .configure_mesh()
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(text)?;
    Ok(chart)
}

/// One line per series; x is the step (1-based).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<f64>)],
) -> Result<String> {
    let steps = series.iter().map(|(_, v)| v.len()).max().unwrap_or(1).max(2);
    let (lo, hi) = range_of(series.iter().flat_map(|(_, v)| v.iter().copied()));
    draw((WIDTH, HEIGHT), |root| {
        let mut chart = numeric_chart(root, title, (1f64..steps as f64, lo..hi), (x_label, y_label))?;
        for (index, (name, values)) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let points: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| ((i + 1) as f64, v))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(text)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            // Single points (one epoch) are invisible as lines.
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(text)?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(text)?;
        }
        Ok(())
    })
}

/// Counts of actual (rows) by predicted (columns) class, shaded by the share of the row.
pub fn confusion_matrix(classes: &[String], counts: &[Vec<usize>]) -> Result<String> {
    let n = classes.len();
    let side = (28 * n as u32 + 160).clamp(360, 900);
    draw((side, side), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Confusion matrix (test rows)", (FONT, 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d((0..n).into_segmented(), (0..n).into_segmented())
            .map_err(text)?;
        let name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                classes.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        // The y axis grows upwards: the first class's row is drawn at the top, as it is read.
        let row_of = |a: usize| n - 1 - a;
        let row_name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if *i < n => {
                name(&SegmentValue::Exact(row_of(*i)))
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("actual")
            .x_labels(n)
            .y_labels(n)
            .x_label_formatter(&name)
            .y_label_formatter(&row_name)
            .draw()
            .map_err(text)?;
        for (a, row) in counts.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                let color = RGBColor(33, 102, 172).mix(0.08 + 0.92 * share);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(p), SegmentValue::Exact(row_of(a))),
                            (SegmentValue::Exact(p + 1), SegmentValue::Exact(row_of(a) + 1)),
                        ],
                        color.filled(),
                    )))
                    .map_err(text)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 13).into_font())
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series(std::iter::once(Text::new(
                        count.to_string(),
                        (SegmentValue::CenterOf(p), SegmentValue::CenterOf(row_of(a))),
                        style,
                    )))
                    .map_err(text)?;
            }
        }
        Ok(())
    })
}

pub fn roc_curve(points: &[(f64, f64)], auc: f64, positive_class: &str) -> Result<String> {
    draw((HEIGHT + 60, HEIGHT), |root| {
        let mut chart = numeric_chart(
            root,
            &format!("ROC curve, positive class {positive_class} (AUC {auc:.4})"),
            (0f64..1f64, 0f64..1f64),
            ("false positive rate", "true positive rate"),
        )?;
        chart
            .draw_series(LineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3).stroke_width(1)))
            .map_err(text)?;
        chart.draw_series(LineSeries::new(points.to_vec(), BLUE.stroke_width(2))).map_err(text)?;
        Ok(())
    })
}

/// Horizontal bars, one per label, longest first as given.
pub fn bar_chart(title: &str, value_label: &str, bars: &[(String, f64)]) -> Result<String> {
    let n = bars.len().max(1);
    let height = (26 * n as u32 + 110).clamp(200, 1200);
    let top = bars.iter().map(|(_, v)| *v).fold(0.0f64, f64::max).max(1e-12) * 1.08;
    let widest = bars.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(4) as u32;
    draw((WIDTH, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size((widest * 8 + 16).clamp(40, 260))
            .build_cartesian_2d(0f64..top, (0..n).into_segmented())
            .map_err(text)?;
        let name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                bars.get(*i).map(|b| b.0.clone()).unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&name)
            .x_desc(value_label)
            .draw()
            .map_err(text)?;
        // Rectangles, not plotters' Histogram: that one sums bars in a HashMap, so its SVG
        // order would change from run to run and the report would not be reproducible.
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let mut bar = Rectangle::new(
                    [(0.0, SegmentValue::Exact(i)), (*v, SegmentValue::Exact(i + 1))],
                    RGBColor(33, 102, 172).filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(text)?;
        Ok(())
    })
}

/// Points, with the y = x line when `diagonal`.
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    diagonal: bool,
) -> Result<String> {
    let (mut x_lo, mut x_hi) = range_of(points.iter().map(|p| p.0));
    let (mut y_lo, mut y_hi) = range_of(points.iter().map(|p| p.1));
    if diagonal {
        (x_lo, x_hi) = (x_lo.min(y_lo), x_hi.max(y_hi));
        (y_lo, y_hi) = (x_lo, x_hi);
    }
    draw((WIDTH, HEIGHT), |root| {
        let mut chart = numeric_chart(root, title, (x_lo..x_hi, y_lo..y_hi), (x_label, y_label))?;
        if diagonal {
            chart
                .draw_series(LineSeries::new(
                    vec![(x_lo, x_lo), (x_hi, x_hi)],
                    BLACK.mix(0.3).stroke_width(1),
                ))
                .map_err(text)?;
        }
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|&p| Circle::new(p, 3, RGBColor(33, 102, 172).mix(0.7).filled())),
            )
            .map_err(text)?;
        Ok(())
    })
}

/// A histogram of `values` in `bins` equal bins.
pub fn histogram(title: &str, x_label: &str, values: &[f64], bins: usize) -> Result<String> {
    let (lo, hi) = range_of(values.iter().copied());
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    draw((WIDTH, HEIGHT), |root| {
        let mut chart = numeric_chart(root, title, (lo..hi, 0f64..top), (x_label, "rows"))?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], RGBColor(33, 102, 172).mix(0.8).filled())
            }))
            .map_err(text)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_draws_one_path_per_series_with_its_legend() {
        let svg = line_chart(
            "validation Accuracy",
            "epoch",
            "Accuracy",
            &[("trial 0".into(), vec![0.2, 0.5, 0.6]), ("trial 1".into(), vec![0.3])],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert_eq!(
            svg.matches(r#"stroke-width="2""#).count(),
            4,
            "one line per series and one per legend entry"
        );
        assert!(svg.contains("trial 0") && svg.contains("trial 1") && svg.contains("epoch"));
    }

    #[test]
    fn a_confusion_matrix_writes_every_count_and_class_name() {
        let classes = vec!["cat".to_owned(), "dog".to_owned()];
        let svg = confusion_matrix(&classes, &[vec![7, 1], vec![2, 13]]).unwrap();
        for needle in [">\n7\n<", ">\n1\n<", ">\n2\n<", ">\n13\n<", "cat", "dog", "predicted", "actual"] {
            assert!(svg.contains(needle), "no {needle} in the matrix");
        }
        // Read top-down: the actual-cat row (7, 1) is drawn above the actual-dog row (2, 13).
        let y_of = |count: &str| {
            let at = svg.find(&format!(">\n{count}\n<")).unwrap();
            let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
            let y = tag.split(" y=\"").nth(1).unwrap().split('"').next().unwrap();
            y.parse::<f64>().unwrap()
        };
        assert!(y_of("7") < y_of("13"), "the first class's row is on top");
    }

    #[test]
    fn ticks_keep_four_significant_digits() {
        assert_eq!(tick(&35_000_000.0), "3.5e7");
        assert_eq!(tick(&0.25), "0.25");
        assert_eq!(tick(&140.0), "140");
        assert_eq!(tick(&-2500.0), "-2500");
        assert_eq!(tick(&0.0), "0");
    }

    #[test]
    fn the_same_input_draws_the_same_bytes() {
        let bars: Vec<(String, f64)> = (0..12).map(|i| (format!("column {i}"), i as f64)).collect();
        let first = bar_chart("gain", "share", &bars).unwrap();
        assert!((0..20).all(|_| bar_chart("gain", "share", &bars).unwrap() == first));
    }

    #[test]
    fn a_histogram_counts_every_finite_value_once() {
        let svg = histogram("residuals", "residual", &[0.0, 0.1, 0.2, 5.0, f64::NAN], 4).unwrap();
        assert!(svg.contains("<rect"));
        let empty = histogram("residuals", "residual", &[], 4).unwrap();
        assert!(empty.starts_with("<svg"));
    }
}
