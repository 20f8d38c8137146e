//! One TracingRelation: its finalizer, its status and its Events.
//!
//! `apply` dereferences the relation (its own checks, consent, backend), decides
//! for each of its consumers with the same pure decision the consumer reconcile
//! uses, builds the status with [`status::status`] and writes it only when it
//! changed. `cleanup` (the finalizer) takes the operator's keys out of every
//! consumer; a consumer that cannot be written is given up on after
//! [`MAX_CLEANUP_TRIES`], so no consumer can keep a relation from going.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error as FinalizerError, Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::api::{TracingRelation, TracingRelationStatus};
use crate::core::backend::BackendError;
use crate::core::checks::{self, Decision};
use crate::core::contract::{FIELD_MANAGER, FINALIZER, HASH_ANNOTATION};
use crate::core::declaration::RelationKey;
use crate::core::document::Endpoint;
use crate::core::ownership::Ownership;
use crate::core::reason::Reason;
use crate::core::status::{self, ConsumerView, NotReady};
use crate::error::Error;
use crate::reconcile::consumer as consumer_rec;
use crate::reconcile::context::Ctx;
use crate::reconcile::scrape;
use crate::runtime::events::EventType;
use crate::runtime::metrics::RELATION;

/// Tries the finalizer makes per consumer before it gives up on it.
pub const MAX_CLEANUP_TRIES: u32 = 5;

/// The backoff key of a relation.
pub fn key(rel: &TracingRelation) -> String {
    format!("rel/{}", ObjectRef::from_obj(rel))
}

fn relation_key(rel: &TracingRelation) -> RelationKey {
    RelationKey::new(&rel.namespace().unwrap_or_default(), &rel.name_any())
}

/// Reconciles one relation through its finalizer.
#[instrument(skip(rel, ctx), fields(relation = %super::qualified_name(&*rel)))]
pub async fn reconcile(rel: Arc<TracingRelation>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if let Some(wait) = ctx
        .backoff
        .gate(|| key(&rel), rel.metadata.resource_version.as_deref())
    {
        return Ok(Action::requeue(wait));
    }
    let start = Instant::now();
    let ns = rel.namespace().unwrap_or_default();
    let api: Api<TracingRelation> = Api::namespaced(ctx.client(), &ns);
    let res = finalizer(&api, FINALIZER, rel.clone(), |ev| async {
        match ev {
            Finalizer::Apply(r) => apply(&r, &ctx).await,
            Finalizer::Cleanup(r) => cleanup(&r, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
        FinalizerError::AddFinalizer(e) | FinalizerError::RemoveFinalizer(e) => {
            Error::api(e, || format!("patch tracingrelations in namespace {ns}"))
        }
        e => Error::Finalizer {
            relation: relation_key(&rel).to_string(),
            source: Box::new(e),
        },
    });
    ctx.metrics().observe(RELATION, start.elapsed());
    let action = res?;
    ctx.backoff.succeeded(|| key(&rel));
    Ok(action)
}

/// The relation's own checks, consent and resolved backend: its endpoint, or
/// why it is not Ready.
fn readiness<'a>(
    rel: &TracingRelation,
    backend: &'a Result<Endpoint, BackendError>,
) -> Result<&'a Endpoint, NotReady> {
    let ns = rel.namespace().unwrap_or_default();
    checks::check_relation(rel).map_err(|r| (r.reason, r.message))?;
    checks::namespace_allowed(rel, &ns, &BTreeMap::new()).map_err(|e| {
        let msg = format!(
            "spec.consumers.namespaceSelector cannot be evaluated ({e}); no consumer is admitted"
        );
        (Reason::InvalidNamespaceSelector, msg)
    })?;
    backend.as_ref().map_err(|e| (e.reason(), e.to_string()))
}

/// What the status says: every consumer decided as its own reconcile would;
/// and those decisions.
fn build_status(
    ctx: &Ctx,
    rel: &TracingRelation,
) -> (TracingRelationStatus, Vec<(Arc<ConfigMap>, Decision)>) {
    let me = relation_key(rel);
    let backend: Result<Endpoint, BackendError> = ctx.resolve(rel);
    let resolved = readiness(rel, &backend);
    let consumers = ctx.consumers_of(&me);
    let decided: Vec<(Arc<ConfigMap>, Decision)> = consumers
        .into_iter()
        .map(|cm| {
            let d = ctx.decide(&cm, Some(&backend)).1;
            (cm, d)
        })
        .filter(|(cm, d)| names_me(cm, d, &me))
        .collect();
    let failures = ctx
        .write_failures
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let views = decided.iter().map(|(cm, d)| ConsumerView {
        namespace: cm.metadata.namespace.as_deref().unwrap_or_default(),
        name: cm.metadata.name.as_deref().unwrap_or_default(),
        decision: d,
        holds_document: holds(cm, d),
        failure: cm
            .metadata
            .uid
            .as_ref()
            .and_then(|u| failures.get(u))
            .map(|f| (f.reason, f.message.as_str())),
    });
    let forbidden = failures
        .values()
        .find(|f| f.reason == Reason::WriteForbidden && f.relation.as_ref() == Some(&me))
        .map(|f| f.message.clone());
    let status = status::status(
        rel,
        resolved.as_ref().copied(),
        views,
        forbidden.as_deref(),
        Time(Timestamp::now()),
    );
    (status, decided)
}

/// Whether a consumer's decision concerns this relation (it names it).
fn names_me(cm: &ConfigMap, d: &Decision, me: &RelationKey) -> bool {
    match d {
        Decision::Bind { relation, .. } | Decision::Pending { relation, .. } => relation == me,
        Decision::Reject(_) => crate::core::declaration::names_relation(&cm.metadata, me),
    }
}

/// Whether the consumer holds the decided document: its hash annotation,
/// owned by the operator, is the document's.
fn holds(cm: &ConfigMap, d: &Decision) -> bool {
    let Decision::Bind { document, .. } = d else {
        return false;
    };
    Ownership::of(&cm.metadata)
        .annotations
        .contains(HASH_ANNOTATION)
        && cm.annotations().get(HASH_ANNOTATION).map(String::as_str) == Some(document.hash())
}

async fn apply(rel: &TracingRelation, ctx: &Ctx) -> Result<Action, Error> {
    let began = Instant::now();
    let (mut status, decided) = build_status(ctx, rel);
    status.scrape = scrape::publish(ctx, rel, &decided).await?;
    ctx.status_pass(&relation_key(rel), began);
    // A relation that publishes scrape jobs looks again now and then: its
    // ConfigMap may have been edited or deleted, or a write may have failed.
    let next = if status.scrape.is_some() {
        Action::requeue(ctx.parts.scrape_verify)
    } else {
        Action::await_change()
    };
    if rel.status.as_ref() == Some(&status) {
        return Ok(next);
    }
    let ns = rel.namespace().unwrap_or_default();
    let api: Api<TracingRelation> = Api::namespaced(ctx.client(), &ns);
    let body = json!({
        "apiVersion": "tracing.relations.dev/v1alpha1",
        "kind": "TracingRelation",
        "status": status,
    });
    api.patch_status(
        &rel.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| {
        Error::api(e, || {
            format!("patch tracingrelations/status in namespace {ns}")
        })
    })?;
    report_transition(ctx, rel, &status).await;
    Ok(next)
}

/// An Event when Ready changes, or when the endpoint moves.
async fn report_transition(ctx: &Ctx, rel: &TracingRelation, status: &TracingRelationStatus) {
    let ready = |s: Option<&TracingRelationStatus>| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let old_host = rel.status.as_ref().and_then(|s| s.endpoint.clone());
    let host = status
        .endpoint
        .as_ref()
        .map(|e| e.hostname.as_str())
        .unwrap_or_default();
    if ready(rel.status.as_ref()) != ready(Some(status)) {
        let Some(c) = status.conditions.first() else {
            return;
        };
        let reason = Reason::parse(&c.reason).unwrap_or(Reason::ApiError);
        if c.status == "True" {
            let note = format!("endpoint {host} resolved; consumers are being written");
            ctx.event(rel, EventType::Normal, reason, "Reconcile", &note)
                .await;
        } else {
            ctx.event(rel, EventType::Warning, reason, "Reconcile", &c.message)
                .await;
        }
    } else if old_host.is_some() && old_host != status.endpoint {
        let note = format!("endpoint is now {host}; bound consumers are rewritten");
        ctx.event(
            rel,
            EventType::Normal,
            Reason::EndpointChanged,
            "Reconcile",
            &note,
        )
        .await;
    }
}

/// What one consumer's cleanup came to.
enum Cleaned {
    Done,
    Retry(Error),
    Abandoned,
}

/// The finalizer: removes the operator's data from every consumer of the relation.
async fn cleanup(rel: &TracingRelation, ctx: &Ctx) -> Result<Action, Error> {
    let me = relation_key(rel);
    let consumers = ctx.consumers_of(&me);
    let n = consumers.len();
    let decision = Decision::Reject(checks::relation_not_found(&me));
    let results: Vec<Cleaned> = stream::iter(consumers)
        .map(|cm| {
            let d = &decision;
            async move { clean_one(ctx, rel, &cm, d).await }
        })
        .buffer_unordered(usize::from(ctx.parts.max_concurrent_writes.max(1)))
        .collect()
        .await;
    let abandoned = results
        .iter()
        .filter(|r| matches!(r, Cleaned::Abandoned))
        .count();
    if let Some(err) = results.into_iter().find_map(|r| match r {
        Cleaned::Retry(e) => Some(e),
        _ => None,
    }) {
        return Err(err);
    }
    let published = rel.spec.scrape.as_ref().and_then(|s| s.config_map.as_ref());
    if let (Some(name), Some(_)) = (published, &ctx.caches().pods) {
        scrape::unpublish(ctx, &me.namespace, name).await?;
    }
    ctx.caches().published.remove(&me);
    info!(relation = %me, consumers = n, abandoned, "relation deleted; operator data removed from its consumers");
    Ok(Action::await_change())
}

async fn clean_one(ctx: &Ctx, rel: &TracingRelation, cm: &ConfigMap, d: &Decision) -> Cleaned {
    let own = Ownership::of(&cm.metadata);
    match consumer_rec::apply(ctx, cm, &own, d).await {
        Ok(_) => Cleaned::Done,
        Err(e) => {
            let tries_key = (rel.uid().unwrap_or_default(), cm.uid().unwrap_or_default());
            let tries = ctx
                .cleanup_tries
                .lock()
                .map(|mut m| {
                    let t = m.entry(tries_key).or_insert(0);
                    *t += 1;
                    *t
                })
                .unwrap_or(MAX_CLEANUP_TRIES);
            if tries < MAX_CLEANUP_TRIES {
                return Cleaned::Retry(e);
            }
            abandon(ctx, rel, cm, &e).await;
            Cleaned::Abandoned
        }
    }
}

/// Gives up on a consumer that cannot be cleaned: it keeps what could not be
/// removed; both objects get a Warning Event and the log says why.
async fn abandon(ctx: &Ctx, rel: &TracingRelation, cm: &ConfigMap, e: &Error) {
    let consumer = ObjectRef::from_obj(cm);
    let why = e.describe();
    warn!(relation = %ObjectRef::from_obj(rel), %consumer, reason = %e.write_reason(), error = %crate::error::chain(e),
        "relation deleted; giving up on a consumer that cannot be written (it keeps the operator's keys)");
    ctx.metrics().cleanups_abandoned.inc();
    let note = format!(
        "TracingRelation {} was deleted but the operator could not remove its keys from this ConfigMap after {MAX_CLEANUP_TRIES} tries ({why}); they stay until the ConfigMap can be written (the operator then removes them) or someone deletes them",
        relation_key(rel)
    );
    ctx.event(
        cm,
        EventType::Warning,
        Reason::CleanupAbandoned,
        "Cleanup",
        &note,
    )
    .await;
    let note = format!("gave up removing the operator's keys from ConfigMap {consumer}: {why}");
    ctx.event(
        rel,
        EventType::Warning,
        Reason::CleanupAbandoned,
        "Cleanup",
        &note,
    )
    .await;
}

/// The relation controller's error policy: counts and backs off per relation.
pub fn error_policy(rel: Arc<TracingRelation>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics().failure(RELATION, err.reason());
    Action::requeue(ctx.backoff.failed(&key(&rel), rel.resource_version(), None))
}
