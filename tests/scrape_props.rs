//! Property tests of the scrape jobs (`core::scrape`): any valid declaration
//! reads back from the seed's format as it was written, resolves against any
//! set of pods to the targets it declares (wildcards once per distinct pod,
//! with the pod label, fixed targets once, without it), whatever the pods'
//! order, under job names unique across consumers; durations and selectors
//! read back from their text; and no text at all makes the parsers panic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use serde_json::{Value, json};
use tracing_relation_operator::core::scrape::{
    self, Job, LABEL_APPLICATION, LABEL_NAMESPACE, LABEL_NAMESPACE_UID, LABEL_POD, MAX_DURATION_MS,
    Publication, ScrapeDeclaration, StaticConfig, TOPOLOGY_LABELS, Target, Topology, Unit,
};

/// Prometheus' duration units (their values are checked by the unit tests'
/// table of durations).
const UNITS: [(&str, u64); 7] = scrape::DURATION_UNITS;

/// A duration of some units, each once, largest first: (text, milliseconds).
fn duration() -> impl Strategy<Value = (String, u64)> {
    prop::collection::btree_map(0..UNITS.len(), 0u64..1000, 1..4)
        .prop_map(|parts| {
            parts
                .iter()
                .fold((String::new(), 0), |(text, ms), (&u, &n)| {
                    (format!("{text}{n}{}", UNITS[u].0), ms + n * UNITS[u].1)
                })
        })
        .prop_filter("within Prometheus' range", |d| d.1 <= MAX_DURATION_MS)
}

fn port() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

/// A fixed host: an IPv4 address, a bracketed IPv6 address or a DNS name.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
        "[a-z0-9]([a-z0-9_-]{0,10}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,3}",
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        port().prop_map(Target::Wildcard),
        (host(), port()).prop_map(|(h, p)| Target::Fixed(format!("{h}:{p}"))),
    ]
}

/// User labels: Prometheus label names the operator does not set, any
/// printable values but line separators (which YAML reads as line breaks in
/// JSON text: the unit test `valid_json_label_values_are_read`).
fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    let name = "[a-zA-Z_][a-zA-Z0-9_]{0,12}"
        .prop_filter("a label the operator does not set", |n| {
            !n.starts_with("__") && n != "job" && !TOPOLOGY_LABELS.contains(&n.as_str())
        });
    prop::collection::btree_map(name, "[\\PC&&[^\\p{Zl}\\p{Zp}]]{0,20}", 0..3)
}

fn static_config() -> impl Strategy<Value = StaticConfig> {
    (prop::collection::vec(target(), 1..4), labels())
        .prop_map(|(targets, labels)| StaticConfig { targets, labels })
}

/// Valid jobs: named (never `j…`, so never like an unnamed `job<index>`) or
/// not, unique names, a positive interval or none, a timeout no longer than
/// the interval (or the 1m default) or none.
fn jobs() -> impl Strategy<Value = Vec<Job>> {
    let positive = || prop::option::of(duration().prop_filter("not zero", |d| d.1 > 0));
    let job = (
        prop::option::of("[a-ik-zA-Z0-9][a-zA-Z0-9_.-]{0,20}"),
        positive(),
        positive(),
        prop::collection::vec(static_config(), 1..3),
    );
    prop::collection::vec(job, 1..5)
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (name, interval, timeout, static_configs))| {
                    let longest = interval.as_ref().map_or(60_000, |iv| iv.1);
                    Job {
                        name: name.unwrap_or_else(|| format!("job{i}")),
                        scrape_timeout: timeout.filter(|t| t.1 <= longest).map(|t| t.0),
                        scrape_interval: interval.map(|iv| iv.0),
                        static_configs,
                    }
                })
                .collect::<Vec<_>>()
        })
        .prop_filter("unique job names", |jobs| {
            jobs.iter().map(|j| &j.name).collect::<BTreeSet<_>>().len() == jobs.len()
        })
}

/// Pods, from few names and addresses so that some repeat.
fn units() -> impl Strategy<Value = Vec<Unit>> {
    let ip = prop_oneof![
        Just("10.0.0.1".to_string()),
        Just("fd00::1".to_string()),
        any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
    ];
    prop::collection::vec(
        ("pod-[a-c]", ip).prop_map(|(name, ip)| Unit { name, ip }),
        0..6,
    )
}

/// `jobs` in the seed's format (unnamed jobs without `job_name`, empty labels
/// left out), as compact JSON, pretty JSON or YAML.
fn seed_format(jobs: &[Job], form: u8) -> String {
    let list: Vec<Value> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let mut o = serde_json::Map::new();
            if job.name != format!("job{i}") {
                o.insert("job_name".into(), json!(job.name));
            }
            for (key, d) in [
                ("scrape_interval", &job.scrape_interval),
                ("scrape_timeout", &job.scrape_timeout),
            ] {
                if let Some(d) = d {
                    o.insert(key.into(), json!(d));
                }
            }
            let configs: Vec<Value> = job
                .static_configs
                .iter()
                .map(|sc| {
                    let targets: Vec<String> = sc.targets.iter().map(Target::to_string).collect();
                    let mut c = json!({ "targets": targets });
                    if !sc.labels.is_empty() {
                        c["labels"] = json!(sc.labels);
                    }
                    c
                })
                .collect();
            o.insert("static_configs".into(), json!(configs));
            Value::Object(o)
        })
        .collect();
    match form {
        0 => serde_json::to_string(&list).expect("JSON"),
        1 => serde_json::to_string_pretty(&list).expect("JSON"),
        _ => serde_yaml::to_string(&list).expect("YAML"),
    }
}

fn declaration(jobs: Vec<Job>) -> ScrapeDeclaration {
    ScrapeDeclaration {
        jobs,
        selector: Some(scrape::parse_selector("app=cart").expect("a selector")),
        application: "cart".into(),
        dropped: Vec::new(),
    }
}

const TOPO: Topology<'static> = Topology {
    namespace: "shop",
    namespace_uid: "uid-1",
    consumer: "cart",
};

/// `ip:port` as a scraper dials it.
fn address(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// A selector requirement in any of its written forms, spaces around or not.
fn requirement() -> impl Strategy<Value = String> {
    let name = "[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,10}[a-zA-Z0-9])?";
    let key = ("([a-z0-9]{1,5}\\.){0,2}[a-z0-9]{1,5}/", name).prop_map(|(p, n)| format!("{p}{n}"));
    let key = prop_oneof![name.prop_map(String::from), key];
    let value = prop_oneof![Just(String::new()), name.prop_map(String::from)];
    let op = prop::sample::select(vec!["=", "==", "!=", "", "!"]);
    (key, op, value, " ?", " ?").prop_map(|(k, op, v, l, r)| match op {
        "" => format!("{l}{k}{r}"),
        "!" => format!("{l}!{k}{r}"),
        _ => format!("{l}{k}{r}{op}{l}{v}{r}"),
    })
}

proptest! {
    /// Valid jobs written in the seed's format read back as the same jobs,
    /// with nothing dropped.
    #[test]
    fn seed_format_reads_back(jobs in jobs(), form in 0u8..3) {
        let text = seed_format(&jobs, form);
        let decl = scrape::parse("cart", Some(&text), Some("app=cart"), None);
        prop_assert_eq!(decl.map(|d| (d.jobs, d.dropped)), Ok((jobs, Vec::new())), "{}", text);
    }

    /// Every job resolves to its declared targets: fixed ones once, in groups
    /// without a pod label; wildcard ones once per distinct pod, in groups
    /// with that pod's label and address; topology labels on every group.
    #[test]
    fn resolution_matches_the_declaration(jobs in jobs(), units in units()) {
        let decl = declaration(jobs);
        let resolved = scrape::resolve(TOPO, &decl, &units);
        let distinct: BTreeSet<&Unit> = units.iter().collect();
        prop_assert_eq!(resolved.len(), decl.jobs.len());
        for (job, r) in decl.jobs.iter().zip(&resolved) {
            prop_assert_eq!(&r.job_name, &format!("shop_cart_{}", job.name));
            prop_assert_eq!(&r.scrape_interval, &job.scrape_interval);
            prop_assert_eq!(&r.scrape_timeout, &job.scrape_timeout);
            let all = || job.static_configs.iter().flat_map(|sc| &sc.targets);
            let fixed: Vec<String> = all()
                .filter(|t| matches!(t, Target::Fixed(_)))
                .map(Target::to_string)
                .collect();
            let ports: BTreeSet<u16> = all()
                .filter_map(|t| match t { Target::Wildcard(p) => Some(*p), _ => None })
                .collect();
            let wildcards = all().filter(|t| matches!(t, Target::Wildcard(_))).count();
            let (with_pod, without): (Vec<_>, Vec<_>) =
                r.static_configs.iter().partition(|g| g.labels.contains_key(LABEL_POD));
            let has = |f: fn(&Target) -> bool| {
                job.static_configs.iter().filter(|sc| sc.targets.iter().any(f)).count()
            };
            prop_assert_eq!(without.len(), has(|t| matches!(t, Target::Fixed(_))));
            prop_assert_eq!(with_pod.len(), has(|t| matches!(t, Target::Wildcard(_))) * distinct.len());
            let targets: usize = r.static_configs.iter().map(|g| g.targets.len()).sum();
            prop_assert_eq!(targets, fixed.len() + wildcards * distinct.len());
            let fixed_resolved: Vec<&String> = without.iter().flat_map(|g| &g.targets).collect();
            prop_assert_eq!(fixed_resolved, fixed.iter().collect::<Vec<_>>());
            for g in &r.static_configs {
                let mut user = g.labels.clone();
                for (label, value) in [(LABEL_NAMESPACE, "shop"), (LABEL_NAMESPACE_UID, "uid-1"), (LABEL_APPLICATION, "cart")] {
                    prop_assert_eq!(user.remove(label), Some(value.to_string()));
                }
                if let Some(pod) = user.remove(LABEL_POD) {
                    let addresses: BTreeSet<String> = distinct
                        .iter()
                        .filter(|u| u.name == pod)
                        .flat_map(|u| ports.iter().map(|p| address(&u.ip, *p)))
                        .collect();
                    prop_assert!(g.targets.iter().all(|t| addresses.contains(t)), "{:?} of {}", g.targets, pod);
                }
                prop_assert!(job.static_configs.iter().any(|sc| sc.labels == user));
            }
        }
    }

    /// The pods' order and repeats do not matter.
    #[test]
    fn resolution_ignores_the_order_of_pods(
        jobs in jobs(),
        (units, shuffled) in units().prop_flat_map(|u| {
            let doubled = [u.clone(), u.clone()].concat();
            (Just(u), Just(doubled).prop_shuffle())
        }),
    ) {
        let decl = declaration(jobs);
        prop_assert_eq!(scrape::resolve(TOPO, &decl, &units), scrape::resolve(TOPO, &decl, &shuffled));
    }

    /// The same jobs of consumers in different places never share a job
    /// name, and publish together: as many jobs as declared, in YAML and JSON
    /// that read back.
    #[test]
    fn job_names_are_unique_across_consumers(
        jobs in jobs(),
        units in units(),
        places in prop::collection::btree_set(("[a-z0-9]{1,3}", "[a-z0-9]([a-z0-9.-]{0,5}[a-z0-9])?"), 2..4),
    ) {
        let decl = declaration(jobs);
        let resolved: Vec<_> = places
            .iter()
            .flat_map(|(ns, cm)| {
                let t = Topology { namespace: ns, namespace_uid: "uid", consumer: cm };
                scrape::resolve(t, &decl, &units)
            })
            .collect();
        let names: BTreeSet<&String> = resolved.iter().map(|r| &r.job_name).collect();
        prop_assert_eq!(names.len(), places.len() * decl.jobs.len());
        let p = Publication::new(resolved.clone());
        let (jobs, targets) = p.counts();
        prop_assert_eq!(jobs, names.len());
        let yaml: Value = serde_yaml::from_str(&p.scrape_configs_yaml()).expect("YAML");
        prop_assert_eq!(yaml["scrape_configs"].as_array().map(Vec::len), Some(jobs));
        let groups: Vec<Value> = serde_json::from_str(&p.target_groups_json()).expect("JSON");
        let listed: usize = groups.iter().map(|g| g["targets"].as_array().map_or(0, Vec::len)).sum();
        prop_assert_eq!(listed, targets);
    }

    /// Any text is jobs or an error, never a panic; jobs read are within the
    /// limits and uniquely named.
    #[test]
    fn any_text_is_jobs_or_an_error(
        text in prop_oneof![
            ".{0,300}",
            prop::collection::vec(prop::sample::select(vec![
                "[", "]", "{", "}", ",", ":", " ", "\n", "- ", "  ", "\"job_name\"", "static_configs",
                "targets", "labels", "\"*:80\"", "'h:1'", "scrape_interval", "scrape_timeout", "5s",
                "&a ", "*a", "!!str ", "null", "1", "\"a\"", "~",
            ]), 0..60).prop_map(|parts| parts.concat()),
        ],
        selector in prop::option::of("[a-z!=,]{0,8}"),
    ) {
        let mut dropped = Vec::new();
        if let Ok(jobs) = scrape::parse_jobs(&text, &mut dropped) {
            prop_assert!(!jobs.is_empty() && jobs.len() <= scrape::MAX_JOBS);
            let names: BTreeSet<&String> = jobs.iter().map(|j| &j.name).collect();
            prop_assert_eq!(names.len(), jobs.len());
            prop_assert!(jobs.iter().all(|j| !j.static_configs.is_empty()));
        }
        let _ = scrape::parse("cart", Some(&text), selector.as_deref(), Some(&text));
    }

    /// Durations composed of units in order read as their sum.
    #[test]
    fn durations_read_back((text, ms) in duration()) {
        prop_assert_eq!(scrape::parse_duration(&text), Some(ms));
    }

    /// A unit after a smaller one, or repeated, is not a duration.
    #[test]
    fn durations_out_of_order_are_refused(
        (big, small) in (0..UNITS.len(), 0..UNITS.len()).prop_map(|(a, b)| (a.min(b), a.max(b))),
        a in 0u64..1000,
        b in 0u64..1000,
    ) {
        let text = format!("{a}{}{b}{}", UNITS[small].0, UNITS[big].0);
        prop_assert_eq!(scrape::parse_duration(&text), None, "{}", text);
    }

    /// A selector reads back from its canonical text, which does not depend
    /// on the requirements' order or repeats.
    #[test]
    fn selectors_read_back(reqs in prop::collection::vec(requirement(), 1..8), rotate in any::<prop::sample::Index>()) {
        let sel = scrape::parse_selector(&reqs.join(",")).expect("a valid selector");
        let canonical = sel.to_string();
        prop_assert_eq!(scrape::parse_selector(&canonical), Ok(sel.clone()));
        let mut other = [reqs.clone(), reqs.clone()].concat();
        let by = rotate.index(other.len());
        other.rotate_left(by);
        prop_assert_eq!(scrape::parse_selector(&other.join(",")).map(|s| s.to_string()), Ok(canonical));
    }

    /// Any text is a selector or an error; a selector reads back from its text.
    #[test]
    fn any_text_is_a_selector_or_an_error(text in "[a-zA-Z0-9./_ ,=!()-]{0,40}") {
        if let Ok(sel) = scrape::parse_selector(&text) {
            prop_assert_eq!(scrape::parse_selector(&sel.to_string()), Ok(sel));
        }
    }
}
