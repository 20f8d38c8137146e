//! Tests of the syntax: durations and pod selectors.
use super::*;

#[test]
fn parse_duration_table() {
    const S: u64 = 1_000;
    const D: u64 = 86_400 * S;
    for (text, ms) in [
        ("1ms", 1),
        ("30s", 30 * S),
        ("1m30s", 90 * S),
        ("1m1ms", 60 * S + 1),
        ("1h", 3_600 * S),
        ("2d", 2 * D),
        ("1w", 7 * D),
        ("1y", 365 * D),
        (
            "1y1w1d1h1m1s1ms",
            365 * D + 7 * D + D + 3_600 * S + 60 * S + S + 1,
        ),
        ("01s", S),
        ("0s", 0),
    ] {
        assert_eq!(parse_duration(text), Some(ms), "{text}");
    }
    for text in [
        "",
        "30",
        "s",
        "1x",
        "1S",
        "1.5s",
        "-1s",
        " 1s",
        "1s ",
        "1s1m",
        "1ms1s",
        "1m1m",
        "1h1d",
        "99999999999999999999s",
    ] {
        assert_eq!(parse_duration(text), None, "{text:?}");
    }
    let padded = format!("{}1s", "0".repeat(31));
    assert_eq!(parse_duration(&padded[1..]), Some(S));
    assert_eq!(parse_duration(&padded), None, "longer than 32 bytes");
}

/// Prometheus durations are int64 nanoseconds: past ~292 years it refuses
/// them ("duration out of range") and with them the whole configuration file.
#[test]
fn durations_past_prometheus_range_are_refused() {
    assert_eq!(parse_duration("292y"), Some(292 * 365 * 86_400_000));
    assert_eq!(parse_duration("106751d"), Some(106_751 * 86_400_000));
    for text in ["293y", "106752d", "9223372036855s"] {
        assert_eq!(parse_duration(text), None, "{text}");
        assert_refused(
            &job_with(&format!(r#""scrape_interval": "{text}","#)),
            "scrape_interval must be a Prometheus duration",
        );
    }
}

#[test]
fn parse_selector_forms_and_canonical_display() {
    for (text, canonical) in [
        ("app=cart", "app=cart"),
        ("app==cart", "app=cart"),
        ("app!=cart", "app!=cart"),
        ("app", "app"),
        ("!app", "!app"),
        ("app=", "app="),
        (" app = cart , tier ", "app=cart,tier"),
        ("example.com/app=cart", "example.com/app=cart"),
        ("b=1,a=2,a==2,!c,c,x!=y", "a=2,b=1,x!=y,c,!c"),
    ] {
        let sel = parse_selector(text).expect(text);
        assert_eq!(sel.to_string(), canonical, "{text}");
        assert_eq!(parse_selector(canonical), Ok(sel), "{text}");
    }
}

#[test]
fn parse_selector_errors() {
    for (text, msg) in [
        ("", r#""" has an empty requirement"#),
        ("a=b,", r#""a=b," has an empty requirement"#),
        (",a", r#"",a" has an empty requirement"#),
        ("a b", r#""a b" is not a label key"#),
        ("a in (b)", r#""a in (b)" is not a label key"#),
        ("!", r#""" is not a label key"#),
        ("Ex.com/a=b", r#""Ex.com/a" is not a label key"#),
        ("/a=b", r#""/a" is not a label key"#),
        ("a=b c", r#""b c" is not a label value"#),
        ("a=-b", r#""-b" is not a label value"#),
        ("a=b=c", r#""b=c" is not a label value"#),
    ] {
        let err = parse_selector(text).expect_err(text);
        assert!(err.starts_with(msg), "{text}: {err}");
    }
    let long_key = "k".repeat(64);
    assert_eq!(
        parse_selector(&long_key),
        Err(format!("{long_key:?} is not a label key"))
    );
    assert_eq!(
        parse_selector(&vec!["a"; 513].join(",")),
        Err("longer than 1024 bytes".into())
    );
}

#[test]
fn durations_are_checked() {
    for key in ["scrape_interval", "scrape_timeout"] {
        for (value, what) in [
            (r#""1x""#, r#""1x""#),
            (r#""""#, r#""""#),
            (r#""0s""#, r#""0s""#),
            (r#""1s1m""#, r#""1s1m""#),
            ("30", "a number"),
        ] {
            assert_refused(
                &job_with(&format!(r#""{key}": {value},"#)),
                &format!(
                    "job 0: {key} must be a Prometheus duration such as 30s, 1m or 1m30s, not {what}"
                ),
            );
        }
    }
    assert_refused(
        &job_with(r#""scrape_interval": "10s", "scrape_timeout": "11s","#),
        "job 0: scrape_timeout is longer than scrape_interval (10s)",
    );
    assert_refused(
        &job_with(r#""scrape_timeout": "61s","#),
        "job 0: scrape_timeout is longer than scrape_interval (1m, the default)",
    );
    for (keys, interval, timeout) in [
        (r#""scrape_timeout": "1m","#, None, Some("1m")),
        (
            r#""scrape_interval": "1m30s", "scrape_timeout": "90000ms","#,
            Some("1m30s"),
            Some("90000ms"),
        ),
        (r#""scrape_interval": "5s","#, Some("5s"), None),
    ] {
        let job = &declare(&job_with(keys)).expect(keys).jobs[0];
        assert_eq!(job.scrape_interval.as_deref(), interval, "{keys}");
        assert_eq!(job.scrape_timeout.as_deref(), timeout, "{keys}");
    }
}
