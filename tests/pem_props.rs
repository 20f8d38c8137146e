//! Property tests of the CA bundle handling (`core::pem`): what a TLS relation
//! copies into its consumers is exactly the certificates of the source bundle,
//! in one canonical form, whatever the bundle's layout; anything else is a
//! clear error and never a panic.

use proptest::prelude::*;
use tracing_relation_operator::core::pem::{self, PemError};

/// A DER-like certificate body: an ASN.1 SEQUENCE tag and some bytes.
fn der() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..600).prop_map(|mut body| {
        body.insert(0, 0x30);
        body
    })
}

/// The base64 of `der` as one line (taken from the canonical PEM).
fn base64_of(der: &[u8]) -> String {
    pem::encode(&[der.to_vec()])
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// Lines of text a bundle may carry around its blocks (comments, subjects as
/// `openssl x509 -text` prints them, blank lines); none starts a PEM block.
fn junk() -> impl Strategy<Value = String> {
    prop::collection::vec("[ #A-Za-z0-9=:,./-]{0,60}", 0..3).prop_map(|lines| {
        lines
            .into_iter()
            .filter(|l| !l.trim_start().starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A bundle of `ders` as a person or a tool might lay it out: base64 in lines
/// of `width`, `\r\n` or `\n` line ends, text before and between the blocks,
/// blanks around lines.
fn layout(ders: &[Vec<u8>], width: usize, crlf: bool, junk: &[String], pad: bool) -> String {
    let mut out = String::new();
    for (i, der) in ders.iter().enumerate() {
        out.push_str(&junk[i % junk.len()]);
        out.push('\n');
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64_of(der);
        for chunk in b64.as_bytes().chunks(width) {
            if pad {
                out.push_str("  ");
            }
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    if crlf {
        out = out.replace('\n', "\r\n");
    }
    out
}

proptest! {
    /// Every certificate of a bundle is read back, in order, whatever its
    /// layout; the canonical form is the same for every layout and is its own
    /// canonical form.
    #[test]
    fn certificates_survive_any_layout(
        ders in prop::collection::vec(der(), 1..5),
        width in 1usize..120,
        crlf in any::<bool>(),
        pad in any::<bool>(),
        junk in prop::collection::vec(junk(), 1..4),
    ) {
        let text = layout(&ders, width, crlf, &junk, pad);
        prop_assert_eq!(pem::certificates(&text), Ok(ders.clone()));
        let canonical = pem::normalize(&text).expect("a valid bundle");
        prop_assert_eq!(&canonical, &pem::encode(&ders));
        prop_assert_eq!(pem::normalize(&canonical), Ok(canonical.clone()));
        prop_assert!(canonical.lines().all(|l| l.len() <= 64));
        prop_assert!(canonical.ends_with("-----END CERTIFICATE-----\n"));
    }

    /// Any text at all gives a bundle or an error, never a panic; a bundle it
    /// gives is canonical and reads back to the same certificates.
    #[test]
    fn any_text_is_a_bundle_or_an_error(text in "(-----(BEGIN|END) CERTIFICATE-----\n|[A-Za-z0-9+/=]{0,70}\n|.{0,20}\n){0,12}") {
        if let Ok(canonical) = pem::normalize(&text) {
            prop_assert_eq!(pem::certificates(&canonical), pem::certificates(&text));
            prop_assert_eq!(pem::normalize(&canonical), Ok(canonical.clone()));
        }
    }

    /// A bundle that also holds a block of another type (a private key, a CRL)
    /// is refused naming that block: nothing but certificates is ever copied.
    #[test]
    fn other_blocks_are_refused(
        ders in prop::collection::vec(der(), 0..3),
        label in prop::sample::select(vec!["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "X509 CRL", "CERTIFICATE REQUEST"]),
        body in der(),
    ) {
        let mut text = pem::encode(&ders);
        text.push_str(&format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", base64_of(&body)));
        let refused = matches!(
            pem::certificates(&text),
            Err(PemError::NotCertificate { index, label: l }) if index == ders.len() + 1 && l == label
        );
        prop_assert!(refused);
    }

    /// A bundle cut short (its last END line lost) or whose base64 was altered
    /// to something that is not base64 is refused, not read in part.
    #[test]
    fn damaged_bundles_are_refused(ders in prop::collection::vec(der(), 1..4), at in any::<prop::sample::Index>()) {
        let text = pem::encode(&ders);
        let cut = text.trim_end().trim_end_matches("-----END CERTIFICATE-----");
        prop_assert_eq!(pem::certificates(cut), Err(PemError::Unterminated { index: ders.len() }));
        let body: Vec<usize> = text
            .lines()
            .scan(0usize, |offset, line| {
                let start = *offset;
                *offset += line.len() + 1;
                Some((start, line))
            })
            .filter(|(_, l)| !l.starts_with("-----"))
            .map(|(start, _)| start)
            .collect();
        let mut damaged = text.clone().into_bytes();
        damaged[body[at.index(body.len())]] = b'!';
        let damaged = String::from_utf8(damaged).expect("ASCII");
        let refused = matches!(pem::certificates(&damaged), Err(PemError::Malformed { .. }));
        prop_assert!(refused);
    }
}
