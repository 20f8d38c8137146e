//! Reporting changes of a mounted endpoint document by polling.
//!
//! The kubelet updates a ConfigMap volume in place: it writes the new files into
//! a fresh timestamped directory and atomically renames a `..data_tmp` symlink
//! over `..data`. Each poll reads one consistent snapshot through `..data`
//! (see [`super::read_dir`]) and compares its content with the last one seen,
//! so a swap that keeps the content identical is not reported. Polling needs no
//! inotify and works on every volume type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Endpoints, Error, endpoints_from, read_data};

/// Default interval between two polls.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What is compared between polls: the raw content, or the error's text.
type Seen = Result<Option<BTreeMap<String, String>>, String>;

/// Watches a mounted endpoint document for changes.
///
/// Every state is reported, not only bound ones: a document that becomes
/// malformed or unbound is reported as the matching [`Error`].
///
/// ```no_run
/// # async fn demo() {
/// use tracing_relation_operator::consumer::Watcher;
///
/// let mut watcher = Watcher::new("/etc/tracing");
/// println!("now: {:?}", watcher.current());
/// loop {
///     match watcher.changed().await {
///         Ok(endpoints) => println!("endpoint changed: {:?}", endpoints.otlp_grpc_endpoint()),
///         Err(e) => eprintln!("endpoint document unusable: {e}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Watcher {
    dir: PathBuf,
    interval: Duration,
    seen: Seen,
    current: Result<Endpoints, Error>,
}

fn read(dir: &Path) -> (Seen, Result<Option<BTreeMap<String, String>>, Error>) {
    let raw = read_data(dir);
    let seen = match &raw {
        Ok(data) => Ok(data.clone()),
        Err(e) => Err(e.to_string()),
    };
    (seen, raw)
}

impl Watcher {
    /// Starts watching `dir`, taking its current content as the baseline
    /// (changes are reported relative to it). Reads the directory once.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let (seen, raw) = read(&dir);
        let current = raw.and_then(|d| endpoints_from(&dir, d));
        Watcher {
            dir,
            interval: DEFAULT_POLL_INTERVAL,
            seen,
            current,
        }
    }

    /// Sets the interval between polls (default [`DEFAULT_POLL_INTERVAL`]).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The poll interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The last state seen (the baseline until a change is reported).
    pub fn current(&self) -> Result<Endpoints, Error> {
        self.current.clone()
    }

    fn observe(
        &mut self,
        (seen, raw): (Seen, Result<Option<BTreeMap<String, String>>, Error>),
    ) -> Option<Result<Endpoints, Error>> {
        if seen == self.seen {
            return None;
        }
        self.seen = seen;
        self.current = raw.and_then(|d| endpoints_from(&self.dir, d));
        Some(self.current.clone())
    }

    /// Reads the directory once: `Some(state)` if it differs from the last state
    /// seen (which it then becomes), `None` if unchanged. Blocks briefly.
    pub fn poll(&mut self) -> Option<Result<Endpoints, Error>> {
        let snapshot = read(&self.dir);
        self.observe(snapshot)
    }

    /// Waits until the document changes and returns the new state. Checks at
    /// once, then every interval. Needs a Tokio runtime (the file reads run on
    /// its blocking pool). Cancel-safe: dropping the future loses no change.
    pub async fn changed(&mut self) -> Result<Endpoints, Error> {
        loop {
            let dir = self.dir.clone();
            let snapshot = match tokio::task::spawn_blocking(move || read(&dir)).await {
                Ok(s) => s,
                Err(_) => read(&self.dir),
            };
            if let Some(state) = self.observe(snapshot) {
                return state;
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Blocking [`Self::changed`]: sleeps the calling thread between polls.
    pub fn changed_blocking(&mut self) -> Result<Endpoints, Error> {
        loop {
            if let Some(state) = self.poll() {
                return state;
            }
            std::thread::sleep(self.interval);
        }
    }

    /// Blocking [`Self::changed`] that gives up after `timeout` (`None`: no change).
    pub fn changed_timeout_blocking(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<Endpoints, Error>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(state) = self.poll() {
                return Some(state);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep(self.interval.min(deadline - now));
        }
    }

    /// Moves the watcher into a Tokio task and returns a `watch` receiver that
    /// holds the current state and is updated on every change. The task ends
    /// when every receiver is dropped. Needs a Tokio runtime.
    pub fn spawn(mut self) -> tokio::sync::watch::Receiver<Result<Endpoints, Error>> {
        let (tx, rx) = tokio::sync::watch::channel(self.current());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    state = self.changed() => {
                        if tx.send(state).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        rx
    }
}
