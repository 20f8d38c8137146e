//! The syntax the scrape jobs are written in: Prometheus durations, targets and
//! label names, and Kubernetes label selectors. Pure.

use std::collections::BTreeSet;
use std::fmt;

use super::{MAX_DURATION_MS, Target, quoted};

/// One requirement of a pod selector.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// A pod label selector in the consumer's namespace, canonical (sorted, no repeats).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector(Vec<Requirement>);

impl fmt::Display for Selector {
    /// The API server's `labelSelector` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r {
                Requirement::Equals(k, v) => write!(f, "{k}={v}")?,
                Requirement::NotEquals(k, v) => write!(f, "{k}!={v}")?,
                Requirement::Exists(k) => write!(f, "{k}")?,
                Requirement::NotExists(k) => write!(f, "!{k}")?,
            }
        }
        Ok(())
    }
}

/// Milliseconds of a duration already validated by [`parse_duration`].
pub(super) fn duration_ms(s: &str) -> u64 {
    parse_duration(s).unwrap_or(0)
}

/// Prometheus' duration units, largest first, in milliseconds.
pub const DURATION_UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Prometheus' duration syntax: units y, w, d, h, m, s, ms, each at most once,
/// largest first. `None` when it is not one.
pub fn parse_duration(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        let after = &rest[digits..];
        // "ms" before "m": the longest unit that matches.
        let (idx, unit) = DURATION_UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| after.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())?;
        if idx < next_unit {
            return None;
        }
        next_unit = idx + 1;
        total = total.checked_add(n.checked_mul(unit.1)?)?;
        rest = &after[unit.0.len()..];
    }
    // Prometheus keeps durations as int64 nanoseconds (about 292 years) and
    // refuses the whole configuration beyond.
    (total <= MAX_DURATION_MS).then_some(total)
}

/// A Prometheus label name.
pub fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `*:port`, or `host:port` with a DNS name, an IPv4 address or a bracketed
/// IPv6 address.
pub fn parse_target(t: &str) -> Result<Target, String> {
    let bad = |why: &str| format!("{} {why}", quoted(t));
    let (host, port) = t.rsplit_once(':').ok_or_else(|| bad("is not host:port"))?;
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 && !port.starts_with(['+', '0']) => p,
        _ => return Err(bad("has no port from 1 to 65535")),
    };
    if host == "*" {
        return Ok(Target::Wildcard(port));
    }
    let ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        is_host(host)
    };
    if !ok {
        return Err(bad(
            "is not host:port with a DNS name or IP address (no scheme, no path)",
        ));
    }
    Ok(Target::Fixed(t.to_string()))
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits, `-`
/// and `_`, at most 253 bytes.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Parses a pod label selector: comma-separated `key=value`, `key==value`,
/// `key!=value`, `key` or `!key` (at least one).
pub fn parse_selector(s: &str) -> Result<Selector, String> {
    let mut reqs = BTreeSet::new();
    if s.len() > 1024 {
        return Err("longer than 1024 bytes".into());
    }
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "{} has an empty requirement; use key=value, key!=value, key or !key, comma-separated",
                quoted(s)
            ));
        }
        let req = if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(label_key(k)?, label_value(v)?)
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(label_key(k)?, label_value(v)?)
        } else if let Some(k) = part.strip_prefix('!') {
            Requirement::NotExists(label_key(k)?)
        } else {
            Requirement::Exists(label_key(part)?)
        };
        reqs.insert(req);
    }
    Ok(Selector(reqs.into_iter().collect()))
}

/// A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a
/// name of 1-63 letters, digits, `-`, `_`, `.`, alphanumeric at both ends.
fn label_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(crate::core::declaration::is_dns_subdomain);
    if !prefix_ok || name.is_empty() || !is_label_value(name) {
        return Err(format!("{} is not a label key", quoted(k)));
    }
    Ok(k.to_string())
}

fn label_value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if !v.is_empty() && !is_label_value(v) {
        return Err(format!("{} is not a label value", quoted(v)));
    }
    Ok(v.to_string())
}

fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
