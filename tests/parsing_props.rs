//! Property tests of the pure parsers and builders, no control plane:
//!
//! * `declaration::parse_receivers` and `declaration::parse` never panic on any
//!   input, and what they return is consistent (sorted, deduplicated, only known
//!   protocols, trimmed values, length limits honoured);
//! * `checks::decide` never panics on any ConfigMap, and its decision agrees with
//!   the parsed declaration (a Bind only for a readable `tracing`/`requires`
//!   declaration of a mutable ConfigMap holding no operator key of its own);
//! * `document::build` renders documents that read back: `tempo_endpoint` through
//!   `serde_yaml` gives the hostname and the four ports, `receivers` through
//!   `serde_json` gives the same list.
//!
//! Each property runs a modest number of cases so the file finishes in seconds.

mod common;

use std::collections::BTreeMap;

use common::fixtures::{endpoint_relation, seed_endpoint};
use common::strategies::{endpoint_at, requested as requested_from};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use proptest::prelude::*;
use tracing_relation_operator::api::{
    Backend, ConsumerPolicy, INTERFACE_TRACING, ROLE_PROVIDES, ROLE_REQUIRES, TracingRelation,
    TracingRelationSpec,
};
use tracing_relation_operator::core::backend::BackendError;
use tracing_relation_operator::core::checks::{self, Decision};
use tracing_relation_operator::core::contract::{
    INTERFACE_ANNOTATION, MAX_VALUE_LEN, RECEIVERS_ANNOTATION, RELATION_LABEL,
    RELATION_NAMESPACE_ANNOTATION, ROLE_ANNOTATION, STATE_ANNOTATION,
};
use tracing_relation_operator::core::declaration::{self, DeclarationError};
use tracing_relation_operator::core::document::{
    self, DATA_KEYS, Endpoint, KEY_RECEIVERS, KEY_TEMPO_ENDPOINT, Protocol, Receiver,
};
use tracing_relation_operator::core::ownership::Ownership;
use tracing_relation_operator::core::reason::Reason;

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Strategies.

const NAMES: [&str; 5] = [
    "otlp_grpc",
    "otlp_http",
    "zipkin",
    "jaeger_thrift_http",
    "jaeger_grpc",
];

/// Strings that look like receiver lists: known names, near misses, junk, blanks,
/// separators and unicode, glued together.
fn receivers_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(NAMES.to_vec()).prop_map(str::to_string),
        1 => prop::sample::select(vec![
            "OTLP_GRPC", "otlp-grpc", "otlp", "grpc", "zipkin2", "ｏｔｌｐ_grpc", "otlp_grpc\u{200b}", "carrier_pigeon",
        ])
        .prop_map(str::to_string),
        1 => "\\PC{0,6}",
        2 => prop::sample::select(vec!["", " ", "\t", "\n", "\u{a0}", "  "]).prop_map(str::to_string),
    ];
    prop::collection::vec(
        (
            piece,
            prop::sample::select(vec![",", ", ", " ,", ",,", ",\n"]),
        ),
        0..8,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .map(|(p, sep)| format!("{p}{sep}"))
            .collect::<String>()
    })
}

/// Arbitrary strings, with a bias to the edges: empty, whitespace, very long,
/// unicode, control characters.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,40}",
        2 => any::<String>(),
        1 => prop::sample::select(vec![
            "", " ", "tracing", " tracing ", "TRACING", "requires", "requires\n", "provides", "tracing\u{0}",
            "observability", "Observability", "obs_ns", "-bad-", "a.b",
        ])
        .prop_map(str::to_string),
        1 => (0usize..3000).prop_map(|n| "x".repeat(n)),
        1 => (1000usize..1100).prop_map(|n| format!("tracing{}", " ".repeat(n))),
        1 => (500usize..600).prop_map(|n| "é".repeat(n)),
    ]
}

/// A value for one of the four declaration annotations, or none: absent,
/// one of `good`, or hostile, in about equal parts.
fn annotation_value(good: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(None),
        4 => prop::sample::select(good).prop_map(|s| Some(s.to_string())),
        1 => receivers_like().prop_map(Some),
        1 => hostile_string().prop_map(Some),
    ]
}

fn label_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        12 => Just(Some("tempo".to_string())),
        2 => "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,2}".prop_map(Some),
        1 => hostile_string().prop_map(Some),
        1 => prop::sample::select(vec!["Tempo", "tempo_main", "", "a..b", ".tempo", "tempo."])
            .prop_map(|s| Some(s.to_string())),
    ]
}

/// Labels and annotations of a consumer, with the declaration keys filled in
/// often enough to matter, plus some unrelated keys.
fn metadata_maps() -> impl Strategy<Value = (BTreeMap<String, String>, BTreeMap<String, String>)> {
    (
        label_value(),
        annotation_value(&["obs", "shop", " obs ", ""]),
        annotation_value(&["tracing", " tracing\n", "\ttracing"]),
        annotation_value(&["requires", "requires ", "\u{a0}requires"]),
        annotation_value(&[
            "otlp_grpc",
            "otlp_http,otlp_grpc",
            "zipkin",
            "jaeger_grpc",
            " otlp_http , otlp_http ",
        ]),
        prop::option::of(prop::sample::select(vec!["Bound", "Rejected", "bound", ""])),
        prop::collection::btree_map("[a-z]{1,8}", "\\PC{0,10}", 0..3),
    )
        .prop_map(|(label, ns, iface, role, recv, state, extra)| {
            let mut labels = extra.clone();
            if let Some(l) = label {
                labels.insert(RELATION_LABEL.to_string(), l);
            }
            let mut ann = extra;
            for (k, v) in [
                (RELATION_NAMESPACE_ANNOTATION, ns),
                (INTERFACE_ANNOTATION, iface),
                (ROLE_ANNOTATION, role),
                (RECEIVERS_ANNOTATION, recv),
                (STATE_ANNOTATION, state.map(str::to_string)),
            ] {
                if let Some(v) = v {
                    ann.insert(k.to_string(), v);
                }
            }
            (labels, ann)
        })
}

fn data_maps() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    let key = prop_oneof![
        1 => prop::sample::select(DATA_KEYS.to_vec()).prop_map(str::to_string),
        8 => "[a-zA-Z0-9_.-]{1,12}",
    ];
    prop::option::of(prop::collection::btree_map(key, "\\PC{0,20}", 0..4))
}

fn binary_maps() -> impl Strategy<Value = Option<BTreeMap<String, ByteString>>> {
    let key = prop_oneof![
        1 => prop::sample::select(DATA_KEYS.to_vec()).prop_map(str::to_string),
        8 => "[a-zA-Z0-9_.-]{1,12}",
    ];
    prop::option::of(prop::collection::btree_map(
        key,
        prop::collection::vec(any::<u8>(), 0..8).prop_map(ByteString),
        0..3,
    ))
}

fn consumer() -> impl Strategy<Value = ConfigMap> {
    (
        prop_oneof![3 => Just("obs".to_string()), 1 => Just("shop".to_string()), 1 => "[a-z]([a-z0-9-]{0,10}[a-z0-9])?"],
        metadata_maps(),
        data_maps(),
        binary_maps(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(ns, (labels, annotations), data, binary_data, immutable)| ConfigMap {
                metadata: ObjectMeta {
                    name: Some("consumer".into()),
                    namespace: Some(ns),
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                },
                data,
                binary_data,
                immutable,
            },
        )
}

/// DNS names (what the CRD admits) and strings PyYAML and YAML 1.2 read as
/// something other than a string unless quoted.
fn hostname() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,4}",
        1 => prop::sample::select(vec![
            "123", "no", "yes", "on", "off", "null", "true", "1e3", "0o17", "0x1f", "1.5", "2024-01-02",
            "10.0.0.1", "1_000", "010", "0b1", "1e-3", "n", "y", "nan", "inf", "0", "00", "1-2", "127.0.0.1",
        ])
        .prop_map(str::to_string),
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    endpoint_at(hostname())
}

fn requested() -> impl Strategy<Value = Option<Vec<Protocol>>> {
    requested_from(1)
}

fn selector() -> impl Strategy<Value = Option<LabelSelector>> {
    prop::option::weighted(
        0.5,
        prop_oneof![
            Just(LabelSelector::default()),
            ("[a-z]{1,5}", "\\PC{0,6}").prop_map(|(k, v)| LabelSelector {
                match_labels: Some(BTreeMap::from([(k, v)])),
                ..LabelSelector::default()
            }),
            // Operators and values the API server would refuse: must not panic either.
            (
                "\\PC{0,6}",
                "\\PC{0,8}",
                prop::collection::vec("\\PC{0,4}", 0..3)
            )
                .prop_map(|(k, op, values)| LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: k,
                        operator: op,
                        values: Some(values),
                    }]),
                    ..LabelSelector::default()
                }),
        ],
    )
}

fn relation() -> impl Strategy<Value = Option<TracingRelation>> {
    prop::option::weighted(
        0.8,
        (
            prop_oneof![3 => Just(INTERFACE_TRACING.to_string()), 1 => hostile_string()],
            prop_oneof![3 => Just(ROLE_PROVIDES.to_string()), 1 => hostile_string()],
            selector(),
            prop_oneof![3 => Just("obs".to_string()), 1 => "[a-z]([a-z0-9-]{0,8}[a-z0-9])?"],
        )
            .prop_map(|(interface, role, namespace_selector, ns)| {
                let mut rel = endpoint_relation("tempo", "tempo.example", None);
                rel.spec.interface = interface;
                rel.spec.role = role;
                rel.spec.consumers = Some(ConsumerPolicy { namespace_selector });
                rel.metadata.namespace = Some(ns);
                rel
            }),
    )
}

// ---------------------------------------------------------------------------
// Receivers.

/// The reference reading of the receivers annotation, written independently.
fn reference_receivers(value: &str) -> Result<Vec<&'static str>, ()> {
    let mut names: Vec<&'static str> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let known = NAMES.iter().find(|n| **n == part).ok_or(())?;
        if !names.contains(known) {
            names.push(known);
        }
    }
    if names.is_empty() {
        return Err(());
    }
    names.sort();
    Ok(names)
}

proptest! {
    #![proptest_config(config())]

    /// `parse_receivers` never panics; what it returns is sorted, free of repeats,
    /// only known protocols, and exactly the reference reading.
    #[test]
    fn parse_receivers_is_total_and_normalised(value in prop_oneof![receivers_like(), hostile_string()]) {
        let got = declaration::parse_receivers(&value);
        match (&got, reference_receivers(&value)) {
            (Ok(list), Ok(want)) => {
                prop_assert!(!list.is_empty());
                prop_assert!(list.windows(2).all(|w| w[0] < w[1]), "not sorted/deduplicated: {list:?}");
                prop_assert!(list.iter().all(|p| Protocol::ALL.contains(p)));
                let names: Vec<&str> = list.iter().map(|p| p.name()).collect();
                prop_assert_eq!(names, want);
                // Sorted by Ord is sorted by name: the order of the `receivers` document.
                prop_assert!(list.windows(2).all(|w| w[0].name() < w[1].name()));
            }
            (Err(msg), Err(())) => prop_assert!(!msg.is_empty()),
            (got, want) => prop_assert!(false, "{value:?}: parse_receivers {got:?}, reference {want:?}"),
        }
    }

    /// Any list of known names, in any order, with repeats, blanks and spaces around
    /// the commas, reads as the sorted set of those names; re-joining it with ','
    /// and parsing again gives the same list (idempotent).
    #[test]
    fn parse_receivers_of_known_names(
        picks in prop::collection::vec(prop::sample::select(Protocol::ALL.to_vec()), 1..10),
        pads in prop::collection::vec(prop::sample::select(vec!["", " ", "\t", " \n "]), 10),
        empties in 0usize..3,
    ) {
        let mut text = String::new();
        for (i, p) in picks.iter().enumerate() {
            text.push_str(pads[i % pads.len()]);
            text.push_str(p.name());
            text.push_str(pads[(i + 1) % pads.len()]);
            text.push(',');
        }
        text.push_str(&",".repeat(empties));
        let list = declaration::parse_receivers(&text).map_err(TestCaseError::fail)?;
        let mut want = picks.clone();
        want.sort();
        want.dedup();
        prop_assert_eq!(&list, &want);
        let joined = list.iter().map(|p| p.name()).collect::<Vec<_>>().join(",");
        prop_assert_eq!(declaration::parse_receivers(&joined).map_err(TestCaseError::fail)?, list);
    }
}

// ---------------------------------------------------------------------------
// The declaration.

proptest! {
    #![proptest_config(config())]

    /// `parse` never panics on any labels and annotations, and a declaration it
    /// returns is consistent with its input.
    #[test]
    fn parse_is_total_and_consistent(ns in "[a-z]([a-z0-9-]{0,10}[a-z0-9])?", (labels, ann) in metadata_maps()) {
        let got = declaration::parse(&ns, &labels, &ann);
        let too_long = [RELATION_NAMESPACE_ANNOTATION, INTERFACE_ANNOTATION, ROLE_ANNOTATION, RECEIVERS_ANNOTATION]
            .iter()
            .any(|k| ann.get(*k).is_some_and(|v| v.len() > MAX_VALUE_LEN));
        match got {
            Err(DeclarationError::NoLabel) => prop_assert!(!labels.contains_key(RELATION_LABEL)),
            Err(DeclarationError::BadRelationName(_)) => {
                prop_assert!(!declaration::is_dns_subdomain(&labels[RELATION_LABEL]));
            }
            Err(e) => {
                // Every error names the annotation it is about, and has a message.
                prop_assert!(e.to_string().contains("tracing.relations.dev/"), "{e}");
            }
            Ok(d) => {
                prop_assert!(!too_long, "a value longer than {MAX_VALUE_LEN} bytes was accepted: {ann:?}");
                prop_assert_eq!(&d.relation_name, &labels[RELATION_LABEL]);
                prop_assert!(declaration::is_dns_subdomain(&d.relation_name));
                prop_assert!(declaration::is_dns_label(&d.relation_namespace));
                match ann.get(RELATION_NAMESPACE_ANNOTATION).map(|v| v.trim()) {
                    None | Some("") => prop_assert_eq!(&d.relation_namespace, &ns),
                    Some(v) => prop_assert_eq!(d.relation_namespace.as_str(), v),
                }
                // Interface and role are the trimmed annotation, or the defaults.
                prop_assert_eq!(
                    d.interface.as_str(),
                    ann.get(INTERFACE_ANNOTATION).map_or(INTERFACE_TRACING, |v| v.trim())
                );
                prop_assert_eq!(d.role.as_str(), ann.get(ROLE_ANNOTATION).map_or(ROLE_REQUIRES, |v| v.trim()));
                match (ann.get(RECEIVERS_ANNOTATION), &d.receivers) {
                    (None, None) => {}
                    (Some(v), Some(list)) => {
                        prop_assert_eq!(list, &declaration::parse_receivers(v).map_err(TestCaseError::fail)?);
                    }
                    (a, r) => prop_assert!(false, "receivers annotation {a:?} gave {r:?}"),
                }
            }
        }
        // A missing label is always NoLabel, whatever the annotations say.
        let mut unlabelled = labels.clone();
        unlabelled.remove(RELATION_LABEL);
        prop_assert_eq!(declaration::parse(&ns, &unlabelled, &ann), Err(DeclarationError::NoLabel));
    }

    /// `truncate` bounds any string on a character boundary, never panicking.
    #[test]
    fn truncate_is_bounded(s in any::<String>(), max in 0usize..100) {
        let t = tracing_relation_operator::core::contract::truncate_to(&s, max);
        if s.len() <= max {
            prop_assert_eq!(t, s);
        } else {
            prop_assert!(t.ends_with("..."));
            prop_assert!(t.len() <= max + 3);
            prop_assert!(s.starts_with(t.trim_end_matches("...")));
        }
    }
}

// ---------------------------------------------------------------------------
// The checks.

/// The dereference step, as the operator does it, then the pure decision.
fn decide_with(
    cm: &ConfigMap,
    rel: Option<&TracingRelation>,
    ns_labels: &BTreeMap<String, String>,
    backend: Result<Endpoint, BackendError>,
) -> Decision {
    let declaration = declaration::of(&cm.metadata);
    let ownership = Ownership::of(&cm.metadata);
    let backend = rel.map(|_| backend);
    checks::decide(&checks::Facts {
        consumer: cm,
        declaration: &declaration,
        ownership: &ownership,
        relation: rel,
        namespace_labels: ns_labels,
        backend: backend.as_ref(),
    })
}

proptest! {
    #![proptest_config(config())]

    /// `decide` never panics on any ConfigMap, relation, namespace labels and backend
    /// outcome; its decision agrees with what the ConfigMap declares.
    #[test]
    fn decide_is_total_and_consistent(
        cm in consumer(),
        rel in relation(),
        ns_labels in prop::collection::btree_map("[a-z]{1,5}", "\\PC{0,6}", 0..3),
        backend_ok in prop::bool::weighted(0.85),
        ep in endpoint(),
    ) {
        let ns = cm.metadata.namespace.clone().unwrap_or_default();
        let empty = BTreeMap::new();
        let parsed = declaration::parse(
            &ns,
            cm.metadata.labels.as_ref().unwrap_or(&empty),
            cm.metadata.annotations.as_ref().unwrap_or(&empty),
        );
        let backend = || if backend_ok { Ok(ep.clone()) } else { Err(BackendError::Ambiguous) };
        let decision = decide_with(&cm, rel.as_ref(), &ns_labels, backend());
        match &decision {
            Decision::Reject(r) => {
                prop_assert!(!r.message.is_empty());
                // Messages quote hostile values truncated, so status stays small.
                prop_assert!(r.message.len() < 2 * MAX_VALUE_LEN, "message of {} bytes", r.message.len());
                if parsed.is_err() {
                    prop_assert_eq!(r.reason, Reason::InvalidDeclaration);
                }
                if r.reason == Reason::RelationNotFound {
                    prop_assert!(rel.is_none());
                }
                if r.reason == Reason::ConsumerImmutable {
                    prop_assert_eq!(cm.immutable, Some(true));
                }
            }
            Decision::Bind { relation, document, requested } => {
                let d = parsed.as_ref().map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&d.receivers, requested);
                prop_assert_eq!(d.interface.as_str(), INTERFACE_TRACING);
                prop_assert_eq!(d.role.as_str(), ROLE_REQUIRES);
                prop_assert!(rel.is_some() && backend_ok);
                prop_assert_ne!(cm.immutable, Some(true));
                prop_assert_eq!(relation.to_string(), format!("{}/{}", d.relation_namespace, d.relation_name));
                prop_assert!(!document.receivers.is_empty());
                prop_assert!(document.data.keys().all(|k| DATA_KEYS.contains(&k.as_str())));
                // Whatever its annotations say, a key the operator's own record
                // does not give it is never overwritten.
                let own = Ownership::of(&cm.metadata);
                for k in DATA_KEYS {
                    if !own.is_operator_key(&cm, k) {
                        prop_assert!(!cm.data.as_ref().is_some_and(|m| m.contains_key(k)), "own data key {k} would be overwritten");
                    }
                    prop_assert!(!cm.binary_data.as_ref().is_some_and(|m| m.contains_key(k)), "own binaryData key {k} collides");
                }
                prop_assert_eq!(&**document, &document::build(&ep, d.receivers.as_deref()));
            }
            Decision::Pending { why, .. } => {
                prop_assert!(!backend_ok);
                prop_assert_eq!(why.reason, Reason::BackendUnavailable);
            }
        }
        // Deterministic: the same input decides the same.
        let again = decide_with(&cm, rel.as_ref(), &ns_labels, backend());
        prop_assert_eq!(decision, again);
    }

    /// A well-formed consumer of a well-formed relation in its own namespace binds,
    /// with exactly the receivers asked for that are offered.
    #[test]
    fn valid_consumer_binds(req in requested(), own in prop::collection::btree_map("[a-z]{1,8}", "\\PC{0,20}", 0..4)) {
        let mut ann = BTreeMap::new();
        if let Some(r) = &req {
            ann.insert(RECEIVERS_ANNOTATION.to_string(), r.iter().map(|p| p.name()).collect::<Vec<_>>().join(","));
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("c".into()),
                namespace: Some("obs".into()),
                labels: Some(BTreeMap::from([(RELATION_LABEL.to_string(), "tempo".to_string())])),
                annotations: Some(ann),
                ..ObjectMeta::default()
            },
            data: Some(own),
            ..ConfigMap::default()
        };
        let mut rel = TracingRelation::new(
            "tempo",
            TracingRelationSpec {
                interface: INTERFACE_TRACING.into(),
                role: ROLE_PROVIDES.into(),
                backend: Backend::default(),
                consumers: None,
                tls: None,
                scrape: None,
            },
        );
        rel.metadata.namespace = Some("obs".into());
        let ep = seed_endpoint("tempo.example");
        let decision = decide_with(&cm, Some(&rel), &BTreeMap::new(), Ok(ep.clone()));
        let offered: Vec<Protocol> = ep.offered().collect();
        let want: Vec<Protocol> = match &req {
            None => offered.clone(),
            Some(r) => offered.iter().copied().filter(|p| r.contains(p)).collect(),
        };
        match decision {
            Decision::Bind { document, .. } => prop_assert_eq!(&document.receivers, &want),
            Decision::Reject(r) => {
                prop_assert!(want.is_empty(), "{r:?}");
                prop_assert_eq!(r.reason, Reason::ReceiverNotOffered);
            }
            Decision::Pending { why, .. } => prop_assert!(false, "{why:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Rendering and reading back.

#[derive(serde::Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct TempoEndpointDoc {
    hostname: String,
    tempo_port: u16,
    otlp_grpc_port: u16,
    otlp_http_port: u16,
    zipkin_port: u16,
}

proptest! {
    #![proptest_config(config())]

    /// `tempo_endpoint` read with `serde_yaml` gives back the hostname and the four
    /// seed ports, and nothing else; it is written exactly when all four are offered.
    #[test]
    fn tempo_endpoint_reads_back(ep in endpoint(), req in requested()) {
        let doc = document::build(&ep, req.as_deref());
        match ep.seed_ports() {
            Ok([tempo, grpc, http, zipkin]) => {
                let text = doc.data.get(KEY_TEMPO_ENDPOINT).ok_or_else(|| TestCaseError::fail("no tempo_endpoint"))?;
                prop_assert!(text.ends_with('\n'));
                let back: TempoEndpointDoc = serde_yaml::from_str(text)
                    .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
                prop_assert_eq!(
                    back,
                    TempoEndpointDoc {
                        hostname: ep.hostname.clone(),
                        tempo_port: tempo,
                        otlp_grpc_port: grpc,
                        otlp_http_port: http,
                        zipkin_port: zipkin,
                    }
                );
                // Keys sorted, one per line, as PyYAML's safe_dump prints them.
                let keys: Vec<&str> = text.lines().filter_map(|l| l.split(':').next()).collect();
                prop_assert_eq!(keys, vec!["hostname", "otlp_grpc_port", "otlp_http_port", "tempo_port", "zipkin_port"]);
                prop_assert!(doc.missing_seed_ports.is_empty());
            }
            Err(missing) => {
                prop_assert!(!doc.data.contains_key(KEY_TEMPO_ENDPOINT));
                prop_assert_eq!(doc.missing_seed_ports, missing);
            }
        }
    }

    /// Arbitrary hostnames (any unicode, quotes, colons, control characters) still
    /// read back: the quoting never corrupts the document.
    #[test]
    fn tempo_endpoint_quotes_any_hostname(host in any::<String>().prop_filter("non-empty", |s| !s.is_empty())) {
        let text = document::render_tempo_endpoint(&host, [3200, 4317, 4318, 9411]);
        let back: TempoEndpointDoc = serde_yaml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(back.hostname, host);
        prop_assert_eq!(back.zipkin_port, 9411);
        // safe_dump escapes everything but printable ASCII: the document is ASCII.
        prop_assert!(text.is_ascii(), "{text:?}");
    }

    /// `receivers` is JSON that parses back to the same list: offered and asked for,
    /// sorted by name, grpc bare `host:port`, http with a scheme; the OTel keys pick
    /// OTLP/HTTP when it is in the list, else OTLP/gRPC.
    #[test]
    fn receivers_json_reads_back(ep in endpoint(), req in requested()) {
        let doc = document::build(&ep, req.as_deref());
        let text = doc.data.get(KEY_RECEIVERS).ok_or_else(|| TestCaseError::fail("no receivers key"))?;
        let back: Vec<Receiver> = serde_json::from_str(text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let want: Vec<Receiver> = document::receivers(&ep, req.as_deref()).into_iter().map(|(_, r)| r).collect();
        prop_assert_eq!(&back, &want);
        let names: Vec<&str> = back.iter().map(|r| r.protocol.name.as_str()).collect();
        prop_assert_eq!(&names, &doc.receivers.iter().map(|p| p.name()).collect::<Vec<_>>());
        prop_assert!(names.windows(2).all(|w| w[0] < w[1]));
        for r in &back {
            let p: Protocol = r.protocol.name.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert!(req.as_ref().is_none_or(|q| q.contains(&p)));
            let port = p.port(&ep).ok_or_else(|| TestCaseError::fail("receiver for a port not offered"))?;
            prop_assert_eq!(r.protocol.type_.as_str(), p.transport());
            let hostport = format!("{}:{port}", ep.hostname);
            if p.transport() == "grpc" {
                prop_assert_eq!(&r.url, &hostport);
            } else {
                prop_assert_eq!(&r.url, &format!("http://{hostport}"));
            }
        }
        let has = |p: Protocol| doc.receivers.contains(&p);
        match doc.data.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").map(String::as_str) {
            Some("http/protobuf") => prop_assert!(has(Protocol::OtlpHttp)),
            Some("grpc") => prop_assert!(has(Protocol::OtlpGrpc) && !has(Protocol::OtlpHttp)),
            None => prop_assert!(!has(Protocol::OtlpGrpc) && !has(Protocol::OtlpHttp)),
            Some(other) => prop_assert!(false, "unexpected protocol {other}"),
        }
        // The hash is a pure function of the data.
        let again = document::build(&ep, req.as_deref());
        prop_assert_eq!(doc.hash(), again.hash());
    }
}
