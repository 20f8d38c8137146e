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
fn durations_are_checked() {
    for key in ["scrape_interval", "scrape_timeout"] {
        for (value, what) in [
            (r#""1x""#, r#""1x""#),
            (r#""""#, r#""""#),
            (r#""0s""#, r#""0s""#),
            (r#""1s1m""#, r#""1s1m""#),
            ("30", "a number"),
        ] {
            assert_refused(
                &job_with(&format!(r#""{key}": {value},"#)),
                &format!(
                    "job 0: {key} must be a Prometheus duration such as 30s, 1m or 1m30s, not {what}"
                ),
            );
        }
    }
    assert_refused(
        &job_with(r#""scrape_interval": "10s", "scrape_timeout": "11s","#),
        "job 0: scrape_timeout is longer than scrape_interval (10s)",
    );
    assert_refused(
        &job_with(r#""scrape_timeout": "61s","#),
        "job 0: scrape_timeout is longer than scrape_interval (1m, the default)",
    );
    for (keys, interval, timeout) in [
        (r#""scrape_timeout": "1m","#, None, Some("1m")),
        (
            r#""scrape_interval": "1m30s", "scrape_timeout": "90000ms","#,
            Some("1m30s"),
            Some("90000ms"),
        ),
        (r#""scrape_interval": "5s","#, Some("5s"), None),
    ] {
        let job = &declare(&job_with(keys)).expect(keys).jobs[0];
        assert_eq!(job.scrape_interval.as_deref(), interval, "{keys}");
        assert_eq!(job.scrape_timeout.as_deref(), timeout, "{keys}");
    }
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

#[test]
fn parse_duration_table() {
    const S: u64 = 1_000;
    const D: u64 = 86_400 * S;
    for (text, ms) in [
        ("1ms", 1),
        ("30s", 30 * S),
        ("1m30s", 90 * S),
        ("1m1ms", 60 * S + 1),
        ("1h", 3_600 * S),
        ("2d", 2 * D),
        ("1w", 7 * D),
        ("1y", 365 * D),
        (
            "1y1w1d1h1m1s1ms",
            365 * D + 7 * D + D + 3_600 * S + 60 * S + S + 1,
        ),
        ("01s", S),
        ("0s", 0),
    ] {
        assert_eq!(parse_duration(text), Some(ms), "{text}");
    }
    for text in [
        "",
        "30",
        "s",
        "1x",
        "1S",
        "1.5s",
        "-1s",
        " 1s",
        "1s ",
        "1s1m",
        "1ms1s",
        "1m1m",
        "1h1d",
        "99999999999999999999s",
    ] {
        assert_eq!(parse_duration(text), None, "{text:?}");
    }
    let padded = format!("{}1s", "0".repeat(31));
    assert_eq!(parse_duration(&padded[1..]), Some(S));
    assert_eq!(parse_duration(&padded), None, "longer than 32 bytes");
}

/// Prometheus durations are int64 nanoseconds: past ~292 years it refuses
/// them ("duration out of range") and with them the whole configuration file.
#[test]
fn durations_past_prometheus_range_are_refused() {
    assert_eq!(parse_duration("292y"), Some(292 * 365 * 86_400_000));
    assert_eq!(parse_duration("106751d"), Some(106_751 * 86_400_000));
    for text in ["293y", "106752d", "9223372036855s"] {
        assert_eq!(parse_duration(text), None, "{text}");
        assert_refused(
            &job_with(&format!(r#""scrape_interval": "{text}","#)),
            "scrape_interval must be a Prometheus duration",
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

#[test]
fn parse_selector_forms_and_canonical_display() {
    for (text, canonical) in [
        ("app=cart", "app=cart"),
        ("app==cart", "app=cart"),
        ("app!=cart", "app!=cart"),
        ("app", "app"),
        ("!app", "!app"),
        ("app=", "app="),
        (" app = cart , tier ", "app=cart,tier"),
        ("example.com/app=cart", "example.com/app=cart"),
        ("b=1,a=2,a==2,!c,c,x!=y", "a=2,b=1,x!=y,c,!c"),
    ] {
        let sel = parse_selector(text).expect(text);
        assert_eq!(sel.to_string(), canonical, "{text}");
        assert_eq!(parse_selector(canonical), Ok(sel), "{text}");
    }
}

#[test]
fn parse_selector_errors() {
    for (text, msg) in [
        ("", r#""" has an empty requirement"#),
        ("a=b,", r#""a=b," has an empty requirement"#),
        (",a", r#"",a" has an empty requirement"#),
        ("a b", r#""a b" is not a label key"#),
        ("a in (b)", r#""a in (b)" is not a label key"#),
        ("!", r#""" is not a label key"#),
        ("Ex.com/a=b", r#""Ex.com/a" is not a label key"#),
        ("/a=b", r#""/a" is not a label key"#),
        ("a=b c", r#""b c" is not a label value"#),
        ("a=-b", r#""-b" is not a label value"#),
        ("a=b=c", r#""b=c" is not a label value"#),
    ] {
        let err = parse_selector(text).expect_err(text);
        assert!(err.starts_with(msg), "{text}: {err}");
    }
    let long_key = "k".repeat(64);
    assert_eq!(
        parse_selector(&long_key),
        Err(format!("{long_key:?} is not a label key"))
    );
    assert_eq!(
        parse_selector(&vec!["a"; 513].join(",")),
        Err("longer than 1024 bytes".into())
    );
}

/// Two consumers' jobs, published together.
fn publication() -> Publication {
    let decl = declare(
        r#"[{"job_name": "web", "scrape_interval": "5s",
             "static_configs": [{"targets": ["h:1", "*:8000"], "labels": {"flag": "true", "n": "1"}}]}]"#,
    )
    .expect("parsed");
    let other = Topology {
        consumer: "api",
        ..TOPO
    };
    let mut jobs = resolve(TOPO, &decl, &units()[..1]);
    jobs.extend(resolve(other, &declare(SEED_PORT).expect("seed"), &[]));
    Publication::new(jobs)
}

#[test]
fn publication_is_sorted_and_counted() {
    let p = publication();
    let names: Vec<&str> = p.jobs.iter().map(|j| j.job_name.as_str()).collect();
    assert_eq!(names, ["shop_api_job0", "shop_cart_web"]);
    assert_eq!(p.counts(), (2, 2));
    assert_eq!(Publication::default().counts(), (0, 0));
}

/// `scrape_configs.yaml` reads back as Prometheus `scrape_configs`; a job
/// without pods keeps its place with no groups.
#[test]
fn scrape_configs_yaml_reads_back() {
    let back: serde_json::Value =
        serde_yaml::from_str(&publication().scrape_configs_yaml()).expect("YAML");
    let labels = json!({"flag": "true", "n": "1", "k8s_namespace": "shop",
        "k8s_namespace_uid": "uid-1", "k8s_application": "cart"});
    let mut pod_labels = labels.clone();
    pod_labels["k8s_pod"] = json!("cart-0");
    assert_eq!(
        back,
        json!({"scrape_configs": [
            {"job_name": "shop_api_job0", "static_configs": []},
            {"job_name": "shop_cart_web", "scrape_interval": "5s", "static_configs": [
                {"targets": ["h:1"], "labels": labels},
                {"targets": ["10.0.0.1:8000"], "labels": pod_labels},
            ]},
        ]})
    );
}

/// The labels `target_groups` adds: the job, its interval, and its timeout,
/// which is the interval when that is shorter than Prometheus' default timeout.
#[test]
fn target_groups_carry_job_interval_and_timeout() {
    for (interval, timeout, expected_timeout) in [
        (None, None, None),
        (Some("5s"), None, Some("5s")),
        (Some("9999ms"), None, Some("9999ms")),
        (Some("10s"), None, None),
        (Some("1m"), None, None),
        (Some("1m"), Some("20s"), Some("20s")),
        (Some("5s"), Some("2s"), Some("2s")),
        (None, Some("20s"), Some("20s")),
    ] {
        let job = ResolvedJob {
            scrape_interval: interval.map(String::from),
            scrape_timeout: timeout.map(String::from),
            ..resolved("web", vec![fixed(&["h:1"], &[]), fixed(&["h:2"], &[])])
        };
        let groups = Publication::new(vec![job]).target_groups();
        assert_eq!(groups.len(), 2);
        for (g, target) in groups.iter().zip(["h:1", "h:2"]) {
            let mut expected = topology(&[("job", "shop_cart_web")]);
            expected.extend(interval.map(|i| ("__scrape_interval__".to_string(), i.to_string())));
            expected.extend(
                expected_timeout.map(|t| ("__scrape_timeout__".to_string(), t.to_string())),
            );
            assert_eq!(g.targets, [target]);
            assert_eq!(g.labels, expected, "{interval:?} {timeout:?}");
        }
    }
}

#[test]
fn target_groups_json_is_file_sd() {
    let back: serde_json::Value =
        serde_json::from_str(&publication().target_groups_json()).expect("JSON");
    let items = back.as_array().expect("a list");
    assert_eq!(items.len(), 2);
    for item in items {
        let mut keys: Vec<&String> = item.as_object().expect("an object").keys().collect();
        keys.sort();
        assert_eq!(keys, ["labels", "targets"]);
        assert_eq!(item["labels"]["job"], "shop_cart_web");
        assert_eq!(item["labels"]["__scrape_timeout__"], "5s");
    }
    assert_eq!(items[0]["targets"], json!(["h:1"]));
    assert_eq!(items[1]["targets"], json!(["10.0.0.1:8000"]));
    assert_eq!(items[1]["labels"][LABEL_POD], "cart-0");
    assert_eq!(Publication::default().target_groups_json(), "[]");
}

#[test]
fn data_holds_both_formats() {
    let p = publication();
    let data = p.data();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        [FILE_SD_KEY, SCRAPE_CONFIGS_KEY]
    );
    assert_eq!(data[SCRAPE_CONFIGS_KEY], p.scrape_configs_yaml());
    assert_eq!(data[FILE_SD_KEY], p.target_groups_json());
}

/// Wildcard groups are one per distinct pod, in pod order, whatever the order
/// and repeats of the list given.
#[test]
fn resolve_sorts_and_dedups_units() {
    let decl = declare(SEED_PORT).expect("seed");
    let mut shuffled = units();
    shuffled.reverse();
    shuffled.extend(units());
    assert_eq!(
        resolve(TOPO, &decl, &shuffled),
        vec![resolved("job0", per_pod(&[8000], &[]))]
    );
}

/// Without a namespace uid (the operator cannot read namespaces) the label is
/// left out rather than written empty.
#[test]
fn unknown_namespace_uid_is_left_out() {
    let decl = declare(SEED_PORT).expect("seed");
    let t = Topology {
        namespace_uid: "",
        ..TOPO
    };
    for job in resolve(t, &decl, &units()) {
        for g in job.static_configs {
            assert!(!g.labels.contains_key(LABEL_NAMESPACE_UID), "{g:?}");
            assert_eq!(g.labels[LABEL_NAMESPACE], "shop");
        }
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
