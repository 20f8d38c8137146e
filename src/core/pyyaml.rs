//! PyYAML's scalar emitter, emulated exactly for one-line string values: which
//! strings `yaml.safe_dump` writes plain, single- or double-quoted. The
//! `tempo_endpoint` document's hostname goes through [`pyyaml_str`], so the
//! document is byte for byte what the seed's Python would print.

use std::fmt::Write as _;

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
    // A space or a line break first or last (PyYAML's leading_space,
    // leading_break, trailing_space and trailing_break, which it only reads together).
    let mut edge_whitespace = false;
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
        // First: any of `#,[]{}&*!|>'"%@` and a backquote, or `- `; later: ` #`.
        let first_indicator =
            i == 0 && ("#,[]{}&*!|>'\"%@`".contains(ch) || (ch == '-' && followed_by_whitespace));
        let comment = i > 0 && ch == '#' && preceded_by_whitespace;
        if first_indicator || comment {
            flow_indicators = true;
            block_indicators = true;
        }
        // `?` first or `:` anywhere; a block indicator when whitespace follows.
        if ch == ':' || (i == 0 && ch == '?') {
            flow_indicators = true;
            if followed_by_whitespace {
                block_indicators = true;
            }
        }
        if i > 0 && ",?[]{}".contains(ch) {
            flow_indicators = true;
        }
        let is_space = ch == ' ';
        let is_break = "\n\u{85}\u{2028}\u{2029}".contains(ch);
        if is_break {
            line_breaks = true;
        }
        // safe_dump runs with allow_unicode=False: anything but printable ASCII
        // and '\n' is special.
        if !(ch == '\n' || ('\x20'..='\x7E').contains(&ch)) {
            special = true;
        }
        if (is_space || is_break) && (i == 0 || i == n - 1) {
            edge_whitespace = true;
        }
        if is_space && previous_break {
            break_space = true;
        }
        if is_break && previous_space {
            space_break = true;
        }
        previous_space = is_space;
        previous_break = is_break;
        preceded_by_whitespace = is_blank_or_break(ch);
    }
    let mut allow_block_plain = true;
    let mut allow_single = true;
    if edge_whitespace || line_breaks || block_indicators {
        allow_block_plain = false;
    }
    if break_space || space_break || special {
        allow_block_plain = false;
        allow_single = false;
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
    // Three runs of digits, `(min, max)` long each, separated by `sep`.
    let fields = |i: &mut usize, sep: u8, widths: [(usize, usize); 3]| -> bool {
        widths
            .iter()
            .enumerate()
            .all(|(k, &(min, max))| (k == 0 || lit(i, sep)) && digits(i, min, max))
    };
    let mut date_only = 0;
    if fields(&mut date_only, b'-', [(4, 4), (2, 2), (2, 2)]) && date_only == b.len() {
        return true;
    }
    if !fields(&mut i, b'-', [(4, 4), (1, 2), (1, 2)]) {
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
    if !fields(&mut i, b':', [(1, 2), (2, 2), (2, 2)]) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
