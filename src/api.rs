//! The `TracingRelation` custom resource (`tracing.relations.dev/v1alpha1`).
//!
//! The CRD under `crds/` is generated from these types (`tracing-relation-operator crd`);
//! every doc comment here becomes `kubectl explain` text.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the operator's resources, annotations and labels.
pub const GROUP: &str = "tracing.relations.dev";
/// The only interface a relation may declare (the seed's `RELATION_INTERFACE_NAME`).
pub const INTERFACE_TRACING: &str = "tracing";
/// The role a `TracingRelation` declares: it provides the Tempo endpoint.
pub const ROLE_PROVIDES: &str = "provides";
/// The role a consumer ConfigMap declares: it requires the Tempo endpoint.
pub const ROLE_REQUIRES: &str = "requires";

/// The seed's default ports.
pub const DEFAULT_TEMPO_PORT: i32 = 3200;
pub const DEFAULT_OTLP_GRPC_PORT: i32 = 4317;
pub const DEFAULT_OTLP_HTTP_PORT: i32 = 4318;
pub const DEFAULT_ZIPKIN_PORT: i32 = 9411;

/// A DNS-1123 subdomain, as CEL sees it: labels of at most 63 characters, the
/// same rule the operator applies (IPv4 addresses also match).
const DNS_RULE: &str = "self.size() <= 253 && self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')";

/// The Tempo backend this relation declares, and which consumers may bind to it.
/// Consumers opt in with the label `tracing.relations.dev/relation: <name>` on a
/// ConfigMap of their own.
// Several printcolumn(...) entries repeat `type_ = ...`, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tracing.relations.dev",
    version = "v1alpha1",
    kind = "TracingRelation",
    namespaced,
    shortname = "trel",
    category = "tracing",
    status = "TracingRelationStatus",
    doc = "Declares a Grafana Tempo backend whose endpoint document the operator writes into consumer ConfigMaps labelled tracing.relations.dev/relation=<name>.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Hostname",
        type_ = "string",
        json_path = ".status.endpoint.hostname"
    ),
    printcolumn(
        name = "Bound",
        type_ = "integer",
        json_path = ".status.consumers.bound"
    ),
    printcolumn(
        name = "Rejected",
        type_ = "integer",
        json_path = ".status.consumers.rejected"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TracingRelationSpec {
    /// The relation interface this backend speaks. Must be `tracing`, the interface
    /// name of the charm library this operator carries over.
    #[x_kube(validation = kube::core::Rule::new("self == 'tracing'").message("spec.interface must be 'tracing': this operator only relates tracing backends to their consumers"))]
    pub interface: String,
    /// The role this object plays in the relation. Must be `provides`: a
    /// TracingRelation declares the Tempo side; consumers declare `requires`.
    #[x_kube(validation = kube::core::Rule::new("self == 'provides'").message("spec.role must be 'provides': a TracingRelation declares the Tempo side, consumers declare 'requires' on their ConfigMap"))]
    pub role: String,
    /// Where the Tempo backend is reached. Set exactly one of `service`, `endpoint`,
    /// `tempoStack` or `tempoMonolithic`.
    pub backend: Backend,
    /// Which consumers may bind to this relation. When absent, only ConfigMaps in
    /// this relation's own namespace may bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<ConsumerPolicy>,
    /// Set when the receivers serve TLS: consumers then get `https://` URLs and,
    /// with `caConfigMap`, the CA bundle that verifies the receivers. When absent,
    /// the receivers are plain text (`http://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Set to publish the scrape jobs that consumers declare (annotation
    /// `tracing.relations.dev/scrape-jobs`, in the format of the charm library
    /// this operator carries over) for a Prometheus-compatible scraper: their
    /// targets are resolved to the consumers' ready pods and served at the
    /// operator's `/sd/<namespace>/<name>` (Prometheus `http_sd_configs`) and,
    /// with `configMap`, written to a ConfigMap. Needs the operator's
    /// `--scrape-jobs` (the chart's `scrapeJobs.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeSpec>,
}

/// Where a relation publishes its consumers' scrape jobs.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeSpec {
    /// A ConfigMap in this relation's namespace that the operator writes the
    /// jobs to: `scrape_configs.yaml` (a `scrape_configs:` list) and
    /// `file_sd.json` (target groups for `file_sd_configs`). Its other keys are
    /// left alone; the two keys are removed when the relation goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(CONFIGMAP_NAME_RULE).message("spec.scrape.configMap must be a ConfigMap name (a DNS-1123 subdomain)"))]
    pub config_map: Option<String>,
}

/// A ConfigMap key (what the API server accepts as a key of `data`).
const CONFIGMAP_KEY_RULE: &str =
    "self.size() <= 253 && self.matches('^[-._a-zA-Z0-9]+$') && self != '.' && self != '..'";
/// A ConfigMap name (a DNS-1123 subdomain).
const CONFIGMAP_NAME_RULE: &str = "self.size() <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

/// TLS of the receivers. The operator never reads Secrets: the CA comes from a
/// ConfigMap, such as a trust-manager `Bundle` target.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// The ConfigMap, in this relation's namespace, holding the PEM bundle of the
    /// CA that signed the receivers' certificates. The operator copies its
    /// certificates into every bound consumer under the key `ca.crt` and points
    /// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` at it; a change of the bundle
    /// rewrites every consumer. When absent, consumers verify the receivers
    /// against the trust store of their own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map: Option<CaConfigMapRef>,
}

/// A key of a ConfigMap in the relation's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CaConfigMapRef {
    /// The name of the ConfigMap.
    #[x_kube(validation = kube::core::Rule::new(CONFIGMAP_NAME_RULE).message("spec.tls.caConfigMap.name must be a ConfigMap name (a DNS-1123 subdomain)"))]
    pub name: String,
    /// The key of the PEM bundle in the ConfigMap's data. Defaults to `ca.crt`.
    #[serde(default = "default_ca_key")]
    #[x_kube(validation = kube::core::Rule::new(CONFIGMAP_KEY_RULE).message("spec.tls.caConfigMap.key must be a ConfigMap key (letters, digits, '-', '_' and '.')"))]
    pub key: String,
}

/// The default key of the CA bundle, in the CA ConfigMap and in consumers.
pub const DEFAULT_CA_KEY: &str = "ca.crt";

fn default_ca_key() -> String {
    DEFAULT_CA_KEY.to_string()
}

/// A label selector the operator can evaluate (as `kubectl` would).
const SELECTOR_RULE: &str = "!has(self.namespaceSelector) || !has(self.namespaceSelector.matchExpressions) || self.namespaceSelector.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? (has(e.values) && size(e.values) > 0) : (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0)))";

/// Exactly one of the backend kinds is set.
const BACKEND_RULE: &str = "(has(self.service) ? 1 : 0) + (has(self.endpoint) ? 1 : 0) + (has(self.tempoStack) ? 1 : 0) + (has(self.tempoMonolithic) ? 1 : 0) == 1";

/// A Service name (a DNS-1035 label).
const SERVICE_NAME_RULE: &str = "self.size() <= 63 && self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
/// A namespace name, or a Service port name (a DNS-1123 label).
const DNS_LABEL_RULE: &str = "self.size() <= 63 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";
/// A Tempo Operator instance name short enough that its longest Service name,
/// `tempo-<name>-query-frontend`, is still a Service name (at most 63 characters).
const TEMPO_INSTANCE_RULE: &str =
    "self.size() <= 42 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";

/// Where the Tempo backend is reached. Set exactly one of `service`, `endpoint`,
/// `tempoStack` or `tempoMonolithic`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = kube::core::Rule::new(BACKEND_RULE).message("spec.backend needs exactly one of 'service' or 'endpoint' or 'tempoStack' or 'tempoMonolithic'"))]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Follow a Service: the hostname is its cluster DNS name and each port is
    /// looked up by its port name. Changes to the Service reach every consumer.
    /// For the Grafana `tempo` chart name its Service; for the `tempo-distributed`
    /// chart name the distributor Service and set `query` to the query-frontend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceBackend>,
    /// State the endpoint directly, as the seed's `tempo_endpoint` document does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointBackend>,
    /// Follow the Services that the Tempo Operator creates for a `TempoStack`:
    /// receivers from `tempo-<name>-distributor`, Tempo's HTTP API port from
    /// `tempo-<name>-query-frontend`. Only those Services are read, never the
    /// TempoStack itself, so the Tempo Operator's CRDs need not be installed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo_stack: Option<TempoInstance>,
    /// Follow the Service that the Tempo Operator creates for a `TempoMonolithic`:
    /// `tempo-<name>`, which has the receivers and Tempo's HTTP API port. Only the
    /// Service is read, never the TempoMonolithic itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo_monolithic: Option<TempoInstance>,
}

/// A Service that fronts Tempo.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBackend {
    /// The name of the Service.
    #[x_kube(validation = kube::core::Rule::new(SERVICE_NAME_RULE).message("spec.backend.service.name must be a Service name (a DNS-1035 label)"))]
    pub name: String,
    /// The namespace of the Service. Defaults to the TracingRelation's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(DNS_LABEL_RULE).message("spec.backend.service.namespace must be a namespace name (a DNS-1123 label)"))]
    pub namespace: Option<String>,
    /// The port names to look up on the Service, one per receiver. For an unset name
    /// the names used by the Grafana Tempo Helm charts and by the Tempo Operator are
    /// tried in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_names: Option<PortNames>,
    /// A second Service that serves Tempo's HTTP API (the seed's `tempo_port`), such
    /// as the query-frontend of the `tempo-distributed` chart. When set, `tempo_port`
    /// comes only from this Service and the receivers only from `name`; the
    /// document's hostname stays the receivers' Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryService>,
}

/// The Service that serves Tempo's HTTP API.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueryService {
    /// The name of the Service, such as `tempo-query-frontend`.
    #[x_kube(validation = kube::core::Rule::new(SERVICE_NAME_RULE).message("spec.backend.service.query.name must be a Service name (a DNS-1035 label)"))]
    pub name: String,
    /// The namespace of the Service. Defaults to the namespace of `spec.backend.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(DNS_LABEL_RULE).message("spec.backend.service.query.namespace must be a namespace name (a DNS-1123 label)"))]
    pub namespace: Option<String>,
    /// The port name of Tempo's HTTP API on this Service. Defaults to
    /// `spec.backend.service.portNames.tempo` when that is set; otherwise `http`,
    /// `tempo-prom-metrics` and `http-metrics` are tried in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(DNS_LABEL_RULE).message("spec.backend.service.query.portName must be a Service port name (a DNS-1123 label)"))]
    pub port_name: Option<String>,
}

/// A `TempoStack` or `TempoMonolithic` of the Tempo Operator, named to find the
/// Services that operator creates for it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TempoInstance {
    /// The name of the TempoStack or TempoMonolithic. It has at most 42 characters,
    /// so that `tempo-<name>-query-frontend` is a Service name.
    #[x_kube(validation = kube::core::Rule::new(TEMPO_INSTANCE_RULE).message("the Tempo Operator instance name must be a DNS-1123 label of at most 42 characters (its Services are named tempo-<name>-<component>)"))]
    pub name: String,
    /// The namespace of the instance, and so of its Services. Defaults to the
    /// TracingRelation's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(DNS_LABEL_RULE).message("the Tempo Operator instance namespace must be a namespace name (a DNS-1123 label)"))]
    pub namespace: Option<String>,
}

/// Service port names, one per Tempo port. Each unset name falls back to the
/// well-known names listed on the field.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PortNames {
    /// The port name of Tempo's HTTP API. When unset, `http`, `tempo-prom-metrics`
    /// and `http-metrics` are tried in this order. Not used when `query` names
    /// another Service for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo: Option<String>,
    /// The port name of the OTLP gRPC receiver. When unset, `otlp-grpc`,
    /// `grpc-tempo-otlp`, `grpc-otlp`, `grpc-distributor-otlp` and
    /// `distributor-otlp-grpc` are tried in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_grpc: Option<String>,
    /// The port name of the OTLP HTTP receiver. When unset, `otlp-http`,
    /// `tempo-otlp-http`, `http-otlp` and `distributor-otlp-http` are tried in this
    /// order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_http: Option<String>,
    /// The port name of the Zipkin receiver. When unset, `zipkin`, `tempo-zipkin`,
    /// `http-zipkin` and `distributor-zipkin` are tried in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<String>,
    /// The port name of the Jaeger Thrift HTTP receiver. When unset,
    /// `jaeger-thrift-http`, `thrift-http`, `tempo-jaeger-thrift-http`,
    /// `http-jaeger-thrift` and `distributor-jaeger-thrift-http` are tried in this
    /// order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jaeger_thrift_http: Option<String>,
    /// The port name of the Jaeger gRPC receiver. When unset, `jaeger-grpc`,
    /// `grpc-tempo-jaeger`, `grpc-jaeger`, `grpc-distributor-jaeger` and
    /// `distributor-jaeger-grpc` are tried in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jaeger_grpc: Option<String>,
}

/// The seed's endpoint document, stated directly.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointBackend {
    /// The hostname (or IPv4 address) of Tempo, as consumers will dial it.
    #[x_kube(validation = kube::core::Rule::new(DNS_RULE).message("spec.backend.endpoint.hostname must be a DNS name such as tempo.observability.svc.cluster.local (lowercase letters, digits, '-' and '.', at most 63 between dots)"))]
    pub hostname: String,
    /// The port of Tempo's HTTP API (the seed's `tempo_port`). Defaults to 3200.
    #[serde(default = "default_tempo_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub tempo_port: i32,
    /// The port of the OTLP gRPC receiver. Defaults to 4317.
    #[serde(default = "default_otlp_grpc_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub otlp_grpc_port: i32,
    /// The port of the OTLP HTTP receiver. Defaults to 4318.
    #[serde(default = "default_otlp_http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub otlp_http_port: i32,
    /// The port of the Zipkin receiver. Defaults to 9411.
    #[serde(default = "default_zipkin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub zipkin_port: i32,
    /// The port of the Jaeger Thrift HTTP receiver. It has no default: the
    /// receiver is not offered when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub jaeger_thrift_http_port: Option<i32>,
    /// The port of the Jaeger gRPC receiver. It has no default: the receiver is
    /// not offered when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub jaeger_grpc_port: Option<i32>,
}

fn default_tempo_port() -> i32 {
    DEFAULT_TEMPO_PORT
}
fn default_otlp_grpc_port() -> i32 {
    DEFAULT_OTLP_GRPC_PORT
}
fn default_otlp_http_port() -> i32 {
    DEFAULT_OTLP_HTTP_PORT
}
fn default_zipkin_port() -> i32 {
    DEFAULT_ZIPKIN_PORT
}

/// Which consumers may bind.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = kube::core::Rule::new(SELECTOR_RULE).message("spec.consumers.namespaceSelector: each matchExpressions operator must be In, NotIn, Exists or DoesNotExist; In and NotIn need values, Exists and DoesNotExist take none"))]
#[serde(rename_all = "camelCase")]
pub struct ConsumerPolicy {
    /// The namespaces whose ConfigMaps may bind to this relation. When absent, only
    /// this relation's own namespace may; `{}` admits every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// What the operator observed and did for this relation.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TracingRelationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The resolved endpoint document written to bound consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<ResolvedEndpoint>,
    /// The resolved receivers (the v2 `receivers` list), sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receivers: Vec<ReceiverStatus>,
    /// The union of the receivers that bound consumers asked for, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested_receivers: Vec<String>,
    /// How many consumers are in each state. Every count defaults to 0.
    #[serde(default)]
    pub consumers: ConsumerCounts,
    /// Consumers that are refused or could not be written, with their reason,
    /// sorted by namespace and name, at most 20 entries with messages of at most
    /// 1024 bytes (see `consumers.rejected` and `consumers.failed` for the counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedConsumer>,
    /// What the relation publishes of its consumers' scrape jobs (with
    /// `spec.scrape`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeStatus>,
    /// The conditions of this relation. `Ready` tells whether the backend is resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The resolved v0 endpoint (the seed's `tempo_endpoint` fields).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedEndpoint {
    /// The hostname that consumers dial.
    pub hostname: String,
    /// The port of Tempo's HTTP API, when offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo_port: Option<i32>,
    /// The OTLP gRPC port, when offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_grpc_port: Option<i32>,
    /// The OTLP HTTP port, when offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_http_port: Option<i32>,
    /// The Zipkin port, when offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipkin_port: Option<i32>,
    /// The Jaeger Thrift HTTP port, when offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jaeger_thrift_http_port: Option<i32>,
    /// The Jaeger gRPC port, when offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jaeger_grpc_port: Option<i32>,
}

/// One entry of the v2 receivers list.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStatus {
    /// The protocol name: otlp_grpc, otlp_http, zipkin, jaeger_thrift_http or jaeger_grpc.
    pub name: String,
    /// The transport: `grpc` or `http`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The URL that consumers use: `host:port` for grpc, `http://host:port` for http.
    pub url: String,
}

/// Consumer counts.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerCounts {
    /// The number of ConfigMaps holding this relation's current document. Defaults
    /// to 0.
    #[serde(default)]
    pub bound: i64,
    /// The number of ConfigMaps waiting (state Pending): their document is being
    /// written, or the backend is not available and they keep the last document
    /// written. Defaults to 0.
    #[serde(default)]
    pub pending: i64,
    /// The number of ConfigMaps that name this relation but were refused. Defaults
    /// to 0.
    #[serde(default)]
    pub rejected: i64,
    /// The number of ConfigMaps the operator could not write. They are listed in
    /// `rejected` with the reason of the failure, such as WriteFailed or
    /// ConsumerTooLarge. Defaults to 0.
    #[serde(default)]
    pub failed: i64,
}

/// A consumer that was refused, and why.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RejectedConsumer {
    /// The namespace of the consumer ConfigMap.
    pub namespace: String,
    /// The name of the consumer ConfigMap.
    pub name: String,
    /// The machine-readable reason, such as `RelationInterfaceMismatch`.
    pub reason: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// The published scrape jobs.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeStatus {
    /// The bound consumers whose jobs are published. Defaults to 0.
    #[serde(default)]
    pub consumers: i64,
    /// The published jobs. Defaults to 0.
    #[serde(default)]
    pub jobs: i64,
    /// The published targets (a wildcard target counts once per ready pod).
    /// Defaults to 0.
    #[serde(default)]
    pub targets: i64,
    /// The ConfigMap the jobs were last written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Bound consumers whose scrape declaration was refused (reason
    /// `InvalidScrapeJobs`), sorted, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedConsumer>,
}

/// The CRD of [`TracingRelation`] as it is installed (`crds/`): the generated one,
/// with each description's lines joined into paragraphs. schemars keeps the line
/// breaks of a doc comment, and `kubectl explain` would print them mid-sentence.
pub fn crd() -> CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut value = serde_json::to_value(TracingRelation::crd()).expect("the CRD serializes");
    join_description_lines(&mut value);
    serde_json::from_value(value).expect("the CRD deserializes")
}

/// Replaces every single line break of every `description` under `value` with a
/// space; a blank line (a paragraph break) stays.
fn join_description_lines(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => join_description_lines(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(join_description_lines),
        _ => {}
    }
}

/// Most entries kept in `status.rejected`.
pub const MAX_REJECTED_IN_STATUS: usize = 20;
