//! The operator binary: runs the controller, prints the CRD, or reads an endpoint
//! document inside a consumer pod.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_relation_operator::{consumer, operator};

#[derive(Parser, Debug)]
#[command(
    name = "tracing-relation-operator",
    version,
    about = "Writes Grafana Tempo endpoints into the ConfigMaps of consumers bound by a TracingRelation",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: operator::RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinition generated from the Rust types, as YAML.
    Crd,
    /// Read the endpoint document from a mounted consumer ConfigMap (for pods and init containers).
    Endpoint(consumer::cli::EndpointArgs),
}

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
