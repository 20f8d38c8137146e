//! Tests of the scrape jobs: parsing, validation, resolution, formats.
use super::*;

use serde_json::json;

/// The consumer every test resolves for: ConfigMap `cart` in namespace `shop`.
const TOPO: Topology<'static> = Topology {
    namespace: "shop",
    namespace_uid: "uid-1",
    consumer: "cart",
};

/// Two ready pods, one with an IPv6 address.
fn units() -> Vec<Unit> {
    vec![
        Unit {
            name: "cart-0".into(),
            ip: "10.0.0.1".into(),
        },
        Unit {
            name: "cart-1".into(),
            ip: "fd00::2".into(),
        },
    ]
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The topology labels of [`TOPO`] (application `cart`), plus `extra`.
fn topology(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut l = map(&[
        (LABEL_NAMESPACE, "shop"),
        (LABEL_NAMESPACE_UID, "uid-1"),
        (LABEL_APPLICATION, "cart"),
    ]);
    l.extend(map(extra));
    l
}

/// The group of fixed `targets`: topology labels, no pod.
fn fixed(targets: &[&str], extra: &[(&str, &str)]) -> Group {
    Group {
        targets: targets.iter().map(|t| t.to_string()).collect(),
        labels: topology(extra),
    }
}

/// The groups of wildcard `ports`: one per pod of [`units`], with its pod label.
fn per_pod(ports: &[u16], extra: &[(&str, &str)]) -> Vec<Group> {
    [("cart-0", "10.0.0.1"), ("cart-1", "[fd00::2]")]
        .iter()
        .map(|(pod, host)| {
            let mut labels = topology(extra);
            labels.insert(LABEL_POD.into(), pod.to_string());
            Group {
                targets: ports.iter().map(|p| format!("{host}:{p}")).collect(),
                labels,
            }
        })
        .collect()
}

fn resolved(job: &str, static_configs: Vec<Group>) -> ResolvedJob {
    ResolvedJob {
        job_name: format!("shop_cart_{job}"),
        scrape_interval: None,
        scrape_timeout: None,
        static_configs,
    }
}

/// Consumer `cart` with pods selected by `app=cart`, declaring `jobs`.
fn declare(jobs: &str) -> Result<ScrapeDeclaration, String> {
    parse("cart", Some(jobs), Some("app=cart"), None).map_err(|e| e.0)
}

/// Asserts that `jobs` is refused with a message about the jobs annotation
/// holding `fragment`.
#[track_caller]
fn assert_refused(jobs: &str, fragment: &str) {
    let msg = declare(jobs).expect_err(jobs);
    assert!(
        msg.starts_with(&format!("annotation {SCRAPE_JOBS_ANNOTATION}: ")),
        "{msg}"
    );
    assert!(msg.contains(fragment), "{jobs}: {msg:?} lacks {fragment:?}");
}

/// One job with one target `h:1` and the extra `keys` (JSON, each ending in ',').
fn job_with(keys: &str) -> String {
    format!(r#"[{{{keys} "static_configs": [{{"targets": ["h:1"]}}]}}]"#)
}

/// One job with one static config of `targets` (a JSON list).
fn targets(targets: &str) -> String {
    format!(r#"[{{"static_configs": [{{"targets": {targets}}}]}}]"#)
}

/// One job with a static config of target `h:1` and `labels` (JSON).
fn labelled(labels: &str) -> String {
    format!(r#"[{{"static_configs": [{{"targets": ["h:1"], "labels": {labels}}}]}}]"#)
}

const SEED_PORT: &str = r#"[{"static_configs": [{"targets": ["*:8000"]}]}]"#;
const SEED_TWO_PORTS: &str = r#"[{"static_configs": [{"targets": ["*:8000", "*:8081"]}]}]"#;
const SEED_FIXED_AND_LABELS: &str = r#"[{
    "static_configs": [{
        "targets": ["10.1.32.215:7000", "*:8000"],
        "labels": {
            "some-key": "some-value"
        }
    }]
}]"#;
const SEED_TWO_JOBS: &str = r#"[
    {
        "job_name": "my-first-job",
        "static_configs": [
            {
                "targets": ["*:7000"],
                "labels": {
                    "some-key": "some-value"
                }
            }
        ]
    },
    {
        "job_name": "my-second-job",
        "static_configs": [
            {
                "targets": ["*:8000"],
                "labels": {
                    "some-other-key": "some-other-value"
                }
            }
        ]
    }
]"#;

/// The seed's four docstring examples, with label names made Prometheus
/// label names (`some-key` → `some_key`), resolve as the seed documents.
#[test]
fn seed_examples_resolve_as_documented() {
    let some = [("some_key", "some-value")];
    let cases = [
        (SEED_PORT, vec![resolved("job0", per_pod(&[8000], &[]))]),
        (
            SEED_TWO_PORTS,
            vec![resolved("job0", per_pod(&[8000, 8081], &[]))],
        ),
        (SEED_FIXED_AND_LABELS, {
            let mut groups = vec![fixed(&["10.1.32.215:7000"], &some)];
            groups.extend(per_pod(&[8000], &some));
            vec![resolved("job0", groups)]
        }),
        (
            SEED_TWO_JOBS,
            vec![
                resolved("my-first-job", per_pod(&[7000], &some)),
                resolved(
                    "my-second-job",
                    per_pod(&[8000], &[("some_other_key", "some-other-value")]),
                ),
            ],
        ),
    ];
    for (text, expected) in cases {
        let text = text
            .replace(r#""some-key""#, r#""some_key""#)
            .replace(r#""some-other-key""#, r#""some_other_key""#);
        let decl = declare(&text).expect(&text);
        assert!(decl.dropped.is_empty(), "{text}: {:?}", decl.dropped);
        assert_eq!(resolve(TOPO, &decl, &units()), expected, "{text}");
    }
}

/// The seed's examples with `some-key` verbatim are refused: '-' is not in a
/// Prometheus label name.
#[test]
fn seed_examples_with_dashed_label_names_are_refused() {
    for text in [SEED_FIXED_AND_LABELS, SEED_TWO_JOBS] {
        assert_refused(
            text,
            r#"job 0: static_configs[0].labels: "some-key" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with '__')"#,
        );
    }
}

/// Jobs, selector: the default job, the wildcard that needs a selector, fixed
/// targets that do not.
#[test]
fn default_job_and_selector_requirement() {
    let decl = parse("cart", None, Some("app=cart"), None).expect("default job");
    assert_eq!(decl.jobs, default_jobs());
    assert_eq!(
        decl.jobs[0].static_configs[0].targets,
        vec![Target::Wildcard(80)]
    );
    assert_eq!(
        resolve(TOPO, &decl, &units()),
        vec![resolved("job0", per_pod(&[80], &[]))]
    );

    for (jobs, wildcard) in [(Some(SEED_PORT), "*:8000"), (None, "*:80")] {
        let msg = parse("cart", jobs, None, None).expect_err("no selector").0;
        assert_eq!(
            msg,
            format!(
                "target {wildcard} means each pod of this consumer, but annotation {SCRAPE_SELECTOR_ANNOTATION} (the label selector of its pods) is not set"
            )
        );
    }

    let only_fixed = parse("cart", Some(&targets(r#"["h:1"]"#)), None, None).expect("fixed");
    assert_eq!(only_fixed.selector, None);
    assert_eq!(
        resolve(TOPO, &only_fixed, &units()),
        vec![resolved("job0", vec![fixed(&["h:1"], &[])])]
    );
}

/// Keys outside the allowed set are dropped, one line each, and the rest is kept.
#[test]
fn unknown_keys_are_dropped_with_a_line() {
    let decl = declare(
        r#"[{"job_name": "a", "metrics_path": "/m", "relabel_configs": [],
             "static_configs": [{"targets": ["h:1"], "labels": {"x": "y"}, "refresh": 1}]}]"#,
    )
    .expect("parsed");
    assert_eq!(
        decl.jobs,
        vec![Job {
            name: "a".into(),
            scrape_interval: None,
            scrape_timeout: None,
            static_configs: vec![StaticConfig {
                targets: vec![Target::Fixed("h:1".into())],
                labels: map(&[("x", "y")]),
            }],
        }]
    );
    assert_eq!(
        decl.dropped,
        vec![
            r#"job 0: key "metrics_path" is not one of job_name, static_configs, scrape_interval, scrape_timeout and was dropped"#,
            r#"job 0: key "relabel_configs" is not one of job_name, static_configs, scrape_interval, scrape_timeout and was dropped"#,
            r#"job 0: static_configs[0]: key "refresh" is not one of targets, labels and was dropped"#,
        ]
    );
}

#[test]
fn job_names_are_fixed_unique_strings() {
    for (value, what) in [
        ("7", "a number"),
        (r#"["a"]"#, "a list"),
        ("null", "null"),
        ("true", "a boolean"),
    ] {
        assert_refused(
            &job_with(&format!(r#""job_name": {value},"#)),
            &format!("job 0: job_name must be a fixed string, not {what}"),
        );
    }
    let long = "a".repeat(MAX_JOB_NAME_LEN + 1);
    for name in ["{{ template }}", "with space", "-a", "a/b", "", &long] {
        assert_refused(
            &job_with(&format!(r#""job_name": "{name}","#)),
            &format!(
                "job 0: job_name {name:?} must be a fixed name of 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
            ),
        );
    }
    let ok = "A.b-c_9".repeat(9);
    assert_eq!(ok.len(), MAX_JOB_NAME_LEN);
    let decl = declare(&job_with(&format!(r#""job_name": "{ok}","#))).expect("63 chars");
    assert_eq!(decl.jobs[0].name, ok);

    assert_refused(
        r#"[{"job_name": "a", "static_configs": [{"targets": ["h:1"]}]},
            {"job_name": "a", "static_configs": [{"targets": ["h:2"]}]}]"#,
        r#"job_name "a" is used by more than one job; each job needs its own name"#,
    );
}

/// Unnamed jobs are `job<index>`, named ones keep their name, in order.
#[test]
fn unnamed_jobs_are_named_by_index() {
    let decl = declare(
        r#"[{"static_configs": [{"targets": ["h:1"]}]},
            {"job_name": "b", "static_configs": [{"targets": ["h:2"]}]},
            {"static_configs": [{"targets": ["h:3"]}]}]"#,
    )
    .expect("parsed");
    let names: Vec<&str> = decl.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["job0", "b", "job2"]);
}

/// A job named like another job's implicit name.
#[test]
fn unnamed_job_does_not_collide_with_a_declared_name() {
    let decl = declare(
        r#"[{"job_name": "job1", "static_configs": [{"targets": ["h:1"]}]},
            {"static_configs": [{"targets": ["h:2"]}]}]"#,
    );
    assert!(decl.is_ok(), "{decl:?}");
}

#[test]
fn targets_are_host_port() {
    let no_port = |t: &str| format!("{t:?} has no port from 1 to 65535");
    let not_host = |t: &str| {
        format!("{t:?} is not host:port with a DNS name or IP address (no scheme, no path)")
    };
    let cases = [
        ("http://a:80", not_host("http://a:80")),
        ("a", r#""a" is not host:port"#.to_string()),
        ("a:0", no_port("a:0")),
        ("a:70000", no_port("a:70000")),
        ("a:+80", no_port("a:+80")),
        ("a:080", no_port("a:080")),
        ("*:", no_port("*:")),
        ("a/b:80", not_host("a/b:80")),
        ("[zz]:80", not_host("[zz]:80")),
        ("::1:80", not_host("::1:80")),
        ("-a:80", not_host("-a:80")),
        ("a..b:80", not_host("a..b:80")),
    ];
    for (t, msg) in &cases {
        assert_eq!(parse_target(t), Err(msg.clone()), "{t}");
        assert_refused(
            &targets(&format!("[{t:?}]")),
            &format!("job 0: static_configs[0].targets: {msg}"),
        );
    }
    for (t, target) in [
        ("*:1", Target::Wildcard(1)),
        ("*:65535", Target::Wildcard(65535)),
        ("[::1]:80", Target::Fixed("[::1]:80".into())),
        ("10.1.32.215:7000", Target::Fixed("10.1.32.215:7000".into())),
        (
            "my-svc.shop.svc:9090",
            Target::Fixed("my-svc.shop.svc:9090".into()),
        ),
    ] {
        assert_eq!(parse_target(t), Ok(target.clone()), "{t}");
        assert_eq!(target.to_string(), t);
    }
}

/// The shape of `static_configs` and of its entries.
#[test]
fn static_configs_shape_is_checked() {
    let (no_targets, not_list, not_string) = (targets("[]"), targets(r#""h:1""#), targets("[80]"));
    let cases = [
        (r#"[{"job_name": "a"}]"#, "job 0 has no static_configs"),
        (
            r#"[{"static_configs": []}]"#,
            "job 0: static_configs is empty",
        ),
        (
            r#"[{"static_configs": {"targets": ["h:1"]}}]"#,
            "job 0: static_configs must be a list",
        ),
        (
            r#"[{"static_configs": ["h:1"]}]"#,
            "job 0: static_configs[0] is not a mapping",
        ),
        (
            r#"[{"static_configs": [{"labels": {}}]}]"#,
            "job 0: static_configs[0] has no targets",
        ),
        (&no_targets, "job 0: static_configs[0] has no targets"),
        (
            &not_list,
            "job 0: static_configs[0].targets must be a list of host:port",
        ),
        (
            &not_string,
            "job 0: static_configs[0].targets: a number is not a host:port string",
        ),
        (r#"["h:1"]"#, "job 0 is not a mapping"),
    ];
    for (jobs, msg) in cases {
        assert_refused(jobs, msg);
    }
}

#[test]
fn labels_are_prometheus_labels_the_operator_does_not_set() {
    let not_name = |n: &str| {
        format!(
            "job 0: static_configs[0].labels: {n:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with '__')"
        )
    };
    let mut cases = vec![
        (r#"{"some-key": "v"}"#.to_string(), not_name("some-key")),
        (r#"{"__x": "v"}"#.into(), not_name("__x")),
        (r#"{"1a": "v"}"#.into(), not_name("1a")),
        (r#"{"": "v"}"#.into(), not_name("")),
        (
            r#"{"a": 1}"#.into(),
            "job 0: static_configs[0].labels.a must be a string, not a number (quote it)".into(),
        ),
        (
            r#"{"a": null}"#.into(),
            "labels.a must be a string, not null".into(),
        ),
        (
            r#"["a"]"#.into(),
            "job 0: static_configs[0].labels must be a mapping of label names to strings".into(),
        ),
        (
            format!(r#"{{"a": "{}"}}"#, "v".repeat(1025)),
            "job 0: static_configs[0].labels.a is longer than 1024 bytes".into(),
        ),
    ];
    for name in TOPOLOGY_LABELS.iter().chain(&["job"]) {
        cases.push((
            format!(r#"{{"{name}": "v"}}"#),
            format!("job 0: static_configs[0].labels: {name} is set by the operator (topology and job labels)"),
        ));
    }
    for (labels, msg) in &cases {
        assert_refused(&labelled(labels), msg);
    }
    let decl = declare(&labelled(&format!(
        r#"{{"_a": "", "B9": "{}"}}"#,
        "v".repeat(1024)
    )))
    .expect("valid labels");
    assert_eq!(decl.jobs[0].static_configs[0].labels.len(), 2);
}

/// The list itself: its type, its size, its length.
#[test]
fn job_list_limits() {
    let one = r#"{"static_configs": [{"targets": ["h:1"]}]}"#;
    let jobs = |n: usize| {
        let named: Vec<String> = (0..n)
            .map(|i| one.replacen('{', &format!(r#"{{"job_name": "j{i}", "#), 1))
            .collect();
        format!("[{}]", named.join(","))
    };
    assert_eq!(
        declare(&jobs(MAX_JOBS)).expect("at the limit").jobs.len(),
        MAX_JOBS
    );
    let many_targets = |n: usize| targets(&format!("[{}]", vec![r#""h:1""#; n].join(",")));
    assert!(declare(&many_targets(MAX_TARGETS)).is_ok());
    let cases = [
        (one.to_string(), "must be a list of jobs, such as"),
        ("[]".into(), "the list of jobs is empty"),
        ("[".into(), "not YAML or JSON ("),
        (jobs(MAX_JOBS + 1), "more than 32 jobs"),
        (many_targets(MAX_TARGETS + 1), "more than 256 targets"),
        (
            labelled(&format!(r#"{{"a": "{}"}}"#, " ".repeat(MAX_JOBS_LEN))),
            "longer than 16384 bytes",
        ),
    ];
    for (text, msg) in &cases {
        assert_refused(text, msg);
    }
}

/// The other two annotations' errors name their annotation.
#[test]
fn selector_and_application_errors_name_their_annotation() {
    let msg = parse("cart", None, Some("a=b,"), None)
        .expect_err("selector")
        .0;
    assert!(
        msg.starts_with(&format!(
            "annotation {SCRAPE_SELECTOR_ANNOTATION}: \"a=b,\" has an empty requirement"
        )),
        "{msg}"
    );
    for bad in ["a".repeat(64), "a\nb".into()] {
        let msg = parse("cart", None, Some("a"), Some(&bad))
            .expect_err("application")
            .0;
        assert!(
            msg.starts_with(&format!("annotation {SCRAPE_APPLICATION_ANNOTATION}=")),
            "{msg}"
        );
        assert!(
            msg.ends_with("must be at most 63 characters without control characters"),
            "{msg}"
        );
    }
}

/// The jobs annotation is "YAML or JSON": what a JSON encoder writes for a
/// label value is read back (Python's `json.dumps` escapes 😀 as a surrogate
/// pair; serde_json and `JSON.stringify` write DEL and U+2028 raw).
#[test]
fn valid_json_label_values_are_read() {
    for (escaped, value) in [
        (r#""\ud83d\ude00""#, "😀"),
        ("\"a\u{7f}b\"", "a\u{7f}b"),
        ("\"a \u{2028}b\"", "a \u{2028}b"),
    ] {
        let text = labelled(&format!(r#"{{"a": {escaped}}}"#));
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(json[0]["static_configs"][0]["labels"]["a"], value);
        let read = declare(&text).map(|d| d.jobs[0].static_configs[0].labels["a"].clone());
        assert_eq!(read.as_deref(), Ok(value), "{text}");
    }
}

fn meta(name: &str, annotations: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        annotations: Some(map(annotations)),
        ..ObjectMeta::default()
    }
}

#[test]
fn of_reads_the_annotations() {
    let unrelated = [("other", "x")];
    let application_only = [(SCRAPE_APPLICATION_ANNOTATION, "shop")];
    for none in [
        meta("cart", &[]),
        meta("cart", &unrelated),
        meta("cart", &application_only),
        ObjectMeta::default(),
    ] {
        assert!(!asks(&none));
        assert_eq!(of(&none), None);
    }
    for (application, expected) in [(None, "cart"), (Some(""), "cart"), (Some(" shop "), "shop")] {
        let mut a = vec![(SCRAPE_SELECTOR_ANNOTATION, "tier,app=cart")];
        a.extend(application.map(|v| (SCRAPE_APPLICATION_ANNOTATION, v)));
        let m = meta("cart", &a);
        assert!(asks(&m));
        let decl = of(&m).expect("asks").expect("valid");
        assert_eq!(decl.application, expected);
        assert_eq!(decl.jobs, default_jobs());
        assert_eq!(
            decl.selector.map(|s| s.to_string()).as_deref(),
            Some("app=cart,tier")
        );
        assert_eq!(
            selector_of(&m).map(|s| s.to_string()).as_deref(),
            Some("app=cart,tier")
        );
    }
    let jobs_only = meta(
        "cart",
        &[(
            SCRAPE_JOBS_ANNOTATION,
            r#"[{"static_configs": [{"targets": ["h:1"]}]}]"#,
        )],
    );
    assert_eq!(of(&jobs_only).expect("asks").map(|d| d.selector), Ok(None));
    let bad = meta("cart", &[(SCRAPE_SELECTOR_ANNOTATION, "a b")]);
    assert_eq!(selector_of(&bad), None);
    assert!(of(&bad).expect("asks").is_err());
}

#[path = "scrape_publish_tests.rs"]
mod publish;
#[path = "scrape_syntax_tests.rs"]
mod syntax;
