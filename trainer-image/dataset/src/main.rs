//! `ocellus-dataset`: the dataset importer without libtorch, as an import Job runs it.
//! `ocellus dataset import` does the same inside the full trainer.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ocellus_dataset::cli::{ImportArgs, run_import};

#[derive(Parser)]
#[command(name = "ocellus-dataset", version, about = "Ocellus dataset import")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Import(ImportArgs),
}

fn main() -> ExitCode {
    let Command::Import(args) = Cli::parse().command;
    match run_import(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}
