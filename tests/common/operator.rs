//! The operator binary as a supervised child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use super::process;

/// Path of the operator binary Cargo built for this test run.
pub const OPERATOR_BIN: &str = env!("CARGO_BIN_EXE_tracing-relation-operator");

/// A running operator process. Killed (SIGKILL) and reaped on drop; if the
/// test is panicking at that moment, the tail of its log goes to stderr.
/// Supervised like the control plane, so it also dies with the test process.
pub struct Operator {
    child: Child,
    log: PathBuf,
    metrics_addr: Option<SocketAddr>,
    exit: Option<ExitStatus>,
}

impl Operator {
    /// Spawns `cmd` (normally from `ControlPlane::operator_command`) with
    /// stdout and stderr appended to `log`.
    pub fn spawn(cmd: &Command, log: &Path) -> Operator {
        let metrics_addr = metrics_addr_of(cmd);
        let child = process::spawn_supervised(cmd, log);
        Operator {
            child,
            log: log.to_owned(),
            metrics_addr,
            exit: None,
        }
    }

    /// The operator's pid (the binary itself, not a wrapper).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the log file is.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the operator wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The `--metrics-addr` (flag or `METRICS_ADDR`) it was started with.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
            .expect("the operator command sets neither --metrics-addr nor METRICS_ADDR")
    }

    /// `http://<metrics addr>`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}", self.metrics_addr())
    }

    /// GET `path` on the metrics/health server: `Ok((status, body))`, or the
    /// connection error (e.g. not listening yet).
    pub async fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        let addr = self.metrics_addr();
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || {
            process::http_get_blocking(addr, &owned, Duration::from_secs(2))
        })
        .await
        .expect("http_get task panicked")
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))
    }

    /// Sends SIGTERM (graceful shutdown) with `kill -TERM <pid>`.
    pub fn sigterm(&self) {
        process::sigterm(self.pid());
    }

    /// SIGKILLs the operator and reaps it.
    pub fn kill_9(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let status = process::kill_and_wait(&mut self.child);
        self.exit = Some(status);
        status
    }

    /// Its exit status if it has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits for it to exit; panics with the log tail after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "operator (pid {}) still running after {timeout:?}; log tail:\n{}",
                    self.pid(),
                    process::log_tail(&self.log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the log contains `needle`; panics with the log tail after
    /// `timeout`, or at once if the operator exits first.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let start = std::time::Instant::now();
        loop {
            if self.logs().contains(needle) {
                return;
            }
            if let Some(status) = self.try_wait() {
                // It may have logged the line just before exiting.
                if self.logs().contains(needle) {
                    return;
                }
                panic!(
                    "operator exited ({status}) before logging {needle:?}; log tail:\n{}",
                    process::log_tail(&self.log, 40)
                );
            }
            if start.elapsed() >= timeout {
                panic!(
                    "operator did not log {needle:?} within {timeout:?}; log tail:\n{}",
                    process::log_tail(&self.log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let was_running = self.exit.is_none();
        self.kill_9();
        if std::thread::panicking() {
            eprintln!(
                "---- operator log tail ({}, {}) ----\n{}\n----",
                self.log.display(),
                if was_running {
                    "killed by the harness"
                } else {
                    "had exited"
                },
                process::log_tail(&self.log, 60)
            );
        }
    }
}

/// The metrics address a command passes, by flag or environment.
fn metrics_addr_of(cmd: &Command) -> Option<SocketAddr> {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let from_flag = args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix("--metrics-addr=") {
            Some(v.to_owned())
        } else if a == "--metrics-addr" {
            args.get(i + 1).cloned()
        } else {
            None
        }
    });
    let from_env = || {
        cmd.get_envs().find_map(|(k, v)| {
            (k == "METRICS_ADDR").then(|| v.map(|v| v.to_string_lossy().into_owned()))?
        })
    };
    from_flag.or_else(from_env)?.parse().ok()
}

/// `log` without ANSI colour sequences (the text log format colours field names).
pub fn strip_ansi(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Operator {
    /// Waits until `/readyz` answers 200; panics if the operator exits first or
    /// is not ready within `timeout`, with its log.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let started = std::time::Instant::now();
        loop {
            if let Ok((200, _)) = self.http_get("/readyz").await {
                return;
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "operator exited ({status}) before becoming ready; log:\n{}",
                    self.logs()
                );
            }
            assert!(
                started.elapsed() < timeout,
                "operator not ready within {timeout:?}; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
