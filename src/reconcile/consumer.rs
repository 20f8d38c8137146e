//! One consumer ConfigMap: dereference, decide, build, apply, report.
//!
//! ```text
//! ConfigMap ─▶ Ctx::dereference (declaration parsed once, relation, backend, ownership)
//!           ─▶ checks::decide   ─▶ patch::patch (apply body or nothing)
//!           ─▶ apply            ─▶ report (Event on a change of state, failure memory,
//!                                          the relation marked for its status)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, instrument};

use crate::core::backend::BackendError;
use crate::core::checks::Decision;
use crate::core::contract::{FIELD_MANAGER, STATE_ANNOTATION, truncate};
use crate::core::declaration::{self, RelationKey};
use crate::core::document::Protocol;
use crate::core::ownership::Ownership;
use crate::core::reason::Reason;
use crate::core::tls::CaError;
use crate::core::{patch, slim};
use crate::error::{Error, is_gone};
use crate::reconcile::context::{Ctx, WriteFailure, bound_to};
use crate::runtime::events::EventType;
use crate::runtime::metrics::{CONSUMER, ReasonLabel};

/// What an apply came to.
pub enum Applied {
    /// Nothing needed writing.
    Unchanged,
    /// The write went through.
    Written,
    /// The consumer was deleted before the write.
    Gone,
}

/// How soon a consumer whose relation's CA bundle is still being listed is
/// tried again (its listing queues it at once anyway).
const CA_LOADING_RETRY: Duration = Duration::from_secs(1);

/// The backoff key of a consumer.
pub fn key(cm: &ConfigMap) -> String {
    format!("cm/{}", ObjectRef::from_obj(cm))
}

/// Reconciles one consumer.
#[instrument(skip(cm, ctx), fields(consumer = %super::qualified_name(&*cm), relation = tracing::field::Empty))]
pub async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    // The echo of this term's own apply, queued before the apply's answer came:
    // the consumer holds what was just decided.
    if let (Some(uid), Some(version)) = (cm.uid(), cm.resource_version())
        && ctx.echoes.take_echo(&uid, &version)
    {
        ctx.metrics().echoes_skipped.inc();
        // Its relation's status counts what it holds, now in the cache.
        ctx.notify_consumer(&cm);
        return Ok(Action::await_change());
    }
    if let Some(wait) = ctx
        .backoff
        .gate(|| key(&cm), cm.metadata.resource_version.as_deref())
    {
        return Ok(Action::requeue(wait));
    }
    let start = Instant::now();
    let (found, decision) = ctx.decide(&cm, None);
    if let Ok(declared) = &found.declaration {
        let relation = format_args!("{}/{}", declared.relation_namespace, declared.relation_name);
        tracing::Span::current().record("relation", tracing::field::display(relation));
    }
    // While the relation it names is being deleted, that relation's finalizer
    // owns the consumer: writing here too would only race it.
    if found.relation_deleting {
        return Ok(Action::await_change());
    }
    // The relation's CA bundle is being listed (a relation that just named
    // it): its arrival queues the consumer again, so nothing is written now.
    if let Some(Err(BackendError::Ca(CaError::Loading { .. }))) = &found.backend {
        return Ok(Action::requeue(CA_LOADING_RETRY));
    }
    let res = apply(&ctx, &cm, &found.ownership, &decision).await;
    let res = report(&ctx, &cm, &decision, res).await;
    ctx.metrics().observe(CONSUMER, start.elapsed());
    res?;
    ctx.backoff.succeeded(|| key(&cm));
    Ok(Action::await_change())
}

/// The build and apply steps for `decision`. A decision that keeps the
/// operator's values of a consumer whose cache entry elided them
/// ([`patch::needs_values`]) reads the consumer whole first.
pub async fn apply(
    ctx: &Ctx,
    cm: &ConfigMap,
    own: &Ownership,
    decision: &Decision,
) -> Result<Applied, Error> {
    if !patch::needs_values(cm, decision) {
        return write(ctx, cm, patch::patch(cm, own, decision)).await;
    }
    let ns = cm.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client(), &ns);
    let read = api
        .get_opt(&cm.name_any())
        .await
        .map_err(|e| Error::api(e, || format!("get configmaps in namespace {ns}")))?;
    ctx.metrics().consumer_reads.inc();
    let Some(mut whole) = read.filter(|w| w.uid() == cm.uid()) else {
        return Ok(Applied::Gone);
    };
    slim::consumer_keeping_values(&mut whole);
    let own = Ownership::of(&whole.metadata);
    write(ctx, &whole, patch::patch(&whole, &own, decision)).await
}

/// The apply step: sends `body` (if any) as the operator's server-side apply,
/// within the bound on writes in flight.
pub async fn write(
    ctx: &Ctx,
    cm: &ConfigMap,
    body: Result<Option<patch::Body>, crate::core::ownership::Forged>,
) -> Result<Applied, Error> {
    let Some(body) = body? else {
        ctx.metrics().writes_skipped.inc();
        return Ok(Applied::Unchanged);
    };
    let ns = cm.namespace().unwrap_or_default();
    let action = || format!("patch configmaps in namespace {ns}");
    // The body is the text the build step wrote (kube-core builds the URL and
    // headers of an apply around it): what is sent is what is fingerprinted.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut req = kube::core::Request::new(ConfigMap::url_path(&(), Some(&ns)))
        .patch(&cm.name_any(), &params, &Patch::Apply(()))
        .map_err(|e| Error::api(kube::Error::BuildRequest(e), action))?;
    *req.body_mut() = body.into_bytes();
    req.extensions_mut().insert("patch");
    // A reconcile on a cache that has not seen this replica's last write yet
    // would send the same body again: its echo is on the way, and brings
    // another reconcile if anything else changed.
    let uid = cm.uid().unwrap_or_default();
    let before = cm.resource_version().unwrap_or_default();
    let fingerprint = fingerprint(req.body());
    if ctx.echoes.already_sent(&uid, &before, fingerprint) {
        ctx.metrics().writes_skipped.inc();
        return Ok(Applied::Unchanged);
    }
    let _permit = ctx.writes.acquire().await;
    // Of the answer only its version is read (the echo is recognised by it):
    // the whole ConfigMap is not built again.
    match ctx.client().request::<Answered>(req).await {
        Ok(answered) => {
            ctx.metrics().writes_sent.inc();
            let after = answered.metadata.resource_version;
            ctx.echoes.sent(&uid, before, fingerprint, after);
            Ok(Applied::Written)
        }
        Err(e) if is_gone(&e) => {
            debug!(consumer = %ObjectRef::from_obj(cm), "consumer deleted before the write; nothing to do");
            Ok(Applied::Gone)
        }
        Err(e) => Err(Error::api(e, action)),
    }
}

/// What the operator reads of the API server's answer to an apply.
#[derive(serde::Deserialize)]
struct Answered {
    metadata: AnsweredMeta,
}

#[derive(serde::Deserialize)]
struct AnsweredMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
}

fn fingerprint(body: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

/// The report step: what a user sees of the outcome. A change of state gets one
/// Event (per relation, so moving between relations is reported too); a failed
/// write a Warning Event and an entry in the relation's status.
async fn report(
    ctx: &Ctx,
    cm: &ConfigMap,
    decision: &Decision,
    res: Result<Applied, Error>,
) -> Result<(), Error> {
    ctx.notify_consumer(cm);
    match res {
        Ok(Applied::Gone) => Ok(()),
        Ok(_) => {
            clear_failure(ctx, cm);
            report_state(ctx, cm, decision).await;
            Ok(())
        }
        Err(e) => {
            let named = declaration::named_relation(&cm.metadata);
            record_failure(ctx, cm, named, &e).await;
            Err(e)
        }
    }
}

fn clear_failure(ctx: &Ctx, cm: &ConfigMap) {
    if let (Some(uid), Ok(mut m)) = (cm.uid(), ctx.write_failures.lock()) {
        m.remove(&uid);
    }
}

/// Remembers that this consumer could not be written, and says so once per reason.
/// A throttled write (429) is none of the consumer's doing: it is retried soon,
/// and neither recorded nor told.
pub async fn record_failure(ctx: &Ctx, cm: &ConfigMap, relation: Option<RelationKey>, e: &Error) {
    if e.is_throttled() {
        return;
    }
    let reason = e.write_reason();
    ctx.metrics()
        .write_failures
        .get_or_create(&ReasonLabel { reason })
        .inc();
    let message = format!(
        "the operator cannot write this ConfigMap: {}",
        crate::error::chain(e)
    );
    let uid = cm.uid().unwrap_or_default();
    let failure = WriteFailure {
        relation,
        reason,
        message: message.clone(),
    };
    if let Ok(mut m) = ctx.write_failures.lock() {
        m.insert(uid.clone(), failure);
    }
    if first_report(ctx, &uid, format!("Failed/{reason}")) {
        ctx.event(cm, EventType::Warning, reason, "Write", &message)
            .await;
    }
}

/// Whether `state` is new for consumer `uid` in this term (and records it).
fn first_report(ctx: &Ctx, uid: &str, state: String) -> bool {
    ctx.reported
        .lock()
        .map(|mut m| m.insert(uid.to_string(), state.clone()) != Some(state))
        .unwrap_or(true)
}

/// The state a decision puts a consumer in, as reported: relation included.
fn reported_state(decision: &Decision) -> String {
    match decision {
        Decision::Bind { relation, .. } => format!("Bound/{relation}"),
        Decision::Pending { why, .. } => format!("Pending/{}", why.reason),
        Decision::Reject(r) => format!("Rejected/{}", r.reason),
    }
}

/// The state the consumer was last written in, read from the annotations it
/// had before this reconcile (so a restarted operator does not report again).
fn annotated_state(cm: &ConfigMap) -> String {
    let a = cm.annotations();
    let state = a
        .get(STATE_ANNOTATION)
        .map(String::as_str)
        .unwrap_or_default();
    let reason = a
        .get(crate::core::contract::REASON_ANNOTATION)
        .and_then(|r| Reason::parse(r));
    let relation = bound_to(cm).map(|r| r.to_string()).unwrap_or_default();
    match (state, reason) {
        ("Bound", _) => format!("Bound/{relation}"),
        ("Pending", Some(r)) => format!("Pending/{r}"),
        ("Rejected", Some(r)) => format!("Rejected/{r}"),
        _ => String::new(),
    }
}

async fn report_state(ctx: &Ctx, cm: &ConfigMap, decision: &Decision) {
    let now = reported_state(decision);
    let uid = cm.uid().unwrap_or_default();
    let fresh = first_report(ctx, &uid, now.clone());
    if !fresh || annotated_state(cm) == now {
        return;
    }
    let consumer = ObjectRef::from_obj(cm);
    match decision {
        Decision::Reject(r) => {
            ctx.metrics()
                .rejections
                .get_or_create(&ReasonLabel { reason: r.reason })
                .inc();
            info!(%consumer, reason = %r.reason, message = %truncate(&r.message), "consumer rejected");
            ctx.event(cm, EventType::Warning, r.reason, "Reject", &r.message)
                .await;
        }
        Decision::Pending { why, .. } => {
            info!(%consumer, reason = %why.reason, "consumer pending; it keeps its last document");
            ctx.event(cm, EventType::Warning, why.reason, "Wait", &why.message)
                .await;
        }
        Decision::Bind {
            relation, document, ..
        } => {
            info!(%consumer, %relation, "consumer bound");
            let note = format!(
                "bound to TracingRelation {relation}; receivers {}",
                names(&document.receivers)
            );
            ctx.event(cm, EventType::Normal, Reason::Bound, "Bind", &note)
                .await;
        }
    }
}

fn names(ps: &[Protocol]) -> String {
    ps.iter().map(|p| p.name()).collect::<Vec<_>>().join(",")
}

/// The consumer controller's error policy: counts the failure and backs off
/// per consumer; a throttled write is retried within 0.5-2.5 s, spread out.
pub fn error_policy(cm: Arc<ConfigMap>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics().failure(CONSUMER, err.reason());
    let floor = err
        .is_throttled()
        .then(|| Duration::from_millis(500 + jitter_ms(2000)));
    Action::requeue(ctx.backoff.failed(&key(&cm), cm.resource_version(), floor))
}

/// A random delay below `max_ms`, to spread retries out.
pub fn jitter_ms(max_ms: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(max_ms);
    h.finish() % max_ms.max(1)
}
