//! `ocellus-operator`: runs the Dataset and Experiment controllers (`run`), or prints the
//! CRDs an installer needs (`crds | kubectl apply -f -`).

use clap::{Parser, Subcommand};
use ocellus_operator::config::Config;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "ocellus-operator", version, about = "Kubernetes operator for Ocellus")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Dataset and Experiment CRDs as YAML.
    Crds,
    /// Run the controllers, the trainer status server and the metrics server.
    Run(Box<Config>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => {
            for (_, crd) in ocellus_crds::crds() {
                print!("---\n{}", ocellus_crds::crd_yaml(&crd));
            }
            Ok(())
        }
        Command::Run(config) => {
            // kube's TLS uses the process-wide provider, which rustls cannot pick when the
            // build enables two (ring here, aws-lc-rs through the AWS SDK).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt().with_env_filter(filter).init();
            ocellus_operator::run::run(*config).await
        }
    }
}
