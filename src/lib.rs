//! tracing-relation-operator: writes a Grafana Tempo endpoint document into the
//! ConfigMaps of consumers that opt in to a `TracingRelation`.
#![forbid(unsafe_code)]

pub mod api;
pub mod backend;
pub mod checks;
pub mod declaration;
pub mod document;
pub mod consumer;
pub mod controller;
pub mod operator;
pub mod telemetry;
