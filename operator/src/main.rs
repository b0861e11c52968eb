//! `ocellus-operator`. The controllers are not written yet; what exists is the CRD output
//! an installer needs (`ocellus-operator crds | kubectl apply -f -`).

use clap::{Parser, Subcommand};

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
}

fn main() {
    match Cli::parse().command {
        Command::Crds => {
            for (_, crd) in ocellus_crds::crds() {
                print!("---\n{}", ocellus_crds::crd_yaml(&crd));
            }
        }
    }
}
