//! Consent from both sides: a consumer binds only when it labelled itself AND the
//! relation's `spec.consumers.namespaceSelector` admits its namespace.
//!
//! * No selector: only the relation's own namespace binds.
//! * A selector admits namespaces by label (matchLabels, matchExpressions, `{}`);
//!   with a selector, the relation's own namespace is admitted only if it matches.
//! * Relabelling a namespace in binds its consumers, relabelling it out unbinds them
//!   (NamespaceNotAllowed, the operator's keys removed, the consumer's own kept),
//!   with no other change; so does editing the selector.
//! * Nobody can get the operator to write into a ConfigMap they could not label
//!   themselves: a ServiceAccount without RBAC on ConfigMaps in namespace X gets 403
//!   labelling one there, and its own TracingRelation (in its own namespace) with a
//!   selector matching X causes no write to X's ConfigMaps: not to unlabelled ones,
//!   not to consumers of X's own relation of the same name.
//!
//! One control plane (this binary's shared one) with `crds/` applied as shipped,
//! one operator for the whole file; every test in fresh namespaces.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::env::shared_operator;
use common::fixtures::{
    OWN_KEY, annotation, assert_forbidden, configmap, configmaps_by_name, data, data_of,
    endpoint_relation, map, match_labels,
};
use common::rbac::{grant_role, rule};
use common::{OperatorEnv, TestNamespace, wait_for_some_named, wait_object};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ManagedFieldsEntry,
};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, FIELD_MANAGER, MESSAGE_ANNOTATION, REASON_ANNOTATION, RELATION_LABEL,
    RELATION_NAMESPACE_ANNOTATION, STATE_ANNOTATION, STATE_BOUND, STATE_REJECTED,
};
use tracing_relation_operator::core::document::{DATA_KEYS, KEY_TEMPO_ENDPOINT, default_keys};
use tracing_relation_operator::core::reason::Reason;

const TIMEOUT: Duration = Duration::from_secs(60);
const OWN_VALUE: &str = "exporter = otlp\n";

// ---------------------------------------------------------------------------
// Environment.

async fn env() -> &'static OperatorEnv {
    shared_operator(TIMEOUT, |_| async {}).await
}

// ---------------------------------------------------------------------------
// Helpers.

/// The start of a consent test: the admin client, a marker (a label value no
/// other test uses) and the relation's namespace `<prefix>-home`.
async fn start(prefix: &str) -> (kube::Client, String, TestNamespace) {
    let env = env().await;
    let marker = format!("m{:08x}", rand::random::<u32>());
    let home = env.cp.namespace(&format!("{prefix}-home")).await;
    (env.cp.admin_client().await, marker, home)
}

/// A fresh namespace `<prefix>-…` labelled `key: value`.
async fn labelled_namespace(prefix: &str, key: &str, value: &str) -> TestNamespace {
    let cp = env().await.cp;
    cp.namespace_with_labels(prefix, &[(key, value)]).await
}

/// A consumer of relation `rel_ns/tempo`, holding a key of its own.
fn consumer(name: &str, rel_ns: &str) -> ConfigMap {
    configmap(
        name,
        &[(RELATION_LABEL, "tempo")],
        &[(RELATION_NAMESPACE_ANNOTATION, rel_ns)],
        &[(OWN_KEY, OWN_VALUE)],
    )
}

/// Creates relation `tempo` in `ns` with an endpoint at `hostname` and, when
/// given, a namespaceSelector.
async fn create_relation(
    client: &kube::Client,
    ns: &str,
    hostname: &str,
    selector: Option<LabelSelector>,
) -> Api<TracingRelation> {
    let rels = Api::<TracingRelation>::namespaced(client.clone(), ns);
    rels.create(
        &PostParams::default(),
        &endpoint_relation("tempo", hostname, selector),
    )
    .await
    .unwrap();
    rels
}

/// Creates `cm` through `api`.
async fn create_cm(api: &Api<ConfigMap>, cm: &ConfigMap) -> ConfigMap {
    api.create(&PostParams::default(), cm).await.unwrap()
}

/// Waits until the consumer is bound to a document for `hostname`.
async fn wait_bound_to(api: &Api<ConfigMap>, name: &str, hostname: &str) -> ConfigMap {
    let want = format!("hostname: {hostname}\n");
    let cm = wait_object(api, name, format!("bound to {hostname}"), TIMEOUT, |cm| {
        annotation(cm, STATE_ANNOTATION) == Some(STATE_BOUND)
            && data(cm, KEY_TEMPO_ENDPOINT).is_some_and(|t| t.starts_with(&want))
    })
    .await;
    assert_eq!(data(&cm, OWN_KEY), Some(OWN_VALUE), "{name}: own key kept");
    cm
}

/// Waits until the consumer is rejected as NamespaceNotAllowed, and checks that it
/// holds no key of the operator and still holds its own.
async fn wait_not_allowed(api: &Api<ConfigMap>, name: &str, ns: &str) -> ConfigMap {
    let cm = wait_object(api, name, "NamespaceNotAllowed", TIMEOUT, |cm| {
        annotation(cm, STATE_ANNOTATION) == Some(STATE_REJECTED)
            && annotation(cm, REASON_ANNOTATION) == Some(Reason::NamespaceNotAllowed.as_str())
    })
    .await;
    let msg = annotation(&cm, MESSAGE_ANNOTATION).unwrap_or_default();
    assert!(
        msg.contains(&format!("namespace '{ns}'")) || msg.contains("invalid namespaceSelector"),
        "{name}: message names the namespace (or the unreadable selector): {msg:?}"
    );
    assert!(
        msg.contains("namespaceSelector"),
        "{name}: message names the selector: {msg:?}"
    );
    let d = data_of(&cm);
    assert_eq!(
        d,
        map(&[(OWN_KEY, OWN_VALUE)]),
        "{name}: exactly its own data"
    );
    for k in DATA_KEYS {
        assert!(!d.contains_key(k), "{name}: holds operator key {k}");
    }
    assert_eq!(annotation(&cm, BOUND_TO_ANNOTATION), None);
    cm
}

/// Creates consumer `c` of relation `home/tempo` in namespaces `admitted` and
/// `refused`; waits until the first is bound to `hostname` and the second is
/// NamespaceNotAllowed. Returns their ConfigMap APIs.
async fn admitted_and_refused(
    client: &kube::Client,
    home: &str,
    admitted: &str,
    refused: &str,
    hostname: &str,
) -> (Api<ConfigMap>, Api<ConfigMap>) {
    let yes: Api<ConfigMap> = Api::namespaced(client.clone(), admitted);
    let no: Api<ConfigMap> = Api::namespaced(client.clone(), refused);
    create_cm(&yes, &consumer("c", home)).await;
    create_cm(&no, &consumer("c", home)).await;
    wait_bound_to(&yes, "c", hostname).await;
    wait_not_allowed(&no, "c", refused).await;
    (yes, no)
}

async fn set_namespace_labels(client: &kube::Client, ns: &str, labels: serde_json::Value) {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .expect("relabel namespace");
}

/// managedFields entries of everyone but the operator.
fn others_entries(cm: &ConfigMap) -> Vec<ManagedFieldsEntry> {
    cm.metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.manager.as_deref() != Some(FIELD_MANAGER))
        .collect()
}

// ---------------------------------------------------------------------------
// Tests.

/// Without a namespaceSelector, a consumer in the relation's namespace binds; one in
/// another namespace naming the same relation is NamespaceNotAllowed.
#[tokio::test(flavor = "multi_thread")]
async fn no_selector_admits_only_the_relations_namespace() {
    let (client, _, home) = start("consent").await;
    let away = env().await.cp.namespace("consent-away").await;
    create_relation(&client, &home, "home.example", None).await;
    admitted_and_refused(&client, &home, &home, &away, "home.example").await;
}

/// A matchLabels selector admits exactly the namespaces carrying the label; the
/// relation's own unlabelled namespace is then not admitted either.
#[tokio::test(flavor = "multi_thread")]
async fn selector_admits_namespaces_by_label() {
    let (client, marker, home) = start("consent-sel").await;
    let labelled = labelled_namespace("consent-sel-in", "consent-test", &marker).await;
    let other = labelled_namespace("consent-sel-out", "consent-test", "someone-else").await;
    let selector = match_labels(&[("consent-test", &marker)]);
    let rels = create_relation(&client, &home, "sel.example", Some(selector)).await;
    for ns in [&home, &labelled, &other] {
        create_cm(&Api::namespaced(client.clone(), ns), &consumer("c", &home)).await;
    }
    wait_bound_to(
        &Api::namespaced(client.clone(), &labelled),
        "c",
        "sel.example",
    )
    .await;
    wait_not_allowed(&Api::namespaced(client.clone(), &other), "c", &other).await;
    wait_not_allowed(&Api::namespaced(client.clone(), &home), "c", &home).await;
    let rel = wait_object(
        &rels,
        "tempo",
        "status: 1 bound, 2 rejected",
        TIMEOUT,
        |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.consumers.bound == 1 && s.consumers.rejected == 2)
        },
    )
    .await;
    let rejected = rel.status.unwrap().rejected;
    assert!(
        rejected
            .iter()
            .all(|r| r.reason == Reason::NamespaceNotAllowed.as_str()),
        "{rejected:?}"
    );
}

/// matchExpressions and the empty selector `{}` (every namespace) work too.
#[tokio::test(flavor = "multi_thread")]
async fn match_expressions_and_the_empty_selector() {
    let (client, marker, home) = start("consent-expr").await;
    let team_a = labelled_namespace("consent-expr-a", "consent-expr", &format!("{marker}-a")).await;
    let team_b = labelled_namespace("consent-expr-b", "consent-expr", &format!("{marker}-b")).await;
    let expr = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "consent-expr".into(),
            operator: "In".into(),
            values: Some(vec![format!("{marker}-a")]),
        }]),
        ..LabelSelector::default()
    };
    let rels = create_relation(&client, &home, "expr.example", Some(expr)).await;
    let (a, b) = admitted_and_refused(&client, &home, &team_a, &team_b, "expr.example").await;
    // Editing the selector to `{}` admits every namespace, with no change to the consumers.
    let patch = Patch::Merge(
        json!({"spec": {"consumers": {"namespaceSelector": {"matchExpressions": null}}}}),
    );
    rels.patch("tempo", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let r = rels.get("tempo").await.unwrap();
    assert_eq!(
        r.spec.consumers.and_then(|c| c.namespace_selector),
        Some(LabelSelector::default()),
        "the selector is now {{}}"
    );
    wait_bound_to(&b, "c", "expr.example").await;
    wait_bound_to(&a, "c", "expr.example").await;
}

/// Relabelling a namespace in binds its consumer; relabelling it out unbinds it
/// (NamespaceNotAllowed, the operator's keys removed, the own key kept). Nothing
/// but the namespace label changes: the consumer is written by the operator only.
#[tokio::test(flavor = "multi_thread")]
async fn relabelling_a_namespace_binds_and_unbinds_its_consumers() {
    let (client, marker, home) = start("consent-relabel").await;
    let ns = env().await.cp.namespace("consent-relabel").await;
    let selector = match_labels(&[("consent-relabel", &marker)]);
    create_relation(&client, &home, "relabel.example", Some(selector)).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let created = create_cm(&api, &consumer("c", &home)).await;
    let own_entries = others_entries(&created);
    wait_not_allowed(&api, "c", &ns).await;

    set_namespace_labels(&client, &ns, json!({"consent-relabel": marker})).await;
    let bound = wait_bound_to(&api, "c", "relabel.example").await;
    for k in default_keys() {
        assert!(data(&bound, k).is_some(), "bound consumer lacks {k}");
    }
    assert_eq!(
        annotation(&bound, BOUND_TO_ANNOTATION),
        Some(format!("{home}/tempo").as_str())
    );

    set_namespace_labels(&client, &ns, json!({"consent-relabel": null})).await;
    let out = wait_not_allowed(&api, "c", &ns).await;
    assert_eq!(
        others_entries(&out),
        own_entries,
        "only the operator wrote to the consumer"
    );

    // And in again.
    set_namespace_labels(&client, &ns, json!({"consent-relabel": marker})).await;
    let again = wait_bound_to(&api, "c", "relabel.example").await;
    assert_eq!(again.data, bound.data, "the same document again");
}

/// A ServiceAccount with full rights on TracingRelations and ConfigMaps in its own
/// namespace, and none in namespace X, cannot get the operator to write into X.
#[tokio::test(flavor = "multi_thread")]
async fn nobody_gets_the_operator_to_write_where_they_cannot_label() {
    let (admin, _, victim) = start("consent-victim").await;
    let env = env().await;
    let attacker_ns = env.cp.namespace("consent-intruder").await;
    let intruder = intruder_with_rights_in_its_namespace_only(env, &admin, &attacker_ns).await;
    let victim_cms = victim_namespace_with_its_own_consumer(&admin, &victim, &attacker_ns).await;
    let before = configmaps_by_name(&victim_cms).await;

    the_intruder_cannot_label_or_create_in_x(&intruder, &victim, &attacker_ns).await;
    let evil_rels = the_intruders_relations_admit_x(&admin, &intruder, &victim, &attacker_ns).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    nothing_in_x_changed(&admin, &victim_cms, &victim, &before).await;
    the_intruders_relations_count_nobody_in_x(&evil_rels, &victim).await;
    assert!(env.op.logs().contains("consumer bound"));
}

/// The intruder: ServiceAccount `intruder` with every right on TracingRelations
/// and ConfigMaps in its own namespace and none elsewhere; returns its client.
async fn intruder_with_rights_in_its_namespace_only(
    env: &OperatorEnv,
    admin: &kube::Client,
    attacker_ns: &TestNamespace,
) -> kube::Client {
    let rules = vec![
        rule(&["tracing.relations.dev"], &["tracingrelations"], &["*"]),
        rule(&[""], &["configmaps"], &["*"]),
    ];
    grant_role(
        admin,
        attacker_ns,
        "own-namespace",
        rules,
        (attacker_ns, "intruder"),
    )
    .await;
    env.cp.impersonating_client(attacker_ns, "intruder").await
}

/// The victim namespace X: its own relation `tempo`, a consumer of it (waited
/// for until bound), an unlabelled ConfigMap that even names the intruder's
/// namespace, a plain one. Returns the ConfigMap API of X.
async fn victim_namespace_with_its_own_consumer(
    admin: &kube::Client,
    victim: &TestNamespace,
    attacker_ns: &TestNamespace,
) -> Api<ConfigMap> {
    create_relation(admin, victim, "victim.example", None).await;
    let victim_cms: Api<ConfigMap> = Api::namespaced(admin.clone(), victim);
    let own = [(OWN_KEY, OWN_VALUE)];
    let naming_intruder = [(RELATION_NAMESPACE_ANNOTATION, attacker_ns.name())];
    for cm in [
        configmap("own-consumer", &[(RELATION_LABEL, "tempo")], &[], &own),
        configmap("unlabelled", &[], &naming_intruder, &own),
        configmap("plain", &[("app", "shop")], &[], &own),
    ] {
        create_cm(&victim_cms, &cm).await;
    }
    wait_bound_to(&victim_cms, "own-consumer", "victim.example").await;
    victim_cms
}

/// Step 1: the intruder cannot label (or create, or write) a ConfigMap in X, nor put
/// a relation there.
async fn the_intruder_cannot_label_or_create_in_x(
    intruder: &kube::Client,
    victim: &TestNamespace,
    attacker_ns: &TestNamespace,
) {
    let as_intruder: Api<ConfigMap> = Api::namespaced(intruder.clone(), victim);
    let label = Patch::Merge(json!({"metadata": {"labels": {RELATION_LABEL: "tempo"},
        "annotations": {RELATION_NAMESPACE_ANNOTATION: attacker_ns.name()}}}));
    for name in ["unlabelled", "plain"] {
        assert_forbidden(
            as_intruder
                .patch(name, &PatchParams::default(), &label)
                .await,
            "label a ConfigMap in X",
        );
    }
    assert_forbidden(
        as_intruder
            .create(&PostParams::default(), &consumer("planted", attacker_ns))
            .await,
        "create a consumer in X",
    );
    assert_forbidden(
        Api::<TracingRelation>::namespaced(intruder.clone(), victim)
            .create(
                &PostParams::default(),
                &endpoint_relation("evil", "evil.example", Some(LabelSelector::default())),
            )
            .await,
        "create a TracingRelation in X",
    );
}

/// Step 2: its own relations, in its own namespace, admitting X: one admits every
/// namespace and shares the name of X's relation, one names X. A consumer of its
/// own binds (the operator handles its relations); both relations get reconciled.
async fn the_intruders_relations_admit_x(
    admin: &kube::Client,
    intruder: &kube::Client,
    victim: &TestNamespace,
    attacker_ns: &TestNamespace,
) -> Api<TracingRelation> {
    let evil_rels: Api<TracingRelation> = Api::namespaced(intruder.clone(), attacker_ns);
    evil_rels
        .create(
            &PostParams::default(),
            &endpoint_relation("tempo", "evil.example", Some(LabelSelector::default())),
        )
        .await
        .expect("the intruder may create relations in its own namespace");
    let aimed = match_labels(&[("kubernetes.io/metadata.name", victim.name())]);
    evil_rels
        .create(
            &PostParams::default(),
            &endpoint_relation("aimed", "evil.example", Some(aimed)),
        )
        .await
        .unwrap();
    // A ConfigMap of its own that consents proves the operator handles its relation.
    let own_cms: Api<ConfigMap> = Api::namespaced(intruder.clone(), attacker_ns);
    create_cm(&own_cms, &consumer("mine", attacker_ns)).await;
    wait_bound_to(
        &Api::namespaced(admin.clone(), attacker_ns),
        "mine",
        "evil.example",
    )
    .await;
    for name in ["tempo", "aimed"] {
        wait_for_some_named(
            format!("intruder relation {name} reconciled"),
            TIMEOUT,
            || {
                let api = evil_rels.clone();
                async move {
                    api.get(name).await.ok().filter(|r| {
                        r.status
                            .as_ref()
                            .is_some_and(|s| s.observed_generation == r.metadata.generation)
                    })
                }
            },
        )
        .await;
    }
    evil_rels
}

/// Step 3: nothing in X changed: same resourceVersions, no field of the operator
/// beyond what it wrote for X's own relation, no Event about X's ConfigMaps but
/// the one binding of X's consumer.
async fn nothing_in_x_changed(
    admin: &kube::Client,
    victim_cms: &Api<ConfigMap>,
    victim: &TestNamespace,
    before: &BTreeMap<String, ConfigMap>,
) {
    let after = victim_cms.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(after.len(), before.len(), "no ConfigMap appeared in X");
    for cm in &after {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let old = &before[&name];
        assert_eq!(
            cm.metadata.resource_version, old.metadata.resource_version,
            "{name} in X was written"
        );
        assert_eq!(cm.data, old.data, "{name}");
        assert_eq!(cm.metadata.annotations, old.metadata.annotations, "{name}");
    }
    let find = |name: &str| {
        after
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap()
    };
    for name in ["unlabelled", "plain"] {
        let cm = find(name);
        let managers: Vec<_> = cm
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect();
        assert!(
            !managers.iter().any(|m| m == FIELD_MANAGER),
            "{name}: the operator manages fields: {managers:?}"
        );
        assert_eq!(annotation(cm, STATE_ANNOTATION), None, "{name}");
    }
    let own = find("own-consumer");
    assert_eq!(
        annotation(own, BOUND_TO_ANNOTATION),
        Some(format!("{victim}/tempo").as_str())
    );
    assert!(data(own, KEY_TEMPO_ENDPOINT).is_some_and(|t| t.contains("victim.example")));
    let events = Api::<Event>::namespaced(admin.clone(), victim)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let about: Vec<(Option<String>, Option<String>)> = events
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ConfigMap"))
        .map(|e| {
            (
                e.regarding.as_ref().and_then(|r| r.name.clone()),
                e.reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        about,
        vec![(Some("own-consumer".to_string()), Some("Bound".to_string()))],
        "Events about X's ConfigMaps"
    );
}

/// The intruder's relations count nobody in X; `tempo` counts only its own consumer.
async fn the_intruders_relations_count_nobody_in_x(
    evil_rels: &Api<TracingRelation>,
    victim: &TestNamespace,
) {
    for name in ["tempo", "aimed"] {
        let st = evil_rels.get(name).await.unwrap().status.unwrap();
        let in_x = st
            .rejected
            .iter()
            .filter(|r| r.namespace == victim.name())
            .count();
        assert_eq!(in_x, 0, "{name}: {st:?}");
    }
    let st = evil_rels.get("tempo").await.unwrap().status.unwrap();
    assert_eq!(
        (st.consumers.bound, st.consumers.rejected),
        (1, 0),
        "only its own consumer"
    );
}
