//! `import`, shared by `ocellus dataset import` and `ocellus-dataset import`.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use ocellus_crds::{Dataset, DatasetReport, DatasetStatus, Manifest};

use crate::import::{ImportContext, import};
use crate::report_client::Reporter;
use crate::{Error, Result};

/// Import the Datasets of a manifest file into DIR/<name>/ (normalized copy + profile.json).
///
/// Parents are imported before the splits that name them; a split whose parent is not in the
/// file reads it from DIR/<parent>/.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A YAML file with one or more Datasets (other documents are ignored).
    pub file: PathBuf,
    /// Root of imported datasets: a folder, or `s3://bucket/prefix` (imported in a local
    /// stage folder, then each Dataset uploaded to `<out>/<name>/`).
    #[arg(long)]
    pub out: PathBuf,
    /// Import only this Dataset.
    #[arg(long)]
    pub name: Option<String>,
    /// Where PersistentVolumeClaims are mounted, one folder per claim name.
    #[arg(long, env = "OCELLUS_VOLUMES_ROOT", default_value = "/mnt/volumes")]
    pub volumes_root: PathBuf,
    /// Content-addressed cache of downloaded images, kept between imports [default: OUT/.cache/images].
    #[arg(long, env = "OCELLUS_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Reads and validates a manifest file, as the API server would.
pub fn read_manifests(file: &Path) -> Result<Vec<Manifest>> {
    let text = std::fs::read_to_string(file).map_err(Error::io(file))?;
    ocellus_crds::parse_manifests(&text)
        .map_err(|error| Error::bad_input(format!("{}: {error}", file.display())))
}

/// Imports the Datasets named by `args`, printing one line per Dataset.
pub fn run_import(args: ImportArgs) -> Result<()> {
    let staged = crate::store::trainer::stage_import(&args.out)?;
    let out = staged.as_ref().map_or_else(|| args.out.clone(), |s| s.local.clone());
    let context = ImportContext {
        manifest_dir: args.file.parent().map(PathBuf::from).unwrap_or_default(),
        volumes_root: args.volumes_root,
        cache_dir: args.cache_dir.unwrap_or_else(|| out.join(".cache").join("images")),
        work_dir: out.join(".work"),
        datasets_root: out,
    };
    let only = args.name.as_deref();
    let datasets: Vec<Dataset> = read_manifests(&args.file)?
        .into_iter()
        .filter_map(|m| match m {
            Manifest::Dataset(d) => Some(*d),
            Manifest::Experiment(_) => None,
        })
        .filter(|d| only.is_none_or(|name| d.name_any() == name))
        .collect();
    if datasets.is_empty() {
        let what = only.map_or("any Dataset".to_owned(), |name| format!("a Dataset named {name:?}"));
        return Err(Error::bad_input(format!("{} has no {what}", args.file.display())));
    }
    // Sources first, then splits: a split's parent must be imported before it.
    let (splits, sources): (Vec<&Dataset>, Vec<&Dataset>) =
        datasets.iter().partition(|d| d.spec.source.split.is_some());
    for dataset in sources.into_iter().chain(splits) {
        if let (Some(staged), Some(split)) = (&staged, &dataset.spec.source.split)
            && !datasets.iter().any(|d| d.name_any() == split.dataset_ref.name)
        {
            staged.fetch_dataset(&split.dataset_ref.name)?;
        }
        let mut profile = import(dataset, &context)?;
        if let Some(staged) = &staged {
            profile.location = Some(staged.publish_dataset(&dataset.name_any())?);
        }
        // In an import pod the operator waits for this profile; locally nobody listens.
        Reporter::<DatasetReport>::from_env(dataset.namespace().as_deref(), &dataset.name_any())
            .finish(reported_profile(&profile));
        let columns: Vec<String> =
            profile.columns.iter().map(|c| format!("{} ({:?})", c.name, c.type_)).collect();
        println!(
            "Dataset {}: {} rows, columns {}, {} bad images -> {}",
            dataset.name_any(),
            profile.rows.unwrap_or_default(),
            columns.join(", "),
            profile.bad_images.unwrap_or_default(),
            profile.location.as_deref().unwrap_or_default()
        );
    }
    let _ = std::fs::remove_dir_all(&context.work_dir);
    Ok(())
}

/// The trainer-owned part of an import's profile: the operator sets the conditions.
fn reported_profile(profile: &DatasetStatus) -> DatasetReport {
    DatasetReport { conditions: Vec::new(), observed_generation: None, ..profile.clone() }
}
