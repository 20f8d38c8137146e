//! Reading Prometheus / OpenMetrics text: the operator's `/metrics` and
//! kube-apiserver's.

use std::collections::BTreeMap;
use std::time::Duration;

use super::operator::Operator;
use super::wait::wait_for_some_named;

/// Prefix of every metric of the operator.
pub const PREFIX: &str = "tracing_relation_operator_";

/// `tracing_relation_operator_<name>`.
pub fn operator_metric_name(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// One scrape: every sample with its name and labels, and the text it came from.
#[derive(Debug, Default)]
pub struct Scrape {
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
    pub text: String,
}

impl Scrape {
    /// Parses an exposition; panics on a line that is not a sample or a comment.
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(parse_sample)
            .collect();
        Scrape {
            samples,
            text: text.to_string(),
        }
    }

    /// The sample of `name` whose label set is exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
    }

    /// Like [`Scrape::get`], 0 when absent (counters of a label set not seen yet).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// All samples of `name`.
    pub fn all(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    }

    /// Sum of every sample of `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.all(name).iter().map(|(_, v)| v).sum()
    }
}

/// `name{labels} value [timestamp]` as (name, labels, value).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line
                .rfind('}')
                .unwrap_or_else(|| panic!("bad metric line {line:?}"));
            (
                &line[..open],
                parse_labels(&line[open + 1..close]),
                &line[close + 1..],
            )
        }
        None => {
            let (n, r) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad metric line {line:?}"));
            (n, BTreeMap::new(), r)
        }
    };
    let value = rest
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}")),
    };
    (name.to_string(), labels, value)
}

/// The labels of a sample line's `{...}` part (escapes `\"`, `\\`, `\n` undone).
pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "bad labels {s:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_string(), value);
    }
    out
}

/// Sum of the samples of `name` (any labels) whose line contains `filter`
/// (`""`: every sample), read straight from the text.
pub fn metric_sum_where(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Sum of the samples of `name`, any labels.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    metric_sum_where(text, name, "")
}

/// The operator's `/metrics` text; panics unless it answers 200.
pub async fn operator_text(op: &Operator) -> String {
    match op.http_get("/metrics").await {
        Ok((200, body)) => body,
        other => panic!("GET /metrics of the operator: {other:?}"),
    }
}

/// Scrapes the operator's `/metrics`, `None` while it is not served.
pub async fn try_scrape(op: &Operator) -> Option<Scrape> {
    match op.http_get("/metrics").await {
        Ok((200, body)) => Some(Scrape::parse(&body)),
        _ => None,
    }
}

/// Scrapes the operator's `/metrics`, waiting up to a minute for it to answer.
pub async fn scrape(op: &Operator) -> Scrape {
    wait_for_some_named("/metrics to answer 200", Duration::from_secs(60), || {
        try_scrape(op)
    })
    .await
}

/// GET `path` on the API server as text (e.g. `/metrics`).
pub async fn apiserver_text(client: &kube::Client, path: &str) -> String {
    let mut request = kube::core::Request::new(path)
        .list(&Default::default())
        .expect("a GET request");
    *request.uri_mut() = path.parse().expect("a valid path");
    client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on the API server: {e}"))
}
