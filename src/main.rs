//! The operator binary: runs the controller, prints the CRD, or reads an endpoint
//! document inside a consumer pod.
use std::process::ExitCode;

use clap::Parser;
use tracing_relation_operator::cli::{Cli, Command};
use tracing_relation_operator::{consumer, operator};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => match operator::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Endpoint(args)) => consumer::cli::run(args),
        None => operator::main(cli.run),
    }
}
