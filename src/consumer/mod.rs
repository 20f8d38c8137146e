//! Reading the endpoint document inside a consumer pod.
//!
//! The operator writes the data keys of [`crate::core::document`] into a consumer
//! ConfigMap; a pod mounts that ConfigMap as a directory (one file per key).
//! This module reads such a directory back:
//!
//! * [`read_dir`] reads one consistent snapshot of the directory and parses it
//!   into [`Endpoints`]: the seed's v0 `tempo_endpoint` YAML document
//!   ([`TempoEndpoint`]), the v2 `receivers` JSON list and the plain URL keys.
//! * [`Endpoints::otlp_grpc_endpoint`] gives `http://host:port` exactly as the
//!   seed's `TracingEndpointProvider.otlp_grpc_endpoint`;
//!   [`Endpoints::endpoint_for`] gives the receiver URL of any protocol, from the
//!   receivers list and else from the v0 document.
//! * [`wait_until_bound`] polls until the relation has bound (init containers).
//! * [`Watcher`] reports changes of the document (the kubelet updates mounted
//!   ConfigMaps in place by swapping the `..data` symlink).
//!
//! Errors are typed ([`Error`]): [`Error::NotBound`] when the directory or the
//! keys are missing or empty (the relation has not bound yet),
//! [`Error::Malformed`] naming the key and field when a document cannot be used.
//!
//! ```no_run
//! use tracing_relation_operator::consumer;
//! use tracing_relation_operator::core::document::Protocol;
//!
//! let endpoints = consumer::read_dir("/etc/tracing")?;
//! let grpc = endpoints.otlp_grpc_endpoint(); // Some("http://tempo.obs.svc:4317")
//! let zipkin = endpoints.endpoint_for(Protocol::Zipkin); // Some("http://tempo.obs.svc:9411")
//! # Ok::<(), consumer::Error>(())
//! ```
//!
//! ## How `tempo_endpoint` is read
//!
//! The seed reads it with `yaml.safe_load` and converts each port with Python's
//! `int()`. Here ports are accepted as YAML integers and as strings that `int()`
//! accepts (`"4317"`, `" 4317 "`, `"+4317"`, `"4_317"`); anything else — a missing
//! field, a float, a boolean, null, a list or mapping, a non-numeric string, a
//! value outside 1-65535 — is [`Error::Malformed`] naming the field. (Unlike the
//! seed, floats such as `4317.0` and booleans are refused rather than truncated.)
//! The hostname must be a string; plain scalars that PyYAML reads as strings but
//! YAML 1.2 reads as numbers (`1e3`, `0o17`) are taken as the text written.
//! The YAML 1.1-only integer notations that PyYAML's `safe_dump` never writes
//! (plain octal `010335`, sexagesimal `1:11:57`) are read like the string
//! `int()` would read them: `010335` is 10335, `1:11:57` is refused.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::document::{
    DATA_KEYS, KEY_CA, KEY_OTEL_CERTIFICATE, KEY_OTEL_ENDPOINT, KEY_OTEL_PROTOCOL,
    KEY_OTEL_TRACES_CERTIFICATE, KEY_OTEL_TRACES_ENDPOINT, KEY_OTEL_TRACES_EXPORTER,
    KEY_OTEL_TRACES_PROTOCOL, KEY_OTEL_ZIPKIN_ENDPOINT, KEY_OTLP_GRPC_ENDPOINT,
    KEY_OTLP_HTTP_ENDPOINT, KEY_RECEIVERS, KEY_TEMPO_ENDPOINT, Protocol, Receiver, Scheme,
};

pub mod cli;
mod parse;
mod watch;

pub use watch::{DEFAULT_POLL_INTERVAL, Watcher};

/// The symlink through which the kubelet publishes a ConfigMap volume's files.
pub const DATA_SYMLINK: &str = "..data";

/// Why the endpoint document cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The directory or the keys are missing or empty: the relation has not
    /// bound this consumer yet (or the ConfigMap is not mounted).
    #[error("the tracing relation is not bound yet: {detail}")]
    NotBound { detail: String },
    /// A key holds a document that cannot be used. `field` names the field
    /// (`tempo_port`, `[1].url`, ...) when the problem is inside the document.
    #[error("malformed {key}{}: {detail}", field_suffix(.field))]
    Malformed {
        key: &'static str,
        field: Option<String>,
        detail: String,
    },
    /// The document is bound but does not offer the protocol asked for.
    #[error("protocol {protocol} is not offered (offered: {})", offered_list(.offered))]
    NotOffered {
        protocol: Protocol,
        offered: Vec<Protocol>,
    },
    /// The directory or a file in it could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
}

fn field_suffix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default()
}

fn offered_list(offered: &[Protocol]) -> String {
    if offered.is_empty() {
        return "none".to_string();
    }
    offered
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// Whether this is [`Error::NotBound`].
    pub fn is_not_bound(&self) -> bool {
        matches!(self, Error::NotBound { .. })
    }

    fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

pub(crate) fn malformed(
    key: &'static str,
    field: Option<&str>,
    detail: impl Into<String>,
) -> Error {
    Error::Malformed {
        key,
        field: field.map(str::to_string),
        detail: detail.into(),
    }
}

/// The seed's v0 document (`tempo_endpoint`), ports converted to integers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TempoEndpoint {
    pub hostname: String,
    pub tempo_port: u16,
    pub otlp_grpc_port: u16,
    pub otlp_http_port: u16,
    pub zipkin_port: u16,
}

impl TempoEndpoint {
    /// Parses a `tempo_endpoint` value (YAML, as PyYAML's `safe_dump` writes it).
    pub fn parse(text: &str) -> Result<Self, Error> {
        parse::tempo_endpoint(text)
    }

    /// `http://host:otlp_grpc_port`, the seed's `otlp_grpc_endpoint`.
    pub fn otlp_grpc_endpoint(&self) -> String {
        format!("http://{}:{}", self.hostname, self.otlp_grpc_port)
    }

    /// `http://host:otlp_http_port`.
    pub fn otlp_http_endpoint(&self) -> String {
        format!("http://{}:{}", self.hostname, self.otlp_http_port)
    }

    /// The port of a protocol the v0 document carries (OTLP and Zipkin).
    pub fn port(&self, protocol: Protocol) -> Option<u16> {
        match protocol {
            Protocol::OtlpGrpc => Some(self.otlp_grpc_port),
            Protocol::OtlpHttp => Some(self.otlp_http_port),
            Protocol::Zipkin => Some(self.zipkin_port),
            Protocol::JaegerGrpc | Protocol::JaegerThriftHttp => None,
        }
    }
}

/// Parses a `receivers` value (the v2 JSON list). Entries of protocols this
/// version does not know are kept (and ignored by the lookups); entries of known
/// protocols must have the right `type` and a URL with a port.
pub fn parse_receivers(text: &str) -> Result<Vec<Receiver>, Error> {
    parse::receivers(text)
}

/// Everything a consumer can read from its endpoint document.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Endpoints {
    /// `tempo_endpoint`: written when the backend offers all four seed ports.
    pub tempo_endpoint: Option<TempoEndpoint>,
    /// `receivers`, as written (sorted by name).
    pub receivers: Vec<Receiver>,
    /// `otlp_grpc_endpoint`, as written.
    pub otlp_grpc_endpoint: Option<String>,
    /// `otlp_http_endpoint`, as written.
    pub otlp_http_endpoint: Option<String>,
    /// `OTEL_TRACES_EXPORTER`, as written (`otlp` or `zipkin`).
    #[serde(rename = "OTEL_TRACES_EXPORTER")]
    pub otel_traces_exporter: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, as written.
    #[serde(rename = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otel_exporter_otlp_traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, as written.
    #[serde(rename = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")]
    pub otel_exporter_otlp_traces_protocol: Option<String>,
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT`, as written.
    #[serde(rename = "OTEL_EXPORTER_ZIPKIN_ENDPOINT")]
    pub otel_exporter_zipkin_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, as written (only on the consumer's request).
    #[serde(rename = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, as written (only on the consumer's request).
    #[serde(rename = "OTEL_EXPORTER_OTLP_PROTOCOL")]
    pub otel_exporter_otlp_protocol: Option<String>,
    /// `ca.crt`, as written: the CA bundle (PEM) that verifies TLS receivers.
    #[serde(rename = "ca.crt")]
    pub ca_crt: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, as written: where the operator
    /// was told the pods mount `ca.crt`.
    #[serde(rename = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")]
    pub otel_exporter_otlp_traces_certificate: Option<String>,
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`, as written (only on the consumer's
    /// request for all signals).
    #[serde(rename = "OTEL_EXPORTER_OTLP_CERTIFICATE")]
    pub otel_exporter_otlp_certificate: Option<String>,
    /// The CA file in this pod: `ca.crt` in the directory [`read_dir`] read;
    /// from [`Endpoints::from_data`], the written certificate variable.
    #[serde(skip)]
    pub ca_file: Option<PathBuf>,
}

impl Endpoints {
    /// Parses ConfigMap data (key → value, e.g. `ConfigMap.data`). Keys that are
    /// missing or blank count as absent; with none of the operator's keys present
    /// the relation is [`Error::NotBound`].
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, Error> {
        from_data_at(data, "the ConfigMap data")
    }

    /// `https` when the receivers serve TLS (a URL written with `https://`).
    pub fn scheme(&self) -> Scheme {
        let urls = [
            &self.otlp_grpc_endpoint,
            &self.otlp_http_endpoint,
            &self.otel_exporter_otlp_traces_endpoint,
            &self.otel_exporter_zipkin_endpoint,
        ];
        let https = urls.into_iter().flatten().map(String::as_str);
        let https = https
            .chain(self.receivers.iter().map(|r| r.url.as_str()))
            .any(|u| u.starts_with("https://"));
        if https { Scheme::Https } else { Scheme::Http }
    }

    /// The hostname of the backend.
    pub fn hostname(&self) -> Option<&str> {
        if let Some(t) = &self.tempo_endpoint {
            return Some(&t.hostname);
        }
        self.known_receivers()
            .next()
            .and_then(|(_, r)| parse::split_url(&r.url))
            .map(|(host, _)| host)
            .or_else(|| {
                [&self.otlp_grpc_endpoint, &self.otlp_http_endpoint]
                    .into_iter()
                    .flatten()
                    .find_map(|u| parse::split_url(u))
                    .map(|(host, _)| host)
            })
    }

    /// Whether the written receivers list says which protocols this consumer
    /// gets: then a protocol it did not request is not offered, whatever the v0
    /// document (which always names all four seed ports) says.
    fn requested_only(&self) -> bool {
        !self.receivers.is_empty()
    }

    /// The seed's `otlp_grpc_endpoint`: `http://host:port` of OTLP gRPC, from the
    /// v0 document, else the `otlp_grpc_endpoint` key, else the receivers list;
    /// `None` when the receivers list leaves gRPC out (not requested).
    pub fn otlp_grpc_endpoint(&self) -> Option<String> {
        if self.requested_only() && self.receiver(Protocol::OtlpGrpc).is_none() {
            return None;
        }
        if let Some(t) = &self.tempo_endpoint {
            // The v0 document has no scheme: the seed's `http`, unless the
            // receivers serve TLS.
            return Some(format!(
                "{}://{}:{}",
                self.scheme(),
                t.hostname,
                t.otlp_grpc_port
            ));
        }
        if let Some(u) = &self.otlp_grpc_endpoint {
            return Some(u.clone());
        }
        self.receiver(Protocol::OtlpGrpc)
            .map(|r| self.with_scheme(&r.url))
    }

    /// `http://host:port` of OTLP HTTP (from the receivers list, the
    /// `otlp_http_endpoint` key, else the v0 document).
    pub fn otlp_http_endpoint(&self) -> Option<String> {
        self.endpoint_for(Protocol::OtlpHttp)
            .map(|u| self.with_scheme(&u))
    }

    /// The receiver URL of `protocol` in the v2 form — bare `host:port` for
    /// grpc, `http://host:port` for http — from the receivers list. Only when no
    /// receivers list was written (a document from a seed-only producer) does it
    /// fall back to the v0 document (OTLP and Zipkin) and the `otlp_*_endpoint`
    /// keys: the list holds exactly what the consumer requested and is offered.
    pub fn endpoint_for(&self, protocol: Protocol) -> Option<String> {
        if let Some(r) = self.receiver(protocol) {
            return Some(r.url.clone());
        }
        if self.requested_only() {
            return None;
        }
        if let Some(t) = &self.tempo_endpoint
            && let Some(port) = t.port(protocol)
        {
            return Some(protocol.url(self.scheme(), &t.hostname, port));
        }
        let key = match protocol {
            Protocol::OtlpGrpc => self.otlp_grpc_endpoint.as_deref(),
            Protocol::OtlpHttp => self.otlp_http_endpoint.as_deref(),
            _ => None,
        }?;
        let (host, port) = parse::split_url(key)?;
        Some(protocol.url(self.scheme(), host, port))
    }

    /// The URL the `endpoint` subcommand prints: the seed's `http://host:port`
    /// for `otlp_grpc` ([`Self::otlp_grpc_endpoint`]), else [`Self::endpoint_for`].
    pub fn url_for(&self, protocol: Protocol) -> Option<String> {
        match protocol {
            Protocol::OtlpGrpc => self.otlp_grpc_endpoint(),
            p => self.endpoint_for(p),
        }
    }

    /// Like [`Self::url_for`], with [`Error::NotOffered`] when absent.
    pub fn require(&self, protocol: Protocol) -> Result<String, Error> {
        self.url_for(protocol).ok_or_else(|| Error::NotOffered {
            protocol,
            offered: self.offered(),
        })
    }

    /// The port of `protocol`, when offered.
    pub fn port_for(&self, protocol: Protocol) -> Option<u16> {
        let url = self.endpoint_for(protocol)?;
        parse::split_url(&url).map(|(_, port)| port)
    }

    /// The protocols offered, sorted by name.
    pub fn offered(&self) -> Vec<Protocol> {
        Protocol::ALL
            .into_iter()
            .filter(|p| self.endpoint_for(*p).is_some())
            .collect()
    }

    /// The environment keys written for `envFrom` (the traces-only SDK
    /// variables, the all-signal ones if requested, `otlp_grpc_endpoint`,
    /// `otlp_http_endpoint`), those present, in that order.
    pub fn env_vars(&self) -> Vec<(&'static str, &str)> {
        [
            (KEY_OTEL_TRACES_EXPORTER, &self.otel_traces_exporter),
            (
                KEY_OTEL_TRACES_ENDPOINT,
                &self.otel_exporter_otlp_traces_endpoint,
            ),
            (
                KEY_OTEL_TRACES_PROTOCOL,
                &self.otel_exporter_otlp_traces_protocol,
            ),
            (
                KEY_OTEL_ZIPKIN_ENDPOINT,
                &self.otel_exporter_zipkin_endpoint,
            ),
            (KEY_OTEL_ENDPOINT, &self.otel_exporter_otlp_endpoint),
            (KEY_OTEL_PROTOCOL, &self.otel_exporter_otlp_protocol),
            (KEY_OTLP_GRPC_ENDPOINT, &self.otlp_grpc_endpoint),
            (KEY_OTLP_HTTP_ENDPOINT, &self.otlp_http_endpoint),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .chain(self.certificate_vars())
        .collect()
    }

    /// The SDK's certificate variables, pointing at the CA file in this pod.
    fn certificate_vars(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let file = self.ca_file.as_deref().and_then(Path::to_str);
        [
            (
                KEY_OTEL_TRACES_CERTIFICATE,
                &self.otel_exporter_otlp_traces_certificate,
            ),
            (KEY_OTEL_CERTIFICATE, &self.otel_exporter_otlp_certificate),
        ]
        .into_iter()
        .filter_map(move |(k, v)| v.as_deref().map(|v| (k, file.unwrap_or(v))))
    }

    /// Adds the receivers' scheme to a bare `host:port`.
    fn with_scheme(&self, url: &str) -> String {
        if url.contains("://") {
            url.to_string()
        } else {
            format!("{}://{url}", self.scheme())
        }
    }

    fn known_receivers(&self) -> impl Iterator<Item = (Protocol, &Receiver)> {
        self.receivers
            .iter()
            .filter_map(|r| Some((r.protocol.name.parse::<Protocol>().ok()?, r)))
    }

    fn receiver(&self, protocol: Protocol) -> Option<&Receiver> {
        self.known_receivers()
            .find(|(p, _)| *p == protocol)
            .map(|(_, r)| r)
    }
}

fn from_data_at(data: &BTreeMap<String, String>, location: &str) -> Result<Endpoints, Error> {
    let get = |key: &str| {
        data.get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    if DATA_KEYS.iter().all(|k| get(k).is_none()) {
        return Err(Error::NotBound {
            detail: format!(
                "none of the keys {} is set in {location}",
                DATA_KEYS.join(", ")
            ),
        });
    }
    let text = |key: &str| get(key).map(|v| v.trim().to_string());
    Ok(Endpoints {
        tempo_endpoint: get(KEY_TEMPO_ENDPOINT)
            .map(TempoEndpoint::parse)
            .transpose()?,
        receivers: get(KEY_RECEIVERS)
            .map(parse_receivers)
            .transpose()?
            .unwrap_or_default(),
        otlp_grpc_endpoint: text(KEY_OTLP_GRPC_ENDPOINT),
        otlp_http_endpoint: text(KEY_OTLP_HTTP_ENDPOINT),
        otel_traces_exporter: text(KEY_OTEL_TRACES_EXPORTER),
        otel_exporter_otlp_traces_endpoint: text(KEY_OTEL_TRACES_ENDPOINT),
        otel_exporter_otlp_traces_protocol: text(KEY_OTEL_TRACES_PROTOCOL),
        otel_exporter_zipkin_endpoint: text(KEY_OTEL_ZIPKIN_ENDPOINT),
        otel_exporter_otlp_endpoint: text(KEY_OTEL_ENDPOINT),
        otel_exporter_otlp_protocol: text(KEY_OTEL_PROTOCOL),
        ca_crt: get(KEY_CA).map(str::to_string),
        otel_exporter_otlp_traces_certificate: text(KEY_OTEL_TRACES_CERTIFICATE),
        otel_exporter_otlp_certificate: text(KEY_OTEL_CERTIFICATE),
        ca_file: get(KEY_CA)
            .and(text(KEY_OTEL_TRACES_CERTIFICATE).or(text(KEY_OTEL_CERTIFICATE)))
            .map(PathBuf::from),
    })
}

/// Reads the operator's keys from a mounted ConfigMap directory, as one
/// consistent snapshot: when the kubelet's `..data` symlink is present, all
/// files are read from the directory it points to, and the read is retried if
/// the symlink is swapped meanwhile. `Ok(None)`: the directory does not exist.
pub(crate) fn read_data(dir: &Path) -> Result<Option<BTreeMap<String, String>>, Error> {
    const ATTEMPTS: usize = 5;
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::io(dir, io::Error::other("not a directory")));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(dir, e)),
        }
        let link = dir.join(DATA_SYMLINK);
        let base = match std::fs::canonicalize(&link) {
            Ok(p) => Some(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(link, e)),
        };
        let root = base.as_deref().unwrap_or(dir);
        let mut data = BTreeMap::new();
        let mut failed = None;
        for key in DATA_KEYS {
            let path = root.join(key);
            match std::fs::read(&path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(s) => {
                        data.insert(key.to_string(), s);
                    }
                    Err(_) => {
                        failed = Some(malformed(key, None, "is not valid UTF-8"));
                        break;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    failed = Some(Error::io(path, e));
                    break;
                }
            }
        }
        // A swap during the read: read again from the new target.
        if let Some(b) = &base
            && std::fs::canonicalize(&link).ok().as_ref() != Some(b)
        {
            last_err = failed;
            continue;
        }
        return match failed {
            Some(e) => Err(e),
            None => Ok(Some(data)),
        };
    }
    match last_err {
        Some(e) => Err(e),
        None => Err(Error::io(
            dir,
            io::Error::other("the ..data symlink kept changing while reading"),
        )),
    }
}

fn endpoints_from(dir: &Path, data: Option<BTreeMap<String, String>>) -> Result<Endpoints, Error> {
    match data {
        None => Err(Error::NotBound {
            detail: format!("directory {} does not exist", dir.display()),
        }),
        Some(data) => {
            let mut e = from_data_at(&data, &dir.display().to_string())?;
            if e.ca_crt.is_some() {
                e.ca_file = Some(dir.join(KEY_CA));
            }
            Ok(e)
        }
    }
}

/// Reads and parses the endpoint document mounted at `dir`.
pub fn read_dir(dir: impl AsRef<Path>) -> Result<Endpoints, Error> {
    let dir = dir.as_ref();
    endpoints_from(dir, read_data(dir)?)
}

/// Reads the document at `dir` and gives [`Endpoints::url_for`] `protocol`.
pub fn read_endpoint(dir: impl AsRef<Path>, protocol: Protocol) -> Result<String, Error> {
    read_dir(dir)?.require(protocol)
}

/// Polls `dir` every `interval` until the relation is bound (anything but
/// [`Error::NotBound`]) or `timeout` has passed; then returns the last result.
/// Blocks the calling thread.
pub fn wait_until_bound(
    dir: impl AsRef<Path>,
    timeout: Duration,
    interval: Duration,
) -> Result<Endpoints, Error> {
    let dir = dir.as_ref();
    let deadline = Instant::now() + timeout;
    loop {
        let result = read_dir(dir);
        let now = Instant::now();
        match result {
            Err(e) if e.is_not_bound() && now < deadline => {
                std::thread::sleep(interval.min(deadline - now));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests;
