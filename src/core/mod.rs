//! The pure core: what consumers declare, what the operator decides and what it
//! writes. No client, no clock, no I/O: every function here is a function of its
//! inputs and is tested without a cluster.
//!
//! A consumer's reconcile is [`declaration`] (parse once) → [`checks::decide`]
//! (with [`backend::resolve`] and [`ownership::Ownership`]) → [`patch::patch`]
//! (the exact apply body, or nothing). A relation's status is [`status::status`].

pub mod backend;
pub mod checks;
pub mod contract;
pub mod declaration;
pub mod document;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod ownership;
pub mod patch;
pub mod pem;
pub mod pyyaml;
pub mod reason;
pub mod rollout;
pub mod scrape;
pub mod slim;
pub mod status;
pub mod tls;
