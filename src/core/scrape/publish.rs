//! Scrape jobs resolved against ready pods, and the formats a relation
//! publishes them in (`scrape_configs`, `file_sd`/HTTP SD target groups). Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::*;

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
