//! What a consumer or a bystander can and cannot do to the operator and to
//! other consumers, tried as a hostile tenant would, on a real control plane.
//!
//! Each test works in fresh namespaces beside a healthy "canary" consumer of
//! the same relation and asserts three things: the outcome a user sees (state,
//! reason, Event, the relation's status), that the hostile consumer's own data
//! is byte-identical, and that the canary is still served.
//!
//! Two control planes: this binary's shared one with the shipped admission
//! policy enforced (what admission refuses), and a private one whose policy
//! bindings are deleted (what reaches the operator when admission is bypassed:
//! the operator's own defences). One operator on each.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::env::shared_operator;
use common::fixtures::{OWN_KEY, annotation, data};
use common::{
    CRD_NAME, ControlPlane, ControlPlaneOptions, Operator, OperatorEnv, operator_ready,
    wait_for_some_named,
};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::OnceCell;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, FIELD_MANAGER, HASH_ANNOTATION, MESSAGE_ANNOTATION, REASON_ANNOTATION,
    RELATION_LABEL, STATE_ANNOTATION,
};
use tracing_relation_operator::core::document::KEY_TEMPO_ENDPOINT;
use tracing_relation_operator::core::reason::Reason;

const T: Duration = Duration::from_secs(60);
const OWN_VALUE: &str = "# the consumer's own\nsampler: always_on\n";
/// A tenant of the test namespaces: may do anything with ConfigMaps there.
const TENANT: &str = "tenant@example.com";
const TENANT_GROUP: &str = "tenants";

// ---- environment -----------------------------------------------------------------

/// The shared control plane with the shipped policy, and its operator.
async fn enforced() -> &'static OperatorEnv {
    shared_operator(T, |_| async {}).await
}

/// A namespace with a relation `tempo` (explicit endpoint `host`), a bound
/// canary consumer and the tenant allowed to edit ConfigMaps.
struct Scene {
    ns: String,
    admin: kube::Client,
    tenant: kube::Client,
    cms: Api<ConfigMap>,
    rels: Api<TracingRelation>,
}

async fn scene(cp: &ControlPlane, prefix: &str, host: &str) -> Scene {
    let ns = cp.namespace(prefix).await.name().to_string();
    let admin = cp.admin_client().await;
    common::rbac::grant_role_to(
        &admin,
        &ns,
        "tenants-configmaps",
        vec![common::rbac::rule(&[""], &["configmaps"], &["*"])],
        common::rbac::group(TENANT_GROUP),
    )
    .await;
    let tenant = cp
        .client_as(TENANT, &[TENANT_GROUP, "system:authenticated"])
        .await;
    let s = Scene {
        cms: Api::namespaced(admin.clone(), &ns),
        rels: Api::namespaced(admin.clone(), &ns),
        ns,
        admin,
        tenant,
    };
    s.add_relation(&relation("tempo", host)).await;
    s.add_consumer(&consumer("canary", &[])).await;
    s.wait("canary", "bound", |cm| bound_to_host(cm, host))
        .await;
    s
}

impl Scene {
    fn tenant_cms(&self) -> Api<ConfigMap> {
        Api::namespaced(self.tenant.clone(), &self.ns)
    }

    async fn wait(&self, name: &str, what: &str, pred: impl Fn(&ConfigMap) -> bool) -> ConfigMap {
        let cms = self.cms.clone();
        let pred = &pred;
        wait_for_some_named(format!("{name}: {what}"), T, || {
            let cms = cms.clone();
            async move { cms.get_opt(name).await.ok().flatten().filter(|c| pred(c)) }
        })
        .await
    }

    async fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&TracingRelation) -> bool,
    ) -> TracingRelation {
        let rels = self.rels.clone();
        let pred = &pred;
        wait_for_some_named(format!("relation: {what}"), T, || {
            let rels = rels.clone();
            async move {
                rels.get_opt("tempo")
                    .await
                    .ok()
                    .flatten()
                    .filter(|r| pred(r))
            }
        })
        .await
    }

    /// Events about object `name` with `reason`.
    async fn events(&self, name: &str, reason: Reason) -> Vec<Event> {
        Api::<Event>::namespaced(self.admin.clone(), &self.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reason.as_deref() == Some(reason.as_str())
            })
            .collect()
    }

    async fn wait_event(&self, name: &str, reason: Reason) -> Event {
        wait_for_some_named(format!("{name}: a {reason} Event"), T, || async {
            self.events(name, reason).await.into_iter().next()
        })
        .await
    }

    /// Creates `cm` in the scene's namespace (as the admin).
    async fn add_consumer(&self, cm: &ConfigMap) {
        self.cms.create(&PostParams::default(), cm).await.unwrap();
    }

    /// Creates `rel` in the scene's namespace (as the admin).
    async fn add_relation(&self, rel: &TracingRelation) {
        self.rels.create(&PostParams::default(), rel).await.unwrap();
    }

    /// Patches consumer `name` (as the admin).
    async fn patch_consumer(&self, name: &str, patch: &Patch<serde_json::Value>) {
        self.cms
            .patch(name, &PatchParams::default(), patch)
            .await
            .unwrap();
    }

    /// Creates consumer `name` (its own key only) and waits until it is bound
    /// to `host`.
    async fn bound_consumer(&self, name: &str, host: &str) {
        self.add_consumer(&consumer(name, &[])).await;
        self.wait(name, "bound", |cm| bound_to_host(cm, host)).await;
    }

    /// The tenant applies `claim` to ConfigMap `name` with the operator's field
    /// manager (what the admission policy refuses, where it is enforced).
    async fn tenant_applies_as_operator(&self, name: &str, claim: &serde_json::Value) {
        self.tenant_cms()
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(claim),
            )
            .await
            .unwrap();
    }

    /// Moves relation `tempo` to the endpoint host `host` (a fan-out).
    async fn move_tempo(&self, host: &str) {
        let host = Patch::Merge(json!({"spec": {"backend": {"endpoint": {"hostname": host}}}}));
        self.patch_relation("tempo", &host).await;
    }

    /// Waits until relation `tempo` is gone (its finalizer done).
    async fn wait_relation_gone(&self, what: &str) {
        wait_for_some_named(what, T, || async {
            self.rels
                .get_opt("tempo")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        })
        .await;
    }

    /// Patches relation `name` (as the admin).
    async fn patch_relation(&self, name: &str, patch: &Patch<serde_json::Value>) {
        self.rels
            .patch(name, &PatchParams::default(), patch)
            .await
            .unwrap();
    }

    /// The canary is bound to `host` with its own data intact.
    async fn canary_served(&self, host: &str) {
        let c = self
            .wait("canary", &format!("still served ({host})"), |cm| {
                bound_to_host(cm, host)
            })
            .await;
        assert_eq!(data(&c, OWN_KEY), Some(OWN_VALUE), "the canary's own key");
    }
}

fn relation(name: &str, host: &str) -> TracingRelation {
    serde_json::from_value(json!({
        "apiVersion": "tracing.relations.dev/v1alpha1",
        "kind": "TracingRelation",
        "metadata": {"name": name},
        "spec": {"interface": "tracing", "role": "provides",
                 "backend": {"endpoint": {"hostname": host}}},
    }))
    .unwrap()
}

fn consumer(name: &str, extra: &[(&str, &str)]) -> ConfigMap {
    let mut data = BTreeMap::from([(OWN_KEY.to_string(), OWN_VALUE.to_string())]);
    data.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(RELATION_LABEL.into(), "tempo".into())])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn state(cm: &ConfigMap) -> (Option<&str>, Option<&str>) {
    (
        annotation(cm, STATE_ANNOTATION),
        annotation(cm, REASON_ANNOTATION),
    )
}

fn bound_to_host(cm: &ConfigMap, host: &str) -> bool {
    annotation(cm, STATE_ANNOTATION) == Some("Bound")
        && data(cm, KEY_TEMPO_ENDPOINT).is_some_and(|d| d.contains(&format!("hostname: {host}\n")))
}

fn own_data(cm: &ConfigMap) -> Option<&str> {
    data(cm, OWN_KEY)
}

/// The API status of a refused request.
fn refusal<T: std::fmt::Debug>(res: Result<T, kube::Error>) -> kube::core::Status {
    match res {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected the API server to refuse, got {other:?}"),
    }
}

// ---- the operator's field manager belongs to the operator ---------------------------

/// Protects: no identity but the operator's can write a consumer with the
/// operator's field manager, whether by server-side apply, update (replace or
/// patch) or create; each refusal says why, and the consumer's own data and
/// the operator's document stay as they were.
#[tokio::test(flavor = "multi_thread")]
async fn operator_field_manager_is_refused_to_everyone_else() {
    let env = enforced().await;
    let s = scene(env.cp, "fm", "fm.example").await;
    let api = s.tenant_cms();
    let before = s.cms.get("canary").await.unwrap();
    let claim = PatchParams::apply(FIELD_MANAGER).force();
    // Apply: takes the operator's keys and drops the consumer's own.
    let apply = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "canary"}, "data": {KEY_TEMPO_ENDPOINT: "hostname: evil\n"}});
    let st = refusal(api.patch("canary", &claim, &Patch::Apply(&apply)).await);
    // Update by merge patch and by replace.
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let st2 = refusal(
        api.patch(
            "canary",
            &pp,
            &Patch::Merge(json!({"data": {OWN_KEY: "x"}})),
        )
        .await,
    );
    let mut replaced = before.clone();
    replaced.metadata.managed_fields = None;
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let st3 = refusal(api.replace("canary", &pp, &replaced).await);
    // Create a consumer under the operator's name.
    let st4 = refusal(api.create(&pp, &consumer("born-forged", &[])).await);
    for (how, st) in [
        ("apply", &st),
        ("merge patch", &st2),
        ("replace", &st3),
        ("create", &st4),
    ] {
        assert!(
            st.message.contains("OwnershipForged")
                && st.message.contains("belongs to the operator"),
            "{how}: {}",
            st.message
        );
    }
    let after = s.cms.get("canary").await.unwrap();
    assert_eq!(after.data, before.data, "nothing changed");
    s.canary_served("fm.example").await;
}

/// Protects: the API server's record of ownership cannot be forged: a request
/// that gives `managedFields` an entry of the operator's field manager is
/// refused, and so is labelling a ConfigMap that was given one before it was a
/// consumer (when no rule watched it).
#[tokio::test(flavor = "multi_thread")]
async fn managed_fields_cannot_be_forged() {
    let env = enforced().await;
    let s = scene(env.cp, "mf", "mf.example").await;
    let api = s.tenant_cms();
    let mut forged = s.cms.get("canary").await.unwrap();
    forged.metadata.managed_fields = Some(vec![
        serde_json::from_value(json!({
            "manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": "v1",
            "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:app.conf": {}}},
        }))
        .unwrap(),
    ]);
    let st = refusal(api.replace("canary", &PostParams::default(), &forged).await);
    assert!(st.message.contains("OwnershipForged"), "{}", st.message);

    // Not a consumer yet: nothing stops the claim; becoming one is refused.
    let mut plain = consumer("later", &[]);
    plain.metadata.labels = None;
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    api.create(&pp, &plain).await.unwrap();
    let label = Patch::Merge(json!({"metadata": {"labels": {RELATION_LABEL: "tempo"}}}));
    let st = refusal(api.patch("later", &PatchParams::default(), &label).await);
    assert!(st.message.contains("OwnershipForged"), "{}", st.message);
    s.canary_served("mf.example").await;
}

// ---- no consumer can stall a relation -------------------------------------------------

/// Protects: a bound consumer made immutable keeps its data (it cannot change)
/// and says so (Rejected, ConsumerImmutable); deleting its relation completes
/// at once (only the annotations change), the consumer's own data intact.
#[tokio::test(flavor = "multi_thread")]
async fn immutable_consumer_does_not_stall_deletion() {
    let env = enforced().await;
    let s = scene(env.cp, "imm", "imm.example").await;
    s.bound_consumer("frozen", "imm.example").await;
    let freeze = Patch::Merge(json!({"immutable": true}));
    s.patch_consumer("frozen", &freeze).await;
    let frozen = s
        .wait("frozen", "Rejected ConsumerImmutable", |cm| {
            state(cm) == (Some("Rejected"), Some("ConsumerImmutable"))
        })
        .await;
    assert!(data(&frozen, KEY_TEMPO_ENDPOINT).is_some(), "data kept");
    let started = std::time::Instant::now();
    s.rels
        .delete("tempo", &DeleteParams::default())
        .await
        .unwrap();
    s.wait_relation_gone("the relation to go").await;
    println!("relation gone {:?} after its deletion", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(30));
    let after = s
        .wait("frozen", "RelationNotFound", |cm| {
            state(cm) == (Some("Rejected"), Some("RelationNotFound"))
        })
        .await;
    assert_eq!(own_data(&after), Some(OWN_VALUE));
}

/// Protects: a consumer that cannot be written (it would exceed the API
/// server's 1 MiB) shows it: a Warning Event with ConsumerTooLarge, an entry
/// with that reason in the relation's status (counted as failed), and the
/// relation stays Ready while every other consumer is bound and follows a change.
#[tokio::test(flavor = "multi_thread")]
async fn oversize_consumer_failure_is_visible_and_harms_no_one() {
    let env = enforced().await;
    let s = scene(env.cp, "big", "big-1.example").await;
    // Fits on its own (1 MiB counts keys and values), not with the document.
    let huge = "x".repeat(1_048_300);
    s.add_consumer(&consumer("huge", &[("blob", &huge)])).await;
    s.wait_event("huge", Reason::ConsumerTooLarge).await;
    let rel = s
        .wait_status("lists the oversize consumer", |r| {
            r.status.as_ref().is_some_and(|st| {
                st.consumers.failed == 1
                    && st.consumers.bound == 1
                    && st
                        .rejected
                        .iter()
                        .any(|e| e.name == "huge" && e.reason == "ConsumerTooLarge")
            })
        })
        .await;
    let ready = &rel.status.unwrap().conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Resolved")
    );
    // A fan-out: the canary follows, the oversize one still cannot be written.
    s.move_tempo("big-2.example").await;
    s.canary_served("big-2.example").await;
    let got = s.cms.get("huge").await.unwrap();
    assert_eq!(data(&got, "blob").map(str::len), Some(huge.len()));
    assert_eq!(own_data(&got), Some(OWN_VALUE));
}

// ---- every outcome is visible on the consumer ----------------------------------------

/// Protects: when a relation's backend goes (its Service deleted), its
/// consumers keep their last document, marked Pending with BackendUnavailable
/// and a Warning Event, counted as pending (not bound); when it comes back
/// they are Bound again.
#[tokio::test(flavor = "multi_thread")]
async fn backend_gone_consumers_keep_their_document_marked_pending() {
    let env = enforced().await;
    let s = scene(env.cp, "pend", "pend.example").await;
    let svcs: Api<Service> = Api::namespaced(s.admin.clone(), &s.ns);
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "tempo-svc"},
        "spec": {"ports": [{"name": "otlp-grpc", "port": 4317}, {"name": "otlp-http", "port": 4318}]}}))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    s.rels
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "tracing.relations.dev/v1alpha1", "kind": "TracingRelation",
                "metadata": {"name": "follow"},
                "spec": {"interface": "tracing", "role": "provides",
                         "backend": {"service": {"name": "tempo-svc"}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut c = consumer("app", &[]);
    c.metadata.labels = Some(BTreeMap::from([(RELATION_LABEL.into(), "follow".into())]));
    s.cms.create(&PostParams::default(), &c).await.unwrap();
    let bound = s
        .wait("app", "bound", |cm| state(cm).0 == Some("Bound"))
        .await;
    let reads = || async {
        let text = common::metrics::operator_text(&env.op).await;
        common::metrics::metric_sum(&text, "tracing_relation_operator_consumer_reads_total")
    };
    let reads_before = reads().await;
    svcs.delete("tempo-svc", &DeleteParams::default())
        .await
        .unwrap();
    let pending = s
        .wait("app", "Pending BackendUnavailable", |cm| {
            state(cm) == (Some("Pending"), Some("BackendUnavailable"))
        })
        .await;
    assert_eq!(pending.data, bound.data, "the last document is kept");
    // The cache holds a hash of the document, not its values: the pending
    // write read the consumer whole to keep them.
    assert!(reads().await > reads_before, "the consumer was read whole");
    assert_eq!(
        annotation(&pending, HASH_ANNOTATION),
        annotation(&bound, HASH_ANNOTATION)
    );
    s.wait_event("app", Reason::BackendUnavailable).await;
    let follow: Api<TracingRelation> = s.rels.clone();
    wait_for_some_named("the relation to count it pending", T, || async {
        follow.get("follow").await.ok().filter(|r| {
            r.status
                .as_ref()
                .is_some_and(|st| st.consumers.pending == 1 && st.consumers.bound == 0)
        })
    })
    .await;
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let again = s
        .wait("app", "Bound again", |cm| state(cm).0 == Some("Bound"))
        .await;
    assert_eq!(own_data(&again), Some(OWN_VALUE));
    s.canary_served("pend.example").await;
}

/// Protects: a consumer that moves from one relation to another is told (a
/// Bound Event naming the new relation), and the first relation Event does
/// not claim "0 consumer(s) bound" before anything was written.
#[tokio::test(flavor = "multi_thread")]
async fn moving_between_relations_is_reported() {
    let env = enforced().await;
    let s = scene(env.cp, "move", "move-a.example").await;
    s.add_relation(&relation("other", "move-b.example")).await;
    let relabel = Patch::Merge(json!({"metadata": {"labels": {RELATION_LABEL: "other"}}}));
    s.patch_consumer("canary", &relabel).await;
    let moved = s
        .wait("canary", "bound to other", |cm| {
            annotation(cm, BOUND_TO_ANNOTATION) == Some(&format!("{}/other", s.ns))
                && bound_to_host(cm, "move-b.example")
        })
        .await;
    assert_eq!(own_data(&moved), Some(OWN_VALUE));
    let other = format!("{}/other", s.ns);
    wait_for_some_named("a Bound Event naming the new relation", T, || async {
        s.events("canary", Reason::Bound)
            .await
            .into_iter()
            .find(|e| e.note.as_deref().is_some_and(|n| n.contains(&other)))
    })
    .await;
    let resolved = s.wait_event("tempo", Reason::Resolved).await;
    let note = resolved.note.unwrap_or_default();
    assert!(!note.contains("0 consumer(s) bound"), "{note}");
}

/// Protects: consumer-written text never bloats a relation's status or turns
/// into metric labels: 25 rejected consumers carrying 200 KB forged messages
/// and made-up reasons leave the status small and Ready, and every reason
/// label on /metrics is one of the operator's own.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_text_stays_out_of_status_and_metrics() {
    let env = enforced().await;
    let s = scene(env.cp, "text", "text.example").await;
    let message = "m".repeat(200 * 1024);
    for i in 0..25 {
        let mut c = consumer(
            &format!("loud-{i:02}"),
            &[(KEY_TEMPO_ENDPOINT, "hostname: mine\n")],
        );
        c.metadata.annotations = Some(BTreeMap::from([
            (MESSAGE_ANNOTATION.into(), message.clone()),
            (
                REASON_ANNOTATION.into(),
                format!("Made-up reason {i} \u{1F980}"),
            ),
            (STATE_ANNOTATION.into(), "Rejected".into()),
        ]));
        s.cms.create(&PostParams::default(), &c).await.unwrap();
    }
    let rel = s
        .wait_status("25 rejected", |r| {
            r.status
                .as_ref()
                .is_some_and(|st| st.consumers.rejected == 25 && st.consumers.bound == 1)
        })
        .await;
    let st = rel.status.unwrap();
    let size = serde_json::to_string(&st).unwrap().len();
    println!("status of a relation with 25 hostile consumers: {size} bytes");
    assert!(size < 64 * 1024, "status is {size} bytes");
    assert!(st.rejected.iter().all(|e| e.reason == "KeyConflict"));
    assert_eq!(st.conditions[0].status, "True");
    let (_, metrics) = env.op.http_get("/metrics").await.unwrap();
    for line in metrics.lines().filter(|l| l.contains("reason=\"")) {
        let value = line
            .split("reason=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            value.is_empty() || Reason::parse(value).is_some(),
            "a metric label value that is not one of the operator's reasons: {line}"
        );
    }
    for i in [0, 24] {
        let got = s.cms.get(&format!("loud-{i:02}")).await.unwrap();
        assert_eq!(data(&got, KEY_TEMPO_ENDPOINT), Some("hostname: mine\n"));
        assert_eq!(state(&got), (Some("Rejected"), Some("KeyConflict")));
    }
    s.canary_served("text.example").await;
}

// ---- admission bypassed: the operator's own defences --------------------------------

static BYPASSED: OnceCell<(ControlPlane, Operator)> = OnceCell::const_new();

/// A private control plane whose policy bindings are deleted, and its operator.
async fn bypassed() -> &'static (ControlPlane, Operator) {
    BYPASSED
        .get_or_init(|| async {
            let cp = ControlPlane::start(ControlPlaneOptions::default());
            cp.apply_crds().await;
            let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(cp.admin_client().await);
            for b in bindings.list(&ListParams::default()).await.unwrap() {
                let name = b.metadata.name.unwrap();
                bindings
                    .delete(&name, &DeleteParams::default())
                    .await
                    .unwrap();
            }
            let op = cp.operator();
            operator_ready(&op, T).await;
            (cp, op)
        })
        .await
}

/// On the bypassed control plane, a scene `prefix` (relation at
/// `<prefix>-1.example`) whose consumer `name` is bound and whose record the
/// tenant then forges by applying `claim` through the operator's field manager;
/// the relation is then moved to `<prefix>-2.example`, a change the operator
/// would write to `name`.
async fn forged_scene(prefix: &str, name: &str, claim: &serde_json::Value) -> Scene {
    let (cp, _op) = bypassed().await;
    let (before, after) = (format!("{prefix}-1.example"), format!("{prefix}-2.example"));
    let s = scene(cp, prefix, &before).await;
    s.bound_consumer(name, &before).await;
    s.tenant_applies_as_operator(name, claim).await;
    s.move_tempo(&after).await;
    s
}

/// Protects: with admission bypassed, a record forged through the operator's
/// field manager (its Apply entry claiming the consumer's own key) costs no
/// data: the operator echoes what it never writes, so neither a rewrite nor
/// the consumer leaving deletes the consumer's key.
#[tokio::test(flavor = "multi_thread")]
async fn forged_apply_entry_costs_no_data() {
    // The tenant claims the operator's field manager for its own key.
    let claim = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "victim"}, "data": {OWN_KEY: OWN_VALUE}});
    let s = forged_scene("forge", "victim", &claim).await;
    let rewritten = s
        .wait("victim", "rewritten", |cm| {
            bound_to_host(cm, "forge-2.example")
        })
        .await;
    assert_eq!(own_data(&rewritten), Some(OWN_VALUE), "after the rewrite");
    let unlabel = Patch::Merge(json!({"metadata": {"labels": {RELATION_LABEL: null}}}));
    s.patch_consumer("victim", &unlabel).await;
    let left = s
        .wait("victim", "cleaned", |cm| {
            annotation(cm, STATE_ANNOTATION).is_none()
        })
        .await;
    assert_eq!(own_data(&left), Some(OWN_VALUE), "after leaving");
    assert_eq!(data(&left, KEY_TEMPO_ENDPOINT), None);
    s.canary_served("forge-2.example").await;
}

/// Protects: a consumer whose forged record cannot be written through (it
/// claims a finalizer for the operator) is never written, says so (Warning
/// Event OwnershipForged), and cannot keep its relation from being deleted:
/// the finalizer gives up on it after its tries, with a CleanupAbandoned
/// Warning on both objects.
#[tokio::test(flavor = "multi_thread")]
async fn unwritable_consumer_cannot_stall_a_relation() {
    let claim = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "stuck", "finalizers": ["example.com/hold"]}});
    // After the move, a change it would need: the operator refuses to write
    // through the record.
    let s = forged_scene("stall", "stuck", &claim).await;
    s.wait_event("stuck", Reason::OwnershipForged).await;
    s.canary_served("stall-2.example").await;
    let started = std::time::Instant::now();
    s.rels
        .delete("tempo", &DeleteParams::default())
        .await
        .unwrap();
    s.wait_relation_gone("the relation to go despite the stuck consumer")
        .await;
    println!("relation gone {:?} after its deletion", started.elapsed());
    s.wait_event("stuck", Reason::CleanupAbandoned).await;
    s.wait_event("tempo", Reason::CleanupAbandoned).await;
    let stuck = s.cms.get("stuck").await.unwrap();
    assert_eq!(own_data(&stuck), Some(OWN_VALUE));
    // Let the namespace go.
    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    s.patch_consumer("stuck", &release).await;
}

/// Protects: /readyz says not ready while a watch is refused (the CRD deleted
/// under a running operator) and ready again once it can list.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_while_the_crd_is_missing() {
    let cp = ControlPlane::start(ControlPlaneOptions::default());
    cp.apply_crds().await;
    let op = cp.operator();
    operator_ready(&op, T).await;
    let crds: Api<CustomResourceDefinition> = Api::all(cp.admin_client().await);
    crds.delete(CRD_NAME, &DeleteParams::default())
        .await
        .unwrap();
    wait_for_some_named("/readyz 503 without the CRD", T, || async {
        matches!(op.http_get("/readyz").await, Ok((503, _))).then_some(())
    })
    .await;
    cp.apply_crds().await;
    operator_ready(&op, T).await;
}

/// Protects: the CRD refuses what the controller would refuse: a hostname
/// with a label of 64 characters never gets stored (a label of 63 does).
#[tokio::test(flavor = "multi_thread")]
async fn crd_refuses_a_hostname_label_the_controller_refuses() {
    let env = enforced().await;
    let ns = env.cp.namespace("dns").await;
    let rels: Api<TracingRelation> = Api::namespaced(env.cp.admin_client().await, &ns);
    let long = format!("{}.example", "a".repeat(64));
    let st = refusal(
        rels.create(&PostParams::default(), &relation("too-long", &long))
            .await,
    );
    assert_eq!(st.code, 422, "{}", st.message);
    assert!(st.message.contains("at most 63"), "{}", st.message);
    let ok = format!("{}.example", "a".repeat(63));
    rels.create(&PostParams::default(), &relation("longest", &ok))
        .await
        .expect("a 63-character label is a DNS name");
}
