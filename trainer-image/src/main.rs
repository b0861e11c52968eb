//! `ocellus`: the trainer CLI. Takes the same manifests a user would `kubectl apply`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::ResourceExt;
use ocellus_crds::{Dataset, Manifest};
use ocellus_trainer::backbone::Registry;
use ocellus_trainer::dataset::import::{ImportContext, import};
use ocellus_trainer::preprocess::{Preprocess, open_image};
use ocellus_trainer::{Error, Result, device};
use tch::Kind;

#[derive(Parser)]
#[command(name = "ocellus", version, about = "Image AutoML: the Ocellus trainer and local runner")]
struct Cli {
    /// Directory with one folder per backbone (model.pt + manifest.json).
    #[arg(long, global = true, env = "OCELLUS_BACKBONES", default_value = "backbones")]
    backbones: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check manifests (Datasets, Experiments) exactly as the API server would.
    Validate {
        /// YAML files, each with one or more documents.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Work with Datasets.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Inspect the backbone directory.
    #[command(subcommand)]
    Backbone(BackboneCommand),
    /// Show what libtorch can use on this machine.
    Info,
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Import the Datasets of a manifest file into DIR/<name>/ (normalized copy + profile.json).
    ///
    /// Parents are imported before the splits that name them; a split whose parent is not in
    /// the file reads it from DIR/<parent>/.
    Import {
        /// A YAML file with one or more Datasets (other documents are ignored).
        file: PathBuf,
        /// Root of imported datasets.
        #[arg(long)]
        out: PathBuf,
        /// Import only this Dataset.
        #[arg(long)]
        name: Option<String>,
        /// Where PersistentVolumeClaims are mounted, one folder per claim name.
        #[arg(long, env = "OCELLUS_VOLUMES_ROOT", default_value = "/mnt/volumes")]
        volumes_root: PathBuf,
        /// Content-addressed cache of downloaded images, kept between imports.
        #[arg(long, env = "OCELLUS_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BackboneCommand {
    /// List the backbones found in the backbone directory.
    List,
    /// Classify images with a backbone's pretrained ImageNet head: a check that it is really pretrained.
    Classify {
        /// Backbone name, for example efficientnet_lite0.
        name: String,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5)]
        top: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let registry = Registry::new(&cli.backbones);
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Dataset(DatasetCommand::Import { file, out, name, volumes_root, cache_dir }) => {
            let context = ImportContext {
                manifest_dir: file.parent().map(PathBuf::from).unwrap_or_default(),
                volumes_root,
                cache_dir: cache_dir.unwrap_or_else(|| out.join(".cache").join("images")),
                work_dir: out.join(".work"),
                datasets_root: out,
            };
            import_datasets(&file, name.as_deref(), &context)
        }
        Command::Backbone(BackboneCommand::List) => list(&registry),
        Command::Backbone(BackboneCommand::Classify { name, images, top }) => {
            classify(&registry, &name, &images, top)
        }
        Command::Info => {
            println!("{}", device::describe());
            Ok(())
        }
    }
}

fn validate(files: &[PathBuf]) -> Result<()> {
    for file in files {
        for manifest in read_manifests(file)? {
            println!("{}: {} {} is valid", file.display(), manifest.kind(), manifest.name());
        }
    }
    Ok(())
}

fn read_manifests(file: &std::path::Path) -> Result<Vec<Manifest>> {
    let text = std::fs::read_to_string(file).map_err(Error::io(file))?;
    ocellus_crds::parse_manifests(&text)
        .map_err(|error| Error::bad_input(format!("{}: {error}", file.display())))
}

fn import_datasets(file: &std::path::Path, only: Option<&str>, context: &ImportContext) -> Result<()> {
    let datasets: Vec<Dataset> = read_manifests(file)?
        .into_iter()
        .filter_map(|m| match m {
            Manifest::Dataset(d) => Some(*d),
            Manifest::Experiment(_) => None,
        })
        .filter(|d| only.is_none_or(|name| d.name_any() == name))
        .collect();
    if datasets.is_empty() {
        let what = only.map_or("any Dataset".to_owned(), |name| format!("a Dataset named {name:?}"));
        return Err(Error::bad_input(format!("{} has no {what}", file.display())));
    }
    // Sources first, then splits: a split's parent must be imported before it.
    let (splits, sources): (Vec<&Dataset>, Vec<&Dataset>) =
        datasets.iter().partition(|d| d.spec.source.split.is_some());
    for dataset in sources.into_iter().chain(splits) {
        let profile = import(dataset, context)?;
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

fn list(registry: &Registry) -> Result<()> {
    let names = registry.available();
    if names.is_empty() {
        println!("no backbones in {} (run `make backbones`)", registry.root().display());
    }
    for name in names {
        let manifest = registry.manifest(&name)?;
        println!(
            "{name}: input {}px, {} features, {} ({})",
            manifest.input_size, manifest.feature_dim, manifest.source, manifest.license
        );
    }
    Ok(())
}

fn classify(registry: &Registry, name: &str, images: &[PathBuf], top: i64) -> Result<()> {
    let backbone = registry.load(name, device::best_device())?;
    let preprocess = Preprocess::from(&backbone.manifest);
    for path in images {
        let input = preprocess.tensor(&open_image(path)?).unsqueeze(0);
        let logits = backbone.classifier_logits(&backbone.features(&input)?)?;
        let probabilities = logits.softmax(-1, Kind::Float).squeeze_dim(0);
        let (values, indices) = probabilities.topk(top.min(probabilities.size()[0]), 0, true, true);
        let ranked: Vec<String> = Vec::<f32>::try_from(&values)?
            .iter()
            .zip(Vec::<i64>::try_from(&indices)?)
            .map(|(p, class)| format!("class {class} ({p:.3})"))
            .collect();
        println!("{}: {}", path.display(), ranked.join(", "));
    }
    Ok(())
}
