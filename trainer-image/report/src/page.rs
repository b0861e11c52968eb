//! The HTML of the report: sections in the order a reviewer reads them, plots inline.

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, PreEscaped, html};
use ocellus_crds::common::MetricValue;
use serde_json::Value;

use crate::error::Result;
use crate::evaluation::{Evaluation, argmax, confusion_matrix, largest_errors, per_class_scores, roc_curve};
use crate::gallery::thumbnail_data_url;
use crate::inputs::{DatasetFacts, RunFiles};
use crate::plots;
use crate::record::{FeatureKind, RunRecord, TrialRecord};

/// Trials drawn in one learning-curve plot (the best ones); the table lists all.
const CURVES_PER_PLOT: usize = 10;
const GALLERY_SIZE: usize = 12;

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1.5rem; color: #1b1b1b; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.subtitle { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f3f5f8; } td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eaf4ea; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure.plot { margin: 0; border: 1px solid #e3e3e3; padding: 0.3rem; background: #fff; }
figure.plot svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; padding: 0.2rem; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8rem; }
.gallery figure { margin: 0; width: 140px; font-size: 0.8rem; }
.gallery img { width: 128px; height: 128px; object-fit: contain; background: #f4f4f4; border: 1px solid #ddd; }
.note { color: #555; font-style: italic; }
.wide { overflow-x: auto; }
";

pub fn render(run: &RunFiles) -> Result<String> {
    let record = &run.record;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Ocellus report: " (record.experiment) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Experiment " (record.experiment) }
                p.subtitle {
                    (record.pipeline) " pipeline · target " code { (record.target_column) }
                    " · " (format!("{:?}", record.target.task)) " · optimised for " (record.scorer)
                    @if !record.greater_is_better { " (lower is better)" }
                }
                (summary(run))
                (learning_curves(record)?)
                (trial_table(record))
                (test_section(run)?)
                (feature_importance(record)?)
                (gallery(run))
                (datasets(&run.datasets))
            }
        }
    };
    Ok(page.into_string())
}

fn figure(id: &str, svg: String, caption: &str) -> Markup {
    html! {
        figure.plot id=(format!("plot-{id}")) data-plot=(id) {
            (PreEscaped(svg))
            figcaption { (caption) }
        }
    }
}

fn number(value: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    match value.abs() {
        0.0 => "0".into(),
        m if !(1e-3..1e7).contains(&m) => format!("{value:.4e}"),
        m if m >= 100.0 => format!("{value:.1}"),
        _ => format!("{value:.4}"),
    }
}

fn metric_rows(metrics: &[MetricValue]) -> BTreeMap<&str, f64> {
    metrics.iter().map(|m| (m.name.as_str(), m.value)).collect()
}

fn summary(run: &RunFiles) -> Markup {
    let metrics = run.status.metrics.clone().unwrap_or_default();
    let validation = metric_rows(&metrics.validation);
    let test = metric_rows(&metrics.test);
    let names: Vec<&str> = metrics.validation.iter().chain(&metrics.test).map(|m| m.name.as_str()).fold(
        Vec::new(),
        |mut names, n| {
            if !names.contains(&n) {
                names.push(n);
            }
            names
        },
    );
    let best: BTreeMap<String, Value> = run
        .status
        .best_model
        .as_ref()
        .and_then(|b| serde_json::to_value(b).ok())
        .and_then(|v| v.as_object().cloned())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    html! {
        h2 id="metrics" { "Scores" }
        table id="metrics-table" {
            tr { th { "metric" } th { "validation" } th { "test" } }
            @for name in &names {
                tr {
                    td { (name) }
                    td.number { (validation.get(name).map(|v| number(*v)).unwrap_or_default()) }
                    td.number { (test.get(name).map(|v| number(*v)).unwrap_or_default()) }
                }
            }
        }
        @if metrics.test.is_empty() {
            p.note { "No test scores: the Experiment has no testDatasetRef." }
        }
        h2 id="best-model" { "Best model" }
        table id="best-model-table" {
            @for (key, value) in &best {
                tr { th { (key) } td { (display_value(value)) } }
            }
        }
        @if let Some(artifacts) = &run.status.artifacts {
            p { "Scoring bundle: " code { (artifacts.scoring_bundle.clone().unwrap_or_default()) }
                " — score new rows with " code { "ocellus predict --bundle DIR/scoring" } }
        }
    }
}

fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            n.as_f64().filter(|v| v.fract() != 0.0).map(number).unwrap_or_else(|| n.to_string())
        }
        Value::Array(items) => items.iter().map(display_value).collect::<Vec<_>>().join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Trials from best to worst score (unscored last).
fn ranked(record: &RunRecord) -> Vec<&TrialRecord> {
    let mut trials: Vec<&TrialRecord> = record.trials.iter().collect();
    let key = |t: &TrialRecord| {
        t.score
            .filter(|s| s.is_finite())
            .map(|s| if record.greater_is_better { -s } else { s })
            .unwrap_or(f64::INFINITY)
    };
    trials.sort_by(|a, b| key(a).total_cmp(&key(b)));
    trials
}

/// A trial's label and its values, one line of a learning-curve plot.
type Series = (String, Vec<f64>);

/// One plot per metric (the step: epoch or boosting round), the best trials' curves in each.
fn learning_curves(record: &RunRecord) -> Result<Markup> {
    let mut plots: BTreeMap<&str, (&str, Vec<Series>)> = BTreeMap::new();
    for trial in ranked(record) {
        for curve in &trial.curves {
            let entry = plots.entry(curve.metric.as_str()).or_insert((curve.step.as_str(), Vec::new()));
            if entry.1.len() < CURVES_PER_PLOT && !curve.values.is_empty() {
                entry.1.push((format!("trial {}", trial.id), curve.values.clone()));
            }
        }
    }
    let mut figures = Vec::new();
    for (index, (metric, (step, series))) in plots.iter().enumerate() {
        let svg = plots::line_chart(metric, step, metric, series)?;
        let caption = format!("{metric} per {step}, {} best trials", series.len());
        figures.push(figure(&format!("learning-curve-{index}"), svg, &caption));
    }
    Ok(html! {
        h2 id="learning-curves" { "Learning curves" }
        @if figures.is_empty() {
            p.note { "No trial recorded a learning curve." }
        } @else {
            div.plots { @for f in &figures { (f) } }
        }
    })
}

fn trial_table(record: &RunRecord) -> Markup {
    let mut keys: Vec<&str> = Vec::new();
    for trial in &record.trials {
        for key in trial.config.keys() {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
    }
    let trials = ranked(record);
    let best_id = trials.first().filter(|t| t.score.is_some()).map(|t| t.id);
    html! {
        h2 id="trials" { "Trials (" (record.trials.len()) ")" }
        div.wide { table id="trial-table" {
            tr {
                th { "trial" } th { "status" } th { (record.scorer) }
                @for key in &keys { th { (key) } }
            }
            @for trial in &trials {
                tr class=[(Some(trial.id) == best_id).then_some("best")] {
                    td.number { (trial.id) }
                    td { (trial.status) }
                    td.number { (trial.score.map(number).unwrap_or_default()) }
                    @for key in &keys {
                        td { (trial.config.get(*key).map(display_value).unwrap_or_default()) }
                    }
                }
            }
        } }
    }
}

fn test_section(run: &RunFiles) -> Result<Markup> {
    let Some(evaluation) = &run.evaluation else {
        return Ok(html! {
            h2 id="test" { "Test set" }
            p.note { "No test dataset: add testDatasetRef to the Experiment to see the confusion matrix or residuals here." }
        });
    };
    if evaluation.is_empty() {
        return Ok(html! {
            h2 id="test" { "Test set" }
            p.note { "The test dataset has no rows with a target value." }
        });
    }
    let figures = match evaluation {
        Evaluation::Classification { classes, actual, probabilities, .. } => {
            let predicted: Vec<usize> = probabilities.iter().map(|p| argmax(p)).collect();
            let counts = confusion_matrix(classes.len(), actual, &predicted);
            let scores = per_class_scores(&counts);
            let mut figures = vec![figure(
                "confusion-matrix",
                plots::confusion_matrix(classes, &counts)?,
                "Rows: actual class; columns: predicted class",
            )];
            if classes.len() == 2 {
                let positive: Vec<bool> = actual.iter().map(|&a| a == 1).collect();
                let score: Vec<f64> = probabilities.iter().map(|p| p[1]).collect();
                let (points, auc) = roc_curve(&positive, &score);
                if !points.is_empty() {
                    figures.push(figure(
                        "roc",
                        plots::roc_curve(&points, auc, &classes[1])?,
                        "ROC of the test rows",
                    ));
                }
            }
            let bars: Vec<(String, f64)> =
                classes.iter().zip(&scores).map(|(c, s)| (c.clone(), s.f1)).collect();
            figures.push(figure(
                "per-class-f1",
                plots::bar_chart("F1 per class (test rows)", "F1", &bars)?,
                "F1 of each class",
            ));
            let table = html! {
                table id="per-class-table" {
                    tr { th { "class" } th { "precision" } th { "recall" } th { "F1" } th { "rows" } }
                    @for (class, s) in classes.iter().zip(&scores) {
                        tr { td { (class) } td.number { (number(s.precision)) } td.number { (number(s.recall)) }
                             td.number { (number(s.f1)) } td.number { (s.support) } }
                    }
                }
            };
            (figures, table)
        }
        Evaluation::Regression { actual, predicted, .. } => {
            let points: Vec<(f64, f64)> = actual.iter().copied().zip(predicted.iter().copied()).collect();
            let residuals: Vec<f64> = actual.iter().zip(predicted).map(|(a, p)| p - a).collect();
            let bins = (residuals.len() as f64).sqrt().ceil().clamp(5.0, 40.0) as usize;
            let figures = vec![
                figure(
                    "predicted-vs-actual",
                    plots::scatter("Predicted vs actual (test rows)", "actual", "predicted", &points, true)?,
                    "Each point a test row; the line is a perfect prediction",
                ),
                figure(
                    "residuals",
                    plots::histogram("Residuals (predicted − actual)", "residual", &residuals, bins)?,
                    "Distribution of the test rows' errors",
                ),
            ];
            (figures, html! {})
        }
    };
    Ok(html! {
        h2 id="test" { "Test set (" (evaluation.len()) " labelled rows)" }
        div.plots { @for f in &figures.0 { (f) } }
        (figures.1)
    })
}

fn feature_importance(record: &RunRecord) -> Result<Markup> {
    if record.feature_importance.is_empty() {
        return Ok(html! {});
    }
    let total: f64 = record.feature_importance.iter().map(|g| g.importance).sum::<f64>().max(1e-300);
    let mut groups = record.feature_importance.clone();
    groups.sort_by(|a, b| b.importance.total_cmp(&a.importance));
    let bars: Vec<(String, f64)> = groups
        .iter()
        .map(|g| {
            let kind = match g.kind {
                FeatureKind::ImageEmbedding => "image",
                FeatureKind::Tabular => "column",
            };
            (format!("{} ({kind})", g.column), g.importance / total)
        })
        .collect();
    let measure = record.importance_measure.as_deref().unwrap_or("gradient boosting's total split gain");
    let svg = plots::bar_chart("Share of importance per source column", "share of the total", &bars)?;
    let caption = format!("The best model's {measure}, every embedding feature of an image column summed");
    Ok(html! {
        h2 id="feature-importance" { "Feature importance" }
        div.plots { (figure("feature-importance", svg, &caption)) }
    })
}

fn gallery(run: &RunFiles) -> Markup {
    let Some(evaluation) = &run.evaluation else { return html! {} };
    let worst = largest_errors(evaluation, GALLERY_SIZE);
    let cards: Vec<(Option<String>, String)> = worst
        .iter()
        .map(|&i| match evaluation {
            Evaluation::Classification { classes, actual, probabilities, images } => {
                let p = &probabilities[i];
                let guess = argmax(p);
                let text = format!(
                    "actual {} (p {:.2}) · predicted {} (p {:.2})",
                    classes[actual[i]], p[actual[i]], classes[guess], p[guess]
                );
                (images[i].as_deref().and_then(thumbnail_data_url), text)
            }
            Evaluation::Regression { actual, predicted, images } => {
                let text = format!("actual {} · predicted {}", number(actual[i]), number(predicted[i]));
                (images[i].as_deref().and_then(thumbnail_data_url), text)
            }
        })
        .collect();
    html! {
        h2 id="largest-errors" { "Test images with the largest errors" }
        @if cards.is_empty() {
            p.note { "No labelled test rows." }
        }
        div.gallery {
            @for (url, text) in &cards {
                figure {
                    @if let Some(url) = url { img src=(url) alt=(text); } @else { p.note { "image unreadable" } }
                    figcaption { (text) }
                }
            }
        }
    }
}

fn datasets(datasets: &[DatasetFacts]) -> Markup {
    html! {
        h2 id="datasets" { "Datasets" }
        @for facts in datasets {
            h3 { (facts.role) " dataset: " code { (facts.dir.display().to_string()) } }
            p {
                (facts.profile.rows.unwrap_or_default()) " rows, " (facts.profile.columns.len()) " columns, "
                (facts.profile.bad_images.unwrap_or_default()) " images refused"
            }
            table.profile {
                tr { th { "column" } th { "type" } th { "missing" } }
                @for column in &facts.profile.columns {
                    tr { td { (column.name) } td { (format!("{:?}", column.type_)) } td.number { (column.missing) } }
                }
            }
            @if !facts.bad_images.is_empty() {
                table.bad-images {
                    tr { th { "row" } th { "column" } th { "value" } th { "why it was refused" } }
                    @for bad in &facts.bad_images {
                        tr { td.number { (bad.row) } td { (bad.column) } td { code { (bad.value) } } td { (bad.reason) } }
                    }
                }
            }
        }
    }
}
