//! Reading the endpoint document inside a consumer pod (placeholder; see issue 6).
pub mod cli;
