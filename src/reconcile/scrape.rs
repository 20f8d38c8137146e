//! (`--scrape-jobs`) A relation's published scrape jobs: at each status pass,
//! the jobs of its bound consumers are resolved against their ready pods
//! ([`crate::core::scrape`]); when that changes what is published, the
//! relation's scrape ConfigMap is rewritten once, the HTTP SD answer follows,
//! and the relation gets one `TargetsChanged` Event (the seed's
//! `targets_changed`). A consumer whose declaration is refused is listed in the
//! status and told once with a Warning Event; its tracing document is not
//! affected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tracing::{info, warn};

use crate::api::{RejectedConsumer, ScrapeStatus, TracingRelation};
use crate::core::checks::Decision;
use crate::core::contract::FIELD_MANAGER;
use crate::core::declaration::RelationKey;
use crate::core::document::hash_of;
use crate::core::reason::Reason;
use crate::core::scrape::{self, FILE_SD_KEY, Publication, SCRAPE_CONFIGS_KEY, Topology};
use crate::error::Error;
use crate::reconcile::context::Ctx;
use crate::runtime::events::EventType;
use crate::runtime::sd::Published;

/// Most refused consumers listed in the status.
const MAX_LISTED: usize = 20;
/// The largest publication written to the ConfigMap (the API server refuses a
/// ConfigMap over 1 MiB; HTTP SD still serves a larger one).
pub const MAX_CONFIGMAP_BYTES: usize = 1_000_000;

/// What one pass found: the publication, and what the status says of it.
struct Resolved {
    publication: Publication,
    status: ScrapeStatus,
}

/// Publishes relation `rel`'s scrape jobs from its `decided` consumers; the
/// status to report, or `None` when the relation does not publish (or its
/// consumers' pods are still listing: the last status stays).
pub async fn publish(
    ctx: &Ctx,
    rel: &TracingRelation,
    decided: &[(Arc<ConfigMap>, Decision)],
) -> Result<Option<ScrapeStatus>, Error> {
    let me = RelationKey::new(&rel.namespace().unwrap_or_default(), &rel.name_any());
    let last_cm = rel
        .status
        .as_ref()
        .and_then(|s| s.scrape.as_ref())
        .and_then(|s| s.config_map.clone());
    let Some(spec) = &rel.spec.scrape else {
        // No longer asked for: the keys leave the ConfigMap they were written to.
        ctx.caches().published.remove(&me);
        if let (Some(old), Some(_)) = (last_cm, &ctx.caches().pods) {
            unpublish(ctx, &me.namespace, &old).await?;
        }
        return Ok(None);
    };
    if ctx.caches().pods.is_none() {
        let note = "spec.scrape is set, but this operator runs without --scrape-jobs (the chart's scrapeJobs.enabled): nothing is published";
        tell(ctx, rel, Reason::ScrapePublishFailed, note).await;
        return Ok(None);
    }
    let Some(found) = resolve(ctx, decided).await else {
        let last = rel.status.as_ref().and_then(|s| s.scrape.clone());
        return Ok(last);
    };
    let data = found.publication.data();
    let hash = hash_of(&data);
    let last = ctx.caches().published.get(&me);
    let changed = last.as_ref().map(|p| p.hash != hash);
    let due = last
        .as_ref()
        .is_none_or(|p| changed == Some(true) || p.verified.elapsed() >= ctx.parts.scrape_verify);
    let mut status = found.status;
    status.config_map = spec.config_map.clone();
    if let Some(old) = last_cm.filter(|old| Some(old) != spec.config_map.as_ref()) {
        unpublish(ctx, &me.namespace, &old).await?;
    }
    let size: usize = data.values().map(String::len).sum();
    let wrote = match &spec.config_map {
        Some(name) if due && size > MAX_CONFIGMAP_BYTES => {
            let note = format!(
                "the scrape jobs are {size} bytes, more than ConfigMap {name} can hold ({MAX_CONFIGMAP_BYTES}); it keeps what it held, and HTTP SD (/sd/{me}) serves them all"
            );
            tell(ctx, rel, Reason::ScrapePublishFailed, &note).await;
            status.config_map = None;
            false
        }
        Some(name) if due => match write(ctx, &me.namespace, name, &data).await {
            Ok(wrote) => wrote,
            Err(e) => {
                // The status is still written; the relation's next pass (at
                // most --scrape-verify-interval away) tries again.
                warn!(relation = %me, error = %crate::error::chain(&e), "cannot publish the scrape jobs");
                let note = format!("cannot write ConfigMap {name}: {}", e.describe());
                tell(ctx, rel, Reason::ScrapePublishFailed, &note).await;
                return Ok(Some(ScrapeStatus {
                    config_map: None,
                    ..status
                }));
            }
        },
        _ => false,
    };
    ctx.caches().published.set(
        me.clone(),
        Published {
            target_groups: data[FILE_SD_KEY].clone(),
            hash,
            verified: if due {
                Instant::now()
            } else {
                last.map_or_else(Instant::now, |p| p.verified)
            },
        },
    );
    // A change this process saw, or a ConfigMap that did not hold it: the
    // seed's targets_changed. A restart that finds it all in place says nothing.
    if changed == Some(true) || wrote {
        let (jobs, targets) = found.publication.counts();
        ctx.metrics().scrape_publications.inc();
        info!(relation = %me, jobs, targets, "scrape targets changed");
        let note = format!("scrape targets changed: {jobs} jobs, {targets} targets");
        ctx.event(
            rel,
            EventType::Normal,
            Reason::TargetsChanged,
            "Publish",
            &note,
        )
        .await;
    }
    Ok(Some(status))
}

/// Resolves every bound consumer's jobs; `None` while some consumer's pods
/// have not listed yet (publishing then would drop their targets).
async fn resolve(ctx: &Ctx, decided: &[(Arc<ConfigMap>, Decision)]) -> Option<Resolved> {
    let pods = ctx.caches().pods.as_ref()?;
    let mut jobs = Vec::new();
    let mut status = ScrapeStatus::default();
    let mut rejected = Vec::new();
    for (cm, d) in decided {
        // A consumer waiting for the backend has passed the checks: its jobs
        // stay published (the scraper does not depend on Tempo).
        if !matches!(d, Decision::Bind { .. } | Decision::Pending { .. }) {
            continue;
        }
        let decl = match scrape::of(&cm.metadata)? {
            Ok(decl) => decl,
            Err(e) => {
                let msg = e.to_string();
                tell(ctx, &**cm, Reason::InvalidScrapeJobs, &msg).await;
                rejected.push(RejectedConsumer {
                    namespace: cm.namespace().unwrap_or_default(),
                    name: cm.name_any(),
                    reason: Reason::InvalidScrapeJobs.to_string(),
                    message: msg,
                });
                continue;
            }
        };
        if !decl.dropped.is_empty() {
            let note = decl.dropped.join("; ");
            tell(ctx, &**cm, Reason::ScrapeKeysDropped, &note).await;
        }
        let ns = cm.namespace().unwrap_or_default();
        let units = match &decl.selector {
            Some(sel) => pods.units(&(ns.clone(), sel.clone()))?,
            None => Arc::default(),
        };
        let uid = namespace_uid(ctx, &ns);
        let name = cm.name_any();
        let t = Topology {
            namespace: &ns,
            namespace_uid: &uid,
            consumer: &name,
        };
        jobs.extend(scrape::resolve(t, &decl, &units));
        status.consumers += 1;
    }
    let publication = Publication::new(jobs);
    let (j, t) = publication.counts();
    status.jobs = j as i64;
    status.targets = t as i64;
    rejected
        .sort_by(|a: &RejectedConsumer, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rejected.truncate(MAX_LISTED);
    status.rejected = rejected;
    Some(Resolved {
        publication,
        status,
    })
}

/// The uid of namespace `ns` (empty without a namespace cache: the label is
/// then left out, as Prometheus drops empty labels).
fn namespace_uid(ctx: &Ctx, ns: &str) -> String {
    ctx.caches()
        .namespaces
        .as_ref()
        .and_then(|c| c.store.get(&ObjectRef::new(ns)))
        .and_then(|n| n.metadata.uid.clone())
        .unwrap_or_default()
}

/// A Warning Event on `obj` (a consumer, or the relation), once per distinct
/// note in this term.
async fn tell<K>(ctx: &Ctx, obj: &K, reason: Reason, note: &str)
where
    K: kube::Resource<DynamicType = ()>,
{
    let Some(uid) = obj.meta().uid.clone() else {
        return;
    };
    let said = format!("{reason}: {note}");
    let fresh = ctx
        .scrape_told
        .lock()
        .map(|mut m| m.insert((uid, reason), said.clone()) != Some(said))
        .unwrap_or(false);
    if fresh {
        ctx.event(obj, EventType::Warning, reason, "Scrape", note)
            .await;
    }
}

/// Writes the two keys to ConfigMap `name` unless it holds them already.
/// Whether it wrote.
async fn write(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    data: &BTreeMap<String, String>,
) -> Result<bool, Error> {
    apply_keys(ctx, ns, name, Some(data)).await
}

/// Takes the operator's two keys out of ConfigMap `name` (the relation went,
/// or names another ConfigMap now); nothing when it does not exist.
pub async fn unpublish(ctx: &Ctx, ns: &str, name: &str) -> Result<(), Error> {
    apply_keys(ctx, ns, name, None).await.map(drop)
}

/// Applies the operator's keys of ConfigMap `name`: `data`, or none (which
/// takes them out), only when the ConfigMap does not already hold that.
/// Whether it wrote.
async fn apply_keys(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    data: Option<&BTreeMap<String, String>>,
) -> Result<bool, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client(), ns);
    let what = || format!("configmaps {name} in namespace {ns} (spec.scrape.configMap)");
    let held = api
        .get_opt(name)
        .await
        .map_err(|e| Error::api(e, what))?
        .and_then(|c| c.data);
    let needed = match (data, &held) {
        (Some(want), held) => !held
            .as_ref()
            .is_some_and(|d| want.iter().all(|(k, v)| d.get(k) == Some(v))),
        (None, Some(d)) => d.contains_key(SCRAPE_CONFIGS_KEY) || d.contains_key(FILE_SD_KEY),
        (None, None) => false,
    };
    if !needed {
        return Ok(false);
    }
    let mut body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
    });
    if let Some(d) = data {
        body["data"] = json!(d);
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::api(e, what))?;
    Ok(true)
}
