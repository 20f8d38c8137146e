//! The HTTP endpoints: `/metrics` (Prometheus), `/healthz` (liveness) and
//! `/readyz` (readiness: every cache has listed once and every watch works, so a
//! missing CRD or a lost permission makes the replica not ready).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::runtime::cache::Caches;
use crate::runtime::metrics::{Metrics, update_gauges};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    caches: Arc<Caches>,
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

/// Binds `addr` and serves in the background.
pub async fn serve(
    addr: SocketAddr,
    metrics_: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    caches: Arc<Caches>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics: metrics_,
            ready,
            caches,
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }))
}
