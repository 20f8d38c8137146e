//! Tests proving the control-plane harness in `tests/common`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fixtures::{self, assert_forbidden};
use common::process::run_ok;
use common::{CRD_NAME, ControlPlane, ControlPlaneOptions, wait_for, wait_for_named};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Pod, PodSpec, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams,
};
use kube::core::GroupVersionKind;

/// A ConfigMap named `name` holding `data`.
fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    fixtures::configmap(name, &[], &[], data)
}

/// Who the apiserver thinks `client` is: (username, groups).
async fn whoami(client: kube::Client) -> (String, Vec<String>) {
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview");
    let user = review
        .status
        .and_then(|s| s.user_info)
        .expect("SelfSubjectReview has userInfo");
    (
        user.username.unwrap_or_default(),
        user.groups.unwrap_or_default(),
    )
}

/// A client built from a kubeconfig file, the way a subprocess would load it.
async fn client_from_kubeconfig(path: &std::path::Path) -> (kube::Client, String) {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig loads");
    let namespace = config.default_namespace.clone();
    (kube::Client::try_from(config).expect("client"), namespace)
}

/// The admin client creates a ConfigMap in a fresh namespace and reads it back
/// as stored (namespace, data, a uid).
#[tokio::test(flavor = "multi_thread")]
async fn admin_creates_and_reads_back_a_configmap() {
    let cp = ControlPlane::shared();
    let ns = cp
        .namespace_with_labels("admin-cm", &[("suite", "controlplane")])
        .await;

    let namespace = Api::<Namespace>::all(cp.admin_client().await)
        .get(&ns)
        .await
        .unwrap();
    assert_eq!(
        namespace
            .metadata
            .labels
            .unwrap_or_default()
            .get("suite")
            .map(String::as_str),
        Some("controlplane")
    );
    assert!(ns.starts_with("admin-cm-"), "{ns}");

    let api = Api::<ConfigMap>::namespaced(cp.admin_client().await, &ns);
    fixtures::create(&api, &configmap("settings", &[("endpoint", "tempo:4317")])).await;
    let read = api.get("settings").await.unwrap();
    assert_eq!(read.metadata.namespace.as_deref(), Some(ns.name()));
    assert_eq!(
        read.data.unwrap(),
        BTreeMap::from([("endpoint".to_owned(), "tempo:4317".to_owned())])
    );
    assert!(read.metadata.uid.is_some(), "stored objects get a uid");
}

/// A ServiceAccount without RBAC is refused (403) listing and creating ConfigMaps.
#[tokio::test(flavor = "multi_thread")]
async fn serviceaccount_without_rbac_is_forbidden() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("no-rbac").await;
    let client = cp.impersonating_client(&ns, "nobody").await;
    let api = Api::<ConfigMap>::namespaced(client, &ns);

    assert_forbidden(
        api.list(&ListParams::default()).await,
        "list configmaps without RBAC",
    );
    assert_forbidden(
        api.create(&PostParams::default(), &configmap("x", &[]))
            .await,
        "create a configmap without RBAC",
    );
    match api.get("anything").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403);
            let user = format!("system:serviceaccount:{ns}:nobody");
            assert!(
                status.message.contains(&user),
                "message names {user}: {}",
                status.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
}

/// A Role and RoleBinding grant a ServiceAccount exactly the verbs they list:
/// get, list and create work once the authorizer caught up, delete stays forbidden.
#[tokio::test(flavor = "multi_thread")]
async fn role_binding_grants_the_serviceaccount_exactly_its_rules() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("rbac").await;
    let admin = cp.admin_client().await;
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("writer".into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await
        .unwrap();
    let api = Api::<ConfigMap>::namespaced(cp.impersonating_client(&ns, "writer").await, &ns);
    assert_forbidden(
        api.list(&ListParams::default()).await,
        "list before the RoleBinding",
    );

    common::rbac::grant_role(
        &admin,
        &ns,
        "configmap-writer",
        vec![common::rbac::rule(
            &[""],
            &["configmaps"],
            &["get", "list", "create"],
        )],
        (&ns, "writer"),
    )
    .await;

    // The RBAC authorizer works from an informer cache: poll.
    wait_for(Duration::from_secs(30), || async {
        api.list(&ListParams::default()).await.is_ok()
    })
    .await;
    api.create(&PostParams::default(), &configmap("written", &[("k", "v")]))
        .await
        .expect("create is granted");
    let read = api.get("written").await.expect("get is granted");
    assert_eq!(read.data.unwrap()["k"], "v");
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .collect();
    assert_eq!(names, ["written"]);
    // Only the granted verbs: delete is still forbidden.
    assert_forbidden(
        api.delete("written", &DeleteParams::default()).await,
        "delete is not in the Role",
    );
}

/// The admin, impersonating and ServiceAccount clients, and the kubeconfig files
/// a subprocess would load, authenticate as the users and groups they claim.
#[tokio::test(flavor = "multi_thread")]
async fn clients_and_kubeconfigs_carry_the_expected_identity() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("identity").await;
    let sa_user = format!("system:serviceaccount:{ns}:robot");
    let sa_groups = [
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_owned(),
    ];

    let (user, groups) = whoami(cp.admin_client().await).await;
    assert_eq!(user, "admin");
    assert!(groups.iter().any(|g| g == "system:masters"), "{groups:?}");

    let (user, groups) = whoami(cp.impersonating_client(&ns, "robot").await).await;
    assert_eq!(user, sa_user);
    for g in &sa_groups {
        assert!(groups.contains(g), "{g} missing from {groups:?}");
    }

    // The kubeconfig files, loaded as a subprocess would.
    let (admin, namespace) = client_from_kubeconfig(&cp.kubeconfig_path()).await;
    assert_eq!(namespace, "default");
    assert_eq!(whoami(admin).await.0, "admin");
    let sa_kubeconfig = cp.kubeconfig_for_serviceaccount(&ns, "robot");
    let (robot, namespace) = client_from_kubeconfig(&sa_kubeconfig).await;
    assert_eq!(
        namespace,
        ns.name(),
        "the SA kubeconfig's context namespace"
    );
    let (user, groups) = whoami(robot.clone()).await;
    assert_eq!(user, sa_user);
    for g in &sa_groups {
        assert!(groups.contains(g), "{g} missing from {groups:?}");
    }
    assert_forbidden(
        Api::<ConfigMap>::default_namespaced(robot)
            .list(&ListParams::default())
            .await,
        "SA kubeconfig without RBAC",
    );

    // A real subprocess (helm, a Go client) honours both files.
    let mut admin_list = cp.helm_command();
    admin_list.args(["list", "--all-namespaces", "--output", "json"]);
    assert_eq!(run_ok(admin_list, "helm list as admin").trim(), "[]");
    let out = cp
        .helm_command()
        .env("KUBECONFIG", &sa_kubeconfig)
        .args(["list", "--output", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "helm list as the SA should be forbidden"
    );
    assert!(
        stderr.contains("forbidden") && stderr.contains(&sa_user),
        "helm's error names the impersonated SA: {stderr}"
    );
}

/// `apply_crds` applies every manifest of `crds/` (idempotently), the CRD is
/// Established with a storage version, and TracingRelations are served.
#[tokio::test(flavor = "multi_thread")]
async fn crds_from_the_repository_are_applied_and_established() {
    let cp = ControlPlane::shared();
    let applied = cp.apply_crds().await;
    assert!(
        applied
            .iter()
            .any(|n| n == "CustomResourceDefinition/tracingrelations.tracing.relations.dev"),
        "{applied:?}"
    );
    // Idempotent: a second apply succeeds with the same objects.
    assert_eq!(cp.apply_crds().await, applied);

    // The new resource is served: list TracingRelations in a namespace.
    let crd = Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(
        cp.admin_client().await,
    )
    .get(CRD_NAME)
    .await
    .unwrap();
    let managers: Vec<_> = crd
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "tests"),
        "field managers: {managers:?}"
    );
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .expect("a storage version");
    let gvk = GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
    let ns = cp.namespace("crds").await;
    let api = Api::<DynamicObject>::namespaced_with(cp.admin_client().await, &ns, &resource);
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// A ValidatingAdmissionPolicy and its binding are enforced by the API server
/// (a bad ConfigMap refused, a good one admitted), only where the binding matches.
#[tokio::test(flavor = "multi_thread")]
async fn validating_admission_policies_are_enforced() {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };

    let cp = ControlPlane::shared();
    let marker = format!("vap-{:08x}", rand::random::<u32>());
    // Only this test's namespace is matched, so other tests are unaffected.
    let ns = cp
        .namespace_with_labels("vap", &[("harness-vap", &marker)])
        .await;
    let admin = cp.admin_client().await;
    // Deserialized into the typed objects, so a misspelt field fails here.
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": marker},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": {"matchLabels": {"harness-vap": marker}},
                "resourceRules": [{
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE"],
                    "resources": ["configmaps"],
                }],
            },
            "validations": [{
                "expression": "!has(object.data) || !('forbidden' in object.data)",
                "message": "key 'forbidden' is not allowed",
            }],
        },
    }))
    .expect("a ValidatingAdmissionPolicy");
    Api::<ValidatingAdmissionPolicy>::all(admin.clone())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": marker},
        "spec": {"policyName": marker, "validationActions": ["Deny"]},
    }))
    .expect("a ValidatingAdmissionPolicyBinding");
    Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // Policies reach the admission plugin through an informer: poll.
    let api = Api::<ConfigMap>::namespaced(admin, &ns);
    let status = common::wait_for_some(Duration::from_secs(30), || async {
        let bad = configmap("bad", &[("forbidden", "x")]);
        match api.create(&PostParams::default(), &bad).await {
            Err(kube::Error::Api(status)) => Some(status),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => {
                api.delete("bad", &DeleteParams::default()).await.unwrap();
                None
            }
        }
    })
    .await;
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("key 'forbidden' is not allowed"),
        "{status:?}"
    );
    api.create(
        &PostParams::default(),
        &configmap("good", &[("allowed", "x")]),
    )
    .await
    .expect("a valid ConfigMap is admitted");
}

/// With kube-controller-manager, owned objects are garbage-collected with their
/// owner and namespace deletion finishes; bystanders stay.
#[tokio::test(flavor = "multi_thread")]
async fn controller_manager_collects_garbage_and_deletes_namespaces() {
    let cp = ControlPlane::start(ControlPlaneOptions {
        controller_manager: true,
        ..ControlPlaneOptions::default()
    });
    assert!(cp.controller_manager_pid().is_some());
    let ns = cp.namespace("gc").await;
    let api = Api::<ConfigMap>::namespaced(cp.admin_client().await, &ns);
    let owner = fixtures::create(&api, &configmap("owner", &[])).await;
    let mut child = configmap("child", &[]);
    child.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().unwrap(),
        ..OwnerReference::default()
    }]);
    fixtures::create(&api, &child).await;
    let unowned = fixtures::create(&api, &configmap("bystander", &[])).await;

    api.delete("owner", &DeleteParams::default()).await.unwrap();
    wait_for_named(
        "the garbage collector to delete the child",
        Duration::from_secs(60),
        || async { api.get_opt("child").await.unwrap().is_none() },
    )
    .await;
    assert_eq!(
        api.get("bystander").await.unwrap().metadata.uid,
        unowned.metadata.uid,
        "an object without owner survives"
    );

    // The namespace controller finishes namespace deletion.
    let namespaces = Api::<Namespace>::all(cp.admin_client().await);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    wait_for_named(
        "the namespace controller to remove the namespace",
        Duration::from_secs(60),
        || async { namespaces.get_opt(&ns).await.unwrap().is_none() },
    )
    .await;
}

/// A private control plane takes extra apiserver flags (an admission plugin is
/// active) and keeps its data across restarts of kube-apiserver and etcd.
#[tokio::test(flavor = "multi_thread")]
async fn private_control_plane_takes_extra_flags_and_survives_restarts() {
    let cp = ControlPlane::start(ControlPlaneOptions {
        apiserver_args: vec![
            "--enable-admission-plugins=AlwaysPullImages".into(),
            "--max-mutating-requests-inflight=1".into(),
        ],
        ..ControlPlaneOptions::default()
    });
    assert_ne!(
        cp.url(),
        ControlPlane::shared().url(),
        "a separate apiserver"
    );

    // The extra admission plugin is active: it forces imagePullPolicy Always.
    let ns = cp.namespace("faults").await;
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("registry.invalid/pause:1".into()),
                image_pull_policy: Some("IfNotPresent".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    let created = Api::<Pod>::namespaced(cp.admin_client().await, &ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    assert_eq!(
        created.spec.unwrap().containers[0]
            .image_pull_policy
            .as_deref(),
        Some("Always")
    );

    let api = Api::<ConfigMap>::namespaced(cp.admin_client().await, &ns);
    fixtures::create(&api, &configmap("survivor", &[("k", "v")])).await;

    // Restart kube-apiserver: new process, same URL, same data.
    let before = cp.apiserver_pid().unwrap();
    let started = Instant::now();
    cp.restart_apiserver().await;
    eprintln!("apiserver restart took {:.1?}", started.elapsed());
    assert_ne!(cp.apiserver_pid().unwrap(), before);
    assert!(
        !common::process::pid_alive(before),
        "the old apiserver is gone"
    );
    assert!(cp.is_ready().await);
    assert_eq!(api.get("survivor").await.unwrap().data.unwrap()["k"], "v");

    // Stop etcd: the apiserver turns unready; start it: ready again, data kept.
    let etcd_pid = cp.etcd_pid().unwrap();
    cp.stop_etcd().await;
    assert!(cp.etcd_pid().is_none());
    assert!(!common::process::pid_alive(etcd_pid));
    wait_for_named(
        "readyz to fail without etcd",
        Duration::from_secs(60),
        || async { !cp.is_ready().await },
    )
    .await;
    cp.start_etcd().await;
    wait_for_named(
        "readyz to recover with etcd",
        Duration::from_secs(60),
        || async { cp.is_ready().await },
    )
    .await;
    let read = common::wait_for_some(Duration::from_secs(30), || async {
        api.get("survivor").await.ok()
    })
    .await;
    assert_eq!(read.data.unwrap()["k"], "v");
}

/// The binaries are Kubernetes 1.33 (apiserver and controller-manager), etcd 3.5
/// and helm 3, and helm renders for Kubernetes 1.33.
#[test]
fn binaries_are_kubernetes_1_33_and_helm_renders_for_1_33() {
    let version = |bin: &str, args: &[&str]| {
        let mut cmd = Command::new(common::binary(bin));
        cmd.args(args);
        run_ok(cmd, &format!("{bin} {args:?}")).trim().to_owned()
    };
    let apiserver = version("kube-apiserver", &["--version"]);
    assert!(apiserver.starts_with("Kubernetes v1.33."), "{apiserver}");
    let kcm = version("kube-controller-manager", &["--version"]);
    assert_eq!(kcm, apiserver);
    let etcd = version("etcd", &["--version"]);
    assert!(etcd.contains("etcd Version: 3.5."), "{etcd}");

    let home = tempfile::tempdir().unwrap();
    let helm = |args: &[&str]| {
        let mut cmd = common::helm_command_in(home.path());
        cmd.args(args);
        run_ok(cmd, &format!("helm {args:?}"))
    };
    let helm_version = helm(&["version", "--template", "{{.Version}}"]);
    assert!(helm_version.starts_with("v3."), "{helm_version}");

    let chart = home.path().join("chart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/kube-version.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-version\ndata:\n  \
         major: \"{{ .Capabilities.KubeVersion.Major }}\"\n  \
         minor: \"{{ .Capabilities.KubeVersion.Minor }}\"\n",
    )
    .unwrap();
    let rendered = helm(&["template", "probe", chart.to_str().unwrap()]);
    let cm: ConfigMap =
        serde_yaml::from_str(&rendered).unwrap_or_else(|e| panic!("{e}: {rendered}"));
    let data = cm.data.unwrap();
    assert_eq!(data["major"], "1", "{rendered}");
    assert_eq!(data["minor"], "33", "{rendered}");
}

/// A control plane that cannot start reports why, naming its log, and leaves no
/// process or directory behind.
#[test]
fn failed_start_reports_the_log_and_leaves_nothing_behind() {
    let bogus = "--definitely-not-an-apiserver-flag";
    let panic = std::panic::catch_unwind(|| {
        ControlPlane::start(ControlPlaneOptions {
            apiserver_args: vec![bogus.into()],
            startup_timeout: Duration::from_secs(30),
            ..ControlPlaneOptions::default()
        })
    })
    .expect_err("an apiserver with an unknown flag cannot start");
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| panic.downcast_ref::<&str>().unwrap_or(&"?").to_string());
    assert!(message.contains("kube-apiserver exited"), "{message}");
    assert!(
        message.contains(&format!("unknown flag: {bogus}")),
        "log tail included: {message}"
    );

    // The failed attempt's etcd was killed and its directory removed.
    let dir = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("log: "))
        .map(|log| std::path::Path::new(log).parent().unwrap().to_owned())
        .expect("the message names the log file");
    assert!(!dir.exists(), "{} was removed", dir.display());
    // (A watchdog subshell notices that its process is gone within 0.5 s.)
    let leftovers = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(dir.to_str().unwrap()))
            .collect()
    };
    let start = Instant::now();
    while !leftovers().is_empty() && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "processes still naming {}",
        dir.display()
    );
}

/// A supervised child lives as long as its test process and is killed within
/// about half a second once that process dies, however it ends.
#[test]
fn watchdog_kills_supervised_children_when_their_test_process_dies() {
    // A stand-in "test process" (bash) starts a supervised `sleep` watching
    // itself, prints the sleep's pid and exits without cleaning up.
    let script = "bash -c \"$1\" supervise $$ sleep 300 </dev/null >/dev/null 2>&1 & echo $!";
    let out = Command::new("bash")
        .args(["-c", script, "fake-test", common::process::SUPERVISE_SCRIPT])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let start = Instant::now();
    while common::process::pid_alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "supervised pid {pid} outlived its parent by 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "orphan killed {:.1?} after its parent exited",
        start.elapsed()
    );

    // While the parent lives, the child is left alone; the Child handle is the
    // program itself (exec), with its real exit status.
    let mut sleep = Command::new("sleep");
    sleep.arg("1");
    let mut child = common::process::supervised_command(&sleep, std::process::id())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap();
    assert_eq!(comm.trim(), "sleep");
    assert!(child.wait().unwrap().success());
}

/// The `Operator` guard runs the real binary with a loopback metrics address,
/// captures its log, and delivers SIGTERM and SIGKILL to the real pid.
#[tokio::test(flavor = "multi_thread")]
async fn operator_guard_runs_logs_and_kills() {
    let cp = ControlPlane::shared();
    // The operator binary itself: `crd` prints the CRD and exits 0.
    let mut cmd = cp.operator_command();
    cmd.arg("crd");
    let mut op = cp.spawn_operator(&cmd);
    assert!(op.metrics_addr().ip().is_loopback());
    let status = op.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}: {}", op.logs());
    assert!(
        op.logs().contains("kind: CustomResourceDefinition"),
        "{}",
        op.logs()
    );

    // A long-running process: SIGTERM and SIGKILL reach the real pid.
    let mut sleeper = Command::new("bash");
    sleeper.args(["-c", "echo started; exec sleep 300"]);
    let log = cp.dir().join("sleeper.log");
    let mut op = common::Operator::spawn(&sleeper, &log);
    op.wait_for_log("started", Duration::from_secs(10)).await;
    assert!(op.is_running());
    op.sigterm();
    let status = op.wait_exit(Duration::from_secs(10)).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "{status}");

    let mut op = common::Operator::spawn(&sleeper, &log);
    let pid = op.pid();
    op.wait_for_log("started", Duration::from_secs(10)).await;
    assert_eq!(op.kill_9().signal(), Some(9));
    assert!(!common::process::pid_alive(pid));
}
