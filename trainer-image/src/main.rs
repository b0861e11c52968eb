//! `ocellus`: the trainer CLI. Takes the same manifests a user would `kubectl apply`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ocellus_dataset::cli::{ImportArgs, read_manifests, run_import};
use ocellus_trainer::backbone::Registry;
use ocellus_trainer::predict::{self, PredictArgs};
use ocellus_trainer::preprocess::{Preprocess, open_image};
use ocellus_trainer::run::{self, RunArgs};
use ocellus_trainer::serve::{self, ServeArgs};
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
    /// Run the Experiment of a manifest file end to end on this machine.
    Run(RunArgs),
    /// Score rows (CSV) with the scoring bundle of a finished run.
    Predict(PredictArgs),
    /// Serve a scoring bundle over HTTP with the KServe v2 inference protocol.
    Serve(ServeArgs),
    /// Write DIR/report.html again from a finished run's folder (result.json, run.json,
    /// predictions.csv, datasets).
    Report {
        /// The run's --out folder.
        dir: PathBuf,
    },
    /// Manage an experiment's artifacts.
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),
    /// Show what libtorch can use on this machine.
    Info,
    /// One trial of the auto image model's search (started by `ocellus run`).
    #[command(hide = true)]
    Trial(TrialArgs),
}

#[derive(clap::Args)]
struct TrialArgs {
    /// The search's trials folder (data.json, one folder per trial).
    #[arg(long)]
    work: PathBuf,
    #[arg(long)]
    id: usize,
    /// Train until this many epochs are done.
    #[arg(long)]
    until: usize,
    /// UNIX time by which the trial must stop.
    #[arg(long)]
    deadline: f64,
    /// libtorch threads.
    #[arg(long)]
    threads: Option<i32>,
    #[arg(long)]
    cpu: bool,
}

#[derive(Subcommand)]
enum ArtifactsCommand {
    /// Delete one experiment's artifacts folder (what an Experiment with deletionPolicy Delete leaves).
    Delete { location: String },
}

#[derive(Subcommand)]
enum DatasetCommand {
    Import(ImportArgs),
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
    // Backbones in S3 are downloaded (once) only by the commands that use them.
    let uses_backbones = matches!(cli.command, Command::Run(_) | Command::Backbone(_));
    let backbones = if uses_backbones {
        ocellus_dataset::store::trainer::backbones_dir(&cli.backbones)?
    } else {
        cli.backbones
    };
    let registry = Registry::new(&backbones);
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Dataset(DatasetCommand::Import(args)) => Ok(run_import(args)?),
        Command::Backbone(BackboneCommand::List) => list(&registry),
        Command::Backbone(BackboneCommand::Classify { name, images, top }) => {
            classify(&registry, &name, &images, top)
        }
        Command::Run(args) => {
            let out = args.out.clone();
            let status = run::run(args, &registry)?;
            let best = status.best_model.unwrap_or_default();
            let score = best.score.map_or("-".to_owned(), |s| format!("{s:.6}"));
            match best.embedding_dimension {
                Some(dimension) => println!(
                    "best: {} dimension {dimension} validation score {score}",
                    best.architecture.unwrap_or_default()
                ),
                None => println!(
                    "best: {} {}px {} lr {:.2e} {} epochs, validation score {score}",
                    best.architecture.unwrap_or_default(),
                    best.input_size.unwrap_or_default(),
                    best.optimizer.unwrap_or_default(),
                    best.learning_rate.unwrap_or_default(),
                    best.epochs.unwrap_or_default()
                ),
            }
            for metric in status.metrics.map(|m| m.test).unwrap_or_default() {
                println!("test {}: {:.6}", metric.name, metric.value);
            }
            println!("wrote {}", out.join("result.json").display());
            Ok(())
        }
        Command::Predict(args) => {
            let output = args.output.clone();
            let rows = predict::predict(args)?;
            println!("scored {rows} rows -> {}", output.display());
            Ok(())
        }
        Command::Serve(args) => serve::serve(args),
        Command::Report { dir } => {
            let path = ocellus_report::write_report(&dir).map_err(Error::from_report)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Command::Artifacts(ArtifactsCommand::Delete { location }) => {
            ocellus_trainer::artifacts::delete(&location)
        }
        Command::Info => {
            println!("{}", device::describe());
            Ok(())
        }
        Command::Trial(args) => trial(args),
    }
}

fn trial(args: TrialArgs) -> Result<()> {
    use ocellus_trainer::pipeline::auto_image::{search, trial};
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads);
    }
    let data: trial::TrialData = ocellus_dataset::json_file::read(&args.work.join("data.json"))?;
    let dir = search::trial_dir(&args.work, args.id);
    let config = ocellus_dataset::json_file::read(&dir.join("config.json"))?;
    let device = if args.cpu { tch::Device::Cpu } else { device::best_device() };
    let run = trial::TrialRun {
        dir: &dir,
        data: &data,
        config: &config,
        until: args.until,
        deadline: args.deadline,
        device,
    };
    trial::run_trial(&run)?;
    Ok(())
}

fn validate(files: &[PathBuf]) -> Result<()> {
    for file in files {
        for manifest in read_manifests(file)? {
            println!("{}: {} {} is valid", file.display(), manifest.kind(), manifest.name());
        }
    }
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
