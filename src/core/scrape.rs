//! Scrape jobs, the seed's second direction of the relation: a consumer
//! declares jobs in the seed's format (a subset of Prometheus'
//! `<scrape_config>`) and which pods are its units; the backend side gets them
//! resolved, with topology labels, as Prometheus `scrape_configs`, `file_sd`
//! target groups and HTTP SD target groups. Pure: parsing, validation,
//! resolution against a list of ready pods, and the published formats.
//!
//! The seed's rules, carried over:
//! - only `job_name`, `static_configs`, `scrape_interval` and `scrape_timeout`
//!   are kept ([`ALLOWED_KEYS`]); other keys are dropped with a warning;
//! - no jobs means the default job, every unit on port 80 ([`default_jobs`]);
//! - `*:port` is each unit (here: each ready pod of the selector, by its IP);
//!   a fully qualified target is kept as it is;
//! - topology labels on every target (namespace, namespace uid, application),
//!   the unit (pod) only on wildcard targets;
//! - `job_name` is a fixed string and unique within the consumer; it is made
//!   unique across consumers by prefixing namespace and consumer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_yaml::Value;

use crate::core::contract::{MAX_QUOTED_LEN, truncate_to};

mod publish;
mod syntax;

pub use publish::*;
use syntax::duration_ms;
pub use syntax::*;

/// Consumer annotation: its jobs, in the seed's format (YAML or JSON: a list
/// of `<scrape_config>` subsets). Absent with a selector: the default job.
pub const SCRAPE_JOBS_ANNOTATION: &str = "tracing.relations.dev/scrape-jobs";
/// Consumer annotation: the label selector of its pods (its "units"), in its
/// own namespace: `key=value`, `key!=value`, `key` or `!key`, comma-separated.
pub const SCRAPE_SELECTOR_ANNOTATION: &str = "tracing.relations.dev/scrape-selector";
/// Consumer annotation: the application label of its targets (default: the
/// ConfigMap's name).
pub const SCRAPE_APPLICATION_ANNOTATION: &str = "tracing.relations.dev/scrape-application";

/// The keys of a job that are kept (the seed's `ALLOWED_KEYS`).
pub const ALLOWED_KEYS: [&str; 4] = [
    "job_name",
    "static_configs",
    "scrape_interval",
    "scrape_timeout",
];
/// The keys of a `static_configs` entry that are kept.
pub const STATIC_CONFIG_KEYS: [&str; 2] = ["targets", "labels"];

/// Topology label: the consumer's namespace (the seed's model name).
pub const LABEL_NAMESPACE: &str = "k8s_namespace";
/// Topology label: the uid of the consumer's namespace (the seed's model uuid).
pub const LABEL_NAMESPACE_UID: &str = "k8s_namespace_uid";
/// Topology label: the consumer's application (the seed's application name).
pub const LABEL_APPLICATION: &str = "k8s_application";
/// Topology label: the pod, on wildcard targets only (the seed's unit name).
pub const LABEL_POD: &str = "k8s_pod";
/// Every topology label: a consumer may not set them itself.
pub const TOPOLOGY_LABELS: [&str; 4] = [
    LABEL_NAMESPACE,
    LABEL_NAMESPACE_UID,
    LABEL_APPLICATION,
    LABEL_POD,
];

/// Longest jobs annotation that is parsed at all.
pub const MAX_JOBS_LEN: usize = 16 * 1024;
/// Most jobs one consumer may declare.
pub const MAX_JOBS: usize = 32;
/// Most targets (before wildcard expansion) one consumer may declare.
pub const MAX_TARGETS: usize = 256;
/// Longest declared job name.
pub const MAX_JOB_NAME_LEN: usize = 63;
/// The longest duration Prometheus reads: `i64::MAX` nanoseconds, in milliseconds.
pub const MAX_DURATION_MS: u64 = i64::MAX as u64 / 1_000_000;
/// Prometheus' default `scrape_interval` (a timeout may not exceed the interval).
pub const DEFAULT_INTERVAL_MS: u64 = 60_000;
/// Prometheus' default `scrape_timeout`.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// Where a target is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// `*:port`: each ready pod of the selector.
    Wildcard(u16),
    /// `host:port`, kept as written.
    Fixed(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Wildcard(p) => write!(f, "*:{p}"),
            Target::Fixed(t) => f.write_str(t),
        }
    }
}

/// One `static_configs` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticConfig {
    pub targets: Vec<Target>,
    pub labels: BTreeMap<String, String>,
}

/// One declared job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The declared name, or `job<index>` for an unnamed job (with `_`
    /// appended while a declared name is the same).
    pub name: String,
    pub scrape_interval: Option<String>,
    pub scrape_timeout: Option<String>,
    pub static_configs: Vec<StaticConfig>,
}

/// What a consumer asked to have scraped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeDeclaration {
    pub jobs: Vec<Job>,
    /// Its pods; required when a job has a wildcard target.
    pub selector: Option<Selector>,
    /// The application label of its targets.
    pub application: String,
    /// What was dropped (keys outside the allowed set), one line each: a
    /// Warning on the consumer, the jobs are published without them.
    pub dropped: Vec<String>,
}

/// Why a consumer's scrape declaration is refused (reason `InvalidScrapeJobs`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScrapeError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ScrapeError> {
    Err(ScrapeError(msg.into()))
}

fn quoted(s: &str) -> String {
    format!("{:?}", truncate_to(s, MAX_QUOTED_LEN))
}

/// The seed's `DEFAULT_JOB`: every unit on port 80.
pub fn default_jobs() -> Vec<Job> {
    vec![Job {
        name: "job0".to_string(),
        scrape_interval: None,
        scrape_timeout: None,
        static_configs: vec![StaticConfig {
            targets: vec![Target::Wildcard(80)],
            labels: BTreeMap::new(),
        }],
    }]
}

/// Whether ConfigMap `meta` asks to be scraped (it has a jobs or a selector annotation).
pub fn asks(meta: &ObjectMeta) -> bool {
    meta.annotations.as_ref().is_some_and(|a| {
        a.contains_key(SCRAPE_JOBS_ANNOTATION) || a.contains_key(SCRAPE_SELECTOR_ANNOTATION)
    })
}

/// The selector consumer `meta` asks its pods to be found by, if it is valid.
pub fn selector_of(meta: &ObjectMeta) -> Option<Selector> {
    let a = meta.annotations.as_ref()?;
    parse_selector(a.get(SCRAPE_SELECTOR_ANNOTATION)?).ok()
}

/// Reads the scrape declaration of ConfigMap `meta`: `None` when it does not ask.
pub fn of(meta: &ObjectMeta) -> Option<Result<ScrapeDeclaration, ScrapeError>> {
    if !asks(meta) {
        return None;
    }
    let a = meta.annotations.as_ref()?;
    let name = meta.name.as_deref().unwrap_or_default();
    Some(parse(
        name,
        a.get(SCRAPE_JOBS_ANNOTATION).map(String::as_str),
        a.get(SCRAPE_SELECTOR_ANNOTATION).map(String::as_str),
        a.get(SCRAPE_APPLICATION_ANNOTATION).map(String::as_str),
    ))
}

/// Parses the three annotations of consumer `name`.
pub fn parse(
    name: &str,
    jobs: Option<&str>,
    selector: Option<&str>,
    application: Option<&str>,
) -> Result<ScrapeDeclaration, ScrapeError> {
    let selector = selector
        .map(|s| {
            parse_selector(s)
                .map_err(|e| ScrapeError(format!("annotation {SCRAPE_SELECTOR_ANNOTATION}: {e}")))
        })
        .transpose()?;
    let mut dropped = Vec::new();
    let jobs = match jobs {
        None => default_jobs(),
        Some(text) => parse_jobs(text, &mut dropped)
            .map_err(|e| ScrapeError(format!("annotation {SCRAPE_JOBS_ANNOTATION}: {e}")))?,
    };
    let application = match application.map(str::trim) {
        None | Some("") => name.to_string(),
        Some(a) if a.len() <= 63 && a.chars().all(|c| !c.is_control()) => a.to_string(),
        Some(a) => {
            return err(format!(
                "annotation {SCRAPE_APPLICATION_ANNOTATION}={} must be at most 63 characters without control characters",
                quoted(a)
            ));
        }
    };
    let wildcard = jobs
        .iter()
        .flat_map(|j| &j.static_configs)
        .flat_map(|s| &s.targets)
        .find(|t| matches!(t, Target::Wildcard(_)));
    if let (Some(t), None) = (wildcard, &selector) {
        return err(format!(
            "target {t} means each pod of this consumer, but annotation {SCRAPE_SELECTOR_ANNOTATION} (the label selector of its pods) is not set"
        ));
    }
    Ok(ScrapeDeclaration {
        jobs,
        selector,
        application,
        dropped,
    })
}

/// Parses a jobs list in the seed's format.
pub fn parse_jobs(text: &str, dropped: &mut Vec<String>) -> Result<Vec<Job>, String> {
    if text.len() > MAX_JOBS_LEN {
        return Err(format!("longer than {MAX_JOBS_LEN} bytes"));
    }
    // JSON as JSON (YAML 1.1 reads some valid JSON strings differently), else YAML.
    let value: Value = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => serde_yaml::to_value(json).map_err(|e| format!("not YAML or JSON ({e})"))?,
        Err(_) => serde_yaml::from_str(text).map_err(|e| format!("not YAML or JSON ({e})"))?,
    };
    let Value::Sequence(items) = value else {
        return Err(
            "must be a list of jobs, such as [{\"static_configs\": [{\"targets\": [\"*:8000\"]}]}]"
                .into(),
        );
    };
    if items.is_empty() {
        return Err("the list of jobs is empty (remove the annotation for the default job, every pod on port 80)".into());
    }
    if items.len() > MAX_JOBS {
        return Err(format!("more than {MAX_JOBS} jobs"));
    }
    let mut jobs = Vec::with_capacity(items.len());
    let mut names = BTreeSet::new();
    let mut targets = 0;
    for (i, item) in items.iter().enumerate() {
        let job = parse_job(i, item, dropped)?;
        // Unnamed jobs are named below, once every declared name is known.
        if !job.name.is_empty() && !names.insert(job.name.clone()) {
            return Err(format!(
                "job_name {} is used by more than one job; each job needs its own name",
                quoted(&job.name)
            ));
        }
        targets += job
            .static_configs
            .iter()
            .map(|s| s.targets.len())
            .sum::<usize>();
        if targets > MAX_TARGETS {
            return Err(format!("more than {MAX_TARGETS} targets"));
        }
        jobs.push(job);
    }
    // An unnamed job is `job<index>`, or with `_` appended until no declared
    // name is the same.
    for (i, job) in jobs.iter_mut().enumerate() {
        if job.name.is_empty() {
            let mut name = format!("job{i}");
            while names.contains(&name) {
                name.push('_');
            }
            names.insert(name.clone());
            job.name = name;
        }
    }
    Ok(jobs)
}

fn key_name(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

fn parse_job(i: usize, item: &Value, dropped: &mut Vec<String>) -> Result<Job, String> {
    let Value::Mapping(map) = item else {
        return Err(format!("job {i} is not a mapping"));
    };
    let mut job = Job {
        name: String::new(),
        scrape_interval: None,
        scrape_timeout: None,
        static_configs: Vec::new(),
    };
    let mut has_static = false;
    for (k, v) in map {
        let key = key_name(k);
        match key.as_str() {
            "job_name" => job.name = job_name(i, v)?,
            "scrape_interval" => job.scrape_interval = Some(duration(i, &key, v)?.0),
            "scrape_timeout" => job.scrape_timeout = Some(duration(i, &key, v)?.0),
            "static_configs" => {
                has_static = true;
                job.static_configs = static_configs(i, v, dropped)?;
            }
            _ => dropped.push(format!(
                "job {i}: key {} is not one of {} and was dropped",
                quoted(&key),
                ALLOWED_KEYS.join(", ")
            )),
        }
    }
    if !has_static {
        return Err(format!("job {i} has no static_configs"));
    }
    let interval = job.scrape_interval.as_deref().map(duration_ms);
    let timeout = job.scrape_timeout.as_deref().map(duration_ms);
    if let Some(t) = timeout {
        let iv = interval.unwrap_or(DEFAULT_INTERVAL_MS);
        if t > iv {
            return Err(format!(
                "job {i}: scrape_timeout is longer than scrape_interval ({})",
                job.scrape_interval.as_deref().unwrap_or("1m, the default")
            ));
        }
    }
    Ok(job)
}

/// A job name is a fixed string: 1-63 of letters, digits, `_`, `.` and `-`,
/// starting with a letter or digit (no templating, no number, no list).
fn job_name(i: usize, v: &Value) -> Result<String, String> {
    let Value::String(s) = v else {
        return Err(format!(
            "job {i}: job_name must be a fixed string, not {}",
            kind(v)
        ));
    };
    let ok = !s.is_empty()
        && s.len() <= MAX_JOB_NAME_LEN
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(format!(
            "job {i}: job_name {} must be a fixed name of 1-{MAX_JOB_NAME_LEN} letters, digits, '_', '.' or '-', starting with a letter or digit",
            quoted(s)
        ));
    }
    Ok(s.clone())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A Prometheus duration (`1m30s`, `500ms`), not zero: (text, milliseconds).
fn duration(i: usize, key: &str, v: &Value) -> Result<(String, u64), String> {
    let bad = || {
        format!(
            "job {i}: {key} must be a Prometheus duration such as 30s, 1m or 1m30s, not {}",
            match v {
                Value::String(s) => quoted(s),
                other => kind(other).to_string(),
            }
        )
    };
    let Value::String(s) = v else {
        return Err(bad());
    };
    match parse_duration(s) {
        Some(ms) if ms > 0 => Ok((s.clone(), ms)),
        _ => Err(bad()),
    }
}

fn static_configs(
    i: usize,
    v: &Value,
    dropped: &mut Vec<String>,
) -> Result<Vec<StaticConfig>, String> {
    let Value::Sequence(items) = v else {
        return Err(format!("job {i}: static_configs must be a list"));
    };
    if items.is_empty() {
        return Err(format!("job {i}: static_configs is empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(j, item)| static_config(i, j, item, dropped))
        .collect()
}

fn static_config(
    i: usize,
    j: usize,
    item: &Value,
    dropped: &mut Vec<String>,
) -> Result<StaticConfig, String> {
    let at = format!("job {i}: static_configs[{j}]");
    let Value::Mapping(map) = item else {
        return Err(format!("{at} is not a mapping"));
    };
    let mut sc = StaticConfig {
        targets: Vec::new(),
        labels: BTreeMap::new(),
    };
    for (k, v) in map {
        let key = key_name(k);
        match key.as_str() {
            "targets" => {
                let Value::Sequence(ts) = v else {
                    return Err(format!("{at}.targets must be a list of host:port"));
                };
                for t in ts {
                    let Value::String(t) = t else {
                        return Err(format!(
                            "{at}.targets: {} is not a host:port string",
                            kind(t)
                        ));
                    };
                    sc.targets
                        .push(parse_target(t).map_err(|e| format!("{at}.targets: {e}"))?);
                }
            }
            "labels" => sc.labels = labels(&at, v)?,
            _ => dropped.push(format!(
                "{at}: key {} is not one of {} and was dropped",
                quoted(&key),
                STATIC_CONFIG_KEYS.join(", ")
            )),
        }
    }
    if sc.targets.is_empty() {
        return Err(format!("{at} has no targets"));
    }
    Ok(sc)
}

fn labels(at: &str, v: &Value) -> Result<BTreeMap<String, String>, String> {
    let Value::Mapping(map) = v else {
        return Err(format!(
            "{at}.labels must be a mapping of label names to strings"
        ));
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let name = key_name(k);
        if !is_label_name(&name) || name.starts_with("__") {
            return Err(format!(
                "{at}.labels: {} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with '__')",
                quoted(&name)
            ));
        }
        if TOPOLOGY_LABELS.contains(&name.as_str()) || name == "job" {
            return Err(format!(
                "{at}.labels: {name} is set by the operator (topology and job labels)"
            ));
        }
        let Value::String(value) = v else {
            return Err(format!(
                "{at}.labels.{name} must be a string, not {} (quote it)",
                kind(v)
            ));
        };
        if value.len() > 1024 {
            return Err(format!("{at}.labels.{name} is longer than 1024 bytes"));
        }
        out.insert(name, value.clone());
    }
    Ok(out)
}

#[cfg(test)]
#[path = "scrape_tests.rs"]
mod tests;
