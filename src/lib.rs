//! tracing-relation-operator: writes a Grafana Tempo endpoint document into the
//! ConfigMaps of consumers that opt in to a `TracingRelation`.
//!
//! - [`api`]: the `TracingRelation` custom resource.
//! - [`core`]: the pure core: declarations, checks, the document, ownership,
//!   the apply body and the status (no client).
//! - [`reconcile`]: the reconcilers of a leadership term and their router.
//! - [`runtime`]: caches, leader election, Events, metrics, HTTP, logging.
//! - [`operator`], [`cli`]: the process and its command line.
//! - [`consumer`]: reading the document inside a consumer pod.
//! - [`error`]: failure classes and their reasons.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod consumer;
pub mod core;
pub mod error;
pub mod operator;
pub mod reconcile;
pub mod runtime;
