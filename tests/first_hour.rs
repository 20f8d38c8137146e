//! A new user's first hour (issue #18), on the real control plane: the quick
//! start (`hack/local-up.sh`) run as a user runs it, clients that verify the
//! API server's certificate, `kubectl explain` on every field of the CRD, the
//! chart upgrading its CRD, and the operator's failure metrics present before
//! the first failure.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{CRD_NAME, ControlPlane, ControlPlaneOptions, OPERATOR_BIN};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::Value;
use tracing_relation_operator::core::reason::Reason;

/// What kube-rs logs for every connection it makes without verifying the
/// server's certificate (`insecure-skip-tls-verify`).
const TLS_BYPASS_WARNING: &str = "Server cert bypassed";

// ---- the quick start, as a user runs it ---------------------------------------------

/// Processes whose environment holds `marker` (everything `hack/local-up.sh`
/// started, however deep), as (pid, command name).
fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let needle = format!("TRO_QUICK_START_TEST={marker}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(pid) = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .parse::<u32>()
        else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) && common::process::pid_alive(pid)
        {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_owned()));
        }
    }
    out
}

/// One quick start: `nohup hack/local-up.sh &` from a non-interactive shell
/// (so it starts with SIGINT ignored, as a backgrounded job does) with
/// `CARGO_TARGET_DIR` set; waits until it has printed the filled consumer,
/// checks the operator it runs is the one cargo built there and that it logs
/// no TLS bypass, sends `signal` and returns how long until every process it
/// started was gone.
fn quick_start_then(signal: &str) -> Duration {
    let target_dir = Path::new(OPERATOR_BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the operator binary is in <target>/debug");
    let tmp = tempfile::tempdir().expect("temp dir");
    let log = tmp.path().join("local-up.log");
    let marker = format!("{}-{signal}", rand::random::<u64>());
    let mut cmd = Command::new("bash");
    // The environment of a user's shell, not of a cargo test: with the
    // CARGO_* variables cargo sets for a test (CARGO_MANIFEST_DIR, which ring's
    // build script watches, ...) the script's cargo build would rebuild
    // dependencies, and the next cargo test would rebuild them back.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CARGO_") && key != "CARGO_HOME" {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .arg("-c")
        .arg(r#"nohup "$0" >"$1" 2>&1 </dev/null & echo $!"#)
        .arg(common::repo_dir().join("hack/local-up.sh"))
        .arg(&log)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("TMPDIR", tmp.path())
        .env("TRO_QUICK_START_TEST", &marker)
        .current_dir(tmp.path())
        .output()
        .expect("bash");
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the pid of the backgrounded script");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // A cold cargo build of the operator binary may come first.
    let deadline = Instant::now() + Duration::from_secs(900);
    while !read_log().contains("Press Ctrl-C") {
        assert!(
            common::process::pid_alive(pid),
            "hack/local-up.sh exited before it was up:\n{}",
            read_log()
        );
        assert!(
            Instant::now() < deadline,
            "not up in 15 minutes:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = read_log();
    assert!(
        text.contains("tempo_endpoint: |"),
        "no filled consumer:\n{text}"
    );
    let operator = target_dir.join("debug/tracing-relation-operator");
    assert!(
        text.contains(&format!("(log: {}", tmp.path().display())),
        "the state under TMPDIR:\n{text}"
    );
    let running: BTreeSet<String> = processes_with(&marker).into_iter().map(|p| p.1).collect();
    for want in ["etcd", "kube-apiserver", "tracing-relatio"] {
        assert!(running.contains(want), "{want} is not running: {running:?}");
    }
    let exe = processes_with(&marker)
        .into_iter()
        .find(|p| p.1 == "tracing-relatio")
        .and_then(|p| std::fs::read_link(format!("/proc/{}/exe", p.0)).ok())
        .expect("the operator's executable");
    assert_eq!(
        exe.canonicalize().unwrap(),
        operator.canonicalize().unwrap(),
        "the quick start runs the binary cargo built into CARGO_TARGET_DIR"
    );
    let operator_log = std::fs::read_dir(tmp.path())
        .expect("TMPDIR")
        .map(|e| e.expect("entry").path().join("operator.log"))
        .find(|p| p.exists())
        .expect("the operator's log in the state directory");
    let operator_log = std::fs::read_to_string(operator_log).expect("operator log");
    assert!(operator_log.contains("caches synced"), "{operator_log}");
    assert!(
        !operator_log.contains(TLS_BYPASS_WARNING),
        "the quick start's operator skips TLS verification:\n{operator_log}"
    );

    let sent = Instant::now();
    common::process::signal(pid, signal);
    let deadline = sent + Duration::from_secs(30);
    while !processes_with(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIG{signal}: {:?}\n{}",
            processes_with(&marker),
            read_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = sent.elapsed();
    let text = read_log();
    assert!(text.contains(&format!("stopping (SIG{signal})")), "{text}");
    let left: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .expect("TMPDIR")
        .map(|e| e.expect("entry").path())
        .filter(|p| p != &log)
        .collect();
    assert!(left.is_empty(), "the state directory is left: {left:?}");
    took
}

/// The README's quick start from a shell that backgrounds it, with
/// `CARGO_TARGET_DIR` outside the repository (as `hack/test.sh` runs it when
/// the variable is set): it runs the operator cargo built there, fills the
/// example consumer over verified TLS, and SIGINT (which a backgrounded job
/// starts with ignored) as well as SIGTERM stop it and every process it
/// started within seconds, leaving no state behind.
#[test]
fn quick_start_in_the_background_fills_the_consumer_and_stops_on_sigint_and_sigterm() {
    for signal in ["INT", "TERM"] {
        let took = quick_start_then(signal);
        println!("SIG{signal}: everything gone after {took:.1?}");
        assert!(
            took < Duration::from_secs(10),
            "SIG{signal} took {took:?} to stop the quick start (it allows 3 s before SIGKILL)"
        );
    }
}

/// A fresh machine without the quick start's tools: it fails at once, before
/// any build, naming each missing command with what it is for and its Debian
/// package.
#[test]
fn quick_start_names_each_missing_prerequisite_and_its_package() {
    let bin = tempfile::tempdir().expect("temp dir");
    // Only what a bare machine has besides the listed prerequisites.
    for tool in [
        "bash",
        "env",
        "dirname",
        "awk",
        "sed",
        "cat",
        "cut",
        "sha256sum",
    ] {
        let path = which(tool);
        std::os::unix::fs::symlink(&path, bin.path().join(tool)).expect("symlink");
    }
    // Go is needed only while etcd and kube-apiserver are not built yet.
    let no_binaries = tempfile::tempdir().expect("temp dir");
    let out = Command::new(bin.path().join("bash"))
        .arg(common::repo_dir().join("hack/local-up.sh"))
        .env("PATH", bin.path())
        .env("CONTROLPLANE_BIN_DIR", no_binaries.path())
        .output()
        .expect("bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (tool, package) in [
        ("go", "golang-go"),
        ("cargo", "Debian package cargo"),
        ("kubectl", "kubernetes-client"),
        ("openssl", "Debian package openssl"),
        ("python3", "Debian package python3"),
        ("curl", "Debian package curl"),
        ("setsid", "Debian package util-linux"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("  - {tool} (")))
            .unwrap_or_else(|| panic!("{tool} is not named:\n{stderr}"));
        assert!(line.contains(package), "{line}");
    }
}

fn which(tool: &str) -> PathBuf {
    let out = Command::new("bash")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .expect("bash");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

// ---- TLS: the API server's CA is trusted ------------------------------------------

/// The test harness's kubeconfigs trust the API server's CA: the operator
/// connects, syncs and serves with no `Server cert bypassed` warning, while
/// the same operator with `insecure-skip-tls-verify` does log it (so the check
/// would see it). A fresh operator's /metrics already has every failure and
/// rejection family of known labels, at zero, before anything failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_trusts_the_api_servers_ca_and_exposes_zero_failure_metrics() {
    let cp = ControlPlane::shared();
    cp.apply_crds().await;
    let kubeconfig = std::fs::read_to_string(cp.operator_kubeconfig_path()).unwrap();
    assert!(
        kubeconfig.contains("certificate-authority-data"),
        "{kubeconfig}"
    );
    assert!(
        !kubeconfig.contains("insecure-skip-tls-verify"),
        "{kubeconfig}"
    );

    let op = cp.operator();
    common::wait::operator_ready(&op, Duration::from_secs(120)).await;
    let text = common::metrics::operator_text(&op).await;
    let logs = op.logs();
    assert!(logs.contains("caches synced"), "{logs}");
    assert!(
        !logs.contains(TLS_BYPASS_WARNING),
        "TLS verification skipped:\n{logs}"
    );

    let s = common::metrics::Scrape::parse(&text);
    let m = common::metrics::operator_metric_name;
    for controller in ["consumer", "relation"] {
        for reason in Reason::ERRORS {
            let labels = [("controller", controller), ("reason", reason.as_str())];
            assert!(
                s.get(&m("reconcile_failures_total"), &labels).is_some(),
                "no reconcile_failures_total{labels:?} before a failure:\n{text}"
            );
        }
    }
    for (family, reasons) in [
        ("consumer_rejections_total", &Reason::REJECTIONS[..]),
        ("consumer_write_failures_total", &Reason::WRITE_FAILURES[..]),
    ] {
        for reason in reasons {
            assert_eq!(
                s.get(&m(family), &[("reason", reason.as_str())]),
                Some(0.0),
                "{family}{{reason={reason}}} at zero before the first one:\n{text}"
            );
        }
    }

    // The control: skipping verification is what the warning reports.
    let insecure = cp.dir().join("kubeconfig-insecure.yaml");
    let skipping = kubeconfig
        .lines()
        .map(|l| match l.split_once("certificate-authority-data:") {
            Some((indent, _)) => format!("{indent}insecure-skip-tls-verify: true"),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&insecure, skipping).unwrap();
    let mut cmd = cp.operator_command();
    cmd.env("KUBECONFIG", &insecure);
    let mut skipping = cp.spawn_operator(&cmd);
    skipping
        .wait_for_log(TLS_BYPASS_WARNING, Duration::from_secs(60))
        .await;
}

// ---- kubectl explain ----------------------------------------------------------------

/// Every field path of `schema` below `prefix`, with its schema.
fn fields<'a>(prefix: &str, schema: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    let schema = schema.get("items").unwrap_or(schema);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let path = format!("{prefix}.{name}");
            out.push((path.clone(), sub));
            fields(&path, sub, out);
        }
    }
}

/// The DESCRIPTION section of `kubectl explain` output, as printed.
fn explained_description(out: &str) -> String {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with("DESCRIPTION:"))
        .skip(1);
    let mut text = Vec::new();
    for l in lines.by_ref() {
        if !l.is_empty() && !l.starts_with(' ') {
            break;
        }
        text.push(l.trim());
    }
    text.join("\n").trim().to_owned()
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `kubectl explain` on every field of the served CRD: each shows its
/// description in full, written as whole sentences (no line break inside a
/// paragraph, each paragraph ending with a period), and a field with a default
/// in the schema states it ("Defaults to 3200.").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_shows_every_field_as_whole_sentences_with_its_default() {
    let cp = ControlPlane::shared();
    cp.apply_crds().await;
    let crds = Api::<CustomResourceDefinition>::all(cp.admin_client().await);
    let crd = serde_json::to_value(crds.get(CRD_NAME).await.expect("the CRD")).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut all = vec![("tracingrelations".to_owned(), schema)];
    for top in ["spec", "status"] {
        let path = format!("tracingrelations.{top}");
        all.push((path.clone(), &schema["properties"][top]));
        fields(&path, &schema["properties"][top], &mut all);
    }
    assert!(all.len() > 50, "{} fields", all.len());

    let kubectl_explain = |path: &str| {
        Command::new("kubectl")
            .args(["explain", path])
            .env("KUBECONFIG", cp.kubeconfig_path())
            .output()
            .expect("kubectl")
    };
    // The API server publishes a new CRD's OpenAPI a moment after Established.
    common::wait::wait_for_named(
        "kubectl explain tracingrelations to find the CRD",
        Duration::from_secs(60),
        || async { kubectl_explain("tracingrelations").status.success() },
    )
    .await;
    let explain = |path: &str| {
        let out = kubectl_explain(path);
        assert!(
            out.status.success(),
            "kubectl explain {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let outputs: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<_> = all.chunks(all.len().div_ceil(4)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| s.spawn(move || chunk.iter().map(|(p, _)| explain(p)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    let mut problems = Vec::new();
    for ((path, field), out) in all.iter().zip(&outputs) {
        let served = field["description"].as_str().unwrap_or_default();
        let shown = explained_description(out);
        if served.is_empty() || shown.is_empty() {
            problems.push(format!("{path}: no description"));
            continue;
        }
        // For a list, kubectl adds the description of its items.
        let items = field["items"]["description"].as_str().unwrap_or_default();
        let expected = words(&format!("{served} {items}"));
        if words(&shown) != expected {
            problems.push(format!(
                "{path}: explain shows {shown:?}, the CRD has {expected:?}"
            ));
        }
        let paragraphs = served.split("\n\n").chain(items.split("\n\n"));
        for paragraph in paragraphs.filter(|p| !p.is_empty()) {
            if paragraph.trim().contains('\n') {
                problems.push(format!(
                    "{path}: a line break inside a sentence: {paragraph:?}"
                ));
            }
            if !paragraph.trim_end().ends_with('.') {
                problems.push(format!("{path}: not a whole sentence: {paragraph:?}"));
            }
        }
        match &field.get("default") {
            Some(Value::Number(n)) if !served.contains(&format!("Defaults to {n}.")) => {
                problems.push(format!("{path}: default {n} not stated in {served:?}"));
            }
            Some(Value::Object(_)) if !served.contains("default") => {
                problems.push(format!("{path}: its default is not stated in {served:?}"));
            }
            _ => {}
        }
    }
    println!("kubectl explain on {} fields", all.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---- the chart upgrades its CRD --------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn helm(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.helm_command().args(args).output().expect("helm");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "helm {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `helm upgrade` of a chart whose CRD changed changes the served CRD (Helm
/// never upgrades a chart's `crds/`; the CRD is a template), keeps the
/// relations stored under it, and `helm uninstall` leaves the CRD
/// (`helm.sh/resource-policy: keep`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_applies_a_changed_crd_and_uninstall_keeps_it() {
    let cp = ControlPlane::start(ControlPlaneOptions::default());
    let admin = cp.admin_client().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let chart = dir.path().join("chart");
    copy_dir(
        &common::repo_dir().join("charts/tracing-relation-operator"),
        &chart,
    );
    let chart_arg = chart.display().to_string();
    let release = [
        "tro",
        &chart_arg,
        "-n",
        "tro-system",
        "--set",
        "image.tag=dev",
        "--wait=false",
    ];
    helm(
        &cp,
        &[&["install", "--create-namespace"][..], &release[..]].concat(),
    );

    let crds = Api::<CustomResourceDefinition>::all(admin.clone());
    let described = |crd: &CustomResourceDefinition| {
        let v = serde_json::to_value(crd).unwrap();
        v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["interface"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let installed = crds
        .get(CRD_NAME)
        .await
        .expect("the chart installs the CRD");
    assert_eq!(
        installed
            .annotations()
            .get("helm.sh/resource-policy")
            .map(String::as_str),
        Some("keep")
    );
    let before = described(&installed);
    assert!(before.starts_with("The relation interface"), "{before}");
    let ns = cp.namespace("app").await;
    common::wait::wait_for_named("the CRD to be served", Duration::from_secs(60), || {
        let rels =
            Api::<tracing_relation_operator::api::TracingRelation>::namespaced(admin.clone(), &ns);
        let relation = common::fixtures::endpoint_relation("kept", "tempo.example.test", None);
        async move { rels.create(&Default::default(), &relation).await.is_ok() }
    })
    .await;

    // The next chart version changes a description.
    let template = chart.join("templates/crd.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    let changed = text.replacen(
        "The relation interface",
        "Changed by the upgrade, the relation interface",
        1,
    );
    assert_ne!(text, changed);
    std::fs::write(&template, changed).unwrap();
    let out = helm(&cp, &[&["upgrade"][..], &release[..]].concat());
    assert!(out.contains("REVISION: 2"), "{out}");
    let upgraded = crds.get(CRD_NAME).await.unwrap();
    assert!(
        described(&upgraded).starts_with("Changed by the upgrade"),
        "helm upgrade left the CRD as it was: {:?}",
        described(&upgraded)
    );
    assert_eq!(upgraded.uid(), installed.uid(), "upgraded in place");
    let rels =
        Api::<tracing_relation_operator::api::TracingRelation>::namespaced(admin.clone(), &ns);
    assert!(
        rels.get_opt("kept").await.unwrap().is_some(),
        "the relation survives"
    );

    helm(&cp, &["uninstall", "tro", "-n", "tro-system"]);
    assert_eq!(
        crds.get(CRD_NAME).await.expect("kept").uid(),
        installed.uid()
    );
    assert!(
        rels.get_opt("kept").await.unwrap().is_some(),
        "the relation survives uninstall"
    );
}
