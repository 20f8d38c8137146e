//! The controllers (placeholder).
use crate::operator::RunArgs;

/// Runs the operator.
pub async fn run(_args: RunArgs) -> Result<(), String> {
    Err("not yet".into())
}
