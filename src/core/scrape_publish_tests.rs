//! Tests of resolution and of the published formats.
use super::*;

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
