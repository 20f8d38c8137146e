//! The Helm chart (`charts/tracing-relation-operator`) on a real control plane
//! (etcd + kube-apiserver with RBAC): lint and render, install, upgrade, the
//! operator running with exactly the chart's ServiceAccount and RBAC, what that
//! identity is refused, what a missing permission looks like, the namespaced
//! mode, and what `helm uninstall` leaves behind.
//!
//! Pods never run (there is no kubelet), so the operator runs as a local
//! process with the environment the chart's Deployment sets (read back from the
//! installed Deployment) and a kubeconfig that impersonates the chart's
//! ServiceAccount. Helm installs cluster-scoped objects (CRD, admission policy,
//! ClusterRole), so each test that installs the chart starts a control plane of
//! its own; nothing here uses `ControlPlane::shared()`.
//!
//! `hack/chart-check.sh` makes the deep assertions on rendered templates; the
//! rendering test here only proves that lint and template succeed in the test
//! command.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fixtures::{OWN_KEY, configmap, data_of, endpoint_relation, merge_patch};
use common::operator::strip_ansi;
use common::process::run_ok;
use common::{CRD_NAME, ControlPlane, ControlPlaneOptions, Operator};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing_relation_operator::api::TracingRelation;
use tracing_relation_operator::core::contract::{
    BOUND_TO_ANNOTATION, FINALIZER, HASH_ANNOTATION, REASON_ANNOTATION, RELATION_LABEL,
    STATE_ANNOTATION, STATE_BOUND,
};
use tracing_relation_operator::core::document::{
    DATA_KEYS, KEY_OTLP_GRPC_ENDPOINT, KEY_TEMPO_ENDPOINT, default_keys,
};
use tracing_relation_operator::core::rollout::{ROLLOUT_LABEL, TEMPLATE_HASH_ANNOTATION};

// ---- the chart, spelled out ------------------------------------------------------

const CHART: &str = "charts/tracing-relation-operator";
const RELEASE: &str = "tro";
/// `tro.fullname` for release `tro`: the release name does not contain the chart
/// name, so it is `<release>-<chart>`. Also the ServiceAccount, ClusterRole,
/// Role and default Lease name.
const FULLNAME: &str = "tro-tracing-relation-operator";
const VAP_NAME: &str = "tracing-relation-consumers.tracing.relations.dev";

/// Generous: two cores, several control planes and builds of other engineers.
const T: Duration = Duration::from_secs(120);

// ---- helm ---------------------------------------------------------------------------

fn chart() -> String {
    common::repo_dir().join(CHART).display().to_string()
}

/// `helm <args>` against `cp` (admin kubeconfig, private helm homes).
fn helm(cp: &ControlPlane, args: &[&str]) -> String {
    let mut cmd = cp.helm_command();
    cmd.args(args);
    run_ok(cmd, &format!("helm {}", args.join(" ")))
}

/// `helm <verb> tro <chart> -n <release_ns> --set image.tag=dev <extra> --wait=false`
/// (`verb`: install or upgrade).
fn helm_release(cp: &ControlPlane, verb: &str, release_ns: &str, extra: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        verb,
        RELEASE,
        &chart,
        "-n",
        release_ns,
        "--set",
        "image.tag=dev",
    ];
    args.extend_from_slice(extra);
    args.push("--wait=false");
    helm(cp, &args)
}

/// Every object of a multi-document YAML stream (helm template output).
fn parse_docs(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|doc| {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("helm rendered invalid YAML: {e}\n{yaml}"));
            (!v.is_null()).then_some(v)
        })
        .collect()
}

fn kinds(docs: &[serde_json::Value]) -> Vec<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

// ---- objects --------------------------------------------------------------------

async fn create_relation(client: &Client, ns: &str, name: &str, hostname: &str) {
    Api::<TracingRelation>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &endpoint_relation(name, hostname, None),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot create TracingRelation {ns}/{name}: {e}"));
}

/// A consumer ConfigMap of relation `relation` (same namespace), with a data key
/// of its own.
async fn create_consumer(client: &Client, ns: &str, name: &str, relation: &str) {
    let cm = configmap(
        name,
        &[(RELATION_LABEL, relation)],
        &[],
        &[(OWN_KEY, "never touched")],
    );
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap_or_else(|e| panic!("cannot create consumer {ns}/{name}: {e}"));
}

/// Waits until consumer `ns/name` is Bound with a document whose endpoints name
/// `hostname`; returns it.
async fn wait_bound(client: &Client, ns: &str, name: &str, hostname: &str) -> ConfigMap {
    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    common::wait_for_some_named(
        format!("consumer {ns}/{name} to be Bound with hostname {hostname}"),
        T,
        || {
            let api = api.clone();
            async move {
                let cm = api.get_opt(name).await.ok().flatten()?;
                let bound =
                    cm.annotations().get(STATE_ANNOTATION).map(String::as_str) == Some(STATE_BOUND);
                let data = data_of(&cm);
                let host_ok = data
                    .get(KEY_TEMPO_ENDPOINT)
                    .is_some_and(|v| v.contains(hostname))
                    && data
                        .get(KEY_OTLP_GRPC_ENDPOINT)
                        .is_some_and(|v| v.contains(hostname));
                (bound && host_ok).then_some(cm)
            }
        },
    )
    .await
}

/// The Ready condition of a relation: (status, reason, message).
async fn ready_condition(
    client: &Client,
    ns: &str,
    name: &str,
) -> Option<(String, String, String)> {
    let rel = Api::<TracingRelation>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    let c = rel
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

/// Waits until the relation's Ready condition satisfies `pred`; returns it.
async fn wait_ready_condition(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&(String, String, String)) -> bool,
) -> (String, String, String) {
    let pred = &pred;
    common::wait_for_some_named(
        format!("TracingRelation {ns}/{name}: {what}"),
        T,
        || async move { ready_condition(client, ns, name).await.filter(|c| pred(c)) },
    )
    .await
}

/// Asserts a request was refused with 403; returns the API server's message.
fn expect_forbidden<V>(what: &str, res: Result<V, kube::Error>) -> String {
    match res {
        Err(kube::Error::Api(s)) if s.code == 403 => {
            println!("refused as expected: {what}: {}", s.message);
            s.message
        }
        Err(e) => panic!("{what}: expected 403 Forbidden, got error {e}"),
        Ok(_) => panic!("{what}: expected 403 Forbidden, but the request was allowed"),
    }
}

/// Asks the API server (SelfSubjectAccessReview, as `client`) whether `verb`
/// on `group/resource` (`resource/subresource` allowed) in `namespace`
/// (None: cluster-wide) is allowed.
async fn can_i(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.split('/').next().unwrap_or(resource).to_owned()),
                subresource: resource.split_once('/').map(|(_, sub)| sub.to_owned()),
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SelfSubjectAccessReview {verb} {group}/{resource}: {e}"))
        .status
        .is_some_and(|s| s.allowed)
}

/// Waits until the authorizer's answer for the SA matches `allowed` (RBAC
/// changes reach the authorizer through an informer, a moment later).
async fn wait_can_i(
    sa: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    allowed: bool,
) {
    common::wait_for_named(
        format!(
            "the SA to be {} {verb} {group}/{resource} in {namespace:?}",
            if allowed { "allowed" } else { "refused" }
        ),
        T,
        || async move { can_i(sa, verb, group, resource, namespace).await == allowed },
    )
    .await;
}

/// Replaces the ClusterRole's rules with `edit(rules)` (as admin); returns the
/// original object.
async fn edit_cluster_role(
    client: &Client,
    edit: impl FnOnce(&mut Vec<PolicyRule>),
) -> ClusterRole {
    let api = Api::<ClusterRole>::all(client.clone());
    let original = api.get(FULLNAME).await.expect("the chart's ClusterRole");
    let mut changed = original.clone();
    edit(changed.rules.get_or_insert_with(Vec::new));
    api.replace(FULLNAME, &PostParams::default(), &changed)
        .await
        .expect("replace the ClusterRole");
    original
}

/// Puts the ClusterRole's original rules back.
async fn restore_cluster_role(client: &Client, original: &ClusterRole) {
    let api = Api::<ClusterRole>::all(client.clone());
    let mut current = api.get(FULLNAME).await.expect("the chart's ClusterRole");
    current.rules = original.rules.clone();
    api.replace(FULLNAME, &PostParams::default(), &current)
        .await
        .expect("restore the ClusterRole");
}

// ---- the operator as the chart's ServiceAccount ---------------------------------

/// The containers of the chart's Deployment in `ns`, read from the cluster.
async fn chart_containers(client: &Client, ns: &str) -> Vec<k8s_openapi::api::core::v1::Container> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(FULLNAME)
        .await
        .expect("the chart's Deployment")
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers)
        .unwrap_or_default()
}

/// The env of the chart's Deployment's container, read from the cluster:
/// name -> literal value (None for `valueFrom`).
async fn deployment_env(client: &Client, ns: &str) -> BTreeMap<String, Option<String>> {
    let container = chart_containers(client, ns)
        .await
        .into_iter()
        .find(|c| c.name == "operator")
        .expect("the Deployment has an `operator` container");
    container
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect()
}

/// The operator command with the chart's Deployment env and the chart's
/// ServiceAccount identity. Only two values differ from a pod: METRICS_ADDR
/// stays the harness's free loopback port (several processes share this host),
/// and POD_NAME (a fieldRef in the pod) is `pod_name`.
fn operator_as_chart_sa(
    cp: &ControlPlane,
    release_ns: &str,
    env: &BTreeMap<String, Option<String>>,
    pod_name: &str,
) -> Command {
    let mut cmd = cp.operator_command();
    cmd.env_remove("WATCH_NAMESPACES");
    cmd.env(
        "KUBECONFIG",
        cp.kubeconfig_for_serviceaccount(release_ns, FULLNAME),
    );
    for (name, value) in env {
        match (name.as_str(), value) {
            ("METRICS_ADDR", _) => {}
            ("POD_NAME", _) => {
                cmd.env(name, pod_name);
            }
            (_, Some(v)) => {
                cmd.env(name, v);
            }
            (_, None) => panic!("the Deployment sets {name} from valueFrom; the test cannot"),
        }
    }
    cmd
}

/// Waits until `/readyz` is 200 (caches synced) and the operator leads.
async fn wait_operator_leading(op: &mut Operator) {
    let started = Instant::now();
    op.wait_ready(T).await;
    op.wait_for_log("leading: reconciling", T).await;
    println!("operator ready and leading in {:.1?}", started.elapsed());
}

/// Lines of the log that mention a refused request.
fn permission_lines(log: &str) -> Vec<String> {
    strip_ansi(log)
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("forbidden") || l.contains("permission denied")
        })
        .map(str::to_owned)
        .collect()
}

fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

async fn get_opt_dyn(client: &Client, ar: &ApiResource, ns: Option<&str>, name: &str) -> bool {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    api.get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("get {} {name}: {e}", ar.kind))
        .is_some()
}

fn vap_resources() -> (ApiResource, ApiResource) {
    let gvk = |kind: &str| {
        ApiResource::from_gvk(&GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            kind,
        ))
    };
    (
        gvk("ValidatingAdmissionPolicy"),
        gvk("ValidatingAdmissionPolicyBinding"),
    )
}

// ---- 1. lint and render -----------------------------------------------------------

/// Values turning every optional feature on (rendering only: the
/// ServiceMonitor needs the Prometheus Operator's CRDs to be installed).
const ALL_FEATURES: &str = include_str!("data/chart-all-features.yaml");

/// `helm lint --strict` passes with the defaults and with every optional
/// feature on, and `helm template` renders what each setting promises
/// (cluster-wide RBAC, replicas with a PDB and the CRDs by default; the
/// features' objects and fields with `ALL_FEATURES`).
#[test]
fn helm_lint_and_template_render_defaults_and_every_feature() {
    let home = tempfile::tempdir().expect("temp dir");
    let values = home.path().join("all-features.yaml");
    std::fs::write(&values, ALL_FEATURES).expect("write values");
    let values = values.display().to_string();
    let helm = |args: &[&str]| {
        let mut cmd = common::helm_command_in(home.path());
        cmd.args(args);
        run_ok(cmd, &format!("helm {}", args.join(" ")))
    };

    let lint = helm(&["lint", "--strict", &chart()]);
    assert!(
        lint.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{lint}"
    );
    let lint = helm(&["lint", "--strict", &chart(), "-f", &values]);
    assert!(
        lint.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{lint}"
    );

    // Defaults: cluster-wide RBAC, 2 replicas with a PDB, the CRD (a template).
    let template = |extra: &[&str]| {
        let chart = chart();
        let mut args = vec!["template", RELEASE, &chart, "-n", "tro-system"];
        args.extend_from_slice(extra);
        parse_docs(&helm(&args))
    };
    let docs = template(&[]);
    let k = kinds(&docs);
    for want in [
        "CustomResourceDefinition",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ] {
        assert!(
            k.iter().any(|x| x == want),
            "defaults render no {want}: {k:?}"
        );
    }
    assert!(
        !k.iter().any(|x| x == "ServiceMonitor"),
        "ServiceMonitor is off by default: {k:?}"
    );
    let deploy = find(&docs, "Deployment")[0];
    assert_eq!(deploy["metadata"]["name"], FULLNAME);
    assert_eq!(deploy["spec"]["replicas"], 2);

    // Every optional feature on.
    let docs = template(&["-f", &values]);
    let k = kinds(&docs);
    assert!(k.iter().any(|x| x == "ServiceMonitor"), "{k:?}");
    assert!(
        !k.iter()
            .any(|x| x == "ClusterRole" || x == "ClusterRoleBinding"),
        "watchNamespaces must render no cluster-wide RBAC: {k:?}"
    );
    let role_namespaces: Vec<&str> = find(&docs, "Role")
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap_or_default())
        .collect();
    for ns in ["team-a", "team-b", "tro-system"] {
        assert!(
            role_namespaces.contains(&ns),
            "no Role in {ns}: {role_namespaces:?}"
        );
    }
    let deploy = find(&docs, "Deployment")[0];
    assert_eq!(deploy["spec"]["replicas"], 3);
    let pod = &deploy["spec"]["template"];
    assert_eq!(pod["metadata"]["annotations"]["example.com/scrape"], "true");
    assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert!(pod["spec"]["affinity"]["podAntiAffinity"].is_object());
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "500m"
    );
    let env = pod["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env list");
    assert!(
        env.iter()
            .any(|e| e["name"] == "WATCH_NAMESPACES" && e["value"] == "team-a,team-b"),
        "{env:?}"
    );
}

// ---- 2-5, 7. cluster-wide install, operator as the SA, RBAC, uninstall ------------

/// What the phases of the cluster-wide test share.
struct Env<'a> {
    cp: &'a ControlPlane,
    admin: Client,
    /// The admin impersonating the chart's ServiceAccount.
    sa: Client,
    release_ns: String,
    /// Where the relations and consumers live.
    app: common::TestNamespace,
    /// The env of the installed Deployment's container.
    env: BTreeMap<String, Option<String>>,
}

/// One control plane, phases in order: each needs the state the previous one
/// left (the release, the running operator, the relation `tempo-rbac`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_upgrade_run_as_chart_sa_rbac_and_uninstall() {
    let cp = ControlPlane::start(ControlPlaneOptions::default());
    let admin = cp.admin_client().await;
    let release_ns = format!("tro-system-{}", random_suffix());
    let env = install_and_upgrade(&cp, &admin, &release_ns).await;
    let e = Env {
        cp: &cp,
        sa: cp.impersonating_client(&release_ns, FULLNAME).await,
        app: cp.namespace("app").await,
        admin,
        release_ns,
        env,
    };
    let op = bind_rewrite_cleanup(&e).await;
    the_sa_is_refused_secrets_and_configmap_writes(&e).await;
    missing_configmap_patch_is_reported_then_recovers(&e, &op).await;
    missing_event_create_only_warns(&e, &op).await;
    let op = missing_service_watch_keeps_a_fresh_replica_unready(&e, op).await;
    uninstall_keeps_crds_relations_and_consumer_data(&e, op).await;
}

/// Step 2: `helm install`, then `helm upgrade` with logLevel=debug; returns the
/// Deployment's env after the upgrade.
async fn install_and_upgrade(
    cp: &ControlPlane,
    admin: &Client,
    release_ns: &str,
) -> BTreeMap<String, Option<String>> {
    // ---- 2. install ------------------------------------------------------------
    let out = helm_release(cp, "install", release_ns, &["--create-namespace"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("REVISION: 1"), "{out}");

    let crds = Api::<CustomResourceDefinition>::all(admin.clone());
    common::wait_for_named(
        format!("CRD {CRD_NAME} installed by the chart to be Established"),
        T,
        || {
            let crds = crds.clone();
            async move {
                crds.get_opt(CRD_NAME)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.status?.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            }
        },
    )
    .await;
    let (vap, vapb) = vap_resources();
    assert!(
        get_opt_dyn(admin, &vap, None, VAP_NAME).await,
        "helm installs the ValidatingAdmissionPolicy"
    );
    assert!(get_opt_dyn(admin, &vapb, None, VAP_NAME).await);
    assert_present(
        Api::<ServiceAccount>::namespaced(admin.clone(), release_ns),
        FULLNAME,
    )
    .await;
    assert_present(Api::<ClusterRole>::all(admin.clone()), FULLNAME).await;
    let crb = Api::<ClusterRoleBinding>::all(admin.clone())
        .get(FULLNAME)
        .await
        .expect("ClusterRoleBinding");
    let subject = &crb.subjects.unwrap_or_default()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", FULLNAME, Some(release_ns))
    );
    let lease_role = Api::<Role>::namespaced(admin.clone(), release_ns)
        .get(&format!("{FULLNAME}-leader-election"))
        .await
        .expect("leader-election Role");
    println!(
        "leader-election Role rules: {}",
        serde_json::to_string(&lease_role.rules).unwrap()
    );
    let image = chart_containers(admin, release_ns).await[0].image.clone();
    assert_eq!(image.as_deref(), Some("tracing-relation-operator:dev"));
    assert_eq!(
        deployment_env(admin, release_ns).await.get("LOG_LEVEL"),
        Some(&Some("info".to_owned()))
    );

    // ---- 2. upgrade with a changed value -------------------------------------
    let out = helm_release(cp, "upgrade", release_ns, &["--set", "logLevel=debug"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("REVISION: 2"), "{out}");
    let env = deployment_env(admin, release_ns).await;
    assert_eq!(
        env.get("LOG_LEVEL"),
        Some(&Some("debug".to_owned())),
        "{env:?}"
    );
    assert_eq!(env.get("LEADER_ELECT"), Some(&Some("true".to_owned())));
    assert_eq!(
        env.get("LEASE_NAMESPACE"),
        Some(&Some(release_ns.to_owned()))
    );
    assert_eq!(env.get("LEASE_NAME"), Some(&Some(FULLNAME.to_owned())));
    assert_eq!(
        env.get("POD_NAME"),
        Some(&None),
        "POD_NAME comes from a fieldRef"
    );
    assert!(!env.contains_key("WATCH_NAMESPACES"), "{env:?}");
    assert!(crds.get_opt(CRD_NAME).await.unwrap().is_some());
    println!("Deployment env after the upgrade: {env:?}");

    env
}

/// Step 3: the operator with the chart's identity and env: bind, rewrite, cleanup,
/// and not one refused request. Returns the running operator.
async fn bind_rewrite_cleanup(e: &Env<'_>) -> Operator {
    let (cp, admin, release_ns, app, env) = (e.cp, &e.admin, &e.release_ns, &e.app, &e.env);
    let pod0 = format!("{FULLNAME}-6d9f7c-abcde");
    let mut op = cp.spawn_operator(&operator_as_chart_sa(cp, release_ns, env, &pod0));
    wait_operator_leading(&mut op).await;
    let lease = Api::<Lease>::namespaced(admin.clone(), release_ns)
        .get(FULLNAME)
        .await
        .expect("the operator created the chart's Lease in the release namespace");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(pod0.as_str())
    );

    create_relation(admin, app, "tempo", "tempo-a.example").await;
    create_consumer(admin, app, "cart", "tempo").await;
    let cm = wait_bound(admin, app, "cart", "tempo-a.example").await;
    let data = data_of(&cm);
    for key in default_keys() {
        assert!(
            data.contains_key(key),
            "bound consumer lacks {key}: {data:?}"
        );
    }
    assert_eq!(data.get(OWN_KEY).map(String::as_str), Some("never touched"));
    assert_eq!(
        cm.annotations()
            .get(BOUND_TO_ANNOTATION)
            .map(String::as_str),
        Some(format!("{app}/tempo").as_str())
    );
    let ready = wait_ready_condition(admin, app, "tempo", "Ready=True", |c| c.0 == "True").await;
    println!("bind: consumer {app}/cart bound; relation Ready: {ready:?}");
    let rel = Api::<TracingRelation>::namespaced(admin.clone(), app)
        .get("tempo")
        .await
        .unwrap();
    assert!(rel.finalizers().iter().any(|f| f == FINALIZER));
    // The SA's `create` on events.k8s.io events: the Bound Event exists.
    let events = Api::<K8sEvent>::namespaced(admin.clone(), app);
    let pod = pod0.as_str();
    common::wait_for_named(
        format!("a Bound Event about {app}/cart reported by {pod0}"),
        T,
        || {
            let events = events.clone();
            async move {
                events.list(&ListParams::default()).await.is_ok_and(|l| {
                    l.items.iter().any(|ev| {
                        ev.reason.as_deref() == Some("Bound")
                            && ev.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("cart")
                            && ev.reporting_instance.as_deref() == Some(pod)
                    })
                })
            }
        },
    )
    .await;

    // Rewrite: a new hostname reaches the consumer.
    Api::<TracingRelation>::namespaced(admin.clone(), app)
        .patch(
            "tempo",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"backend": {"endpoint": {"hostname": "tempo-b.example"}}}}),
            ),
        )
        .await
        .expect("patch the relation's hostname");
    let cm = wait_bound(admin, app, "cart", "tempo-b.example").await;
    assert!(
        !data_of(&cm).values().any(|v| v.contains("tempo-a.example")),
        "old hostname left behind: {:?}",
        cm.data
    );
    println!("rewrite: consumer now points at tempo-b.example");

    // Cleanup: deleting the relation runs the finalizer.
    Api::<TracingRelation>::namespaced(admin.clone(), app)
        .delete("tempo", &DeleteParams::default())
        .await
        .expect("delete the relation");
    let rels = Api::<TracingRelation>::namespaced(admin.clone(), app);
    common::wait_for_named(format!("TracingRelation {app}/tempo to be gone"), T, || {
        let rels = rels.clone();
        async move { rels.get_opt("tempo").await.ok().flatten().is_none() }
    })
    .await;
    let cms = Api::<ConfigMap>::namespaced(admin.clone(), app);
    let cm = common::wait_for_some_named(
        format!("consumer {app}/cart to lose the operator's data keys"),
        T,
        || {
            let cms = cms.clone();
            async move {
                let cm = cms.get_opt("cart").await.ok().flatten()?;
                let data = data_of(&cm);
                DATA_KEYS
                    .iter()
                    .all(|k| !data.contains_key(*k))
                    .then_some(cm)
            }
        },
    )
    .await;
    assert_eq!(
        data_of(&cm).get(OWN_KEY).map(String::as_str),
        Some("never touched"),
        "cleanup must keep the consumer's own keys"
    );
    println!(
        "cleanup: relation gone; consumer annotations now {:?}, data {:?}",
        cm.annotations(),
        cm.data
    );
    let refused = permission_lines(&op.logs());
    assert!(
        refused.is_empty(),
        "bind/rewrite/cleanup as the chart's SA hit refused requests:\n{}",
        refused.join("\n")
    );

    op
}

/// Asserts that listing through `api` is refused with 403.
async fn assert_list_forbidden<K>(what: &str, api: Api<K>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    expect_forbidden(what, api.list(&ListParams::default()).await);
}

/// Step 4: the SA may not read Secrets nor create, update or delete ConfigMaps.
async fn the_sa_is_refused_secrets_and_configmap_writes(e: &Env<'_>) {
    let (admin, sa, release_ns, app) = (&e.admin, &e.sa, &e.release_ns, &e.app);
    let cms = Api::<ConfigMap>::namespaced(admin.clone(), app);
    let everywhere = Api::<Secret>::all(sa.clone());
    assert_list_forbidden("SA list secrets cluster-wide", everywhere).await;
    let release = Api::<Secret>::namespaced(sa.clone(), release_ns);
    assert_list_forbidden("SA list secrets in the release namespace", release).await;
    // A Secret that exists, so a 404 cannot pass for a refusal.
    Api::<Secret>::namespaced(admin.clone(), release_ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value::<Secret>(json!({
                "metadata": {"name": "db-password"},
                "stringData": {"password": "s3cr3t"},
            }))
            .expect("a Secret"),
        )
        .await
        .expect("create a Secret");
    expect_forbidden(
        "SA get a Secret in the release namespace",
        Api::<Secret>::namespaced(sa.clone(), release_ns)
            .get("db-password")
            .await,
    );
    let sa_cms = Api::<ConfigMap>::namespaced(sa.clone(), app);
    expect_forbidden(
        "SA create a ConfigMap",
        sa_cms
            .create(&PostParams::default(), &configmap("sa-made", &[], &[], &[]))
            .await,
    );
    expect_forbidden(
        "SA delete a ConfigMap",
        sa_cms.delete("cart", &DeleteParams::default()).await,
    );
    let mut cart = cms.get("cart").await.unwrap();
    cart.metadata.managed_fields = None;
    expect_forbidden(
        "SA update (PUT) a ConfigMap",
        sa_cms.replace("cart", &PostParams::default(), &cart).await,
    );
    expect_forbidden(
        "SA get another Lease in the release namespace",
        Api::<Lease>::namespaced(sa.clone(), release_ns)
            .get("some-other-lease")
            .await,
    );
    expect_forbidden(
        "SA delete its own Lease",
        Api::<Lease>::namespaced(sa.clone(), release_ns)
            .delete(FULLNAME, &DeleteParams::default())
            .await,
    );
    // And what it has (the rules the operator needs), as the authorizer sees them.
    for (verb, group, resource, ns) in [
        ("list", "", "configmaps", None),
        ("watch", "", "configmaps", None),
        ("patch", "", "configmaps", Some(app.name())),
        ("list", "", "services", None),
        ("watch", "", "namespaces", None),
        (
            "patch",
            "tracing.relations.dev",
            "tracingrelations",
            Some(app.name()),
        ),
        (
            "patch",
            "tracing.relations.dev",
            "tracingrelations/status",
            Some(app.name()),
        ),
        ("create", "events.k8s.io", "events", Some(app.name())),
        (
            "create",
            "coordination.k8s.io",
            "leases",
            Some(release_ns.as_str()),
        ),
    ] {
        assert!(
            can_i(sa, verb, group, resource, ns).await,
            "the SA should be allowed {verb} {group}/{resource} in {ns:?}"
        );
    }
    for (verb, group, resource, ns) in [
        ("get", "", "secrets", None),
        ("watch", "", "secrets", None),
        ("list", "", "secrets", Some(release_ns.as_str())),
        ("create", "", "configmaps", Some(app.name())),
        ("update", "", "configmaps", Some(app.name())),
        ("delete", "", "configmaps", Some(app.name())),
        (
            "delete",
            "tracing.relations.dev",
            "tracingrelations",
            Some(app.name()),
        ),
        ("create", "", "events", Some(app.name())),
        ("create", "coordination.k8s.io", "leases", Some(app.name())),
        ("*", "*", "*", None),
    ] {
        assert!(
            !can_i(sa, verb, group, resource, ns).await,
            "the SA should be refused {verb} {group}/{resource} in {ns:?}"
        );
    }
}

/// Removes from the chart's ClusterRole every rule that covers `resource`;
/// returns the role as it was.
async fn drop_rules_on(admin: &Client, resource: &str) -> ClusterRole {
    edit_cluster_role(admin, |rules| {
        rules.retain(|r| {
            !r.resources
                .as_ref()
                .is_some_and(|res| res.iter().any(|x| x == resource))
        })
    })
    .await
}

/// Waits until a line of the operator's log (colours stripped) satisfies
/// `pred`; returns it.
async fn wait_log_line(op: &Operator, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let pred = &pred;
    common::wait_for_some_named(format!("the operator to log {what}"), T, || {
        let line = strip_ansi(&op.logs())
            .lines()
            .find(|l| pred(l))
            .map(str::to_owned);
        async move { line }
    })
    .await
}

/// Step 5a: without `patch` on configmaps: a clear log line, Ready=False/WriteFailed
/// naming the permission, a Forbidden failure metric; recovery once restored.
async fn missing_configmap_patch_is_reported_then_recovers(e: &Env<'_>, op: &Operator) {
    let (admin, sa, app) = (&e.admin, &e.sa, &e.app);
    let cms = Api::<ConfigMap>::namespaced(admin.clone(), app);
    create_relation(admin, app, "tempo-rbac", "tempo-c.example").await;
    wait_ready_condition(admin, app, "tempo-rbac", "Ready=True", |c| c.0 == "True").await;
    let original = edit_cluster_role(admin, |rules| {
        for r in rules.iter_mut() {
            if r.resources
                .as_ref()
                .is_some_and(|res| res.iter().any(|x| x == "configmaps"))
            {
                r.verbs.retain(|v| v != "patch");
            }
        }
    })
    .await;
    wait_can_i(sa, "patch", "", "configmaps", Some(app.name()), false).await;
    create_consumer(admin, app, "orders", "tempo-rbac").await;
    let needle = format!("permission denied: patch configmaps in namespace {app}");
    let line = wait_log_line(op, &format!("{needle:?}"), |l| l.contains(&needle)).await;
    let (status, reason, message) =
        wait_ready_condition(admin, app, "tempo-rbac", "Ready=False/WriteFailed", |c| {
            c.0 == "False" && c.1 == "WriteFailed"
        })
        .await;
    println!("5a: relation Ready={status} reason={reason} message={message}");
    assert!(
        message.contains(&format!("patch configmaps in namespace {app}")),
        "the status names the missing permission: {message}"
    );
    println!("5a: operator log: {line}");
    assert!(line.contains("WARN") || line.contains("ERROR"), "{line}");
    let (code, metrics) = op.http_get("/metrics").await.expect("GET /metrics");
    assert_eq!(code, 200);
    let failures = metrics
        .lines()
        .find(|l| {
            l.starts_with("tracing_relation_operator_reconcile_failures_total")
                && l.contains("controller=\"consumer\"")
                && l.contains("reason=\"Forbidden\"")
        })
        .unwrap_or_else(|| panic!("no Forbidden failure metric:\n{metrics}"));
    println!("5a: metric {failures}");
    let orders = cms.get("orders").await.unwrap();
    assert!(
        !data_of(&orders).contains_key(KEY_TEMPO_ENDPOINT),
        "nothing can be written without patch"
    );
    restore_cluster_role(admin, &original).await;
    wait_can_i(sa, "patch", "", "configmaps", Some(app.name()), true).await;
    let recovered = Instant::now();
    wait_bound(admin, app, "orders", "tempo-c.example").await;
    wait_ready_condition(admin, app, "tempo-rbac", "Ready=True again", |c| {
        c.0 == "True"
    })
    .await;
    println!(
        "5a: restored `patch`: consumer bound and relation Ready=True {:.1?} later",
        recovered.elapsed()
    );
}

/// Step 5b: without `create` on events.k8s.io events: consumers still bind; each
/// Event that cannot be published is a warning in the log.
async fn missing_event_create_only_warns(e: &Env<'_>, op: &Operator) {
    let (admin, sa, app) = (&e.admin, &e.sa, &e.app);
    let original = drop_rules_on(admin, "events").await;
    let events = ("events.k8s.io", "events");
    wait_can_i(sa, "create", events.0, events.1, Some(app.name()), false).await;
    create_consumer(admin, app, "payments", "tempo-rbac").await;
    wait_bound(admin, app, "payments", "tempo-c.example").await;
    let line = wait_log_line(op, "that it cannot publish an Event", |l| {
        l.contains("cannot publish Event") && l.contains("forbidden")
    })
    .await;
    println!("5b: {line}");
    restore_cluster_role(admin, &original).await;
    let events = ("events.k8s.io", "events");
    wait_can_i(sa, "create", events.0, events.1, Some(app.name()), true).await;
}

/// Step 5c: without list/watch on services, a freshly started replica never syncs
/// its caches: /readyz stays 503 and the log names the refused list. Returns
/// the new operator (ready and leading once the rule is back).
async fn missing_service_watch_keeps_a_fresh_replica_unready(
    e: &Env<'_>,
    mut op: Operator,
) -> Operator {
    let (cp, admin, sa, release_ns, app, env) =
        (e.cp, &e.admin, &e.sa, &e.release_ns, &e.app, &e.env);
    op.sigterm();
    let status = op.wait_exit(T).await;
    assert!(status.success(), "SIGTERM exit: {status}");
    assert!(
        strip_ansi(&op.logs()).contains("Lease released"),
        "{}",
        op.logs()
    );
    let original = drop_rules_on(admin, "services").await;
    wait_can_i(sa, "list", "", "services", None, false).await;
    let pod1 = format!("{FULLNAME}-6d9f7c-fghij");
    let mut op = cp.spawn_operator(&operator_as_chart_sa(cp, release_ns, env, &pod1));
    let line = wait_log_line(&op, "the refused Service watch", |l| {
        l.contains("watch failed") && l.contains("services is forbidden")
    })
    .await;
    println!("5c: {line}");
    // Not ready, and it writes nothing, for as long as the permission is missing.
    for _ in 0..10 {
        let (code, body) = op.http_get("/readyz").await.expect("GET /readyz");
        assert_eq!(code, 503, "/readyz without list services: {body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(!strip_ansi(&op.logs()).contains("caches synced"));
    assert!(!strip_ansi(&op.logs()).contains("leading: reconciling"));
    let holder = Api::<Lease>::namespaced(admin.clone(), release_ns)
        .get(FULLNAME)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity);
    println!("5c: Lease holder while not ready: {holder:?}");
    restore_cluster_role(admin, &original).await;
    let recovered = Instant::now();
    wait_operator_leading(&mut op).await;
    println!(
        "5c: restored list/watch services: ready and leading {:.1?} later",
        recovered.elapsed()
    );
    create_consumer(admin, app, "shipping", "tempo-rbac").await;
    wait_bound(admin, app, "shipping", "tempo-c.example").await;

    op
}

/// Panics unless object `name` exists.
async fn assert_present<K>(api: Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let got = api.get_opt(name).await.unwrap();
    assert!(got.is_some(), "{name} is missing");
}

/// Panics unless object `name` is gone.
async fn assert_gone<K>(api: Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let got = api.get_opt(name).await.unwrap();
    assert!(got.is_none(), "{name} is still there: {got:?}");
}

/// Step 7: `helm uninstall` (while the operator runs, as in a cluster): what goes,
/// what stays.
async fn uninstall_keeps_crds_relations_and_consumer_data(e: &Env<'_>, mut op: Operator) {
    let (cp, admin, release_ns, app) = (e.cp, &e.admin, &e.release_ns, &e.app);
    let rels = Api::<TracingRelation>::namespaced(admin.clone(), app);
    let cms = Api::<ConfigMap>::namespaced(admin.clone(), app);
    let crds = Api::<CustomResourceDefinition>::all(admin.clone());
    let (vap, vapb) = vap_resources();
    let crd_uid = crds.get(CRD_NAME).await.expect("the CRD").uid();
    // As in a cluster: helm deletes the RBAC and the Deployment while the
    // operator still runs; its pods then get SIGTERM.
    let out = helm(cp, &["uninstall", RELEASE, "-n", release_ns]);
    assert!(
        out.contains(&format!("release \"{RELEASE}\" uninstalled")),
        "{out}"
    );
    op.sigterm();
    let status = op.wait_exit(T).await;
    println!("7: operator exited after uninstall: {status}");
    for line in permission_lines(&op.logs())
        .iter()
        .filter(|l| !l.contains("DEBUG"))
        .filter(|l| l.contains("Lease") || l.contains("lease"))
    {
        println!("7: operator after uninstall: {line}");
    }
    let list = helm(cp, &["list", "-n", release_ns, "-q"]);
    assert!(list.trim().is_empty(), "release still listed: {list}");

    // Gone: everything from templates/.
    assert_gone(Api::<ClusterRole>::all(admin.clone()), FULLNAME).await;
    assert_gone(Api::<ClusterRoleBinding>::all(admin.clone()), FULLNAME).await;
    assert_gone(
        Api::<Role>::namespaced(admin.clone(), release_ns),
        &format!("{FULLNAME}-leader-election"),
    )
    .await;
    assert_gone(
        Api::<RoleBinding>::namespaced(admin.clone(), release_ns),
        &format!("{FULLNAME}-leader-election"),
    )
    .await;
    assert_gone(
        Api::<ServiceAccount>::namespaced(admin.clone(), release_ns),
        FULLNAME,
    )
    .await;
    assert_gone(
        Api::<Deployment>::namespaced(admin.clone(), release_ns),
        FULLNAME,
    )
    .await;
    assert_gone(
        Api::<Service>::namespaced(admin.clone(), release_ns),
        &format!("{FULLNAME}-metrics"),
    )
    .await;
    let lease = Api::<Lease>::namespaced(admin.clone(), release_ns)
        .get_opt(FULLNAME)
        .await
        .unwrap();
    println!(
        "7: Lease after uninstall: holder {:?}",
        lease
            .as_ref()
            .and_then(|l| l.spec.as_ref()?.holder_identity.clone())
    );
    // Kept: the CRD and the policy (helm.sh/resource-policy: keep), the
    // operator's own Lease, the relations (with their finalizer) and the
    // consumers' documents.
    assert!(
        crds.get_opt(CRD_NAME).await.unwrap().is_some(),
        "helm uninstall keeps the CRD"
    );
    assert!(get_opt_dyn(admin, &vap, None, VAP_NAME).await, "VAP kept");
    assert!(
        get_opt_dyn(admin, &vapb, None, VAP_NAME).await,
        "VAP binding kept"
    );
    // The Lease is the operator's, not helm's: it stays.
    let leases = Api::<Lease>::namespaced(admin.clone(), release_ns);
    assert_present(leases, FULLNAME).await;
    let rel = rels
        .get("tempo-rbac")
        .await
        .expect("relations stay with the CRD");
    assert!(
        rel.finalizers().iter().any(|f| f == FINALIZER),
        "the relation keeps the operator's finalizer"
    );
    for name in ["orders", "payments", "shipping"] {
        let cm = cms.get(name).await.unwrap();
        assert_eq!(
            cm.annotations().get(STATE_ANNOTATION).map(String::as_str),
            Some(STATE_BOUND),
            "{name}"
        );
        assert!(
            data_of(&cm).contains_key(KEY_TEMPO_ENDPOINT),
            "consumers keep their documents after uninstall: {name}"
        );
    }
    // Without the operator, deleting a relation hangs on its finalizer and
    // nobody cleans the consumers.
    rels.delete("tempo-rbac", &DeleteParams::default())
        .await
        .expect("delete the relation");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rel = rels
        .get("tempo-rbac")
        .await
        .expect("stuck on its finalizer");
    assert!(rel.metadata.deletion_timestamp.is_some());
    merge_patch(
        &rels,
        "tempo-rbac",
        &json!({"metadata": {"finalizers": null}}),
    )
    .await;
    common::wait_for_named(
        "the relation to go once its finalizer is removed",
        T,
        || {
            let rels = rels.clone();
            async move { rels.get_opt("tempo-rbac").await.ok().flatten().is_none() }
        },
    )
    .await;
    let orders = cms.get("orders").await.unwrap();
    assert!(
        data_of(&orders).contains_key(KEY_TEMPO_ENDPOINT),
        "with no operator, a consumer keeps the operator's keys: {:?}",
        orders.data
    );
    assert_eq!(
        orders
            .annotations()
            .get(REASON_ANNOTATION)
            .map(String::as_str),
        None,
        "nothing touched the consumer"
    );

    // Installing again works: the CRD (and policy) already there are skipped.
    let out = helm_release(cp, "install", release_ns, &[]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert_eq!(
        crds.get(CRD_NAME).await.expect("the CRD").uid(),
        crd_uid,
        "a second install keeps the existing CRD (and its TracingRelations)"
    );
    helm(cp, &["uninstall", RELEASE, "-n", release_ns]);
    assert!(
        Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
            .get_opt(release_ns)
            .await
            .unwrap()
            .is_some(),
        "helm uninstall keeps the namespace --create-namespace made"
    );
}

// ---- 6. namespaced mode ------------------------------------------------------------

/// Upgrading the release to `watchNamespaces={a,b}` replaces the cluster-wide
/// RBAC by Roles in `a` and `b` only; the ServiceAccount may read ConfigMaps
/// there and nowhere else; the operator run as it binds consumers in `a` and `b`,
/// leaves `c` alone, and makes no request its Roles refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_to_watch_namespaces_uses_roles_and_the_operator_binds_there() {
    let cp = ControlPlane::start(ControlPlaneOptions::default());
    let admin = cp.admin_client().await;
    let release_ns = format!("tro-system-{}", random_suffix());
    let a = cp.namespace("team-a").await;
    let b = cp.namespace("team-b").await;
    let c = cp.namespace("team-c").await;

    helm_release(&cp, "install", &release_ns, &["--create-namespace"]);
    assert_present(Api::<ClusterRole>::all(admin.clone()), FULLNAME).await;
    let out = helm_release(
        &cp,
        "upgrade",
        &release_ns,
        &["--set", &format!("watchNamespaces={{{a},{b}}}")],
    );
    assert!(out.contains("REVISION: 2"), "{out}");

    the_rbac_is_roles_in_the_watched_namespaces_only(&admin, &a, &b, &c).await;
    let env = deployment_env(&admin, &release_ns).await;
    assert_eq!(
        env.get("WATCH_NAMESPACES"),
        Some(&Some(format!("{a},{b}"))),
        "{env:?}"
    );
    the_sa_reads_configmaps_in_watched_namespaces_only(&cp, &release_ns, &a, &c).await;
    the_operator_binds_in_watched_namespaces_only(&cp, &admin, &release_ns, &env, [&a, &b, &c])
        .await;
}

/// RBAC: Roles (and bindings) covering ConfigMaps in `a` and `b`, none in `c`,
/// no cluster-wide role left.
async fn the_rbac_is_roles_in_the_watched_namespaces_only(
    admin: &Client,
    a: &str,
    b: &str,
    c: &str,
) {
    // RBAC: Roles in a and b, none in c, no cluster-wide role left.
    // The upgrade removes the ClusterRole and its binding.
    assert_gone(Api::<ClusterRole>::all(admin.clone()), FULLNAME).await;
    assert_gone(Api::<ClusterRoleBinding>::all(admin.clone()), FULLNAME).await;
    for ns in [a, b] {
        let role = Api::<Role>::namespaced(admin.clone(), ns)
            .get(FULLNAME)
            .await
            .unwrap_or_else(|e| panic!("Role in {ns}: {e}"));
        assert!(
            role.rules.unwrap_or_default().iter().any(|r| r
                .resources
                .as_ref()
                .is_some_and(|x| x.iter().any(|x| x == "configmaps"))),
            "the Role in {ns} covers configmaps"
        );
        assert_present(Api::<RoleBinding>::namespaced(admin.clone(), ns), FULLNAME).await;
    }
    assert_gone(Api::<Role>::namespaced(admin.clone(), c), FULLNAME).await;
}

/// The chart's ServiceAccount may list ConfigMaps in a watched namespace, not
/// cluster-wide, not in an unwatched one, and may not list namespaces.
async fn the_sa_reads_configmaps_in_watched_namespaces_only(
    cp: &ControlPlane,
    release_ns: &str,
    a: &str,
    c: &str,
) {
    let sa = cp.impersonating_client(release_ns, FULLNAME).await;
    wait_can_i(&sa, "list", "", "configmaps", None, false).await;
    let everywhere = Api::<ConfigMap>::all(sa.clone());
    assert_list_forbidden("namespaced SA list configmaps cluster-wide", everywhere).await;
    let unwatched = Api::<ConfigMap>::namespaced(sa.clone(), c);
    let what = "namespaced SA list configmaps in an unwatched namespace";
    assert_list_forbidden(what, unwatched).await;
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(sa.clone());
    assert_list_forbidden("namespaced SA list namespaces", namespaces).await;
    Api::<ConfigMap>::namespaced(sa.clone(), a)
        .list(&ListParams::default())
        .await
        .expect("the SA lists configmaps in a watched namespace");
}

/// The operator with WATCH_NAMESPACES=a,b, run as the chart's ServiceAccount,
/// binds the consumers in `a` and `b`; `c`'s relation gets no finalizer, its
/// consumer no document; no request is refused.
async fn the_operator_binds_in_watched_namespaces_only(
    cp: &ControlPlane,
    admin: &Client,
    release_ns: &str,
    env: &BTreeMap<String, Option<String>>,
    [a, b, c]: [&str; 3],
) {
    // The operator with WATCH_NAMESPACES=a,b as the SA.
    let mut op = cp.spawn_operator(&operator_as_chart_sa(
        cp,
        release_ns,
        env,
        &format!("{FULLNAME}-7c4b5d-klmno"),
    ));
    wait_operator_leading(&mut op).await;
    for ns in [a, b, c] {
        create_relation(admin, ns, "tempo", &format!("tempo.{ns}.example")).await;
        create_consumer(admin, ns, "app", "tempo").await;
    }
    wait_bound(admin, a, "app", &format!("tempo.{a}.example")).await;
    wait_bound(admin, b, "app", &format!("tempo.{b}.example")).await;
    // c is not watched: its relation gets no finalizer, its consumer no document.
    let unwatched = Api::<ConfigMap>::namespaced(admin.clone(), c)
        .get("app")
        .await
        .unwrap();
    assert!(
        unwatched.annotations().get(STATE_ANNOTATION).is_none()
            && !data_of(&unwatched).contains_key(KEY_TEMPO_ENDPOINT),
        "a consumer in an unwatched namespace is left alone: {unwatched:?}"
    );
    let rel_c = Api::<TracingRelation>::namespaced(admin.clone(), c)
        .get("tempo")
        .await
        .unwrap();
    assert!(rel_c.finalizers().is_empty(), "{:?}", rel_c.finalizers());
    let refused = permission_lines(&op.logs());
    assert!(
        refused.is_empty(),
        "the namespaced operator made requests its Roles refuse:\n{}",
        refused.join("\n")
    );
    op.sigterm();
    op.wait_exit(T).await;
}

// ---- opt-in values: their RBAC only when enabled -----------------------------------

/// A chart value that turns on an operator feature needing more RBAC than the
/// default (issue 16's least privilege: off, the chart grants none of it).
struct OptIn {
    /// The boolean chart value.
    value: &'static str,
    /// The Deployment env the chart sets from it (the flag's env fallback).
    env: &'static str,
    /// `(group, resource, verbs)` the value grants, in every watched namespace.
    grants: &'static [(&'static str, &'static str, &'static [&'static str])],
    /// `(verb, group, resource)` still refused with the value on.
    still_refused: &'static [(&'static str, &'static str, &'static str)],
}

const WORKLOAD_VERBS: &[&str] = &["get", "list", "watch", "patch"];

/// `rollouts.enabled`: get, list, watch and patch on Deployments, StatefulSets
/// and DaemonSets; no create, update or delete.
const ROLLOUTS_VALUE: OptIn = OptIn {
    value: "rollouts.enabled",
    env: "ROLLOUTS",
    grants: &[
        ("apps", "deployments", WORKLOAD_VERBS),
        ("apps", "statefulsets", WORKLOAD_VERBS),
        ("apps", "daemonsets", WORKLOAD_VERBS),
    ],
    still_refused: &[
        ("create", "apps", "deployments"),
        ("update", "apps", "statefulsets"),
        ("delete", "apps", "daemonsets"),
        ("get", "", "secrets"),
    ],
};

/// `scrapeJobs.enabled`: list and watch on Pods (the scraped consumers' pods,
/// by selector) and create on ConfigMaps (the apply of a missing
/// `spec.scrape.configMap`). Pods stay read-only by list/watch, ConfigMaps are
/// still never updated or deleted.
const SCRAPE_JOBS_VALUE: OptIn = OptIn {
    value: "scrapeJobs.enabled",
    env: "SCRAPE_JOBS",
    grants: &[
        ("", "pods", &["list", "watch"]),
        ("", "configmaps", &["create"]),
    ],
    still_refused: &[
        ("get", "", "pods"),
        ("create", "", "pods"),
        ("delete", "", "pods"),
        ("create", "", "pods/exec"),
        ("update", "", "configmaps"),
        ("delete", "", "configmaps"),
        ("get", "", "secrets"),
    ],
};

/// By default the chart's ServiceAccount is refused everything
/// `rollouts.enabled` grants and the operator runs with ROLLOUTS=false; with
/// the value on (namespaced, then cluster-wide) exactly get, list, watch and
/// patch on workloads are granted and ROLLOUTS=true; the operator running as
/// that ServiceAccount then keeps an opted-in Deployment's template hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_value_grants_workload_rbac_only_when_enabled() {
    let cp = ControlPlane::start(ControlPlaneOptions::default());
    let admin = cp.admin_client().await;
    let (release_ns, env) = opt_in_rbac_only_when_enabled(&cp, &admin, &ROLLOUTS_VALUE).await;
    the_chart_sa_rolls_an_opted_in_deployment(&cp, &admin, &release_ns, &env).await;
}

/// By default the chart's ServiceAccount may not list or watch Pods nor create
/// ConfigMaps and the operator runs with SCRAPE_JOBS=false; with
/// `scrapeJobs.enabled=true` both are granted (by the Role of each watched
/// namespace, then by the ClusterRole), nothing more, and SCRAPE_JOBS=true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_jobs_value_grants_pod_rbac_only_when_enabled() {
    let cp = ControlPlane::start(ControlPlaneOptions::default());
    let admin = cp.admin_client().await;
    opt_in_rbac_only_when_enabled(&cp, &admin, &SCRAPE_JOBS_VALUE).await;
}

/// One release through three revisions:
/// 1. defaults (`opt.value` off): every grant is refused, cluster-wide and in a
///    namespace, and `opt.env` is "false";
/// 2. `opt.value=true` with `watchNamespaces={a}`: the Role in `a` grants them,
///    nothing grants them in `c` or cluster-wide;
/// 3. `opt.value=true` cluster-wide: the ClusterRole grants them.
///
/// With the value on, `opt.still_refused` stays refused and `opt.env` is
/// "true". Returns the release namespace and the Deployment's env of the last
/// revision.
async fn opt_in_rbac_only_when_enabled(
    cp: &ControlPlane,
    admin: &Client,
    opt: &OptIn,
) -> (String, BTreeMap<String, Option<String>>) {
    let prefix = opt.env.to_ascii_lowercase().replace('_', "-");
    let release_ns = format!("tro-{prefix}-{}", random_suffix());
    let a = cp.namespace(&format!("{prefix}-a")).await;
    let c = cp.namespace(&format!("{prefix}-c")).await;
    let sa = cp.impersonating_client(&release_ns, FULLNAME).await;
    let env_is = |env: &BTreeMap<String, Option<String>>, want: &str| {
        assert_eq!(
            env.get(opt.env),
            Some(&Some(want.to_owned())),
            "{} in the Deployment's env: {env:?}",
            opt.env
        );
    };
    let on = format!("{}=true", opt.value);

    helm_release(cp, "install", &release_ns, &["--create-namespace"]);
    for ns in [None, Some(&*a)] {
        opt_in_grants_are(&sa, opt, ns, false).await;
    }
    env_is(&deployment_env(admin, &release_ns).await, "false");

    let watch = format!("watchNamespaces={{{a}}}");
    helm_release(cp, "upgrade", &release_ns, &["--set", &on, "--set", &watch]);
    opt_in_grants_are(&sa, opt, Some(&*a), true).await;
    for ns in [None, Some(&*c)] {
        opt_in_grants_are(&sa, opt, ns, false).await;
    }
    opt_in_still_refused(&sa, opt, Some(&*a)).await;
    let env = deployment_env(admin, &release_ns).await;
    env_is(&env, "true");
    assert_eq!(
        env.get("WATCH_NAMESPACES"),
        Some(&Some(a.to_string())),
        "{env:?}"
    );

    helm_release(cp, "upgrade", &release_ns, &["--set", &on]);
    opt_in_grants_are(&sa, opt, None, true).await;
    opt_in_still_refused(&sa, opt, None).await;
    let env = deployment_env(admin, &release_ns).await;
    env_is(&env, "true");
    assert_eq!(env.get("WATCH_NAMESPACES"), None, "{env:?}");
    (release_ns, env)
}

/// Waits until the SA may (`allowed`) or may not do every verb `opt` grants, in
/// `namespace` (None: cluster-wide).
async fn opt_in_grants_are(sa: &Client, opt: &OptIn, namespace: Option<&str>, allowed: bool) {
    for (group, resource, verbs) in opt.grants {
        for verb in *verbs {
            wait_can_i(sa, verb, group, resource, namespace, allowed).await;
        }
    }
}

/// Waits until the SA is refused everything of `opt.still_refused` in
/// `namespace` (None: cluster-wide).
async fn opt_in_still_refused(sa: &Client, opt: &OptIn, namespace: Option<&str>) {
    for (verb, group, resource) in opt.still_refused {
        wait_can_i(sa, verb, group, resource, namespace, false).await;
    }
}

/// The operator as the chart's ServiceAccount, with the chart's env: ready,
/// and an opted-in Deployment using a bound consumer gets its hash.
async fn the_chart_sa_rolls_an_opted_in_deployment(
    cp: &ControlPlane,
    admin: &Client,
    release_ns: &str,
    env: &BTreeMap<String, Option<String>>,
) {
    let pod = format!("{FULLNAME}-7f8e9d-roll0");
    let mut op = cp.spawn_operator(&operator_as_chart_sa(cp, release_ns, env, &pod));
    wait_operator_leading(&mut op).await;
    let app = cp.namespace("roll-app").await;
    create_relation(admin, &app, "tempo", "tempo-r.example").await;
    create_consumer(admin, &app, "cart", "tempo").await;
    let cm = wait_bound(admin, &app, "cart", "tempo-r.example").await;
    let hash = cm
        .annotations()
        .get(HASH_ANNOTATION)
        .cloned()
        .expect("hash");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "cart", "labels": {ROLLOUT_LABEL: "true"}},
        "spec": {
            "selector": {"matchLabels": {"app": "cart"}},
            "template": {"metadata": {"labels": {"app": "cart"}}, "spec": {"containers": [
                {"name": "app", "image": "registry.invalid/cart:1", "envFrom": [{"configMapRef": {"name": "cart"}}]}
            ]}},
        },
    }))
    .expect("a Deployment");
    let api = Api::<Deployment>::namespaced(admin.clone(), &app);
    common::fixtures::create(&api, &deployment).await;
    common::wait_for_named(
        format!("the template hash of {app}/cart to be {hash}"),
        T,
        || {
            let api = api.clone();
            let hash = hash.clone();
            async move {
                let d = api.get("cart").await.unwrap();
                let t = d.spec.map(|s| s.template.metadata.unwrap_or_default());
                let got = t.and_then(|m| m.annotations?.get(TEMPLATE_HASH_ANNOTATION).cloned());
                got == Some(hash)
            }
        },
    )
    .await;
    let refused = permission_lines(&op.logs());
    assert!(refused.is_empty(), "refused requests: {refused:#?}");
    op.sigterm();
    op.wait_exit(T).await;
}
