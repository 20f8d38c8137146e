//! The command line: `tracing-relation-operator [flags]` runs the operator,
//! `crd` prints the CRD, `endpoint` reads a consumer's document in a pod.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The binary's arguments.
#[derive(Parser, Debug)]
#[command(
    name = "tracing-relation-operator",
    version,
    about = "Writes Grafana Tempo endpoints into the ConfigMaps of consumers bound by a TracingRelation",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinition generated from the Rust types, as YAML.
    Crd,
    /// Read the endpoint document from a mounted consumer ConfigMap (for pods and init containers).
    Endpoint(crate::consumer::cli::EndpointArgs),
}

/// Flags of the operator. Each has an environment fallback, so the chart can set
/// them either way.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Cluster DNS domain used to build a followed Service's hostname
    /// (`<service>.<namespace>.svc.<domain>`).
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Only watch these namespaces (comma-separated) for consumers, relations and
    /// Services; empty means the whole cluster. Match the chart's `watchNamespaces`.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',', num_args = 0..)]
    pub watch_namespaces: Vec<String>,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Most consumer ConfigMaps written at once during a fan-out.
    #[arg(long, env = "MAX_CONCURRENT_WRITES", default_value_t = 32)]
    pub max_concurrent_writes: u16,

    /// Elect a leader with a coordination.k8s.io Lease; only the leader writes.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "tracing-relation-operator")]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (the chart sets the release namespace).
    #[arg(long, env = "LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// How long a Lease is valid without renewal; a standby takes over after it.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// How often the leader renews its Lease (and a standby retries).
    #[arg(long, env = "LEASE_RENEW_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_renew_interval: Duration,

    /// This replica's identity in the Lease and in Events (the chart sets the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Log format: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Log filter, e.g. `info` or `tracing_relation_operator=debug,kube=warn`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Longest time SIGTERM waits for in-flight writes before exiting.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Roll opted-in workloads (Deployments, StatefulSets and DaemonSets
    /// labelled tracing.relations.dev/rollout=true) when the tracing document of
    /// a consumer ConfigMap they use changes. Needs get/list/watch/patch on
    /// those kinds (the chart's `rollouts.enabled`).
    #[arg(long, env = "ROLLOUTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rollouts: bool,

    /// How long a workload's rollout waits for a burst of document changes to
    /// end (each further change within it restarts the wait): a burst is one
    /// rollout.
    #[arg(long, env = "ROLLOUT_DEBOUNCE", default_value = "2s", value_parser = humantime::parse_duration)]
    pub rollout_debounce: Duration,

    /// Publish the scrape jobs consumers declare (the seed's second direction):
    /// watch the pods of consumers that ask to be scraped (by their selector
    /// only) and write each relation's targets to the ConfigMap its
    /// `spec.scrape.configMap` names and to /sd/<namespace>/<relation> (HTTP
    /// SD). Needs list/watch on pods (the chart's `scrapeJobs.enabled`).
    #[arg(long, env = "SCRAPE_JOBS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub scrape_jobs: bool,

    /// How often a relation that publishes scrape jobs checks that its
    /// ConfigMap still holds them (an edit or a deletion is undone) and retries
    /// a failed write.
    #[arg(long, env = "SCRAPE_VERIFY_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub scrape_verify_interval: Duration,
}
