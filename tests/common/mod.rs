//! Integration-test harness: a real Kubernetes control plane (etcd +
//! kube-apiserver, optionally kube-controller-manager), like controller-runtime's
//! envtest. Include it with `mod common;` in a test crate.
//!
//! * [`ControlPlane::shared`] starts one control plane per test binary, on first
//!   use; [`ControlPlane::start`] starts a private one (extra apiserver flags,
//!   kube-controller-manager, fault injection).
//! * Binaries come from `CONTROLPLANE_BIN_DIR`, else from the directory that
//!   `hack/controlplane/build.sh --print-dir` prints; if one is missing the
//!   harness panics and names `hack/controlplane/build.sh`, which builds them.
//! * Every process is supervised by a watchdog (see [`process`]) and dies
//!   within about half a second of the test process, however that ends; a
//!   janitor then removes the temporary directories. Set
//!   `CONTROLPLANE_KEEP_DIRS=1` to keep them (logs, certificates, etcd data).
//! * [`otel`] runs real OpenTelemetry parts: a Collector (`$OTELCOL_BIN`, from
//!   `hack/otelcol/build.sh`) as the receiver and the Python SDK as the consumer.
//! * Namespaces from [`ControlPlane::namespace`] are never deleted: the shared
//!   control plane runs no namespace controller (a deleted namespace would stay
//!   `Terminating`), and the whole control plane goes away with the test binary.

#![allow(dead_code)]

pub mod env;
pub mod fixtures;
pub mod metrics;
pub mod operator;
pub mod otel;
pub mod process;
pub mod prometheus;
pub mod python;
pub mod rbac;
pub mod strategies;
pub mod tls;
pub mod wait;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde::Deserialize;

#[allow(unused_imports)]
pub use env::OperatorEnv;
#[allow(unused_imports)]
pub use operator::{OPERATOR_BIN, Operator};
#[allow(unused_imports)]
pub use process::free_port;
#[allow(unused_imports)]
pub use wait::{
    operator_ready, wait_for, wait_for_named, wait_for_some, wait_for_some_named, wait_object,
};

/// The crate's root directory.
pub const REPO_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// The command (relative to [`REPO_DIR`]) that builds the control-plane binaries.
pub const BUILD_COMMAND: &str = "hack/controlplane/build.sh";
/// Issuer of service-account tokens.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc";
/// Name of the TracingRelation CRD.
pub const CRD_NAME: &str = "tracingrelations.tracing.relations.dev";
/// Field manager of the harness's server-side applies.
pub const FIELD_MANAGER: &str = "tests";

/// Serializes control-plane starts within a test binary: on two cores,
/// concurrent starts only make each other slow.
static STARTUP: Mutex<()> = Mutex::new(());
static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kills (SIGKILL) and reaps the child in `slot`, if any, leaving the slot empty.
fn kill_taken(slot: &Mutex<Option<Child>>) {
    if let Some(mut child) = lock(slot).take() {
        process::kill_and_wait(&mut child);
    }
}

/// The crate's root directory.
pub fn repo_dir() -> &'static Path {
    Path::new(REPO_DIR)
}

/// Directory holding etcd, kube-apiserver, kube-controller-manager and helm:
/// `$CONTROLPLANE_BIN_DIR`, else what `hack/controlplane/build.sh --print-dir`
/// prints (instant, builds nothing).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("CONTROLPLANE_BIN_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let script = repo_dir().join(BUILD_COMMAND);
        let out = Command::new(&script)
            .arg("--print-dir")
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{} --print-dir`: {e}", script.display()));
        assert!(
            out.status.success(),
            "`{} --print-dir` failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("`{} --print-dir` printed nothing", script.display()));
        PathBuf::from(dir.trim())
    })
}

/// Path of a control-plane binary (`etcd`, `kube-apiserver`,
/// `kube-controller-manager`, `helm`); panics naming the build command if it
/// is missing. Never skips.
pub fn binary(name: &str) -> PathBuf {
    process::require_executable(
        bin_dir().join(name),
        &format!(
            "build the control-plane binaries with `{BUILD_COMMAND}` (run from {REPO_DIR}; \
             takes several minutes), or point CONTROLPLANE_BIN_DIR at a directory holding them"
        ),
    )
}

/// A `helm` command whose cache, config and data homes are under `home`, so
/// it neither reads nor writes the user's helm state.
pub fn helm_command_in(home: &Path) -> Command {
    let mut cmd = Command::new(binary("helm"));
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_KUBECONTEXT")
        .env_remove("HELM_NAMESPACE");
    cmd
}

/// Runs a block on a private current-thread tokio runtime in a scoped thread,
/// so it works from any context (inside or outside another runtime).
fn block_on_private<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        let handle = s.spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot build a private tokio runtime")
                .block_on(fut)
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// What to start, and how.
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    /// Also run kube-controller-manager with the garbagecollector and
    /// namespace controllers.
    pub controller_manager: bool,
    /// Appended to kube-apiserver's flags (e.g.
    /// `--max-mutating-requests-inflight=1`).
    pub apiserver_args: Vec<String>,
    /// Appended to kube-controller-manager's flags.
    pub controller_manager_args: Vec<String>,
    /// How long each component may take to become ready.
    pub startup_timeout: Duration,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            controller_manager: false,
            apiserver_args: Vec::new(),
            controller_manager_args: Vec::new(),
            startup_timeout: Duration::from_secs(90),
        }
    }
}

/// Why a start attempt failed; `port_in_use` attempts are retried on new ports.
struct StartFailure {
    port_in_use: bool,
    message: String,
}

/// A running control plane. Dropping an owned one (from [`ControlPlane::start`])
/// kills its processes and removes its directories; the shared one lives until
/// the test binary exits, when the watchdogs kill it.
pub struct ControlPlane {
    opts: ControlPlaneOptions,
    shared: bool,
    keep_dirs: bool,
    bin_dir: PathBuf,
    /// Logs, certificates, keys, kubeconfigs, helm homes.
    dir: PathBuf,
    /// etcd data (on tmpfs when /dev/shm is usable).
    etcd_data: PathBuf,
    token: String,
    etcd_client_port: u16,
    etcd_peer_port: u16,
    apiserver_port: u16,
    etcd: Mutex<Option<Child>>,
    apiserver: Mutex<Option<Child>>,
    controller_manager: Mutex<Option<Child>>,
    janitor: Mutex<Option<Child>>,
    spawned_operators: AtomicUsize,
}

impl ControlPlane {
    /// The control plane shared by all tests of this test binary (no
    /// kube-controller-manager), started on first call. Safe to call from any
    /// thread or runtime; concurrent callers wait for the one start. If the
    /// start fails, every caller panics with the same message.
    pub fn shared() -> &'static ControlPlane {
        let started = SHARED.get_or_init(|| {
            std::panic::catch_unwind(|| {
                let _serial = lock(&STARTUP);
                ControlPlane::start_attempts(ControlPlaneOptions::default(), true)
            })
            .unwrap_or_else(|panic| {
                Err(panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic while starting".to_owned()))
            })
        });
        match started {
            Ok(cp) => cp,
            Err(msg) => panic!("the shared control plane failed to start:\n{msg}"),
        }
    }

    /// Starts a private control plane. Blocks until kube-apiserver's `/readyz`
    /// says ok (and kube-controller-manager runs, if asked for); panics with the
    /// tail of the failing component's log otherwise. Callable from async
    /// tests (it blocks the calling thread for a few seconds).
    pub fn start(opts: ControlPlaneOptions) -> ControlPlane {
        let _serial = lock(&STARTUP);
        ControlPlane::start_attempts(opts, false).unwrap_or_else(|msg| panic!("{msg}"))
    }

    fn start_attempts(opts: ControlPlaneOptions, shared: bool) -> Result<ControlPlane, String> {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match ControlPlane::try_start(opts.clone(), shared) {
                Ok(cp) => return Ok(cp),
                Err(f) if f.port_in_use && attempt < ATTEMPTS => {
                    eprintln!(
                        "control plane: port taken meanwhile, retrying on new ports:\n{}",
                        f.message
                    )
                }
                Err(f) => return Err(f.message),
            }
        }
        unreachable!()
    }

    fn try_start(opts: ControlPlaneOptions, shared: bool) -> Result<ControlPlane, StartFailure> {
        let began = Instant::now();
        binary("etcd");
        binary("kube-apiserver");
        if opts.controller_manager {
            binary("kube-controller-manager");
        }
        let keep_dirs =
            std::env::var("CONTROLPLANE_KEEP_DIRS").is_ok_and(|v| !v.is_empty() && v != "0");
        let dir = tempfile::Builder::new()
            .prefix("controlplane-")
            .tempdir()
            .expect("cannot create the control plane's temp dir")
            .keep();
        let etcd_data = etcd_data_dir(&dir);
        let janitor = (!keep_dirs).then(|| process::spawn_janitor(&[&dir, &etcd_data]));
        let cp = ControlPlane {
            opts,
            shared,
            keep_dirs,
            bin_dir: bin_dir().to_owned(),
            dir,
            etcd_data,
            token: format!("{:032x}", rand::random::<u128>()),
            etcd_client_port: free_port(),
            etcd_peer_port: free_port(),
            apiserver_port: free_port(),
            etcd: Mutex::new(None),
            apiserver: Mutex::new(None),
            controller_manager: Mutex::new(None),
            janitor: Mutex::new(janitor),
            spawned_operators: AtomicUsize::new(0),
        };
        // From here on, dropping `cp` (also while unwinding) kills what was
        // started and removes the directories.
        cp.write_credentials();
        let timeout = cp.opts.startup_timeout;

        cp.spawn_etcd();
        cp.wait_etcd_healthy(timeout)?;
        cp.spawn_apiserver();
        block_on_private(cp.wait_apiserver_ready(timeout))?;
        if cp.opts.controller_manager {
            cp.spawn_controller_manager();
            cp.wait_controller_manager_started(timeout)?;
        }
        eprintln!(
            "control plane{} ready at {} in {:.1?} (files in {}, etcd data in {})",
            if shared { " (shared)" } else { "" },
            cp.url(),
            began.elapsed(),
            cp.dir.display(),
            cp.etcd_data.display()
        );
        Ok(cp)
    }

    /// `https://127.0.0.1:<port>` of kube-apiserver.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// `http://127.0.0.1:<port>` of etcd's client endpoint.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_client_port)
    }

    /// Directory of the control-plane binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The helm binary.
    pub fn helm(&self) -> PathBuf {
        binary("helm")
    }

    /// A helm command for this control plane: `KUBECONFIG` is the admin
    /// kubeconfig, helm's homes are in the control plane's directory.
    pub fn helm_command(&self) -> Command {
        let mut cmd = helm_command_in(&self.dir.join("helm"));
        cmd.env("KUBECONFIG", self.kubeconfig_path());
        cmd
    }

    /// This control plane's temporary directory (logs, certs, kubeconfigs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin's bearer token (user `admin`, group `system:masters`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Log files of the components.
    pub fn etcd_log(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }
    pub fn apiserver_log(&self) -> PathBuf {
        self.dir.join("kube-apiserver.log")
    }
    pub fn controller_manager_log(&self) -> PathBuf {
        self.dir.join("kube-controller-manager.log")
    }

    /// Pids of the running components (`None` when stopped / not started).
    pub fn etcd_pid(&self) -> Option<u32> {
        lock(&self.etcd).as_ref().map(Child::id)
    }
    pub fn apiserver_pid(&self) -> Option<u32> {
        lock(&self.apiserver).as_ref().map(Child::id)
    }
    pub fn controller_manager_pid(&self) -> Option<u32> {
        lock(&self.controller_manager).as_ref().map(Child::id)
    }

    // ---- credentials and clients -------------------------------------------

    fn write_credentials(&self) {
        std::fs::write(
            self.dir.join("tokens.csv"),
            format!("{},admin,admin,system:masters\n", self.token),
        )
        .expect("cannot write tokens.csv");
        let key = self.dir.join("sa.key");
        let key_pub = self.dir.join("sa.pub");
        run_openssl(&[
            "genrsa".as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
            "2048".as_ref(),
        ]);
        run_openssl(&[
            "rsa".as_ref(),
            "-in".as_ref(),
            key.as_os_str(),
            "-pubout".as_ref(),
            "-out".as_ref(),
            key_pub.as_os_str(),
        ]);
        // The serving certificate, signed by a CA of this control plane's own,
        // which every client and kubeconfig trusts (no TLS verification skipped).
        tls::write_certs(&self.dir.join("tls"));
        self.write_kubeconfig(
            &self.kubeconfig_path(),
            serde_json::json!({ "token": self.token }),
            "default",
        );
    }

    /// The CA that signed the API server's serving certificate (PEM).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("tls/ca.crt")
    }

    /// A `kube::Config` for the admin (token auth, the serving certificate
    /// verified against [`Self::ca_path`]).
    pub fn admin_config(&self) -> kube::Config {
        let mut config = kube::Config::new(
            self.url()
                .parse()
                .expect("the apiserver URL is a valid URI"),
        );
        let der = self.dir.join("tls/ca.der");
        config.root_cert =
            Some(vec![std::fs::read(&der).unwrap_or_else(|e| {
                panic!("cannot read {}: {e}", der.display())
            })]);
        config.auth_info.token = Some(self.token.clone().into());
        config
    }

    /// A client for the admin (`system:masters`). Async only because a kube
    /// client must be created inside the runtime that uses it.
    pub async fn admin_client(&self) -> kube::Client {
        kube::Client::try_from(self.admin_config()).expect("cannot build the admin client")
    }

    /// A `kube::Config` of the admin impersonating `user` in `groups`.
    pub fn impersonating_config(&self, user: &str, groups: &[&str]) -> kube::Config {
        let mut config = self.admin_config();
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        config
    }

    /// A client acting as `user` in `groups` (admin impersonation).
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> kube::Client {
        kube::Client::try_from(self.impersonating_config(user, groups))
            .expect("cannot build an impersonating client")
    }

    /// A client acting as ServiceAccount `namespace/name`: user
    /// `system:serviceaccount:<ns>:<name>`, groups `system:serviceaccounts`,
    /// `system:serviceaccounts:<ns>`, `system:authenticated`.
    pub async fn impersonating_client(
        &self,
        namespace: &str,
        serviceaccount: &str,
    ) -> kube::Client {
        let user = serviceaccount_user(namespace, serviceaccount);
        let groups = serviceaccount_groups(namespace);
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        self.client_as(&user, &groups).await
    }

    /// A kubeconfig file for the admin (token, the CA as
    /// `certificate-authority-data`, namespace `default`), for subprocesses (operator, helm, kubectl).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    /// Writes a kubeconfig whose user is the admin impersonating ServiceAccount
    /// `namespace/name` (`as` / `as-groups`), with `namespace` as the
    /// context's namespace, and returns its path.
    /// A kubeconfig for the operator: the admin impersonating [`OPERATOR_USER`]
    /// in `system:masters` (all permissions, and the identity the admission
    /// policy lets write with the operator's field manager).
    pub fn operator_kubeconfig_path(&self) -> PathBuf {
        let path = self.dir.join("kubeconfig-operator.yaml");
        if !path.exists() {
            self.write_kubeconfig(
                &path,
                serde_json::json!({
                    "token": self.token,
                    "as": OPERATOR_USER,
                    "as-groups": ["system:masters", "system:authenticated"],
                }),
                "default",
            );
        }
        path
    }

    pub fn kubeconfig_for_serviceaccount(&self, namespace: &str, name: &str) -> PathBuf {
        let path = self
            .dir
            .join(format!("kubeconfig-sa-{namespace}-{name}.yaml"));
        self.write_kubeconfig(
            &path,
            serde_json::json!({
                "token": self.token,
                "as": serviceaccount_user(namespace, name),
                "as-groups": serviceaccount_groups(namespace),
            }),
            namespace,
        );
        path
    }

    fn write_kubeconfig(&self, path: &Path, user: serde_json::Value, namespace: &str) {
        let ca = std::fs::read_to_string(self.ca_path())
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.ca_path().display()));
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "controlplane",
                "cluster": {
                    "server": self.url(),
                    "certificate-authority-data": tls::base64(ca.as_bytes()),
                },
            }],
            "users": [{ "name": "user", "user": user }],
            "contexts": [{
                "name": "controlplane",
                "context": { "cluster": "controlplane", "user": "user", "namespace": namespace },
            }],
            "current-context": "controlplane",
        });
        let yaml = serde_yaml::to_string(&doc).expect("kubeconfig serializes");
        // Write and rename, so a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
        std::fs::write(&tmp, yaml)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, path)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    // ---- test objects ---------------------------------------------------------

    /// Creates a namespace named `<prefix>-<random>`. It is never deleted (see
    /// the module docs).
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        self.namespace_with_labels(prefix, &[]).await
    }

    /// [`ControlPlane::namespace`] with labels.
    pub async fn namespace_with_labels(
        &self,
        prefix: &str,
        labels: &[(&str, &str)],
    ) -> TestNamespace {
        let name = namespace_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: (!labels.is_empty()).then(|| fixtures::map(labels)),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.admin_client().await)
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        TestNamespace { name }
    }

    /// Server-side applies (field manager `tests`, forced) every object in
    /// `<repo>/crds/*.yaml` (multi-document files allowed): first the
    /// CustomResourceDefinitions, waiting until each is Established, then the
    /// other objects (e.g. a ValidatingAdmissionPolicy and its binding),
    /// resolved through discovery. Namespaced objects without a namespace go to
    /// `default`. Returns `Kind/name` of everything applied, in order. Idempotent.
    pub async fn apply_crds(&self) -> Vec<String> {
        let client = self.admin_client().await;
        let objects = read_manifests(&repo_dir().join("crds"));
        let (crds, others): (Vec<_>, Vec<_>) = objects.into_iter().partition(|(_, gvk, _)| {
            gvk.group == "apiextensions.k8s.io" && gvk.kind == "CustomResourceDefinition"
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut applied = Vec::new();

        let crd_api = Api::<CustomResourceDefinition>::all(client.clone());
        for (file, _, obj) in &crds {
            let name = obj.metadata.name.as_deref().unwrap_or_default();
            crd_api
                .patch(name, &params, &Patch::Apply(obj))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot apply CustomResourceDefinition {name} from {}: {e}",
                        file.display()
                    )
                });
            applied.push(format!("CustomResourceDefinition/{name}"));
        }
        for (_, _, obj) in &crds {
            let name = obj.metadata.name.as_deref().unwrap_or_default();
            let api = &crd_api;
            wait_for_named(
                format!("CustomResourceDefinition {name} to be Established"),
                Duration::from_secs(30),
                || async move {
                    api.get_opt(name).await.ok().flatten().is_some_and(|crd| {
                        crd.status
                            .and_then(|s| s.conditions)
                            .unwrap_or_default()
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
                },
            )
            .await;
        }

        for (file, gvk, obj) in &others {
            let name = obj.metadata.name.as_deref().unwrap_or_default();
            let (resource, caps) = kube::discovery::pinned_kind(&client, gvk)
                .await
                .unwrap_or_else(|e| {
                    panic!("{} from {}: kind not served: {e}", gvk.kind, file.display())
                });
            let api = if caps.scope == kube::discovery::Scope::Namespaced {
                let ns = obj.metadata.namespace.as_deref().unwrap_or("default");
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource)
            } else {
                Api::<DynamicObject>::all_with(client.clone(), &resource)
            };
            api.patch(name, &params, &Patch::Apply(obj))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot apply {} {name} from {}: {e}",
                        gvk.kind,
                        file.display()
                    )
                });
            applied.push(format!("{}/{name}", gvk.kind));
        }
        applied
    }

    // ---- the operator ---------------------------------------------------------

    /// A command for the operator binary with `KUBECONFIG` set to the admin
    /// kubeconfig, `METRICS_ADDR=127.0.0.1:<free port>` and
    /// `LEADER_ELECT=false`. These are environment variables, not flags, so a
    /// test can still pass `--leader-elect=true` or `--metrics-addr ...`
    /// (clap rejects a flag given twice; a flag wins over its env fallback).
    pub fn operator_command(&self) -> Command {
        let mut cmd = Command::new(OPERATOR_BIN);
        cmd.env("KUBECONFIG", self.operator_kubeconfig_path())
            .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("LEADER_ELECT", "false")
            .env("RUST_BACKTRACE", "1");
        cmd
    }

    /// Spawns `cmd` as an [`Operator`], logging to a fresh file in [`Self::dir`].
    pub fn spawn_operator(&self, cmd: &Command) -> Operator {
        let n = self.spawned_operators.fetch_add(1, Ordering::Relaxed);
        Operator::spawn(cmd, &self.dir.join(format!("operator-{n}.log")))
    }

    /// Spawns the operator with [`Self::operator_command`]'s defaults and
    /// `args`, and waits (at most `timeout`) until it is ready.
    pub async fn ready_operator(&self, args: &[&str], timeout: Duration) -> Operator {
        let mut cmd = self.operator_command();
        cmd.args(args);
        let mut op = self.spawn_operator(&cmd);
        op.wait_ready(timeout).await;
        op
    }

    /// Spawns the operator with [`Self::operator_command`]'s defaults.
    pub fn operator(&self) -> Operator {
        self.spawn_operator(&self.operator_command())
    }

    // ---- health and faults ----------------------------------------------------

    /// Whether kube-apiserver's `/readyz` answers `ok` right now.
    pub async fn is_ready(&self) -> bool {
        match kube::Client::try_from(self.probe_config()) {
            Ok(client) => readyz(&client).await.is_ok_and(|body| body.trim() == "ok"),
            Err(_) => false,
        }
    }

    /// Kills kube-apiserver (SIGKILL, like a crash) and starts it again on the
    /// same port and etcd; returns once `/readyz` is ok. Not allowed on the
    /// shared control plane.
    pub async fn restart_apiserver(&self) {
        self.stop_apiserver().await;
        self.start_apiserver().await;
    }

    /// Kills kube-apiserver (SIGKILL). Not allowed on the shared control plane.
    pub async fn stop_apiserver(&self) {
        self.assert_private("stop_apiserver");
        kill_taken(&self.apiserver);
    }

    /// Starts kube-apiserver again (same port and flags) and waits for `/readyz`.
    pub async fn start_apiserver(&self) {
        self.assert_private("start_apiserver");
        assert!(
            self.apiserver_pid().is_none(),
            "kube-apiserver is already running"
        );
        process::log_marker(&self.apiserver_log(), "starting kube-apiserver again");
        self.spawn_apiserver();
        if let Err(f) = self.wait_apiserver_ready(self.opts.startup_timeout).await {
            panic!("{}", f.message);
        }
    }

    /// Kills etcd (SIGKILL; the data stays). Not allowed on the shared control plane.
    pub async fn stop_etcd(&self) {
        self.assert_private("stop_etcd");
        kill_taken(&self.etcd);
    }

    /// Starts etcd again on the same ports and data and waits for its `/health`.
    pub async fn start_etcd(&self) {
        self.assert_private("start_etcd");
        assert!(self.etcd_pid().is_none(), "etcd is already running");
        process::log_marker(&self.etcd_log(), "starting etcd again");
        self.spawn_etcd();
        let timeout = self.opts.startup_timeout;
        // etcd is healthy well within a second; blocking briefly is fine.
        if let Err(f) = self.wait_etcd_healthy(timeout) {
            panic!("{}", f.message);
        }
    }

    fn assert_private(&self, what: &str) {
        assert!(
            !self.shared,
            "{what} would disturb every test using ControlPlane::shared(); \
             start a private one with ControlPlane::start(..)"
        );
    }

    // ---- processes -------------------------------------------------------------

    fn spawn_etcd(&self) {
        let client = self.etcd_url();
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        let mut cmd = Command::new(self.bin_dir.join("etcd"));
        cmd.arg("--name=controlplane")
            .arg(format!("--data-dir={}", self.etcd_data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=controlplane={peer}"))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        *lock(&self.etcd) = Some(process::spawn_supervised(&cmd, &self.etcd_log()));
    }

    fn spawn_apiserver(&self) {
        let d = |name: &str| self.dir.join(name).display().to_string();
        let mut cmd = Command::new(self.bin_dir.join("kube-apiserver"));
        cmd.arg(format!("--etcd-servers={}", self.etcd_url()))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.apiserver_port))
            .arg(format!("--tls-cert-file={}", d("tls/serving.crt")))
            .arg(format!("--tls-private-key-file={}", d("tls/serving.key")))
            .arg(format!("--token-auth-file={}", d("tokens.csv")))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-account-key-file={}", d("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                d("sa.key")
            ))
            .arg(format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            // No token controller runs, so pods must not need a ServiceAccount token.
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--allow-privileged=true")
            .arg("--profiling=false")
            .args(&self.opts.apiserver_args);
        *lock(&self.apiserver) = Some(process::spawn_supervised(&cmd, &self.apiserver_log()));
    }

    fn spawn_controller_manager(&self) {
        let mut cmd = Command::new(self.bin_dir.join("kube-controller-manager"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig_path().display()))
            .arg("--controllers=garbagecollector,namespace")
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .arg("--use-service-account-credentials=false")
            .args(&self.opts.controller_manager_args);
        *lock(&self.controller_manager) = Some(process::spawn_supervised(
            &cmd,
            &self.controller_manager_log(),
        ));
    }

    /// Exit status of the process in `slot`, if it has exited.
    fn exited(slot: &Mutex<Option<Child>>) -> Option<ExitStatus> {
        lock(slot)
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn failure(&self, component: &str, log: &Path, what: impl std::fmt::Display) -> StartFailure {
        let tail = process::log_tail(log, 40);
        StartFailure {
            port_in_use: tail.contains("address already in use"),
            message: format!(
                "{component} {what}\n  log: {log}\n  (temporary files are removed on exit; set \
                 CONTROLPLANE_KEEP_DIRS=1 to keep them)\n---- last lines of {log} ----\n{tail}\n----",
                log = log.display()
            ),
        }
    }

    fn wait_etcd_healthy(&self, timeout: Duration) -> Result<(), StartFailure> {
        let addr = ([127, 0, 0, 1], self.etcd_client_port).into();
        let start = Instant::now();
        loop {
            if let Some(status) = Self::exited(&self.etcd) {
                return Err(self.failure(
                    "etcd",
                    &self.etcd_log(),
                    format!("exited ({status}) before becoming healthy"),
                ));
            }
            let last = match process::http_get_blocking(addr, "/health", Duration::from_secs(1)) {
                Ok((200, body)) if body.contains(r#""health":"true""#) => return Ok(()),
                Ok((status, body)) => format!("HTTP {status}: {body}"),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= timeout {
                return Err(self.failure(
                    "etcd",
                    &self.etcd_log(),
                    format!(
                        "not healthy at {}/health after {timeout:?}; last answer: {last}",
                        self.etcd_url()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Admin config with short timeouts, for health probes.
    fn probe_config(&self) -> kube::Config {
        let mut config = self.admin_config();
        config.connect_timeout = Some(Duration::from_secs(2));
        config.read_timeout = Some(Duration::from_secs(5));
        config
    }

    async fn wait_apiserver_ready(&self, timeout: Duration) -> Result<(), StartFailure> {
        let log = self.apiserver_log();
        let client = kube::Client::try_from(self.probe_config())
            .map_err(|e| self.failure("kube-apiserver", &log, format!("probe client: {e}")))?;
        let start = Instant::now();
        loop {
            if lock(&self.apiserver).is_none() {
                return Err(self.failure("kube-apiserver", &log, "is not running"));
            }
            if let Some(status) = Self::exited(&self.apiserver) {
                return Err(self.failure(
                    "kube-apiserver",
                    &log,
                    format!("exited ({status}) before becoming ready"),
                ));
            }
            let last = match readyz(&client).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(e) => e,
            };
            if start.elapsed() >= timeout {
                return Err(self.failure(
                    "kube-apiserver",
                    &log,
                    format!(
                        "not ready at {}/readyz after {timeout:?}; last answer: {last}",
                        self.url()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn wait_controller_manager_started(&self, timeout: Duration) -> Result<(), StartFailure> {
        let log = self.controller_manager_log();
        let start = Instant::now();
        loop {
            if let Some(status) = Self::exited(&self.controller_manager) {
                return Err(self.failure(
                    "kube-controller-manager",
                    &log,
                    format!("exited ({status})"),
                ));
            }
            let text = std::fs::read(&log).unwrap_or_default();
            if String::from_utf8_lossy(&text).contains("\"Started controller\"") {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(self.failure(
                    "kube-controller-manager",
                    &log,
                    format!("started no controller within {timeout:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("url", &self.url())
            .field("etcd", &self.etcd_url())
            .field("dir", &self.dir)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for slot in [
            &self.controller_manager,
            &self.apiserver,
            &self.etcd,
            &self.janitor,
        ] {
            if let Some(mut child) = lock(slot).take() {
                process::kill_and_wait(&mut child);
            }
        }
        if !self.keep_dirs {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_dir_all(&self.etcd_data);
        }
    }
}

/// A namespace created for one test. Derefs to its name, so `&ns` works where
/// a `&str` is expected. Not deleted on drop (see the module docs).
#[derive(Clone, Debug)]
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::ops::Deref for TestNamespace {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn serviceaccount_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The groups a ServiceAccount's token carries.
pub fn serviceaccount_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_owned(),
    ]
}

/// `<prefix>-<8 random hex digits>`, made a valid DNS label.
fn namespace_name(prefix: &str) -> String {
    let mut clean: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    clean.truncate(50);
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "test" } else { clean };
    format!("{clean}-{:08x}", rand::random::<u32>())
}

/// etcd's data directory: a fresh directory on /dev/shm (tmpfs) when possible,
/// else `<dir>/etcd-data`.
fn etcd_data_dir(dir: &Path) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(tmp) = tempfile::Builder::new()
            .prefix("controlplane-etcd-")
            .tempdir_in(shm)
    {
        return tmp.keep();
    }
    let data = dir.join("etcd-data");
    std::fs::create_dir(&data).unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700));
    }
    data
}

fn run_openssl(args: &[&std::ffi::OsStr]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GET /readyz: the body on HTTP 200, else the error.
async fn readyz(client: &kube::Client) -> Result<String, String> {
    let mut request = kube::core::Request::new("/readyz")
        .list(&Default::default())
        .map_err(|e| e.to_string())?;
    *request.uri_mut() = "/readyz".parse().expect("valid path");
    client
        .request_text(request)
        .await
        .map_err(|e| e.to_string())
}

/// The identity the shipped admission policy knows as the operator's (the
/// chart's default ServiceAccount).
pub const SHIPPED_OPERATOR_IDENTITY: &str = "request.userInfo.username != 'system:serviceaccount:tracing-relation-operator:tracing-relation-operator'";

/// The operator's identity in the tests: the shipped policy's ServiceAccount
/// name (the admin impersonates it, in `system:masters`, see
/// [`ControlPlane::operator_command`]).
pub const OPERATOR_USER: &str =
    "system:serviceaccount:tracing-relation-operator:tracing-relation-operator";

/// Some tests run the operator as a ServiceAccount of their own, named
/// `tracing-relation-operator` or `operator`, in a test namespace: the
/// admission policy applied here knows those as the operator too (as the chart
/// renders it with its own ServiceAccount). Every other identity, the admin
/// included, is a user to it.
pub const TEST_OPERATOR_IDENTITY: &str = "!(request.userInfo.username.startsWith('system:serviceaccount:') && (request.userInfo.username.endsWith(':tracing-relation-operator') || request.userInfo.username.endsWith(':operator')))";

fn as_test_operator(manifest: &str) -> String {
    manifest.replace(SHIPPED_OPERATOR_IDENTITY, TEST_OPERATOR_IDENTITY)
}

/// Every object in `dir/*.yaml` / `*.yml` (files sorted by name), with its kind.
fn read_manifests(dir: &Path) -> Vec<(PathBuf, GroupVersionKind, DynamicObject)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.yaml files in {}", dir.display());
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let text = as_test_operator(&text);
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
            if value.is_null() {
                continue;
            }
            let obj: DynamicObject = serde_yaml::from_value(value)
                .unwrap_or_else(|e| panic!("{} holds an invalid object: {e}", file.display()));
            let gvk = obj
                .types
                .as_ref()
                .and_then(|t| GroupVersionKind::try_from(t).ok())
                .unwrap_or_else(|| panic!("an object in {} lacks apiVersion/kind", file.display()));
            assert!(
                obj.metadata.name.is_some(),
                "a {} in {} has no metadata.name",
                gvk.kind,
                file.display()
            );
            objects.push((file.clone(), gvk, obj));
        }
    }
    objects
}
