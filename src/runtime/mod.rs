//! What runs around the reconcilers in every replica, leader or not: the warm
//! caches, leader election, Events, metrics, the HTTP endpoints and logging.

pub mod ca;
pub mod cache;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod pods;
pub mod sd;
pub mod store;
pub mod telemetry;
pub mod workloads;
