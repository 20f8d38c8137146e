//! The HTTP endpoints: `/metrics` (Prometheus), `/healthz` (liveness) and
//! `/readyz` (readiness: every cache has listed once and every watch works, so a
//! missing CRD or a lost permission makes the replica not ready), and with
//! `--scrape-jobs` `/sd/<namespace>/<relation>`: a relation's scrape targets
//! in Prometheus' HTTP SD format.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use crate::core::declaration::RelationKey;
use crate::core::scrape::FILE_SD_KEY;
use crate::runtime::cache::Caches;
use crate::runtime::metrics::{Metrics, update_gauges};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    caches: Arc<Caches>,
    /// Reads a relation's scrape ConfigMap when this replica has not published it.
    client: Option<kube::Client>,
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    update_gauges(&s.metrics, &s.caches);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if !s.ready.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    } else if !s.caches.healthy() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "a watch is failing (see the log: a missing CRD or permission)",
        )
    } else {
        (StatusCode::OK, "ok")
    }
}

/// A relation's target groups (Prometheus `http_sd_configs`): what this
/// replica published, or else what the relation's scrape ConfigMap holds (a
/// standby answers as the leader does). 404 when there is no such relation or
/// it does not publish; 503 before its first publication (Prometheus keeps the
/// targets it had).
async fn sd(
    State(s): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> axum::response::Response {
    let json = |body: String| ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if s.caches.pods.is_none() {
        let msg = "scrape jobs are not enabled on this operator (--scrape-jobs)";
        return (StatusCode::NOT_FOUND, msg).into_response();
    }
    let key = RelationKey::new(&namespace, &name);
    let rel = s
        .caches
        .relations
        .store
        .get(&ObjectRef::new(&name).within(&namespace));
    let Some(spec) = rel.and_then(|r| r.spec.scrape.clone()) else {
        let msg = format!("TracingRelation {key} does not exist or has no spec.scrape");
        return (StatusCode::NOT_FOUND, msg).into_response();
    };
    if let Some(p) = s.caches.published.get(&key) {
        return json(p.target_groups.clone());
    }
    if let (Some(cm), Some(client)) = (spec.config_map, s.client) {
        let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
        if let Ok(Some(cm)) = api.get_opt(&cm).await
            && let Some(groups) = cm.data.and_then(|mut d| d.remove(FILE_SD_KEY))
        {
            return json(groups);
        }
    }
    let msg = format!("the targets of TracingRelation {key} are not published yet");
    (StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
}

/// Binds `addr` and serves in the background.
pub async fn serve(
    addr: SocketAddr,
    metrics_: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    caches: Arc<Caches>,
    client: Option<kube::Client>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/sd/{namespace}/{name}", get(sd))
        .with_state(AppState {
            metrics: metrics_,
            ready,
            caches,
            client,
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }))
}
