//! `ocellus run` and `ocellus predict` end to end on real images (the datasets
//! `make testdata` builds from scikit-learn's digits and scikit-image's photos), and every
//! bad input the embeddings pipeline names, each with a clear error and nothing half-written.

mod common;

use common::*;
use ocellus_crds::experiment::Pipeline;
use ocellus_trainer::error::EXIT_BAD_INPUT;
use serde_json::Value;

#[test]
fn mixed_image_and_tabular_regression_runs_and_predict_reproduces_its_test_predictions() {
    test_set("photo-prices");
    let out = tempfile::tempdir().unwrap();
    let status = run(&repo().join("examples/local/photo-prices.yaml"), out.path());

    assert_eq!(status.pipeline, Some(Pipeline::Embeddings));
    let metrics = status.metrics.unwrap();
    for name in ["RMSE", "MAE", "R2"] {
        metric(&metrics.validation, name);
    }
    // The price depends on which photo a row shows: without the image embeddings R2 stays low.
    let r2 = metric(&metrics.test, "R2");
    assert!(r2 > 0.6, "test R2 {r2}: the pipeline did not learn the price");
    let best = status.best_model.unwrap();
    assert!(matches!(best.embedding_dimension, Some(10 | 25)), "{best:?}");
    assert!(matches!(best.learner.as_deref(), Some("LightGBM" | "Ridge")), "{best:?}");
    let trials = status.trials.unwrap();
    assert_eq!(trials.total, 4, "two learners on each dimension's features");
    assert_eq!(trials.top[0].score, best.score, "the best candidate is reported first");
    assert_eq!(trials.top[0].learner, best.learner);
    for learner in ["LightGBM", "Ridge"] {
        let tried = trials.top.iter().filter(|t| t.learner.as_deref() == Some(learner)).count();
        assert_eq!(tried, 2, "{learner} on both dimensions: {:?}", trials.top);
    }

    let bundle = out.path().join("scoring");
    let rows = out.path().join("test-rows.csv");
    let count = rows_as_csv(&out.path().join("datasets/photo-prices-test"), &rows, false);
    let predictions = out.path().join("again.csv");
    let output = predict(&bundle, &rows, &predictions);
    assert!(output.status.success(), "{}", text(&output));
    let expected = std::fs::read_to_string(out.path().join("predictions.csv")).unwrap();
    assert_eq!(expected.lines().count(), count + 1);
    assert_eq!(
        std::fs::read_to_string(&predictions).unwrap(),
        expected,
        "predict must reproduce the run exactly"
    );

    // Inline base64 images score the same as the files they encode.
    let inline_rows = out.path().join("inline.csv");
    rows_as_csv(&out.path().join("datasets/photo-prices-test"), &inline_rows, true);
    let inline_predictions = out.path().join("inline-predictions.csv");
    let output = predict(&bundle, &inline_rows, &inline_predictions);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(std::fs::read_to_string(&inline_predictions).unwrap(), expected);

    // The report: regression plots, and the photo column's share of the gain beside the others.
    let report = out.path().join("report.html");
    assert_eq!(status.artifacts.unwrap().report, Some(report.display().to_string()));
    let html = std::fs::read_to_string(&report).unwrap();
    for column in ["photo (image)", "mileage (column)", "color (column)", "description (column)"] {
        assert!(html.contains(column), "no {column} in the feature importance");
    }
    if let Some(rendered) = browser::render_report(
        &report,
        &["learning-curve", "predicted-vs-actual", "residuals", "feature-importance"],
    ) {
        assert!(rendered.thumbnails >= 10, "the gallery shows the worst test rows' photos");
    }
}

#[test]
fn image_classification_runs_and_predict_reproduces_its_test_predictions() {
    test_set("digits");
    let out = tempfile::tempdir().unwrap();
    let status = run(&repo().join("examples/local/digits.yaml"), out.path());
    let metrics = status.metrics.unwrap();
    for name in ["LogLoss", "Accuracy", "F1", "AUC"] {
        metric(&metrics.test, name);
    }
    let accuracy = metric(&metrics.test, "Accuracy");
    assert!(accuracy > 0.5, "test accuracy {accuracy} on 10 classes (chance is 0.1)");
    // Pretrained embeddings separate digits nearly linearly: logistic regression beats gradient
    // boosting's axis-aligned splits on validation (BENCHMARKS.md), and its bundle is what
    // `ocellus predict` reproduces below.
    assert_eq!(status.best_model.unwrap().learner.as_deref(), Some("LogisticRegression"));
    let predictions = std::fs::read_to_string(out.path().join("predictions.csv")).unwrap();
    let header = predictions.lines().next().unwrap();
    assert_eq!(header, "prediction,p_0,p_1,p_2,p_3,p_4,p_5,p_6,p_7,p_8,p_9");

    let rows = out.path().join("test-rows.csv");
    rows_as_csv(&out.path().join("datasets/digits-test"), &rows, false);
    let again = out.path().join("again.csv");
    let output = predict(&out.path().join("scoring"), &rows, &again);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), predictions);

    // A scoring input without the image column is refused before anything is computed.
    std::fs::write(out.path().join("no-image.csv"), "other\n1\n").unwrap();
    let output = predict(&out.path().join("scoring"), &out.path().join("no-image.csv"), &again);
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT), "{}", text(&output));
    assert!(text(&output).contains("lack column(s) image"), "{}", text(&output));

    // The report: classification plots in a real browser, and `ocellus report` rebuilds the
    // same file from the folder alone.
    let report = out.path().join("report.html");
    if let Some(rendered) =
        browser::render_report(&report, &["learning-curve", "confusion-matrix", "per-class-f1"])
    {
        assert!(rendered.thumbnails >= 10, "{} thumbnails", rendered.thumbnails);
    }
    let first = std::fs::read(&report).unwrap();
    std::fs::remove_file(&report).unwrap();
    let output = ocellus(&["report", out.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(std::fs::read(&report).unwrap(), first, "the report is a pure function of the run's files");
}

#[test]
fn a_report_of_a_folder_that_is_not_a_run_says_what_to_point_at() {
    let empty = tempfile::tempdir().unwrap();
    let output = ocellus(&["report", empty.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT), "{}", text(&output));
    assert!(text(&output).contains("no result.json"), "{}", text(&output));
    assert!(!empty.path().join("report.html").exists());
}

fn architectures() -> &'static str {
    "  embeddings: {architectures: [efficientnet_lite0], dimensions: [10]}\n"
}

#[test]
fn a_missing_target_column_is_named_with_the_columns_there_are() {
    let tiny = Tiny::new(20, |i| format!("{},{}", Tiny::photo(i), i), "photo,price");
    let message = tiny.run_failing("", "Embeddings", &format!("  target: cost\n{}", architectures()));
    assert!(
        message.contains("target column \"cost\" is not in Dataset") && message.contains("photo, price"),
        "{message}"
    );
}

#[test]
fn a_constant_target_is_refused() {
    let tiny = Tiny::new(20, |i| format!("{},7", Tiny::photo(i)), "photo,price");
    let message = tiny.run_failing(
        "",
        "Embeddings",
        &format!("  target: price\n  task: Regression\n{}", architectures()),
    );
    assert!(message.to_lowercase().contains("constant") || message.contains("only one"), "{message}");
}

#[test]
fn an_unknown_architecture_lists_the_available_backbones() {
    let tiny = Tiny::new(20, |i| format!("{},{}", Tiny::photo(i), i), "photo,price");
    let message = tiny.run_failing(
        "",
        "Embeddings",
        "  target: price\n  task: Regression\n  embeddings: {architectures: [resnet50], dimensions: [10]}\n",
    );
    assert!(message.contains("\"resnet50\"") && message.contains("efficientnet_lite0"), "{message}");
}

#[test]
fn a_dimension_that_is_not_allowed_is_refused_by_validation() {
    let tiny = Tiny::new(20, |i| format!("{},{}", Tiny::photo(i), i), "photo,price");
    let message = tiny.run_failing(
        "",
        "Embeddings",
        "  target: price\n  task: Regression\n  embeddings: {architectures: [efficientnet_lite0], dimensions: [64]}\n",
    );
    assert!(message.contains("spec.embeddings.dimensions[0]"), "{message}");
}

#[test]
fn an_image_column_without_images_is_refused() {
    let tiny = Tiny::new(20, |i| format!(",{i},{}", i % 3), "photo,price,size");
    let message = tiny.run_failing(
        "  imageColumns: [photo]\n  missingImagePolicy: ZeroEmbedding\n  limits: {maxBadPercent: 100}\n",
        "Embeddings",
        &format!("  target: price\n  task: Regression\n{}", architectures()),
    );
    assert!(message.contains("image column \"photo\" has no images"), "{message}");
}

#[test]
fn a_test_dataset_with_other_columns_is_refused() {
    let tiny = Tiny::new(20, |i| format!("{},{},{}", Tiny::photo(i), i, i % 3), "photo,price,size");
    std::fs::write(tiny.dir.path().join("test.csv"), "photo,price\nchelsea.png,1\ncoffee.png,2\n").unwrap();
    let message = tiny.run_failing(
        "---\napiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: other}\nspec:\n  source: {path: test.csv}\n  format: CsvPaths\n",
        "Embeddings",
        &format!("  target: price\n  task: Regression\n  testDatasetRef: {{name: other}}\n{}", architectures()),
    );
    assert!(
        message.contains("does not match the columns") && message.contains("size is missing"),
        "{message}"
    );
}

#[test]
fn predict_with_a_folder_that_is_not_a_bundle_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.csv"), "a\n1\n").unwrap();
    let output = predict(dir.path(), &dir.path().join("rows.csv"), &dir.path().join("out.csv"));
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT), "{}", text(&output));
    assert!(text(&output).contains("is not a scoring bundle"), "{}", text(&output));
    assert!(!dir.path().join("out.csv").exists());
}

#[test]
fn fine_tuning_trains_the_backbone_and_predict_reproduces_its_test_predictions() {
    // Prices by photo: the cat rows are cheap, the espresso rows dear.
    let price = |i: usize| if i.is_multiple_of(2) { 1000 + (i * 37) % 200 } else { 5000 + (i * 53) % 200 };
    let tiny = Tiny::new(40, |i| format!("{},{}", Tiny::photo(i), price(i)), "photo,price");
    std::fs::write(
        tiny.dir.path().join("experiment.yaml"),
        "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: tiny}\nspec:\n  source: {path: table.csv}\n  format: CsvPaths\n---\n\
         apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: tiny-train}\nspec:\n  source:\n    split: {datasetRef: {name: tiny}, percent: 75, part: First, seed: 3}\n---\n\
         apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: tiny-test}\nspec:\n  source:\n    split: {datasetRef: {name: tiny}, percent: 75, part: Rest, seed: 3}\n---\n\
         apiVersion: ocellus.dev/v1alpha1\nkind: Experiment\nmetadata: {name: tiny}\nspec:\n  datasetRef: {name: tiny-train}\n  testDatasetRef: {name: tiny-test}\n  target: price\n  task: Regression\n  pipeline: Embeddings\n  embeddings:\n\
         \x20   architectures: [efficientnet_lite0]\n    dimensions: [10]\n    fineTune: {enabled: true, epochs: 1, augmentations: [HorizontalFlip, GaussNoise]}\n",
    )
    .unwrap();
    let out = tiny.dir.path().join("out");
    let status = run(&tiny.dir.path().join("experiment.yaml"), &out);
    let best = status.best_model.unwrap();
    assert_eq!(best.epochs, Some(1));
    assert_eq!(best.augmentations, ["HorizontalFlip", "GaussNoise"]);
    let bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scoring/bundle.json")).unwrap()).unwrap();
    let backbone = bundle["images"][0]["backbone"].as_str().unwrap();
    assert_eq!(backbone, "ft10_efficientnet_lite0_photo", "the bundle embeds with the fine-tuned network");
    let projection: Value = serde_json::from_str(
        &std::fs::read_to_string(
            out.join("scoring").join(bundle["images"][0]["projection"].as_str().unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(projection["kind"], "linear", "the fine-tuned bottleneck is the projection");
    let pretrained = std::fs::read(repo().join("backbones/efficientnet_lite0/model.pt")).unwrap();
    let tuned = std::fs::read(out.join("scoring/backbones").join(backbone).join("model.pt")).unwrap();
    assert_ne!(pretrained, tuned, "the weights changed");

    let rows = out.join("test-rows.csv");
    rows_as_csv(&out.join("datasets/tiny-test"), &rows, false);
    let again = out.join("again.csv");
    let output = predict(&out.join("scoring"), &rows, &again);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        std::fs::read_to_string(out.join("predictions.csv")).unwrap()
    );
}
