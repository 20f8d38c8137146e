//! `tracing-relation-operator endpoint`: prints an endpoint from a mounted ConfigMap.
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{Endpoints, Error, read_dir, wait_until_bound};
use crate::core::document::Protocol;

/// Exit code: the endpoint was printed.
pub const EXIT_OK: u8 = 0;
/// Exit code: the directory could not be read (I/O error).
pub const EXIT_IO: u8 = 1;
/// Exit code: usage error (clap's default).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the relation is not bound yet (after `--wait` expired, or at once without it).
pub const EXIT_NOT_BOUND: u8 = 3;
/// Exit code: the document is malformed.
pub const EXIT_MALFORMED: u8 = 4;
/// Exit code: the protocol asked for is not offered.
pub const EXIT_NOT_OFFERED: u8 = 5;

const AFTER_HELP: &str = "\
Exit codes:
  0  ok: the endpoint was printed to stdout
  1  the directory could not be read (I/O error)
  2  usage error
  3  not bound yet: the directory or the keys are missing or empty (after --wait expired, or at once without --wait)
  4  malformed document (the message names the key and field)
  5  the protocol asked for is not offered
Messages go to stderr.";

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The URL of the protocol, one line.
    Url,
    /// `KEY='value'` lines of the OTEL_* and *_endpoint keys, quoted for `eval`/`source`.
    Env,
    /// A JSON object: protocol, url, hostname, port and the whole document.
    Json,
}

/// Arguments of the `endpoint` subcommand.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct EndpointArgs {
    /// Directory where the consumer ConfigMap is mounted.
    #[arg(long, env = "TRACING_ENDPOINT_DIR", default_value = "/etc/tracing")]
    pub dir: PathBuf,
    /// Receiver protocol to print [default: otlp_grpc]. otlp_grpc prints the
    /// seed's http://host:port; grpc protocols otherwise print host:port, http
    /// ones http://host:port (https:// when the receivers serve TLS; the JSON
    /// format also gives the scheme and the CA file). With --format env it is
    /// only checked to be offered.
    #[arg(long, value_name = "NAME", value_parser = protocol_parser())]
    pub protocol: Option<Protocol>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Url)]
    pub format: Format,
    /// Poll until the relation is bound, at most this long (e.g. 30s, 2m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
    /// Interval between polls with --wait.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1s")]
    pub interval: Duration,
}

/// `--protocol`: one of the protocol names, listed in the help and in errors.
fn protocol_parser() -> impl clap::builder::TypedValueParser<Value = Protocol> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Protocol::ALL.map(Protocol::name))
        .try_map(|name| name.parse::<Protocol>())
}

/// The exit code of an error.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NotBound { .. } => EXIT_NOT_BOUND,
        Error::Malformed { .. } => EXIT_MALFORMED,
        Error::NotOffered { .. } => EXIT_NOT_OFFERED,
        Error::Io { .. } => EXIT_IO,
    }
}

/// Runs the subcommand.
pub fn run(args: EndpointArgs) -> ExitCode {
    let protocol = args.protocol;
    let result = match args.wait {
        None => read_dir(&args.dir),
        Some(timeout) => {
            let first = read_dir(&args.dir);
            match first {
                Err(Error::NotBound { detail }) => {
                    eprintln!(
                        "waiting up to {} for the tracing relation to bind: {detail}",
                        humantime::format_duration(timeout)
                    );
                    wait_until_bound(&args.dir, timeout, args.interval)
                }
                other => other,
            }
        }
    };
    let output = result.and_then(|endpoints| render(&endpoints, protocol, args.format));
    match output {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return ExitCode::from(EXIT_IO);
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_not_bound() && args.wait.is_some() {
                eprintln!("error: still not bound after --wait expired");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The text printed for `endpoints` (with a trailing newline).
pub fn render(
    endpoints: &Endpoints,
    protocol: Option<Protocol>,
    format: Format,
) -> Result<String, Error> {
    match format {
        Format::Url => {
            let url = endpoints.require(protocol.unwrap_or(Protocol::OtlpGrpc))?;
            Ok(format!("{url}\n"))
        }
        Format::Env => {
            if let Some(p) = protocol {
                endpoints.require(p)?;
            }
            let vars = endpoints.env_vars();
            if vars.is_empty() {
                // Neither OTLP receiver was written for this consumer.
                return Err(Error::NotOffered {
                    protocol: protocol.unwrap_or(Protocol::OtlpGrpc),
                    offered: endpoints.offered(),
                });
            }
            Ok(vars
                .into_iter()
                .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
                .collect())
        }
        Format::Json => {
            let p = protocol.unwrap_or(Protocol::OtlpGrpc);
            let url = endpoints.require(p)?;
            let value = serde_json::json!({
                "protocol": p.name(),
                "scheme": endpoints.scheme().as_str(),
                "ca_file": endpoints.ca_file,
                "url": url,
                "hostname": endpoints.hostname(),
                "port": endpoints.port_for(p),
                "document": endpoints,
            });
            Ok(format!("{value}\n"))
        }
    }
}

/// Single-quotes `s` for a POSIX shell: nothing inside is expanded.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::document::{Endpoint, build};

    fn endpoints(requested: Option<&[Protocol]>) -> Endpoints {
        let ep = Endpoint {
            hostname: "tempo.obs".into(),
            tempo_port: Some(3200),
            otlp_grpc_port: Some(4317),
            otlp_http_port: Some(4318),
            zipkin_port: Some(9411),
            ..Default::default()
        };
        Endpoints::from_data(&build(&ep, requested).data).unwrap()
    }

    /// `--format url` prints the offered protocol's URL; one not offered is exit 5.
    #[test]
    fn url_format() {
        let e = endpoints(None);
        assert_eq!(
            render(&e, None, Format::Url).unwrap(),
            "http://tempo.obs:4317\n"
        );
        assert_eq!(
            render(&e, Some(Protocol::Zipkin), Format::Url).unwrap(),
            "http://tempo.obs:9411\n"
        );
        let err = render(&e, Some(Protocol::JaegerGrpc), Format::Url).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_NOT_OFFERED);
    }

    /// `--format env` prints shell-quoted variables, only for what the consumer
    /// asked for (zipkin only: a Zipkin exporter, OTLP not offered).
    #[test]
    fn env_format_quotes_values() {
        let e = endpoints(None);
        assert_eq!(
            render(&e, None, Format::Env).unwrap(),
            "OTEL_TRACES_EXPORTER='otlp'\n\
             OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='http://tempo.obs:4318/v1/traces'\n\
             OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/protobuf'\n\
             OTEL_EXPORTER_ZIPKIN_ENDPOINT='http://tempo.obs:9411/api/v2/spans'\n\
             otlp_grpc_endpoint='http://tempo.obs:4317'\n\
             otlp_http_endpoint='http://tempo.obs:4318'\n"
        );
        assert_eq!(shell_quote("a'b $(x)"), r"'a'\''b $(x)'");
        // Only zipkin asked for: a Zipkin exporter, and OTLP is not offered.
        let z = endpoints(Some(&[Protocol::Zipkin]));
        assert_eq!(
            render(&z, None, Format::Env).unwrap(),
            "OTEL_TRACES_EXPORTER='zipkin'\n\
             OTEL_EXPORTER_ZIPKIN_ENDPOINT='http://tempo.obs:9411/api/v2/spans'\n"
        );
        assert_eq!(
            exit_code(&render(&z, Some(Protocol::OtlpGrpc), Format::Env).unwrap_err()),
            EXIT_NOT_OFFERED
        );
    }

    /// `--format json` carries the URL, its parts and the whole document.
    #[test]
    fn json_format() {
        let e = endpoints(None);
        let out = render(&e, Some(Protocol::OtlpHttp), Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["url"], "http://tempo.obs:4318");
        assert_eq!(v["port"], 4318);
        assert_eq!(v["hostname"], "tempo.obs");
        assert_eq!(v["document"]["tempo_endpoint"]["tempo_port"], 3200);
        assert_eq!(
            v["document"]["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"],
            "http/protobuf"
        );
    }

    /// Each error has the documented exit code.
    #[test]
    fn exit_codes_of_errors() {
        assert_eq!(
            exit_code(&Error::NotBound {
                detail: String::new()
            }),
            EXIT_NOT_BOUND
        );
        assert_eq!(
            exit_code(&crate::consumer::malformed("receivers", None, "x")),
            EXIT_MALFORMED
        );
    }
}
