//! The reconcilers of one leadership term.
//!
//! [`run_term`] builds a fresh [`context::Ctx`], starts the [`router`] (cache
//! changes to reconcile requests), the status flusher and the cleanup worker,
//! and runs the [`consumer`] and [`relation`] controllers until the term ends.
//! Everything it starts is owned by the returned future: dropping it (a lost
//! Lease) aborts all of it, in-flight writes included.

pub mod consumer;
pub mod context;
pub mod echo;
pub mod relation;
pub mod rollout;
pub mod router;
#[cfg(test)]
mod scenarios;
pub mod scrape;

use std::future::Future;
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::{self, Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use crate::api::TracingRelation;
use crate::core::reason::Reason;
use crate::error::{Error, chain};
use crate::runtime::metrics::{CONSUMER, RELATION};
pub use context::{Ctx, Parts};
use kube::ResourceExt;

fn unbounded<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Logs a controller's result once, with the error chain. The error policy has
/// already counted it and chosen the backoff.
fn report<T>(controller: &'static str, res: Result<T, controller::Error<Error, watcher::Error>>) {
    let Err(e) = res else { return };
    match e {
        controller::Error::ReconcilerFailed(err, obj) => {
            let object = format!("{obj}");
            let reason = err.reason();
            let chain = chain(&err);
            match reason {
                Reason::Throttled => {
                    debug!(controller, %object, %reason, "write throttled (429); retrying shortly")
                }
                Reason::Forbidden => {
                    error!(controller, %object, %reason, error = %chain, "reconcile refused")
                }
                _ => {
                    warn!(controller, %object, %reason, error = %chain, "reconcile failed; retrying with backoff")
                }
            }
        }
        // An object queued but gone from the cache: nothing to do.
        controller::Error::ObjectNotFound(obj) => {
            debug!(controller, object = %obj, "object gone before its reconcile")
        }
        other => warn!(controller, error = %chain(&other), "controller error"),
    }
}

/// Runs both controllers until `stop` resolves (graceful) or the future is dropped.
pub async fn run_term(
    parts: Parts,
    stop: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let (consumer_tx, consumer_rx) = mpsc::unbounded_channel();
    let (relation_tx, relation_rx) = mpsc::unbounded_channel();
    let (departed_tx, departed_rx) = mpsc::unbounded_channel();
    let concurrency = parts.max_concurrent_writes;
    let ctx = Arc::new(Ctx::new(parts, departed_tx));
    let (rollout_queues, rollouts) = match rollout::controllers(&ctx, stop.clone()) {
        Some((queues, run)) => (Some(queues), run),
        None => (None, futures::future::ready(()).boxed()),
    };
    let _router = AbortOnDrop(tokio::spawn(router::route(
        ctx.clone(),
        consumer_tx,
        relation_tx.clone(),
        rollout_queues,
    )));
    let _flusher = AbortOnDrop(tokio::spawn(router::flush(ctx.clone(), relation_tx)));
    let _cleaner = AbortOnDrop(tokio::spawn(router::cleanup_worker(
        ctx.clone(),
        departed_rx,
    )));
    let consumers = Controller::for_stream(
        stream::pending::<Result<ConfigMap, watcher::Error>>(),
        ctx.caches().consumers.store.clone(),
    )
    .reconcile_on(unbounded(consumer_rx))
    .with_config(ControllerConfig::default().concurrency(concurrency.saturating_mul(2).max(2)))
    .graceful_shutdown_on(stop.clone())
    .run(consumer::reconcile, consumer::error_policy, ctx.clone())
    .for_each(|res| async move { report(CONSUMER, res) });
    let relations = Controller::for_stream(
        stream::pending::<Result<TracingRelation, watcher::Error>>(),
        ctx.caches().relations.store.clone(),
    )
    .reconcile_on(unbounded(relation_rx))
    .with_config(ControllerConfig::default().concurrency(4))
    .graceful_shutdown_on(stop)
    .run(relation::reconcile, relation::error_policy, ctx.clone())
    .for_each(|res| async move { report(RELATION, res) });
    futures::join!(consumers, relations, rollouts);
}

/// `namespace/name` of an object: how spans and logs name consumers and
/// relations (what `kubectl -n namespace get ... name` takes).
pub fn qualified_name(obj: &impl ResourceExt) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}
