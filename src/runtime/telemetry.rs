//! Logs (structured `tracing` events, as text or JSON, filtered by a level) and,
//! when the standard OpenTelemetry variables ask for it, the operator's own
//! spans (one per reconcile, with the consumer or relation as attributes)
//! exported by OTLP/HTTP.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, or `OTEL_TRACES_EXPORTER=otlp` (then
//! to the spec's default `http://localhost:4318`); `OTEL_TRACES_EXPORTER=none`
//! or `OTEL_SDK_DISABLED=true` turn it off. The protocol is `http/protobuf`
//! over plain `http` (a collector on the node or in the cluster); any other
//! setting is refused at startup with the variable's name, rather than ignored.
//! Headers, timeout, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and
//! `OTEL_TRACES_SAMPLER(_ARG)` are read as the spec says.
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::Handle;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// The service name of the operator's spans unless the environment names one.
const SERVICE_NAME: &str = "tracing-relation-operator";
/// The spec's default OTLP/HTTP endpoint.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
/// The spec's default export timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the last spans to leave.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the environment asks of span export, read without side effects.
#[derive(Debug, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The full URL spans are posted to (`.../v1/traces`).
    pub endpoint: String,
    pub timeout: Duration,
}

/// Reads the OpenTelemetry variables through `var`: `Ok(None)` when export is
/// off, `Err` naming the variable when it asks for what this exporter cannot do.
pub fn otlp_settings(var: impl Fn(&str) -> Option<String>) -> Result<Option<OtlpSettings>, String> {
    let get = |name: &str| {
        var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let exporter = get("OTEL_TRACES_EXPORTER");
    match exporter.as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(format!(
                "OTEL_TRACES_EXPORTER={other:?}: the operator exports its spans by \"otlp\" \
                 only (or \"none\")"
            ));
        }
    }
    let signal = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let base = get("OTEL_EXPORTER_OTLP_ENDPOINT");
    let endpoint = match (signal, base) {
        // The signal-specific variable is used as it is (the spec).
        (Some(url), _) => url,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) if exporter.is_some() => format!("{DEFAULT_ENDPOINT}/v1/traces"),
        (None, None) => return Ok(None),
    };
    if !endpoint.starts_with("http://") {
        return Err(format!(
            "OTLP endpoint {endpoint:?}: the operator's exporter speaks plain http:// only \
             (point it at a collector on the node or in the cluster)"
        ));
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = get(name) {
            if protocol != "http/protobuf" {
                return Err(format!(
                    "{name}={protocol:?}: the operator exports its spans by \"http/protobuf\" only"
                ));
            }
            break;
        }
    }
    let timeout = match get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", v))
        .or_else(|| get("OTEL_EXPORTER_OTLP_TIMEOUT").map(|v| ("OTEL_EXPORTER_OTLP_TIMEOUT", v)))
    {
        None => DEFAULT_TIMEOUT,
        Some((name, ms)) => ms.parse::<u64>().map(Duration::from_millis).map_err(|_| {
            format!("{name}={ms:?}: want a whole number of milliseconds, such as 10000")
        })?,
    };
    Ok(Some(OtlpSettings { endpoint, timeout }))
}

/// The installed telemetry; [`Telemetry::shutdown`] sends the last spans.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Where spans go, for the startup log line.
    pub exporting_to: Option<String>,
}

impl Telemetry {
    /// Flushes and stops the span exporter (bounded). Call it while the runtime
    /// of `init` still runs, outside of it (it blocks).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            eprintln!("warning: the last spans may be lost: {e}");
        }
    }
}

/// Installs the global subscriber. `format` is `text` or `json`; span export
/// (if the environment asks for it) sends through `runtime`.
pub fn init(format: &str, level: &str, runtime: &Handle) -> Result<Telemetry, String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid --log-level {level:?}: {e}"))?;
    let settings = otlp_settings(|name| std::env::var(name).ok())?;
    let exporting_to = settings.as_ref().map(|s| s.endpoint.clone());
    let provider = settings
        .map(|s| tracer_provider(s, runtime.clone()))
        .transpose()?;
    let spans = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(SERVICE_NAME)));
    let registry = tracing_subscriber::registry().with(filter).with(spans);
    let res = if format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init()
    } else {
        // Colours only on a terminal (and never with NO_COLOR): `kubectl logs`
        // and files get plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
            && std::env::var_os("NO_COLOR").is_none();
        registry.with(fmt::layer().with_ansi(ansi)).try_init()
    };
    res.map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(Telemetry {
        provider,
        exporting_to,
    })
}

fn tracer_provider(settings: OtlpSettings, runtime: Handle) -> Result<SdkTracerProvider, String> {
    let client = OnRuntime {
        inner: HyperClient::with_default_connector(settings.timeout, None),
        runtime,
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(settings.timeout)
        .with_http_client(client)
        .build()
        .map_err(|e| {
            format!(
                "cannot set up the OTLP exporter for {}: {e}",
                settings.endpoint
            )
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(|name| std::env::var(name).ok()))
        .build())
}

/// The spans' resource: the environment's (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`), the operator's name as the service unless the
/// environment gives one, and its version.
fn resource(var: impl Fn(&str) -> Option<String>) -> Resource {
    let named = var("OTEL_SERVICE_NAME").is_some_and(|v| !v.trim().is_empty())
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let builder = Resource::builder();
    let builder = if named {
        builder
    } else {
        builder.with_service_name(SERVICE_NAME)
    };
    builder
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// hyper's client driven by the operator's Tokio runtime: the batch span
/// processor exports from a thread of its own, where hyper has no reactor.
#[derive(Debug)]
struct OnRuntime {
    inner: HyperClient,
    runtime: Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<OtlpSettings>, String> {
        let env: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        otlp_settings(|name| env.get(name).cloned())
    }

    fn endpoint(vars: &[(&str, &str)]) -> Option<String> {
        settings(vars).expect("valid settings").map(|s| s.endpoint)
    }

    /// Protects: nothing is exported (no connection attempts, no warnings) when
    /// the operator is not told where to send, nor when told not to.
    #[test]
    fn export_is_off_unless_asked_for() {
        assert_eq!(endpoint(&[]), None);
        assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]), None);
        for off in [
            [
                ("OTEL_SDK_DISABLED", "true"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ],
            [
                ("OTEL_TRACES_EXPORTER", "none"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ],
        ] {
            assert_eq!(endpoint(&off), None, "{off:?}");
        }
    }

    /// Protects: the spec's endpoint rules (the all-signal base gets
    /// `/v1/traces`, the signal-specific URL is used as it is and wins; the
    /// exporter asked for by name alone goes to the default endpoint).
    #[test]
    fn endpoint_follows_the_spec() {
        assert_eq!(
            endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318/")]).as_deref(),
            Some("http://otel:4318/v1/traces")
        );
        assert_eq!(
            endpoint(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9999/custom"),
            ])
            .as_deref(),
            Some("http://t:9999/custom")
        );
        assert_eq!(
            endpoint(&[("OTEL_TRACES_EXPORTER", "otlp")]).as_deref(),
            Some("http://localhost:4318/v1/traces")
        );
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.timeout, Duration::from_millis(2500));
    }

    /// Protects: a setting the exporter cannot honour is a clear startup error
    /// naming the variable, never a silent fallback to something else.
    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318");
        for (vars, names) in [
            (
                vec![base, ("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                vec![base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![base, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel:4318")],
                "http://",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "otel:4318")],
                "http://",
            ),
            (
                vec![base, ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
        ] {
            let err = settings(&vars).expect_err(&format!("{vars:?} must be refused"));
            assert!(err.contains(names), "{vars:?}: {err}");
        }
        // The signal-specific protocol wins over the all-signal one.
        assert!(
            settings(&[
                base,
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ])
            .is_ok_and(|s| s.is_some())
        );
    }

    /// Protects: spans carry the operator's name as their service unless the
    /// environment names one (`OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`).
    #[test]
    fn service_name_defaults_to_the_operator() {
        let name = |vars: &[(&str, &str)]| {
            let env: BTreeMap<&str, &str> = vars.iter().copied().collect();
            let r = resource(|n| env.get(n).map(|v| v.to_string()));
            r.get(&opentelemetry::Key::new("service.name"))
                .map(|v| v.to_string())
        };
        assert_eq!(name(&[]).as_deref(), Some(SERVICE_NAME));
        let version = resource(|_| None)
            .get(&opentelemetry::Key::new("service.version"))
            .map(|v| v.to_string());
        assert_eq!(version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    }
}
