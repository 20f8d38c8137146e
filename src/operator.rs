//! The operator process, wired together: the client, the CRD check, the warm
//! caches and the HTTP endpoints (every replica), leader election, and one
//! [`reconcile::run_term`] per leadership term (only the leader writes).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use kube::Client;
use kube::api::{Api, ListParams};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::TracingRelation;
use crate::cli::RunArgs;
use crate::core::contract::FIELD_MANAGER;
use crate::error::{Error, StartupError, chain, is_not_found};
use crate::reconcile::{self, Parts};
use crate::runtime::cache::Caches;
use crate::runtime::events::Recorder;
use crate::runtime::leader::{Elector, LeaseConfig};
use crate::runtime::metrics::Metrics;

/// The CRD generated from the Rust types, as YAML (what `crds/` holds).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crate::api::crd())
}

/// Runs the operator until SIGTERM/SIGINT.
pub fn main(args: RunArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry =
        match crate::runtime::telemetry::init(&args.log_format, &args.log_level, rt.handle()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    if let Some(endpoint) = &telemetry.exporting_to {
        info!(%endpoint, "exporting the operator's spans by OTLP/HTTP");
    }
    let code = match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %chain(&e), "operator stopped");
            ExitCode::FAILURE
        }
    };
    // The exporter sends through the runtime: flush before it goes.
    telemetry.shutdown();
    code
}

/// The Kubernetes client, without kube's built-in retry of 429/503/504 (it backs
/// off up to 1000 s while holding one of the bounded write slots): a throttled
/// write fails at once and the reconcile is requeued with a short jittered delay,
/// so the slot goes to another consumer meanwhile.
async fn client() -> Result<Client, StartupError> {
    let mut config = kube::Config::infer().await.map_err(StartupError::Config)?;
    config.default_retry = false;
    Client::try_from(config).map_err(StartupError::Connect)
}

/// Host name plus a random suffix (as client-go does): unique even for replicas
/// that all run as pid 1 in their own containers.
fn default_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tracing-relation-operator".to_string());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{host}_{:08x}", h.finish() as u32)
}

/// Fails with a clear message when the CRD is missing.
async fn check_crd(client: &Client, args: &RunArgs) -> Result<(), StartupError> {
    let api: Api<TracingRelation> = match args.watch_namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Err(StartupError::CrdMissing),
        Err(e) => Err(StartupError::Check(Error::api(e, || {
            "list tracingrelations".to_string()
        }))),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Starts the caches and marks the replica ready once they have all listed.
/// Only this task waits on the stores themselves: a store's readiness wakes one
/// waiter, so everyone else waits on the returned channel.
fn sync_caches(caches: Arc<Caches>, ready: Arc<AtomicBool>) -> watch::Receiver<bool> {
    let (synced_tx, synced) = watch::channel(false);
    tokio::spawn(async move {
        caches.wait_ready().await;
        ready.store(true, Ordering::SeqCst);
        let _ = synced_tx.send(true);
        info!("caches synced");
    });
    synced
}

/// Runs the operator until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> Result<(), StartupError> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting tracing-relation-operator"
    );
    let client = client().await?;
    check_crd(&client, &args).await?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let rollouts = args.rollouts.then_some(args.rollout_debounce);
    let caches = Arc::new(Caches::spawn(
        &client,
        &args.watch_namespaces,
        rollouts,
        args.scrape_jobs,
    ));
    let http = crate::runtime::http::serve(
        args.metrics_addr,
        metrics.clone(),
        ready.clone(),
        caches.clone(),
        Some(client.clone()),
    )
    .await
    .map_err(|source| StartupError::Listen {
        addr: args.metrics_addr,
        source,
    })?;
    let synced = sync_caches(caches.clone(), ready);
    let lease = LeaseConfig {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity: identity.clone(),
        lease_duration: args.lease_duration,
        renew_interval: args.lease_renew_interval,
    };
    let (lead_rx, elector, _always_leading) = elect(&client, &args, &lease, synced.clone());
    let parts = Parts {
        client: client.clone(),
        caches,
        recorder: Recorder::new(client.clone(), FIELD_MANAGER, &identity),
        metrics: metrics.clone(),
        cluster_domain: args.cluster_domain.clone(),
        watch_namespaces: args.watch_namespaces.clone(),
        max_concurrent_writes: args.max_concurrent_writes,
        scrape_verify: args.scrape_verify_interval,
    };
    lead(parts, &args, &identity, lead_rx, synced, &metrics).await;
    if let Some(e) = elector {
        e.abort();
        release(&client, lease).await;
    }
    http.abort();
    info!("stopped");
    Ok(())
}

/// Starts leader election (a replica competes only once its caches have
/// synced, so one that cannot read what it needs never keeps a healthy standby
/// from leading). Without election this replica always leads; the sender is
/// returned to keep it alive.
fn elect(
    client: &Client,
    args: &RunArgs,
    lease: &LeaseConfig,
    mut synced: watch::Receiver<bool>,
) -> (
    watch::Receiver<bool>,
    Option<tokio::task::JoinHandle<()>>,
    Option<watch::Sender<bool>>,
) {
    let (lead_tx, lead_rx) = watch::channel(!args.leader_elect);
    if !args.leader_elect {
        return (lead_rx, None, Some(lead_tx));
    }
    let elector = Elector::new(client.clone(), lease.clone());
    let task = tokio::spawn(async move {
        if synced.wait_for(|s| *s).await.is_ok() {
            elector.run(lead_tx).await;
        }
    });
    (lead_rx, Some(task), None)
}

/// One leadership term after another until SIGTERM. A term's future owns all of
/// its work: dropped on a lost Lease, nothing it started goes on writing.
async fn lead(
    parts: Parts,
    args: &RunArgs,
    identity: &str,
    mut lead_rx: watch::Receiver<bool>,
    mut synced: watch::Receiver<bool>,
    metrics: &Metrics,
) {
    let shutdown = shutdown_signal().shared();
    loop {
        tokio::select! {
            _ = lead_rx.wait_for(|l| *l) => {},
            _ = shutdown.clone() => return,
        }
        tokio::select! {
            _ = synced.wait_for(|s| *s) => {},
            _ = shutdown.clone() => return,
        }
        metrics.leader.set(1);
        info!(identity = %identity, "leading: reconciling");
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop = async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        }
        .shared();
        let term = reconcile::run_term(parts.clone(), stop);
        tokio::pin!(term);
        let mut shutting_down = false;
        tokio::select! {
            _ = &mut term => {},
            _ = lead_rx.wait_for(|l| !*l) => {
                warn!("leadership lost: stopping all writes");
            },
            _ = shutdown.clone() => {
                info!("SIGTERM: finishing in-flight writes");
                let _ = stop_tx.send(true);
                if tokio::time::timeout(args.shutdown_timeout, &mut term).await.is_err() {
                    warn!("in-flight writes did not finish within the shutdown timeout");
                }
                shutting_down = true;
            }
        }
        metrics.leader.set(0);
        if shutting_down {
            return;
        }
    }
}

/// Gives the Lease up, bounded: an API server that does not answer must not
/// keep the process from exiting.
async fn release(client: &Client, lease: LeaseConfig) {
    let mut releaser = Elector::new(client.clone(), lease);
    match tokio::time::timeout(Duration::from_secs(3), releaser.release()).await {
        Ok(Ok(())) => info!("Lease released"),
        Ok(Err(err)) => warn!(error = %err, "cannot release the Lease"),
        Err(_) => warn!("cannot release the Lease: the API server did not answer in time"),
    }
}

#[cfg(test)]
mod tests {
    /// The committed CRD is the one generated from the Rust types; regenerate with
    /// `cargo run -- crd > crds/tracingrelations.tracing.relations.dev.yaml`.
    #[test]
    fn committed_crd_matches_the_types() {
        let committed = include_str!("../crds/tracingrelations.tracing.relations.dev.yaml");
        let generated = super::crd_yaml().expect("CRD serializes");
        assert!(
            committed == generated,
            "crds/tracingrelations.tracing.relations.dev.yaml is stale: run `cargo run -- crd > crds/tracingrelations.tracing.relations.dev.yaml`"
        );
    }
}
