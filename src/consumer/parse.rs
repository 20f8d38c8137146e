//! Parsing `tempo_endpoint` (YAML) and `receivers` (JSON) with errors that name
//! the field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, VariantAccess, Visitor};

use super::{Error, TempoEndpoint, malformed};
use crate::core::document::{
    KEY_RECEIVERS, KEY_TEMPO_ENDPOINT, Protocol, Receiver, ReceiverProtocol,
};

/// A YAML node as far as the checks need it.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq,
    Map,
    Tagged(String),
}

impl Node {
    fn kind(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => format!("a boolean ({b})"),
            Node::Int(i) => format!("an integer ({i})"),
            Node::Float(f) => format!("a float ({f})"),
            Node::Str(s) => format!("a string ({s:?})"),
            Node::Seq => "a list".into(),
            Node::Map => "a mapping".into(),
            Node::Tagged(t) => format!("a value with the tag {t}"),
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Node::Seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Node::Map)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        let (tag, variant): (String, _) = data.variant()?;
        variant.newtype_variant::<IgnoredAny>()?;
        Ok(Node::Tagged(format!("!{}", tag.trim_start_matches('!'))))
    }
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// The top level of the document: string keys to nodes (later keys win, as in
/// PyYAML), or what it is instead of a mapping.
enum Top {
    Map(BTreeMap<String, Node>),
    Other(Node),
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value: Node = map.next_value()?;
            if let Node::Str(k) = key {
                out.insert(k, value);
            }
        }
        Ok(Top::Map(out))
    }
    // Everything else: describe it.
    fn visit_unit<E>(self) -> Result<Top, E> {
        Ok(Top::Other(Node::Null))
    }
    fn visit_none<E>(self) -> Result<Top, E> {
        Ok(Top::Other(Node::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Top, E> {
        Ok(Top::Other(Node::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Top, E> {
        Ok(Top::Other(Node::Int(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Top, E> {
        Ok(Top::Other(Node::Int(v.into())))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Top, E> {
        Ok(Top::Other(Node::Int(v)))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Top, E> {
        Ok(Top::Other(Node::Int(
            i128::try_from(v).unwrap_or(i128::MAX),
        )))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Top, E> {
        Ok(Top::Other(Node::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Top, E> {
        Ok(Top::Other(Node::Str(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top, A::Error> {
        NodeVisitor.visit_seq(seq).map(Top::Other)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Top, A::Error> {
        NodeVisitor.visit_enum(data).map(Top::Other)
    }
}

impl<'de> de::Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

/// The hostname's scalar text exactly as written (for plain scalars that YAML
/// 1.2 reads as numbers but PyYAML reads as strings, e.g. `1e3`).
#[derive(serde::Deserialize)]
struct RawHostname {
    #[serde(default)]
    hostname: Option<RawText>,
}

struct RawText(String);

impl<'de> de::Deserialize<'de> for RawText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_str<E>(self, v: &str) -> Result<RawText, E> {
                Ok(RawText(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

pub(super) fn tempo_endpoint(text: &str) -> Result<TempoEndpoint, Error> {
    const KEY: &str = KEY_TEMPO_ENDPOINT;
    let top: Top = serde_yaml::from_str(text)
        .map_err(|e| malformed(KEY, None, format!("invalid YAML: {e}")))?;
    let map = match top {
        Top::Map(m) => m,
        Top::Other(node) => {
            return Err(malformed(
                KEY,
                None,
                format!("expected a mapping, found {}", node.kind()),
            ));
        }
    };
    let hostname = hostname(&map, text)?;
    let port = |name: &str| port(&map, name);
    Ok(TempoEndpoint {
        hostname,
        tempo_port: port("tempo_port")?,
        otlp_grpc_port: port("otlp_grpc_port")?,
        otlp_http_port: port("otlp_http_port")?,
        zipkin_port: port("zipkin_port")?,
    })
}

fn hostname(map: &BTreeMap<String, Node>, text: &str) -> Result<String, Error> {
    const FIELD: Option<&str> = Some("hostname");
    let err = |detail: String| malformed(KEY_TEMPO_ENDPOINT, FIELD, detail);
    match map.get("hostname") {
        None => Err(err("is missing".into())),
        Some(Node::Str(s)) if s.is_empty() => Err(err("is empty".into())),
        Some(Node::Str(s)) => Ok(s.clone()),
        Some(node @ (Node::Int(_) | Node::Float(_))) => {
            // PyYAML writes a string plain when PyYAML reads it back as a string;
            // some of those (`1e3`, `0o17`) are numbers in YAML 1.2: take the text.
            let raw = serde_yaml::from_str::<RawHostname>(text)
                .ok()
                .and_then(|r| r.hostname)
                .map(|r| r.0);
            match raw {
                Some(raw) if crate::core::pyyaml::pyyaml_str(&raw) == raw => Ok(raw),
                _ => Err(err(format!(
                    "is {}, expected a string (quote it)",
                    node.kind()
                ))),
            }
        }
        Some(node) => Err(err(format!("is {}, expected a string", node.kind()))),
    }
}

fn port(map: &BTreeMap<String, Node>, name: &str) -> Result<u16, Error> {
    let err = |detail: String| malformed(KEY_TEMPO_ENDPOINT, Some(name), detail);
    let value = match map.get(name) {
        None => return Err(err("is missing".into())),
        Some(Node::Int(i)) => *i,
        Some(Node::Str(s)) => {
            python_int(s).ok_or_else(|| err(format!("is not an integer: {s:?}")))?
        }
        Some(Node::Float(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() >= 1e18 => {
            return Err(err(format!("is out of range 1-65535: {f}")));
        }
        Some(Node::Float(f)) => return Err(err(format!("is not an integer: {f}"))),
        Some(node @ Node::Tagged(_)) => {
            return Err(err(format!("has an unsupported YAML tag: {}", node.kind())));
        }
        Some(node) => return Err(err(format!("is {}, expected an integer", node.kind()))),
    };
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| err(format!("is out of range 1-65535: {value}")))
}

/// Python's `int(s)` for a `str`: surrounding whitespace, an optional sign,
/// decimal digits with single underscores between them. `None` where `int()`
/// raises; huge values saturate.
pub(super) fn python_int(s: &str) -> Option<i128> {
    let t = s.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut value: i128 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(10)?;
        value = value.saturating_mul(10).saturating_add(d.into());
    }
    Some(if negative { -value } else { value })
}

/// Host and port of `host:port`, `scheme://host:port` or `scheme://host:port/path`.
pub(super) fn split_url(url: &str) -> Option<(&str, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty()).then_some((host, port))
}

pub(super) fn receivers(text: &str) -> Result<Vec<Receiver>, Error> {
    const KEY: &str = KEY_RECEIVERS;
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| malformed(KEY, None, format!("invalid JSON: {e}")))?;
    let serde_json::Value::Array(items) = value else {
        return Err(malformed(
            KEY,
            None,
            format!("expected a JSON list, found {}", json_kind(&value)),
        ));
    };
    let mut out: Vec<Receiver> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |path: &str| format!("[{i}]{path}");
        let err = |path: &str, detail: String| malformed(KEY, Some(&at(path)), detail);
        let string = |v: Option<&serde_json::Value>, path: &str| match v {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            None => Err(err(path, "is missing".into())),
            Some(other) => Err(err(
                path,
                format!("is {}, expected a string", json_kind(other)),
            )),
        };
        let serde_json::Value::Object(obj) = item else {
            return Err(err(
                "",
                format!("is {}, expected an object", json_kind(item)),
            ));
        };
        let protocol = match obj.get("protocol") {
            Some(serde_json::Value::Object(p)) => p,
            None => return Err(err(".protocol", "is missing".into())),
            Some(other) => {
                return Err(err(
                    ".protocol",
                    format!("is {}, expected an object", json_kind(other)),
                ));
            }
        };
        let name = string(protocol.get("name"), ".protocol.name")?;
        let type_ = string(protocol.get("type"), ".protocol.type")?;
        let url = string(obj.get("url"), ".url")?;
        if url.trim().is_empty() {
            return Err(err(".url", "is empty".into()));
        }
        if let Ok(p) = name.parse::<Protocol>() {
            if type_ != p.transport() {
                return Err(err(
                    ".protocol.type",
                    format!("is {type_:?}, but {p} is {:?}", p.transport()),
                ));
            }
            if split_url(&url).is_none() {
                return Err(err(".url", format!("{url:?} has no host and port 1-65535")));
            }
        }
        if out.iter().any(|r| r.protocol.name == name) {
            return Err(err(
                ".protocol.name",
                format!("duplicate receiver {name:?}"),
            ));
        }
        out.push(Receiver {
            protocol: ReceiverProtocol { name, type_ },
            url,
        });
    }
    Ok(out)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
