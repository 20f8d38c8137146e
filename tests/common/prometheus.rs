//! Prometheus and promtool, built from Go modules by `hack/prometheus/build.sh`
//! (`$PROMETHEUS_BIN`, `$PROMTOOL_BIN`, set by `hack/test.sh`), and small
//! HTTP servers on loopback that stand in for the metrics endpoints of pods.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::process;

const BUILD_HINT: &str = "build Prometheus with `hack/prometheus/build.sh` (it prints the \
    directory holding `prometheus` and `promtool` on its last line) and set PROMETHEUS_BIN and \
    PROMTOOL_BIN to them; `hack/test.sh` does both";

fn bin(var: &str) -> PathBuf {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(path) => process::require_executable(PathBuf::from(path), BUILD_HINT),
        None => panic!("{var} is not set; {BUILD_HINT}"),
    }
}

/// `promtool check config <file>`: its output on success; panics with it otherwise.
pub fn check_config(file: &Path) -> String {
    let mut cmd = Command::new(bin("PROMTOOL_BIN"));
    cmd.args(["check", "config"]).arg(file);
    process::run_ok(cmd, &format!("promtool check config {}", file.display()))
}

/// A running Prometheus; killed on drop.
pub struct Prometheus {
    child: Child,
    _janitor: Child,
    pub dir: PathBuf,
    pub addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        process::kill_and_wait(&mut self.child);
    }
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML text, which may name files in
    /// [`Prometheus::dir`], created first and passed to `config`) and waits
    /// for `/-/ready`.
    pub async fn start(config: impl FnOnce(&Path) -> String) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let janitor = process::spawn_janitor(&[&dir]);
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config(&dir)).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", super::free_port()).parse().unwrap();
        let mut cmd = Command::new(bin("PROMETHEUS_BIN"));
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--log.level=debug")
            // Discovery changes reach the scrape manager at once, not every 5 s.
            .arg("--scrape.discovery-reload-interval=100ms");
        let log = dir.join("prometheus.log");
        let child = process::spawn_supervised(&cmd, &log);
        let p = Prometheus {
            child,
            _janitor: janitor,
            dir,
            addr,
        };
        for _ in 0..300 {
            if let Ok((200, _)) = p.get("/-/ready").await {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "Prometheus did not get ready:\n{}",
            process::log_tail(&log, 40)
        );
    }

    async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let (addr, path) = (self.addr, path.to_string());
        tokio::task::spawn_blocking(move || {
            process::http_get_blocking(addr, &path, Duration::from_secs(5))
        })
        .await
        .expect("join")
    }

    /// The active targets of `/api/v1/targets`.
    pub async fn active_targets(&self) -> Vec<Value> {
        let (status, body) = self
            .get("/api/v1/targets?state=active")
            .await
            .expect("GET /api/v1/targets");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("targets JSON");
        v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Prometheus' log.
    pub fn log(&self) -> String {
        process::log_tail(&self.dir.join("prometheus.log"), 60)
    }
}

/// Serves `body` as `/metrics` (any path) on `addr` until the runtime ends.
pub async fn serve_metrics(addr: SocketAddr, body: &'static str) {
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
}
