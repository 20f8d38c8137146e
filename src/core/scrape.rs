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
use serde::Serialize;
use serde_yaml::Value;

use crate::core::contract::{MAX_QUOTED_LEN, truncate_to};

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

/// One requirement of a pod selector.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// A pod label selector in the consumer's namespace, canonical (sorted, no repeats).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector(Vec<Requirement>);

impl fmt::Display for Selector {
    /// The API server's `labelSelector` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r {
                Requirement::Equals(k, v) => write!(f, "{k}={v}")?,
                Requirement::NotEquals(k, v) => write!(f, "{k}!={v}")?,
                Requirement::Exists(k) => write!(f, "{k}")?,
                Requirement::NotExists(k) => write!(f, "!{k}")?,
            }
        }
        Ok(())
    }
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

/// Milliseconds of a duration already validated by [`parse_duration`].
fn duration_ms(s: &str) -> u64 {
    parse_duration(s).unwrap_or(0)
}

/// Prometheus' duration units, largest first, in milliseconds.
pub const DURATION_UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Prometheus' duration syntax: units y, w, d, h, m, s, ms, each at most once,
/// largest first. `None` when it is not one.
pub fn parse_duration(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        let after = &rest[digits..];
        // "ms" before "m": the longest unit that matches.
        let (idx, unit) = DURATION_UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| after.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())?;
        if idx < next_unit {
            return None;
        }
        next_unit = idx + 1;
        total = total.checked_add(n.checked_mul(unit.1)?)?;
        rest = &after[unit.0.len()..];
    }
    // Prometheus keeps durations as int64 nanoseconds (about 292 years) and
    // refuses the whole configuration beyond.
    (total <= MAX_DURATION_MS).then_some(total)
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

/// A Prometheus label name.
pub fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `*:port`, or `host:port` with a DNS name, an IPv4 address or a bracketed
/// IPv6 address.
pub fn parse_target(t: &str) -> Result<Target, String> {
    let bad = |why: &str| format!("{} {why}", quoted(t));
    let (host, port) = t.rsplit_once(':').ok_or_else(|| bad("is not host:port"))?;
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 && !port.starts_with(['+', '0']) => p,
        _ => return Err(bad("has no port from 1 to 65535")),
    };
    if host == "*" {
        return Ok(Target::Wildcard(port));
    }
    let ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        is_host(host)
    };
    if !ok {
        return Err(bad(
            "is not host:port with a DNS name or IP address (no scheme, no path)",
        ));
    }
    Ok(Target::Fixed(t.to_string()))
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits, `-`
/// and `_`, at most 253 bytes.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Parses a pod label selector: comma-separated `key=value`, `key==value`,
/// `key!=value`, `key` or `!key` (at least one).
pub fn parse_selector(s: &str) -> Result<Selector, String> {
    let mut reqs = BTreeSet::new();
    if s.len() > 1024 {
        return Err("longer than 1024 bytes".into());
    }
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "{} has an empty requirement; use key=value, key!=value, key or !key, comma-separated",
                quoted(s)
            ));
        }
        let req = if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(label_key(k)?, label_value(v)?)
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(label_key(k)?, label_value(v)?)
        } else if let Some(k) = part.strip_prefix('!') {
            Requirement::NotExists(label_key(k)?)
        } else {
            Requirement::Exists(label_key(part)?)
        };
        reqs.insert(req);
    }
    Ok(Selector(reqs.into_iter().collect()))
}

/// A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a
/// name of 1-63 letters, digits, `-`, `_`, `.`, alphanumeric at both ends.
fn label_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(crate::core::declaration::is_dns_subdomain);
    if !prefix_ok || name.is_empty() || !is_label_value(name) {
        return Err(format!("{} is not a label key", quoted(k)));
    }
    Ok(k.to_string())
}

fn label_value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if !v.is_empty() && !is_label_value(v) {
        return Err(format!("{} is not a label value", quoted(v)));
    }
    Ok(v.to_string())
}

fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A ready pod of a consumer's selector: one unit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unit {
    pub name: String,
    pub ip: String,
}

impl Unit {
    /// `ip:port`, with an IPv6 address in brackets.
    fn address(&self, port: u16) -> String {
        if self.ip.contains(':') {
            format!("[{}]:{port}", self.ip)
        } else {
            format!("{}:{port}", self.ip)
        }
    }
}

/// The unit a pod is, when it is one: running, Ready, with an IP, and not
/// being deleted.
pub fn unit_of(pod: &k8s_openapi::api::core::v1::Pod) -> Option<Unit> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    ready.then(|| Unit {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ip: ip.to_string(),
    })
}

/// A target group: the `file_sd` and HTTP SD element, and a `static_configs` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Group {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// One job of one consumer, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedJob {
    /// Unique across consumers: `<namespace>_<consumer>_<job>`.
    pub job_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<String>,
    pub static_configs: Vec<Group>,
}

/// Where a consumer is: what its topology labels say.
#[derive(Clone, Copy, Debug)]
pub struct Topology<'a> {
    pub namespace: &'a str,
    pub namespace_uid: &'a str,
    pub consumer: &'a str,
}

/// The unique job name of job `job` of consumer `consumer` in `namespace`.
/// Namespaces and ConfigMap names cannot hold `_`, so the three parts never
/// run into each other.
pub fn unique_job_name(namespace: &str, consumer: &str, job: &str) -> String {
    format!("{namespace}_{consumer}_{job}")
}

/// Resolves a consumer's jobs against its ready pods (`units`, any order):
/// wildcard targets become one group per pod, with the pod label; fixed
/// targets one group with the namespace-level labels only. Groups without
/// targets are left out; a job keeps its place even when it has none.
pub fn resolve(t: Topology<'_>, decl: &ScrapeDeclaration, units: &[Unit]) -> Vec<ResolvedJob> {
    let mut units: Vec<&Unit> = units.iter().collect();
    units.sort();
    units.dedup();
    let base = |labels: &BTreeMap<String, String>| {
        let mut l = labels.clone();
        l.insert(LABEL_NAMESPACE.into(), t.namespace.into());
        // Unknown when the operator cannot read namespaces: left out.
        if !t.namespace_uid.is_empty() {
            l.insert(LABEL_NAMESPACE_UID.into(), t.namespace_uid.into());
        }
        l.insert(LABEL_APPLICATION.into(), decl.application.clone());
        l
    };
    decl.jobs
        .iter()
        .map(|job| {
            let mut groups = Vec::new();
            for sc in &job.static_configs {
                let fixed: Vec<String> = sc
                    .targets
                    .iter()
                    .filter_map(|t| match t {
                        Target::Fixed(f) => Some(f.clone()),
                        Target::Wildcard(_) => None,
                    })
                    .collect();
                if !fixed.is_empty() {
                    groups.push(Group {
                        targets: fixed,
                        labels: base(&sc.labels),
                    });
                }
                let ports: Vec<u16> = sc
                    .targets
                    .iter()
                    .filter_map(|t| match t {
                        Target::Wildcard(p) => Some(*p),
                        Target::Fixed(_) => None,
                    })
                    .collect();
                if ports.is_empty() {
                    continue;
                }
                for u in &units {
                    let mut labels = base(&sc.labels);
                    labels.insert(LABEL_POD.into(), u.name.clone());
                    groups.push(Group {
                        targets: ports.iter().map(|p| u.address(*p)).collect(),
                        labels,
                    });
                }
            }
            ResolvedJob {
                job_name: unique_job_name(t.namespace, t.consumer, &job.name),
                scrape_interval: job.scrape_interval.clone(),
                scrape_timeout: job.scrape_timeout.clone(),
                static_configs: groups,
            }
        })
        .collect()
}

/// What a relation publishes: every bound consumer's resolved jobs, sorted by
/// job name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Publication {
    pub jobs: Vec<ResolvedJob>,
}

/// The key of the published ConfigMap holding `scrape_configs`.
pub const SCRAPE_CONFIGS_KEY: &str = "scrape_configs.yaml";
/// The key of the published ConfigMap holding the `file_sd` target groups.
pub const FILE_SD_KEY: &str = "file_sd.json";

#[derive(Serialize)]
struct ScrapeConfigs<'a> {
    scrape_configs: &'a [ResolvedJob],
}

impl Publication {
    pub fn new(mut jobs: Vec<ResolvedJob>) -> Self {
        jobs.sort_by(|a, b| a.job_name.cmp(&b.job_name));
        Publication { jobs }
    }

    /// The number of jobs and of targets.
    pub fn counts(&self) -> (usize, usize) {
        let targets = self
            .jobs
            .iter()
            .flat_map(|j| &j.static_configs)
            .map(|g| g.targets.len())
            .sum();
        (self.jobs.len(), targets)
    }

    /// `scrape_configs:` YAML, one job per resolved job, for a Prometheus (or
    /// Alloy, or the Collector's prometheus receiver) configuration.
    pub fn scrape_configs_yaml(&self) -> String {
        serde_yaml::to_string(&ScrapeConfigs {
            scrape_configs: &self.jobs,
        })
        .unwrap_or_default()
    }

    /// The target groups of every job, each labelled with its `job` (and its
    /// interval and timeout as `__scrape_interval__`/`__scrape_timeout__`), for
    /// one `file_sd_configs` or `http_sd_configs` job of the scraper.
    pub fn target_groups(&self) -> Vec<Group> {
        let mut out = Vec::new();
        for j in &self.jobs {
            let interval = j.scrape_interval.as_deref().map(duration_ms);
            // A job with a short interval and no timeout: Prometheus' own rule
            // (the timeout is the interval when the default would exceed it).
            let timeout = j.scrape_timeout.clone().or_else(|| {
                interval
                    .filter(|iv| *iv < DEFAULT_TIMEOUT_MS)
                    .and(j.scrape_interval.clone())
            });
            for g in &j.static_configs {
                let mut labels = g.labels.clone();
                labels.insert("job".into(), j.job_name.clone());
                if let Some(iv) = &j.scrape_interval {
                    labels.insert("__scrape_interval__".into(), iv.clone());
                }
                if let Some(to) = &timeout {
                    labels.insert("__scrape_timeout__".into(), to.clone());
                }
                out.push(Group {
                    targets: g.targets.clone(),
                    labels,
                });
            }
        }
        out
    }

    /// The target groups as JSON: the `file_sd` file and the HTTP SD answer.
    pub fn target_groups_json(&self) -> String {
        serde_json::to_string_pretty(&self.target_groups()).unwrap_or_else(|_| "[]".into())
    }

    /// The ConfigMap data the relation's scrape ConfigMap holds.
    pub fn data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (SCRAPE_CONFIGS_KEY.to_string(), self.scrape_configs_yaml()),
            (FILE_SD_KEY.to_string(), self.target_groups_json()),
        ])
    }
}

#[cfg(test)]
#[path = "scrape_tests.rs"]
mod tests;
