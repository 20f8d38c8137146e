//! The endpoint document written into a bound consumer: a pure function of the
//! resolved endpoint and the receivers the consumer asked for. No client here.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Data key: the seed's v0 YAML document.
pub const KEY_TEMPO_ENDPOINT: &str = "tempo_endpoint";
/// Data key: the v2 receivers list, JSON.
pub const KEY_RECEIVERS: &str = "receivers";
/// Data key: `http://host:port` of OTLP gRPC (the seed's `otlp_grpc_endpoint`).
pub const KEY_OTLP_GRPC_ENDPOINT: &str = "otlp_grpc_endpoint";
/// Data key: `http://host:port` of OTLP HTTP.
pub const KEY_OTLP_HTTP_ENDPOINT: &str = "otlp_http_endpoint";
/// Data key for `envFrom`: the OpenTelemetry SDK's exporter endpoint.
pub const KEY_OTEL_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Data key for `envFrom`: the OpenTelemetry SDK's exporter protocol.
pub const KEY_OTEL_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

/// Every data key the operator may write; nothing else in a consumer is touched.
pub const DATA_KEYS: [&str; 6] = [
    KEY_TEMPO_ENDPOINT,
    KEY_RECEIVERS,
    KEY_OTLP_GRPC_ENDPOINT,
    KEY_OTLP_HTTP_ENDPOINT,
    KEY_OTEL_ENDPOINT,
    KEY_OTEL_PROTOCOL,
];

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

    /// The receiver URL: bare `host:port` for grpc, `http://host:port` for http.
    pub fn url(self, hostname: &str, port: u16) -> String {
        match self.transport() {
            "grpc" => format!("{hostname}:{port}"),
            _ => format!("http://{hostname}:{port}"),
        }
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
}

impl Endpoint {
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
                    url: p.url(&ep.hostname, port),
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

/// A string scalar as PyYAML's emitter writes it in block context with default
/// settings: plain when the plain form reads back as the same string, else quoted.
pub fn pyyaml_str(s: &str) -> String {
    match pyyaml_style(s) {
        Style::Plain => s.to_string(),
        Style::Single => format!("'{}'", s.replace('\'', "''")),
        Style::Double => double_quoted(s),
    }
}

enum Style {
    Plain,
    Single,
    Double,
}

/// PyYAML's `Emitter.analyze_scalar` + `choose_scalar_style` for a one-line mapping value.
fn pyyaml_style(s: &str) -> Style {
    if s.is_empty() {
        return Style::Single;
    }
    let chars: Vec<char> = s.chars().collect();
    let mut flow_indicators = false;
    let mut block_indicators = false;
    let mut line_breaks = false;
    let mut special = false;
    let mut leading_space = false;
    let mut leading_break = false;
    let mut trailing_space = false;
    let mut trailing_break = false;
    let mut break_space = false;
    let mut space_break = false;
    let mut previous_space = false;
    let mut previous_break = false;
    if s.starts_with("---") || s.starts_with("...") {
        block_indicators = true;
        flow_indicators = true;
    }
    let mut preceded_by_whitespace = true;
    let n = chars.len();
    for (i, &ch) in chars.iter().enumerate() {
        let followed_by_whitespace = i + 1 >= n || is_blank_or_break(chars[i + 1]);
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(ch) {
                flow_indicators = true;
                block_indicators = true;
            }
            if ch == '?' || ch == ':' {
                flow_indicators = true;
                if followed_by_whitespace {
                    block_indicators = true;
                }
            }
            if ch == '-' && followed_by_whitespace {
                flow_indicators = true;
                block_indicators = true;
            }
        } else {
            if ",?[]{}".contains(ch) {
                flow_indicators = true;
            }
            if ch == ':' {
                flow_indicators = true;
                if followed_by_whitespace {
                    block_indicators = true;
                }
            }
            if ch == '#' && preceded_by_whitespace {
                flow_indicators = true;
                block_indicators = true;
            }
        }
        if "\n\u{85}\u{2028}\u{2029}".contains(ch) {
            line_breaks = true;
        }
        // safe_dump runs with allow_unicode=False: anything but printable ASCII
        // and '\n' is special.
        if !(ch == '\n' || ('\x20'..='\x7E').contains(&ch)) {
            special = true;
        }
        if ch == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == n - 1 {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if "\n\u{85}\u{2028}\u{2029}".contains(ch) {
            if i == 0 {
                leading_break = true;
            }
            if i == n - 1 {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blank_or_break(ch);
    }
    let mut allow_block_plain = true;
    let mut allow_single = true;
    if leading_space || leading_break || trailing_space || trailing_break {
        allow_block_plain = false;
    }
    if break_space {
        allow_block_plain = false;
        allow_single = false;
    }
    if space_break || special {
        allow_block_plain = false;
        allow_single = false;
    }
    if line_breaks {
        allow_block_plain = false;
    }
    if block_indicators {
        allow_block_plain = false;
    }
    let _ = flow_indicators;
    if allow_block_plain && !resolves_to_non_string(s) {
        Style::Plain
    } else if allow_single && !line_breaks {
        // (PyYAML also single-quotes multi-line values, folding them; a hostname
        // never has a line break, so those take the double-quoted form here.)
        Style::Single
    } else {
        Style::Double
    }
}

fn is_blank_or_break(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\0'
    )
}

/// PyYAML's double-quoted writer for the characters that reach it here.
fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0B' => out.push_str("\\v"),
            '\x0C' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1B' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{A0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if ('\x20'..='\x7E').contains(&c) => out.push(c),
            c if (c as u32) <= 0xFF => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Whether PyYAML's implicit resolvers (bool, int, float, null, timestamp, merge,
/// value) would read the plain scalar `s` as something other than a string.
fn resolves_to_non_string(s: &str) -> bool {
    const BOOLS: [&str; 18] = [
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ];
    const NULLS: [&str; 4] = ["~", "null", "Null", "NULL"];
    BOOLS.contains(&s)
        || NULLS.contains(&s)
        || s == "<<"
        || s == "="
        || yaml_int(s)
        || yaml_float(s)
        || yaml_timestamp(s)
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['-', '+']).unwrap_or(s)
}

fn all(s: &str, f: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(f)
}

/// `[-+]?0b[0-1_]+ | [-+]?0[0-7_]+ | [-+]?(0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+ |
/// [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+`
fn yaml_int(s: &str) -> bool {
    let t = strip_sign(s);
    if let Some(b) = t.strip_prefix("0b") {
        return all(b, |c| matches!(c, '0' | '1' | '_'));
    }
    if let Some(x) = t.strip_prefix("0x") {
        return all(x, |c| c.is_ascii_hexdigit() || c == '_');
    }
    if t == "0" {
        return true;
    }
    if let Some(o) = t.strip_prefix('0') {
        return all(o, |c| matches!(c, '0'..='7' | '_'));
    }
    let mut parts = t.split(':');
    let head = parts.next().unwrap_or("");
    let head_ok = head.starts_with(|c: char| matches!(c, '1'..='9'))
        && all(head, |c| c.is_ascii_digit() || c == '_');
    if !head_ok {
        return false;
    }
    parts.all(sexagesimal_part)
}

/// `:[0-5]?[0-9]` without the colon.
fn sexagesimal_part(p: &str) -> bool {
    let b = p.as_bytes();
    match b.len() {
        1 => b[0].is_ascii_digit(),
        2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
        _ => false,
    }
}

/// `[-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+][0-9]+)? | \.[0-9][0-9_]*([eE][-+][0-9]+)? |
/// [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]* | [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN)`
fn yaml_float(s: &str) -> bool {
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let t = strip_sign(s);
    if matches!(t, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    // Split off an exponent `[eE][-+][0-9]+`.
    let exp_ok = |m: &str| -> Option<bool> {
        let pos = m.find(['e', 'E'])?;
        let e = &m[pos + 1..];
        let digits = e.strip_prefix(['-', '+'])?;
        Some(all(digits, |c| c.is_ascii_digit()))
    };
    let (mantissa, has_exp) = match t.find(['e', 'E']) {
        Some(pos) => {
            if exp_ok(t) != Some(true) {
                return false;
            }
            (&t[..pos], true)
        }
        None => (t, false),
    };
    // `.[0-9][0-9_]*` only without a sign.
    if let Some(frac) = s.strip_prefix('.') {
        let frac = frac.split(['e', 'E']).next().unwrap_or("");
        return frac.starts_with(|c: char| c.is_ascii_digit())
            && all(frac, |c| c.is_ascii_digit() || c == '_');
    }
    let Some((int_part, frac)) = mantissa.split_once('.') else {
        return false;
    };
    if frac.contains('.') || !frac.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return false;
    }
    let starts_digit = int_part.starts_with(|c: char| c.is_ascii_digit());
    if starts_digit && all(int_part, |c| c.is_ascii_digit() || c == '_') {
        return true;
    }
    // Sexagesimal form has no exponent.
    if has_exp || !starts_digit {
        return false;
    }
    let mut parts = int_part.split(':');
    let head = parts.next().unwrap_or("");
    let mut rest = parts.peekable();
    rest.peek().is_some()
        && all(head, |c| c.is_ascii_digit() || c == '_')
        && rest.all(sexagesimal_part)
}

/// PyYAML's timestamp resolver: `YYYY-MM-DD`, or
/// `YYYY-M?M-D?D([Tt]|[ \t]+)h?h:mm:ss(\.f*)?([ \t]*(Z|[-+]h?h(:mm)?))?`.
fn yaml_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize, min: usize, max: usize| -> bool {
        let start = *i;
        while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start >= min
    };
    let lit = |i: &mut usize, c: u8| -> bool {
        if b.get(*i) == Some(&c) {
            *i += 1;
            true
        } else {
            false
        }
    };
    if b.len() == 10
        && (0..4).all(|k| b[k].is_ascii_digit())
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
    {
        return true;
    }
    if !(digits(&mut i, 4, 4)
        && lit(&mut i, b'-')
        && digits(&mut i, 1, 2)
        && lit(&mut i, b'-')
        && digits(&mut i, 1, 2))
    {
        return false;
    }
    if !(lit(&mut i, b'T') || lit(&mut i, b't')) {
        let start = i;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if !(digits(&mut i, 1, 2)
        && lit(&mut i, b':')
        && digits(&mut i, 2, 2)
        && lit(&mut i, b':')
        && digits(&mut i, 2, 2))
    {
        return false;
    }
    if lit(&mut i, b'.') {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i == b.len() {
        return true;
    }
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if lit(&mut i, b'Z') {
        return i == b.len();
    }
    if !(lit(&mut i, b'-') || lit(&mut i, b'+')) || !digits(&mut i, 1, 2) {
        return false;
    }
    if lit(&mut i, b':') && !digits(&mut i, 2, 2) {
        return false;
    }
    i == b.len()
}

/// Everything the operator writes into a bound consumer's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Data keys and values, sorted by key.
    pub data: BTreeMap<String, String>,
    /// Seed ports that are not offered (so `tempo_endpoint` was left out).
    pub missing_seed_ports: Vec<&'static str>,
    /// The receivers written, sorted by name.
    pub receivers: Vec<Protocol>,
}

impl Document {
    /// A stable hash of the data, for the document-hash annotation.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.data {
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
}

/// Builds the document for a consumer that asked for `requested` receivers
/// (`None`: all offered).
pub fn build(ep: &Endpoint, requested: Option<&[Protocol]>) -> Document {
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
    let has = |p: Protocol| recv.iter().any(|(q, _)| *q == p);
    let http_url = |port: Option<u16>| port.map(|p| format!("http://{}:{p}", ep.hostname));
    let grpc = if has(Protocol::OtlpGrpc) {
        http_url(ep.otlp_grpc_port)
    } else {
        None
    };
    let http = if has(Protocol::OtlpHttp) {
        http_url(ep.otlp_http_port)
    } else {
        None
    };
    if let Some(g) = &grpc {
        data.insert(KEY_OTLP_GRPC_ENDPOINT.to_string(), g.clone());
    }
    if let Some(h) = &http {
        data.insert(KEY_OTLP_HTTP_ENDPOINT.to_string(), h.clone());
    }
    let otel = match (&http, &grpc) {
        (Some(h), _) => Some((h.clone(), "http/protobuf")),
        (None, Some(g)) => Some((g.clone(), "grpc")),
        (None, None) => None,
    };
    if let Some((endpoint, protocol)) = otel {
        data.insert(KEY_OTEL_ENDPOINT.to_string(), endpoint);
        data.insert(KEY_OTEL_PROTOCOL.to_string(), protocol.to_string());
    }
    Document {
        data,
        missing_seed_ports,
        receivers: recv.into_iter().map(|(p, _)| p).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_endpoint(host: &str) -> Endpoint {
        Endpoint {
            hostname: host.into(),
            tempo_port: Some(3200),
            otlp_grpc_port: Some(4317),
            otlp_http_port: Some(4318),
            zipkin_port: Some(9411),
            ..Default::default()
        }
    }

    /// The v0 document is the seed's `yaml.safe_dump` output: sorted keys, trailing newline.
    #[test]
    fn tempo_endpoint_matches_safe_dump_layout() {
        let doc = build(
            &seed_endpoint("tempo.observability.svc.cluster.local"),
            None,
        );
        assert_eq!(
            doc.data[KEY_TEMPO_ENDPOINT],
            "hostname: tempo.observability.svc.cluster.local\notlp_grpc_port: 4317\notlp_http_port: 4318\ntempo_port: 3200\nzipkin_port: 9411\n"
        );
    }

    /// Hostnames that PyYAML would read back as another type are quoted as it quotes them.
    #[test]
    fn ambiguous_hostnames_are_quoted_like_pyyaml() {
        assert_eq!(pyyaml_str("no"), "'no'");
        assert_eq!(pyyaml_str("123"), "'123'");
        assert_eq!(pyyaml_str("1.5"), "'1.5'");
        assert_eq!(pyyaml_str("0x1f"), "'0x1f'");
        assert_eq!(pyyaml_str("2024-01-02"), "'2024-01-02'");
        assert_eq!(pyyaml_str("10.0.0.1"), "10.0.0.1");
        assert_eq!(pyyaml_str("null"), "'null'");
        assert_eq!(pyyaml_str(""), "''");
        assert_eq!(pyyaml_str("tempo"), "tempo");
    }

    /// The v2 list is sorted by name; grpc URLs are bare, http URLs carry a scheme.
    #[test]
    fn receivers_v2_form() {
        let doc = build(&seed_endpoint("t"), None);
        assert_eq!(
            doc.data[KEY_RECEIVERS],
            r#"[{"protocol":{"name":"otlp_grpc","type":"grpc"},"url":"t:4317"},{"protocol":{"name":"otlp_http","type":"http"},"url":"http://t:4318"},{"protocol":{"name":"zipkin","type":"http"},"url":"http://t:9411"}]"#
        );
        assert_eq!(doc.data[KEY_OTEL_ENDPOINT], "http://t:4318");
        assert_eq!(doc.data[KEY_OTEL_PROTOCOL], "http/protobuf");
        assert_eq!(doc.data[KEY_OTLP_GRPC_ENDPOINT], "http://t:4317");
    }

    /// A consumer that asks only for gRPC gets a gRPC exporter and no HTTP keys.
    #[test]
    fn requested_subset_selects_grpc_exporter() {
        let doc = build(&seed_endpoint("t"), Some(&[Protocol::OtlpGrpc]));
        assert_eq!(doc.data[KEY_OTEL_PROTOCOL], "grpc");
        assert_eq!(doc.data[KEY_OTEL_ENDPOINT], "http://t:4317");
        assert!(!doc.data.contains_key(KEY_OTLP_HTTP_ENDPOINT));
        assert_eq!(doc.receivers, vec![Protocol::OtlpGrpc]);
        // The v0 document does not depend on the receivers asked for.
        assert!(doc.data.contains_key(KEY_TEMPO_ENDPOINT));
    }

    /// Without all four seed ports the v0 document is left out and the gap is named.
    #[test]
    fn missing_seed_port_leaves_out_v0_document() {
        let mut ep = seed_endpoint("t");
        ep.zipkin_port = None;
        let doc = build(&ep, None);
        assert!(!doc.data.contains_key(KEY_TEMPO_ENDPOINT));
        assert_eq!(doc.missing_seed_ports, vec!["zipkin_port"]);
    }

    /// The hash changes with the document and only with it.
    #[test]
    fn hash_tracks_content() {
        let a = build(&seed_endpoint("a"), None);
        let b = build(&seed_endpoint("b"), None);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), build(&seed_endpoint("a"), None).hash());
        assert!(a.hash().starts_with("sha256:"));
    }
}
