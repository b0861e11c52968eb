//! `ocellus run FILE --out DIR`: the Experiment of a manifest file, end to end on this machine.
//!
//! The Datasets it names are imported into `DIR/datasets/` (from the same file, or already
//! there from an earlier run), the pipeline runs, and `DIR/result.json` (in the shape of
//! `Experiment.status`), `DIR/predictions.csv` and `DIR/scoring/` are written. result.json is
//! written last and atomically: a run that dies leaves no result.json claiming success.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::ResourceExt;
use ocellus_crds::contract::checks::check_experiment;
use ocellus_crds::dataset::ColumnType;
use ocellus_crds::experiment::Pipeline;
use ocellus_crds::{Dataset, Experiment, ExperimentStatus, Manifest};
use ocellus_dataset::cli::read_manifests;
use ocellus_dataset::import::{ImportContext, import};
use ocellus_dataset::json_file;
use ocellus_dataset::normalized::NormalizedDataset;

use crate::backbone::Registry;
use crate::embed::EmbedOptions;
use crate::pipeline::Outcome;
use crate::pipeline::auto_image::{self, AutoImageSettings};
use crate::pipeline::embeddings::{self, RunSettings};
use crate::{Error, Result, device, progress};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A YAML file with an Experiment and (some of) the Datasets it names.
    pub file: PathBuf,
    /// Output folder: datasets/, scoring/, predictions.csv, result.json; or `s3://bucket/prefix`.
    #[arg(long)]
    pub out: PathBuf,
    /// Run only the Experiment with this name (when the file has several).
    #[arg(long)]
    pub name: Option<String>,
    /// Where PersistentVolumeClaims are mounted, one folder per claim name.
    #[arg(long, env = "OCELLUS_VOLUMES_ROOT", default_value = "/mnt/volumes")]
    pub volumes_root: PathBuf,
    /// Images per forward pass of a backbone.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Image decoding threads [default: half the cores, at least one].
    #[arg(long)]
    pub decode_threads: Option<usize>,
    /// Seconds of LightGBM hyperparameter search per candidate embedding dimension.
    #[arg(long, default_value_t = 60)]
    pub gbm_seconds: u64,
    /// Compute on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    /// Auto image model: the largest input side (pixels) the search tries [default: 224 on a
    /// GPU, 160 on the CPU].
    #[arg(long)]
    pub max_image_size: Option<u32>,
}

pub fn run(mut args: RunArgs, registry: &Registry) -> Result<ExperimentStatus> {
    // `--out s3://…`: staged locally, resumed from and published to the store.
    let staged = ocellus_dataset::store::trainer::stage_run(&args.out)?;
    args.out = staged.as_ref().map_or(args.out, |s| s.local.clone());
    let status = run_in(args, registry)?;
    let status = match staged {
        Some(staged) => staged.publish(status)?,
        None => status,
    };
    // Last: the operator may treat the final report as the end of the run, so it goes only
    // once everything (in S3: the whole folder, result.json last) is in the store.
    progress::finish(&status);
    Ok(status)
}

fn run_in(args: RunArgs, registry: &Registry) -> Result<ExperimentStatus> {
    let manifests = read_manifests(&args.file)?;
    let experiment = pick_experiment(&manifests, args.name.as_deref(), &args.file)?;
    progress::install(experiment);
    progress::stage("PreparingDatasets", 1);
    let datasets: BTreeMap<String, &Dataset> = manifests
        .iter()
        .filter_map(|m| match m {
            Manifest::Dataset(d) => Some((d.name_any(), d.as_ref())),
            Manifest::Experiment(_) => None,
        })
        .collect();
    std::fs::create_dir_all(&args.out).map_err(Error::io(&args.out))?;
    let context = ImportContext {
        manifest_dir: args.file.parent().map(PathBuf::from).unwrap_or_default(),
        volumes_root: args.volumes_root.clone(),
        cache_dir: args.out.join(".cache").join("images"),
        work_dir: args.out.join(".work"),
        datasets_root: args.out.join("datasets"),
    };
    let mut imported = BTreeSet::new();
    let train = prepare_dataset(&experiment.spec.dataset_ref.name, &datasets, &context, &mut imported)?;
    let test = match &experiment.spec.test_dataset_ref {
        Some(reference) => Some(prepare_dataset(&reference.name, &datasets, &context, &mut imported)?),
        None => None,
    };
    let _ = std::fs::remove_dir_all(&context.work_dir);

    let test_columns = test.as_ref().map(columns);
    let pipeline = check_experiment(&experiment.spec, &columns(&train), test_columns.as_deref())
        .map_err(Error::bad_input)?;
    let mut device = if args.cpu { tch::Device::Cpu } else { device::best_device() };
    if !device.is_cuda() {
        device = tch::Device::Cpu;
    }
    let embed = EmbedOptions {
        batch_size: args.batch_size,
        decode_threads: args.decode_threads.unwrap_or_else(|| EmbedOptions::default().decode_threads),
        devices: device::embedding_devices(device),
    };
    let cache_dir = args.out.join(".cache").join("images");
    if pipeline == Pipeline::AutoImage {
        let settings = AutoImageSettings {
            device,
            max_input_size: args.max_image_size.unwrap_or(if device.is_cuda() { 224 } else { 160 }),
            program: std::env::current_exe()
                .map_err(|e| Error::Internal(format!("no path to this program: {e}")))?,
            cache_dir,
            embed,
        };
        let outcome = auto_image::run(experiment, &train, test.as_ref(), registry, &settings, &args.out)?;
        return finish(outcome, &args.out);
    }
    let settings =
        RunSettings { device, embed, gbm_budget: Duration::from_secs(args.gbm_seconds), cache_dir };
    let outcome = embeddings::run(experiment, &train, test.as_ref(), registry, &settings, &args.out)?;
    finish(outcome, &args.out)
}

/// Writes run.json and result.json, then the report. The model is done by now: a report that
/// cannot be drawn is a warning (with the command that retries it), not a failed run.
fn finish(outcome: Outcome, out: &Path) -> Result<ExperimentStatus> {
    let Outcome { mut status, mut record } = outcome;
    record.train_dataset = relative_to(&record.train_dataset, out);
    record.test_dataset = record.test_dataset.map(|p| relative_to(&p, out));
    json_file::write(&out.join(ocellus_report::RUN_RECORD_FILE), &record)?;
    let result = out.join("result.json");
    json_file::write(&result, &status)?;
    match ocellus_report::write_report(out) {
        Ok(report) => {
            println!("report: {}", report.display());
            if let Some(artifacts) = status.artifacts.as_mut() {
                artifacts.report = Some(report.display().to_string());
            }
            json_file::write(&result, &status)?;
        }
        Err(error) => eprintln!(
            "warning: the report could not be written ({error}); retry with `ocellus report {}`",
            out.display()
        ),
    }
    Ok(status)
}

/// `path` relative to the run's folder when inside it, so a moved folder still finds its datasets.
fn relative_to(path: &Path, out: &Path) -> PathBuf {
    let (Ok(path_abs), Ok(out_abs)) = (path.canonicalize(), out.canonicalize()) else {
        return path.to_owned();
    };
    path_abs.strip_prefix(&out_abs).map(Path::to_path_buf).unwrap_or(path_abs)
}

fn pick_experiment<'a>(manifests: &'a [Manifest], name: Option<&str>, file: &Path) -> Result<&'a Experiment> {
    let experiments: Vec<&Experiment> = manifests
        .iter()
        .filter_map(|m| match m {
            Manifest::Experiment(e) => Some(e.as_ref()),
            Manifest::Dataset(_) => None,
        })
        .collect();
    let names = || experiments.iter().map(|e| e.name_any()).collect::<Vec<_>>().join(", ");
    match (name, experiments.as_slice()) {
        (None, [only]) => Ok(only),
        (None, []) => Err(Error::bad_input(format!("{} has no Experiment to run", file.display()))),
        (None, _) => Err(Error::bad_input(format!(
            "{} has several Experiments ({}); choose one with --name",
            file.display(),
            names()
        ))),
        (Some(name), _) => experiments.iter().copied().find(|e| e.name_any() == name).ok_or_else(|| {
            Error::bad_input(format!(
                "{} has no Experiment named {name:?} (it has: {})",
                file.display(),
                names()
            ))
        }),
    }
}

/// Imports a Dataset named in the file (after the parent of a split), or opens an earlier
/// import of one that is not in the file. Datasets in the file are imported again on every
/// run, so an edited manifest never scores stale data; downloads are cached.
fn prepare_dataset(
    name: &str,
    datasets: &BTreeMap<String, &Dataset>,
    context: &ImportContext,
    imported: &mut BTreeSet<String>,
) -> Result<NormalizedDataset> {
    let folder = context.datasets_root.join(name);
    let Some(dataset) = datasets.get(name) else {
        return NormalizedDataset::open(&folder).map_err(|_| {
            Error::bad_input(format!(
                "Dataset {name:?} is neither in the manifest file nor imported in {}; add it to the file",
                context.datasets_root.display()
            ))
        });
    };
    // In a cluster the operator hands over the Datasets with their status: the import Job
    // already wrote the normalized copy there.
    let imported_at = dataset.status.as_ref().and_then(|s| s.location.as_deref());
    let imported_at = imported_at.map(ocellus_dataset::store::trainer::dataset_dir).transpose()?;
    if let Some(location) = imported_at.filter(|l| l.join("dataset.json").is_file()) {
        return Ok(NormalizedDataset::open(&location)?);
    }
    if let Some(split) = &dataset.spec.source.split {
        let parent = &split.dataset_ref.name;
        if datasets.contains_key(parent) && !imported.contains(parent) {
            prepare_dataset(parent, datasets, context, imported)?;
        }
    }
    if imported.insert(name.to_owned()) {
        let profile = import(dataset, context)?;
        println!("Dataset {name}: {} rows imported", profile.rows.unwrap_or_default());
    }
    Ok(NormalizedDataset::open(&folder)?)
}

/// A normalized copy's columns as the contract's checks take them.
fn columns(dataset: &NormalizedDataset) -> Vec<(&str, ColumnType)> {
    dataset.meta.columns.iter().map(|c| (c.name.as_str(), c.type_)).collect()
}
