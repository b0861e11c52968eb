//! The auto image model end to end on real images: a classification and a regression search
//! under a budget, `ocellus predict` reproducing their test predictions, resuming after SIGKILL
//! at random moments, and every bad input the pipeline names.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ocellus_crds::ExperimentStatus;
use ocellus_crds::experiment::Pipeline;

const BUDGET_SECONDS: u64 = 60;

/// The searches run one at a time: several at once oversubscribe two cores with libtorch's
/// OpenMP threads, which slows every one of them many times over and makes their budgets and
/// epoch-cost probes meaningless.
static ONE_SEARCH_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_SEARCH_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An example manifest with a test-sized budget and trial count.
fn manifest(example: &str, dir: &Path, parallel: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo().join("examples/local").join(example)).unwrap();
    let text = text
        .replace("../../testdata", &repo().join("testdata").display().to_string())
        .replace("timeBudgetSeconds: 300", &format!("timeBudgetSeconds: {BUDGET_SECONDS}"))
        .replace("maxTrials: 6", "maxTrials: 4")
        .replace("parallelTrials: 1", &format!("parallelTrials: {parallel}"))
        .replace("parallelTrials: 2", &format!("parallelTrials: {parallel}"));
    let path = dir.join(example);
    std::fs::write(&path, text).unwrap();
    path
}

fn run_command(manifest: &Path, out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocellus"));
    command
        .args([
            "run",
            manifest.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--cpu",
            "--max-image-size",
            "64",
        ])
        .current_dir(repo())
        .env("OCELLUS_BACKBONES", repo().join("backbones"));
    command
}

fn run_auto(manifest: &Path, out: &Path) -> ExperimentStatus {
    let started = Instant::now();
    let output = run_command(manifest, out).output().unwrap();
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", text(&output));
    // Imports and loading come on top of the search's budget.
    assert!(
        elapsed < Duration::from_secs(BUDGET_SECONDS * 11 / 10 + 30),
        "the run took {elapsed:?} for a {BUDGET_SECONDS}s budget\n{}",
        text(&output)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap()
}

fn check_predict_reproduces(out: &Path, test_dataset: &str) {
    let rows = out.join("test-rows.csv");
    rows_as_csv(&out.join("datasets").join(test_dataset), &rows, false);
    let again = out.join("again.csv");
    let output = predict(&out.join("scoring"), &rows, &again);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        std::fs::read_to_string(out.join("predictions.csv")).unwrap(),
        "predict must reproduce the run's test predictions exactly"
    );
}

fn check_best_model_is_reported(status: &ExperimentStatus) {
    let best = status.best_model.clone().unwrap();
    assert_eq!(best.architecture.as_deref(), Some("efficientnet_lite0"));
    assert_eq!(best.input_size, Some(64));
    for (field, present) in [
        ("optimizer", best.optimizer.is_some()),
        ("learningRate", best.learning_rate.is_some()),
        ("batchSize", best.batch_size.is_some()),
        ("epochs", best.epochs.is_some_and(|e| e >= 1)),
        ("scheduler", best.scheduler.is_some()),
        ("cropStrategy", best.crop_strategy.is_some()),
        ("score", best.score.is_some()),
    ] {
        assert!(present, "bestModel.{field} is missing: {best:?}");
    }
    let trials = status.trials.clone().unwrap();
    assert!(trials.total >= 2, "the search ran {} trial(s) in {BUDGET_SECONDS}s", trials.total);
    assert!(trials.total <= 4, "maxTrials is 4");
    assert_eq!(trials.completed + trials.pruned + trials.failed, trials.total);
    assert!(!trials.top.is_empty() && trials.top.len() <= 10);
}

#[test]
fn image_classification_searches_within_budget_and_predict_reproduces_it() {
    let _exclusive = exclusive();
    test_set("digits");
    let out = tempfile::tempdir().unwrap();
    let status = run_auto(&manifest("digits-auto-image.yaml", out.path(), 2), out.path());
    assert_eq!(status.pipeline, Some(Pipeline::AutoImage));
    check_best_model_is_reported(&status);
    let metrics = status.metrics.unwrap();
    for name in ["LogLoss", "Accuracy", "F1", "AUC"] {
        metric(&metrics.validation, name);
    }
    // A minute of two CPU cores at 64 px on 150 rows: test accuracy ranged 0.24-0.60 over seven
    // runs (50 test rows). A trainer that does not learn stays near chance (0.1).
    let accuracy = metric(&metrics.test, "Accuracy");
    assert!(accuracy > 0.2, "test accuracy {accuracy} on 10 classes (chance is 0.1)");
    check_predict_reproduces(out.path(), "digits-test");

    // The report: per-epoch curves of every trial, its table, and the test plots.
    let report = out.path().join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("validation Accuracy per epoch") && html.contains("training loss per epoch"));
    let trials = status.trials.unwrap();
    assert_eq!(html.matches("<tr class=\"best\"").count(), 1, "the best trial is marked once");
    assert_eq!(
        html.split("id=\"trial-table\"")
            .nth(1)
            .unwrap()
            .split("</table>")
            .next()
            .unwrap()
            .matches("<tr")
            .count(),
        trials.total as usize + 1,
        "one row per trial plus the header"
    );
    browser::render_report(
        &report,
        &["learning-curve-0", "learning-curve-1", "confusion-matrix", "per-class-f1"],
    );
}

#[test]
fn image_regression_searches_within_budget_and_predict_reproduces_it() {
    let _exclusive = exclusive();
    test_set("photo-values");
    let out = tempfile::tempdir().unwrap();
    let status = run_auto(&manifest("photo-values-auto-image.yaml", out.path(), 1), out.path());
    check_best_model_is_reported(&status);
    let metrics = status.metrics.unwrap();
    // Regression quality is not asserted: within a minute of CPU at 64 px the search's
    // validation R2 ranged from -0.4 to 0.96 between runs (a known weakness, see
    // docs/auto-image.md). What is checked: the regression metrics exist and predict agrees.
    for name in ["RMSE", "MAE", "R2"] {
        metric(&metrics.validation, name);
        metric(&metrics.test, name);
    }
    assert!(metrics.test.iter().all(|m| m.name != "Accuracy"));
    check_predict_reproduces(out.path(), "photo-values-test");
}

#[test]
fn a_search_killed_at_random_moments_resumes_and_finishes() {
    killed_at_random_moments_resumes_and_finishes("digits", "digits-auto-image.yaml", "digits-test");
}

#[test]
fn a_regression_search_killed_at_random_moments_resumes_and_finishes() {
    killed_at_random_moments_resumes_and_finishes(
        "photo-values",
        "photo-values-auto-image.yaml",
        "photo-values-test",
    );
}

fn killed_at_random_moments_resumes_and_finishes(set: &str, example: &str, test_dataset: &str) {
    let _exclusive = exclusive();
    test_set(set);
    let out = tempfile::tempdir().unwrap();
    let file = manifest(example, out.path(), 1);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    for round in 0..3u32 {
        // Between 8 and 30 s in: after imports, during trials, checkpoints and promotions.
        let wait = Duration::from_millis(8_000 + u64::from(nanos.wrapping_mul(round + 7) % 22_000));
        let mut child = run_command(&file, out.path()).stdout(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        eprintln!("killed run {round} after {wait:?}");
        assert!(!out.path().join("result.json").exists());
    }
    let output = run_command(&file, out.path()).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let status: ExperimentStatus =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("result.json")).unwrap()).unwrap();
    check_best_model_is_reported(&status);
    // Every trial's history is one record per epoch, in order: nothing was trained twice or lost.
    for entry in std::fs::read_dir(out.path().join("trials")).unwrap().flatten() {
        let state = entry.path().join("state.json");
        if !state.is_file() {
            continue;
        }
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        let epochs: Vec<u64> =
            state["history"].as_array().unwrap().iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
        assert_eq!(epochs, (1..=epochs.len() as u64).collect::<Vec<_>>(), "{}", entry.path().display());
        assert_eq!(state["epochsDone"].as_u64().unwrap(), epochs.len() as u64);
        let partial = std::fs::read_dir(entry.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
        assert!(!partial, "a finished search leaves no partial checkpoint");
    }
    check_predict_reproduces(out.path(), test_dataset);
}

/// A trial keeps the network of its three best epochs (the optimizer state only in its latest
/// checkpoint), and averaging them gives exactly their mean weights, with BatchNorm statistics
/// re-estimated, as a network that saves and loads back with the same predictions.
#[test]
fn a_trial_keeps_its_top_epochs_and_their_average_is_their_mean_weights() {
    use ocellus_trainer::backbone::Registry;
    use ocellus_trainer::pipeline::auto_image::averaging::{average_top_checkpoints, top_epochs};
    use ocellus_trainer::pipeline::auto_image::checkpoint::{checkpoint_name, load_head};
    use ocellus_trainer::pipeline::auto_image::space::SearchSpace;
    use ocellus_trainer::pipeline::auto_image::trial::{
        Network, TrialData, TrialRun, eval_preprocess, forward_rows, now_seconds, run_trial,
    };

    let _exclusive = exclusive();
    let digits = test_set("digits");
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for label in 0..4 {
        let mut files: Vec<_> =
            std::fs::read_dir(digits.join(label.to_string())).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files.into_iter().take(10) {
            images.push(file);
            labels.push(serde_json::json!(label.to_string()));
        }
    }
    let target =
        ocellus_tabular::task::Target::detect(&labels, ocellus_crds::experiment::Task::Classification)
            .unwrap();
    let data = TrialData {
        y: labels.iter().map(|v| target.encode(v).unwrap()).collect(),
        fit: (0..images.len()).filter(|i| i % 10 < 7).collect(),
        valid: (0..images.len()).filter(|i| i % 10 >= 7).collect(),
        images,
        target,
        scorer: ocellus_crds::experiment::Scorer::LogLoss,
        target_mean: 0.0,
        target_std: 1.0,
        backbones: repo().join("backbones"),
    };
    let registry = Registry::new(&data.backbones);
    let manifest = registry.manifest("efficientnet_lite0").unwrap();
    let space = SearchSpace {
        architectures: vec![("efficientnet_lite0".into(), 224)],
        augmentations: Vec::new(),
        classification: true,
        max_input_size: 64,
        batch_sizes: vec![8],
        max_epochs: vec![5],
    };
    let config =
        ocellus_trainer::pipeline::auto_image::space::TrialConfig { patience: 10, ..space.sample(0, 1) };
    let dir = tempfile::tempdir().unwrap();
    let run = TrialRun {
        dir: dir.path(),
        data: &data,
        config: &config,
        until: 5,
        deadline: now_seconds() + 600.0,
        device: tch::Device::Cpu,
    };
    let state = run_trial(&run).unwrap();
    assert_eq!(state.epochs_done, 5);

    let top = top_epochs(&state, data.scorer);
    assert_eq!(top.len(), 3);
    assert_eq!(top[0], state.best_epoch.unwrap());
    let latest = state.checkpoint.clone().unwrap();
    for epoch in 1..=5 {
        let folder = dir.path().join(checkpoint_name(epoch));
        let kept = top.contains(&epoch) || checkpoint_name(epoch) == latest;
        assert_eq!(folder.join("model.pt").is_file(), kept, "epoch {epoch}, top {top:?}");
        assert_eq!(folder.join("head.ot").is_file(), kept, "epoch {epoch}");
        assert_eq!(folder.join("train.ot").is_file(), checkpoint_name(epoch) == latest, "epoch {epoch}");
    }

    let averaged = average_top_checkpoints(dir.path(), &config, &state, &data, &manifest, tch::Device::Cpu)
        .unwrap()
        .expect("three checkpoints to average");
    assert_eq!(averaged.epochs, top);
    assert!(averaged.score.is_finite());
    let load = |folder: &Path| {
        let mut network =
            Network::load(&folder.join("model.pt"), manifest.feature_dim, 4, tch::Device::Cpu).unwrap();
        load_head(folder, &mut network).unwrap();
        network
    };
    let checkpoints: Vec<_> =
        top.iter().map(|&e| load(&dir.path().join(checkpoint_name(e))).parameters()).collect();
    let averaged_weights = averaged.network.parameters();
    assert!(averaged_weights.len() > 100, "backbone and head parameters");
    for (name, value) in &averaged_weights {
        let mean = checkpoints.iter().map(|c| c[name].shallow_clone()).reduce(|a, b| a + b).unwrap() / 3.0;
        assert!(value.allclose(&mean, 1e-5, 1e-6, false), "{name} is not the mean of the top epochs");
    }
    assert!(
        !checkpoints[0]["head.weight"].allclose(&checkpoints[1]["head.weight"], 1e-6, 1e-7, false),
        "the epochs differ, so the average is not trivially any one of them"
    );

    let folder = averaged.save(dir.path()).unwrap();
    let eval = eval_preprocess(&manifest, config.crop, config.input_size);
    let mut saved = load(&folder);
    saved.module.set_eval();
    let mut network = averaged.network;
    network.module.set_eval();
    let before = forward_rows(&network, &data, &data.valid, &eval, tch::Device::Cpu).unwrap();
    let after = forward_rows(&saved, &data, &data.valid, &eval, tch::Device::Cpu).unwrap();
    assert!(before.allclose(&after, 1e-6, 1e-6, false), "the saved average predicts as the averaged network");
}

fn two_class_photos(rows: usize) -> Tiny {
    Tiny::new(
        rows,
        |i| format!("{},{}", Tiny::photo(i), if i.is_multiple_of(2) { "cat" } else { "coffee" }),
        "photo,kind",
    )
}

const AUTO: &str =
    "  target: kind\n  autoImage: {timeBudgetSeconds: 120, architectures: [efficientnet_lite0]}\n";

#[test]
fn a_second_image_column_is_refused_with_a_pointer_to_embeddings() {
    let tiny =
        Tiny::new(20, |i| format!("{},{},{}", Tiny::photo(i), Tiny::photo(i + 1), i % 2), "photo,other,kind");
    let message = tiny.run_failing("", "AutoImage", AUTO);
    assert!(
        message.contains("exactly one image column") && message.contains("use pipeline Embeddings"),
        "{message}"
    );
}

#[test]
fn a_non_image_feature_is_refused_with_a_pointer_to_embeddings() {
    let tiny = Tiny::new(20, |i| format!("{},{i},{}", Tiny::photo(i), i % 2), "photo,mileage,kind");
    let message = tiny.run_failing("", "AutoImage", AUTO);
    assert!(message.contains("mileage") && message.contains("use pipeline Embeddings"), "{message}");
}

#[test]
fn too_few_rows_of_a_class_are_refused() {
    let tiny = Tiny::new(
        22,
        |i| format!("{},{}", Tiny::photo(i), if i < 2 { "rare" } else { "common" }),
        "photo,kind",
    );
    let message = tiny.run_failing("", "AutoImage", AUTO);
    assert!(message.contains("\"rare\" (2)") && message.contains("fewer than 5"), "{message}");
}

#[test]
fn a_budget_too_small_for_one_epoch_says_how_much_is_needed() {
    let _exclusive = exclusive();
    let tiny = two_class_photos(40);
    let message = tiny.run_failing(
        "",
        "AutoImage",
        "  target: kind\n  autoImage: {timeBudgetSeconds: 1, architectures: [efficientnet_lite0]}\n",
    );
    assert!(message.contains("too small") && message.contains("set it to at least"), "{message}");
}

#[test]
fn no_available_backbone_is_refused_with_what_there_is() {
    let tiny = two_class_photos(20);
    let message =
        tiny.run_failing("", "AutoImage", "  target: kind\n  autoImage: {architectures: [resnet50]}\n");
    assert!(
        message.contains("no backbone to fine-tune") && message.contains("efficientnet_lite0"),
        "{message}"
    );
    assert!(message.contains("export_backbones.py"), "{message}");
}

/// On a GPU machine (`make test-cuda`): trials train in mixed precision with a loss scale that
/// their checkpoints keep, with a batch size probed to fit, and the result still predicts.
#[cfg(feature = "cuda-tests")]
#[test]
fn on_cuda_trials_train_in_mixed_precision_with_a_probed_batch_size() {
    let _exclusive = exclusive();
    test_set("digits");
    let out = tempfile::tempdir().unwrap();
    let file = manifest("digits-auto-image.yaml", out.path(), 1);
    let mut command = run_command(&file, out.path());
    let args: Vec<String> =
        command.get_args().map(|a| a.to_string_lossy().into_owned()).filter(|a| a != "--cpu").collect();
    let mut command = Command::new(command.get_program());
    command.args(&args).current_dir(repo()).env("OCELLUS_BACKBONES", repo().join("backbones"));
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let status: ExperimentStatus =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("result.json")).unwrap()).unwrap();
    let accuracy = metric(&status.metrics.clone().unwrap().test, "Accuracy");
    assert!(accuracy > 0.3, "test accuracy {accuracy} on 10 classes in mixed precision");
    let trial = out.path().join("trials/0000");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trial.join("state.json")).unwrap()).unwrap();
    let batch = state["batchSize"].as_u64().expect("a CUDA trial records its probed batch size");
    assert!((8..=128).contains(&batch), "batch {batch}");
    let checkpoint = trial.join(state["checkpoint"].as_str().unwrap()).join("train.ot");
    let saved = tch::Tensor::load_multi(&checkpoint).unwrap();
    let scale =
        saved.iter().find(|(name, _)| name == "scaler.scale").expect("the loss scale is checkpointed");
    assert!(scale.1.double_value(&[]) >= 1.0);
    check_predict_reproduces(out.path(), "digits-test");
}
