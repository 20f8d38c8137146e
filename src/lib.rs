//! tracing-relation-operator: writes a Grafana Tempo endpoint document into the
//! ConfigMaps of consumers that opt in to a `TracingRelation`.
//!
//! - [`api`]: the `TracingRelation` custom resource.
//! - [`document`]: the pure build of the endpoint document.
//! - [`declaration`], [`checks`]: what a consumer declares, and the checks of both sides.
//! - [`backend`]: resolving a relation's backend (explicit endpoint or Service).
//! - [`controller`], [`cache`], [`leader`], [`metrics`], [`http`]: the running operator.
//! - [`consumer`]: reading the document inside a consumer pod.
#![forbid(unsafe_code)]

pub mod api;
pub mod backend;
pub mod cache;
pub mod checks;
pub mod consumer;
pub mod controller;
pub mod declaration;
pub mod document;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod telemetry;
