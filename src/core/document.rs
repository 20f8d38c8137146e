//! The endpoint document written into a bound consumer: a pure function of the
//! resolved endpoint and the receivers the consumer asked for. No client here.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::Arc;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::core::pyyaml::pyyaml_str;

/// Data key: the seed's v0 YAML document.
pub const KEY_TEMPO_ENDPOINT: &str = "tempo_endpoint";
/// Data key: the v2 receivers list, JSON.
pub const KEY_RECEIVERS: &str = "receivers";
/// Data key: `http://host:port` of OTLP gRPC (the seed's `otlp_grpc_endpoint`).
pub const KEY_OTLP_GRPC_ENDPOINT: &str = "otlp_grpc_endpoint";
/// Data key: `http://host:port` of OTLP HTTP.
pub const KEY_OTLP_HTTP_ENDPOINT: &str = "otlp_http_endpoint";
/// Data key for `envFrom`: which trace exporter the OpenTelemetry SDK uses
/// (`otlp` or `zipkin`).
pub const KEY_OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// Data key for `envFrom`: the SDK's OTLP trace endpoint (OTLP/HTTP: the full
/// `.../v1/traces` URL, as the spec wants for the signal-specific variable;
/// gRPC: `http://host:port`).
pub const KEY_OTEL_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Data key for `envFrom`: the SDK's OTLP trace protocol (`http/protobuf` or `grpc`).
pub const KEY_OTEL_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// Data key for `envFrom`: the SDK's Zipkin endpoint (`.../api/v2/spans`).
pub const KEY_OTEL_ZIPKIN_ENDPOINT: &str = "OTEL_EXPORTER_ZIPKIN_ENDPOINT";
/// Data key for `envFrom`, only on the consumer's request: the all-signal OTLP
/// endpoint. An SDK that also exports metrics or logs sends them there too, and
/// Tempo refuses them.
pub const KEY_OTEL_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Data key for `envFrom`, only on the consumer's request: the all-signal protocol.
pub const KEY_OTEL_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

/// Data key, for a relation whose receivers serve TLS with a CA of its own: the
/// CA bundle (PEM) that verifies them.
pub const KEY_CA: &str = "ca.crt";
/// Data key for `envFrom`, with [`KEY_CA`]: the file the SDK trusts for its
/// trace exporter, where the consumer's pods mount [`KEY_CA`].
pub const KEY_OTEL_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// Data key for `envFrom`, with [`KEY_CA`] and only on the consumer's request
/// for all signals: the all-signal form of [`KEY_OTEL_TRACES_CERTIFICATE`].
pub const KEY_OTEL_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";

/// Where a consumer's pods mount its ConfigMap unless it says otherwise (the
/// examples' `mountPath`, and the default of the `endpoint` subcommand's `--dir`).
pub const DEFAULT_MOUNT_PATH: &str = "/etc/tracing";

/// Every data key the operator may write; nothing else in a consumer is touched.
/// (The all-signal keys stay in the set also for consumers bound before the
/// traces-only keys: the operator removes them from those.)
pub const DATA_KEYS: [&str; 13] = [
    KEY_TEMPO_ENDPOINT,
    KEY_RECEIVERS,
    KEY_OTLP_GRPC_ENDPOINT,
    KEY_OTLP_HTTP_ENDPOINT,
    KEY_OTEL_TRACES_EXPORTER,
    KEY_OTEL_TRACES_ENDPOINT,
    KEY_OTEL_TRACES_PROTOCOL,
    KEY_OTEL_ZIPKIN_ENDPOINT,
    KEY_OTEL_ENDPOINT,
    KEY_OTEL_PROTOCOL,
    KEY_CA,
    KEY_OTEL_TRACES_CERTIFICATE,
    KEY_OTEL_CERTIFICATE,
];

/// The all-signal keys, written only on the consumer's request.
pub const ALL_SIGNAL_KEYS: [&str; 3] = [KEY_OTEL_ENDPOINT, KEY_OTEL_PROTOCOL, KEY_OTEL_CERTIFICATE];

/// The keys written only for a relation with a CA bundle (`spec.tls.caConfigMap`).
pub const CA_KEYS: [&str; 3] = [KEY_CA, KEY_OTEL_TRACES_CERTIFICATE, KEY_OTEL_CERTIFICATE];

/// The keys of the default document (every receiver, traces-only SDK
/// variables, no CA bundle): every data key but the all-signal and CA ones.
pub fn default_keys() -> impl Iterator<Item = &'static str> {
    DATA_KEYS
        .into_iter()
        .filter(|k| !ALL_SIGNAL_KEYS.contains(k) && !CA_KEYS.contains(k))
}

/// Which SDK variables a consumer gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SdkSignals {
    /// Traces-only variables (the default): nothing else is sent to Tempo.
    #[default]
    Traces,
    /// Also the all-signal `OTEL_EXPORTER_OTLP_ENDPOINT`/`_PROTOCOL` (opt-in).
    All,
}

/// A receiver protocol of the v2 `tracing` interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    JaegerGrpc,
    JaegerThriftHttp,
    OtlpGrpc,
    OtlpHttp,
    Zipkin,
}

impl Protocol {
    /// All protocols, sorted by name (the order of the `receivers` list).
    pub const ALL: [Protocol; 5] = [
        Protocol::JaegerGrpc,
        Protocol::JaegerThriftHttp,
        Protocol::OtlpGrpc,
        Protocol::OtlpHttp,
        Protocol::Zipkin,
    ];

    /// The protocol's name in annotations and documents.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::JaegerGrpc => "jaeger_grpc",
            Protocol::JaegerThriftHttp => "jaeger_thrift_http",
            Protocol::OtlpGrpc => "otlp_grpc",
            Protocol::OtlpHttp => "otlp_http",
            Protocol::Zipkin => "zipkin",
        }
    }

    /// Transport: `grpc` or `http`.
    pub fn transport(self) -> &'static str {
        match self {
            Protocol::JaegerGrpc | Protocol::OtlpGrpc => "grpc",
            Protocol::JaegerThriftHttp | Protocol::OtlpHttp | Protocol::Zipkin => "http",
        }
    }

    /// The port of this protocol in an endpoint, when offered.
    pub fn port(self, ep: &Endpoint) -> Option<u16> {
        match self {
            Protocol::JaegerGrpc => ep.jaeger_grpc_port,
            Protocol::JaegerThriftHttp => ep.jaeger_thrift_http_port,
            Protocol::OtlpGrpc => ep.otlp_grpc_port,
            Protocol::OtlpHttp => ep.otlp_http_port,
            Protocol::Zipkin => ep.zipkin_port,
        }
    }

    /// The receiver URL: bare `host:port` for grpc, `scheme://host:port` for http.
    pub fn url(self, scheme: Scheme, hostname: &str, port: u16) -> String {
        match self.transport() {
            "grpc" => format!("{hostname}:{port}"),
            _ => format!("{scheme}://{hostname}:{port}"),
        }
    }
}

/// How the receivers are dialled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scheme {
    #[default]
    Http,
    /// The receivers serve TLS.
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown protocol name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown receiver protocol {0:?} (known: jaeger_grpc, jaeger_thrift_http, otlp_grpc, otlp_http, zipkin)"
)]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProtocol(s.to_string()))
    }
}

/// A resolved Tempo endpoint: hostname and the ports it offers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub hostname: String,
    pub tempo_port: Option<u16>,
    pub otlp_grpc_port: Option<u16>,
    pub otlp_http_port: Option<u16>,
    pub zipkin_port: Option<u16>,
    pub jaeger_thrift_http_port: Option<u16>,
    pub jaeger_grpc_port: Option<u16>,
    /// Set when the receivers serve TLS.
    pub tls: Option<Tls>,
}

/// TLS of a relation's receivers, as consumers need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tls {
    /// The CA bundle that verifies the receivers (canonical PEM, see
    /// [`crate::core::pem`]), when the relation names one; shared by every
    /// document built from it.
    pub ca: Option<Arc<str>>,
}

impl Endpoint {
    /// `https` when the receivers serve TLS.
    pub fn scheme(&self) -> Scheme {
        if self.tls.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    /// The CA bundle consumers get, if any.
    pub fn ca(&self) -> Option<&Arc<str>> {
        self.tls.as_ref()?.ca.as_ref()
    }

    /// Protocols with a port, sorted by name.
    pub fn offered(&self) -> impl Iterator<Item = Protocol> + '_ {
        Protocol::ALL.into_iter().filter(|p| p.port(self).is_some())
    }

    /// The seed's four ports, or the names of those missing.
    pub fn seed_ports(&self) -> Result<[u16; 4], Vec<&'static str>> {
        let named = [
            ("tempo_port", self.tempo_port),
            ("otlp_grpc_port", self.otlp_grpc_port),
            ("otlp_http_port", self.otlp_http_port),
            ("zipkin_port", self.zipkin_port),
        ];
        let missing: Vec<_> = named
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(named.map(|(_, p)| p.unwrap_or_default()))
    }
}

/// One entry of the v2 receivers list, serialized as
/// `{"protocol":{"name":...,"type":...},"url":...}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receiver {
    pub protocol: ReceiverProtocol,
    pub url: String,
}

/// The `protocol` object of a receiver.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiverProtocol {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
}

/// The receivers of `ep` among `requested` (all offered when `None`), sorted by name.
pub fn receivers(ep: &Endpoint, requested: Option<&[Protocol]>) -> Vec<(Protocol, Receiver)> {
    ep.offered()
        .filter(|p| requested.is_none_or(|r| r.contains(p)))
        .filter_map(|p| {
            let port = p.port(ep)?;
            Some((
                p,
                Receiver {
                    protocol: ReceiverProtocol {
                        name: p.name().to_string(),
                        type_: p.transport().to_string(),
                    },
                    url: p.url(ep.scheme(), &ep.hostname, port),
                },
            ))
        })
        .collect()
}

/// The seed's v0 document, byte for byte as PyYAML's `yaml.safe_dump` prints the dict
/// `{"hostname": ..., "tempo_port": ..., "otlp_grpc_port": ..., "otlp_http_port": ...,
/// "zipkin_port": ...}`: keys sorted, one per line, trailing newline.
pub fn render_tempo_endpoint(hostname: &str, ports: [u16; 4]) -> String {
    let [tempo, grpc, http, zipkin] = ports;
    let mut out = String::with_capacity(hostname.len() + 96);
    out.push_str("hostname: ");
    out.push_str(&pyyaml_str(hostname));
    let _ = write!(
        out,
        "\notlp_grpc_port: {grpc}\notlp_http_port: {http}\ntempo_port: {tempo}\nzipkin_port: {zipkin}\n"
    );
    out
}

/// Everything the operator writes into a bound consumer's data.
#[derive(Clone, Debug)]
pub struct Document {
    /// Data keys and values, sorted by key.
    pub data: BTreeMap<String, String>,
    /// Seed ports that are not offered (so `tempo_endpoint` was left out).
    pub missing_seed_ports: Vec<&'static str>,
    /// The receivers written, sorted by name.
    pub receivers: Vec<Protocol>,
    /// [`Document::hash`], [`Document::keys`] and [`Document::data_json`],
    /// computed once when built: every consumer's apply body shares them.
    hash: String,
    keys: String,
    data_json: Box<RawValue>,
}

/// Documents are equal when what they are built from is: the rest is derived.
impl PartialEq for Document {
    fn eq(&self, other: &Document) -> bool {
        self.data == other.data
            && self.missing_seed_ports == other.missing_seed_ports
            && self.receivers == other.receivers
    }
}

impl Eq for Document {}

impl Document {
    fn new(
        data: BTreeMap<String, String>,
        missing_seed_ports: Vec<&'static str>,
        receivers: Vec<Protocol>,
    ) -> Document {
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        let keys = keys.join(",");
        let hash = hash_of(&data);
        let data_json =
            serde_json::value::to_raw_value(&data).expect("a map of strings serializes");
        Document {
            data,
            missing_seed_ports,
            receivers,
            hash,
            keys,
            data_json,
        }
    }

    /// The data keys, comma-separated (the keys annotation).
    pub fn keys(&self) -> &str {
        &self.keys
    }

    /// A stable hash of the data, for the document-hash annotation.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The data as JSON text, serialized once for all the apply bodies that carry it.
    pub fn data_json(&self) -> &RawValue {
        &self.data_json
    }
}

/// The hash of a map of strings (`sha256:` and the first 16 bytes of the
/// SHA-256 of its keys and values, in order): the document hash annotation,
/// and the rollout's hash of several consumers' hashes.
pub fn hash_of(data: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(7 + 32);
    out.push_str("sha256:");
    for b in &digest[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Builds the document for a consumer that asked for `requested` receivers
/// (`None`: all offered), with the traces-only SDK variables.
pub fn build(ep: &Endpoint, requested: Option<&[Protocol]>) -> Document {
    build_with(ep, requested, SdkSignals::Traces)
}

/// What a consumer asks of its document beyond the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wants<'a> {
    /// The receivers asked for (`None`: all offered).
    pub receivers: Option<&'a [Protocol]>,
    pub signals: SdkSignals,
    /// Where its pods mount the ConfigMap (the CA file's directory).
    pub mount_path: &'a str,
}

impl Default for Wants<'_> {
    fn default() -> Self {
        Wants {
            receivers: None,
            signals: SdkSignals::Traces,
            mount_path: DEFAULT_MOUNT_PATH,
        }
    }
}

/// What a document is built from.
type Inputs = (Endpoint, Option<Vec<Protocol>>, SdkSignals, String);

thread_local! {
    /// The last document built on this thread: during a fan-out every consumer
    /// that asks for the same receivers shares the same document, built once.
    static LAST: std::cell::RefCell<Option<(Inputs, Arc<Document>)>> = const { std::cell::RefCell::new(None) };
}

/// Builds the document with the SDK variables of `signals`.
pub fn build_with(ep: &Endpoint, requested: Option<&[Protocol]>, signals: SdkSignals) -> Document {
    let wants = Wants {
        receivers: requested,
        signals,
        ..Wants::default()
    };
    (*build_shared(ep, wants)).clone()
}

/// The document of `ep` for a consumer that `wants`, shared: the same inputs
/// on the same thread give the same document, not a copy of it (decisions
/// about many consumers hold one document between them).
pub fn build_shared(ep: &Endpoint, wants: Wants<'_>) -> Arc<Document> {
    let same = |(e, r, s, m): &Inputs| {
        // (`Arc<str>`'s equality looks at the address first: during a fan-out
        // the CA bundle is the same one for every consumer.)
        e == ep && r.as_deref() == wants.receivers && *s == wants.signals && m == wants.mount_path
    };
    let hit = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(inputs, _)| same(inputs))
            .map(|(_, doc)| doc.clone())
    });
    if let Some(doc) = hit {
        return doc;
    }
    let doc = Arc::new(build_fresh(ep, wants));
    let inputs = (
        ep.clone(),
        wants.receivers.map(<[Protocol]>::to_vec),
        wants.signals,
        wants.mount_path.to_string(),
    );
    LAST.with_borrow_mut(|last| *last = Some((inputs, doc.clone())));
    doc
}

fn build_fresh(ep: &Endpoint, wants: Wants<'_>) -> Document {
    let (requested, signals) = (wants.receivers, wants.signals);
    let mut data = BTreeMap::new();
    let mut missing_seed_ports = Vec::new();
    match ep.seed_ports() {
        Ok(ports) => {
            data.insert(
                KEY_TEMPO_ENDPOINT.to_string(),
                render_tempo_endpoint(&ep.hostname, ports),
            );
        }
        Err(missing) => missing_seed_ports = missing,
    }
    let recv = receivers(ep, requested);
    let list: Vec<&Receiver> = recv.iter().map(|(_, r)| r).collect();
    data.insert(
        KEY_RECEIVERS.to_string(),
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_string()),
    );
    let url = |p: Protocol| {
        recv.iter()
            .any(|(q, _)| *q == p)
            .then(|| {
                p.port(ep)
                    .map(|port| format!("{}://{}:{port}", ep.scheme(), ep.hostname))
            })
            .flatten()
    };
    let (grpc, http, zipkin) = (
        url(Protocol::OtlpGrpc),
        url(Protocol::OtlpHttp),
        url(Protocol::Zipkin),
    );
    if let Some(g) = &grpc {
        data.insert(KEY_OTLP_GRPC_ENDPOINT.to_string(), g.clone());
    }
    if let Some(h) = &http {
        data.insert(KEY_OTLP_HTTP_ENDPOINT.to_string(), h.clone());
    }
    let otlp = http.is_some() || grpc.is_some();
    sdk_variables(&mut data, http, grpc, zipkin, signals);
    if let Some(ca) = ep.ca() {
        data.insert(KEY_CA.to_string(), ca.to_string());
        if otlp {
            let file = ca_file(wants.mount_path);
            if signals == SdkSignals::All {
                data.insert(KEY_OTEL_CERTIFICATE.to_string(), file.clone());
            }
            data.insert(KEY_OTEL_TRACES_CERTIFICATE.to_string(), file);
        }
    }
    Document::new(
        data,
        missing_seed_ports,
        recv.into_iter().map(|(p, _)| p).collect(),
    )
}

/// The path of the CA file in a pod that mounts the ConfigMap at `mount_path`.
pub fn ca_file(mount_path: &str) -> String {
    format!("{}/{KEY_CA}", mount_path.trim_end_matches('/'))
}

/// The OpenTelemetry SDK's variables: OTLP/HTTP when offered and requested,
/// else gRPC, else Zipkin; traces only unless the consumer asked for all signals.
fn sdk_variables(
    data: &mut BTreeMap<String, String>,
    http: Option<String>,
    grpc: Option<String>,
    zipkin: Option<String>,
    signals: SdkSignals,
) {
    let mut put = |k: &str, v: String| {
        data.insert(k.to_string(), v);
    };
    let otlp = match (http, grpc) {
        (Some(h), _) => Some((format!("{h}/v1/traces"), h, "http/protobuf")),
        (None, Some(g)) => Some((g.clone(), g, "grpc")),
        (None, None) => None,
    };
    if let Some(z) = &zipkin {
        put(KEY_OTEL_ZIPKIN_ENDPOINT, format!("{z}/api/v2/spans"));
    }
    match otlp {
        Some((traces, base, protocol)) => {
            put(KEY_OTEL_TRACES_EXPORTER, "otlp".to_string());
            put(KEY_OTEL_TRACES_ENDPOINT, traces);
            put(KEY_OTEL_TRACES_PROTOCOL, protocol.to_string());
            if signals == SdkSignals::All {
                put(KEY_OTEL_ENDPOINT, base);
                put(KEY_OTEL_PROTOCOL, protocol.to_string());
            }
        }
        None if zipkin.is_some() => put(KEY_OTEL_TRACES_EXPORTER, "zipkin".to_string()),
        None => {}
    }
}

#[cfg(test)]
#[path = "document_tests.rs"]
pub(crate) mod tests;
