//! `tracing-relation-operator endpoint`: prints an endpoint from a mounted ConfigMap.
use std::process::ExitCode;

/// Arguments of the `endpoint` subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct EndpointArgs {
    /// Directory where the consumer ConfigMap is mounted.
    #[arg(long, env = "TRACING_ENDPOINT_DIR", default_value = "/etc/tracing")]
    pub dir: std::path::PathBuf,
}

/// Runs the subcommand.
pub fn run(_args: EndpointArgs) -> ExitCode {
    ExitCode::from(70)
}
