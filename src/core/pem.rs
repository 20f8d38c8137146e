//! The CA bundle a TLS relation hands to its consumers: PEM `CERTIFICATE`
//! blocks, read strictly and written back in one canonical form. Pure.
//!
//! What is copied into consumers is only the certificates, each re-encoded
//! (base64 in lines of 64, `\n` line ends, one trailing newline), so that
//! whatever else the source ConfigMap holds around them (comments, blank
//! lines, `\r\n`) never reaches consumers and two spellings of the same bundle
//! give the same document hash. A block of any other type is refused, so a
//! private key put into the bundle by mistake is never spread.

use std::fmt::Write as _;

/// The most certificates one bundle may hold (a public-CA bundle has ~150).
pub const MAX_CERTIFICATES: usize = 1000;

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";
const CERTIFICATE: &str = "CERTIFICATE";

/// Why a CA bundle cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("it is empty")]
    Empty,
    #[error("it holds no PEM CERTIFICATE block")]
    NoCertificate,
    #[error("block {index} is a PEM {label:?} block, not a CERTIFICATE")]
    NotCertificate { index: usize, label: String },
    #[error("block {index} has no END line")]
    Unterminated { index: usize },
    #[error("block {index}: {detail}")]
    Malformed { index: usize, detail: String },
    #[error("it holds more than {MAX_CERTIFICATES} certificates")]
    TooMany,
}

/// The DER bytes of each certificate of `text`, in order. Text outside the
/// blocks is ignored, as OpenSSL does; every block must be a well-formed
/// `CERTIFICATE` whose content is base64 of a DER SEQUENCE.
pub fn certificates(text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    if text.trim().is_empty() {
        return Err(PemError::Empty);
    }
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix(BEGIN)
            .and_then(|l| l.strip_suffix(DASHES))
        else {
            continue;
        };
        let index = out.len() + 1;
        if label != CERTIFICATE {
            return Err(PemError::NotCertificate {
                index,
                label: crate::core::contract::truncate(label),
            });
        }
        if out.len() == MAX_CERTIFICATES {
            return Err(PemError::TooMany);
        }
        let mut b64 = String::new();
        let mut ended = false;
        for body in lines.by_ref() {
            if let Some(end) = body.strip_prefix(END).and_then(|l| l.strip_suffix(DASHES)) {
                if end != CERTIFICATE {
                    return Err(PemError::Malformed {
                        index,
                        detail: format!(
                            "END line names {:?}",
                            crate::core::contract::truncate(end)
                        ),
                    });
                }
                ended = true;
                break;
            }
            b64.push_str(body);
        }
        if !ended {
            return Err(PemError::Unterminated { index });
        }
        let der = decode_base64(&b64).map_err(|detail| PemError::Malformed { index, detail })?;
        if der.first() != Some(&0x30) || der.len() < 2 {
            return Err(PemError::Malformed {
                index,
                detail: "its content is not a DER certificate (an ASN.1 SEQUENCE)".into(),
            });
        }
        out.push(der);
    }
    if out.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(out)
}

/// The canonical bundle of `text`: its certificates re-encoded, one after the
/// other. `normalize(normalize(x)) == normalize(x)`.
pub fn normalize(text: &str) -> Result<String, PemError> {
    Ok(encode(&certificates(text)?))
}

/// PEM of `ders`: one `CERTIFICATE` block each, base64 in lines of 64.
pub fn encode(ders: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for der in ders {
        let b64 = encode_base64(der);
        let _ = writeln!(out, "{BEGIN}{CERTIFICATE}{DASHES}");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        let _ = writeln!(out, "{END}{CERTIFICATE}{DASHES}");
    }
    out
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict standard base64 (RFC 4648 with padding; whitespace was already
/// taken out with the line ends).
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err("it has no content".into());
    }
    if !bytes.len().is_multiple_of(4) {
        return Err("its base64 is cut short (not a multiple of 4 characters)".into());
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let last = bytes.len() / 4 - 1;
    for (q, quad) in bytes.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && q != last) {
            return Err("its base64 has padding in the middle".into());
        }
        let mut n = 0u32;
        for (i, c) in quad[..4 - pad].iter().enumerate() {
            let v = ALPHABET
                .iter()
                .position(|a| a == c)
                .ok_or_else(|| format!("its base64 holds {:?}", char::from(*c)))?;
            n |= (v as u32) << (18 - 6 * i);
        }
        let take = 3 - pad;
        // Bits below the last byte must be zero (a canonical encoding).
        if n & ((1 << (8 * (3 - take))) - 1) != 0 {
            return Err("its base64 is not canonical".into());
        }
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(n: usize) -> Vec<u8> {
        let mut d = vec![0x30, 0x82];
        d.extend((0..n).map(|i| (i * 7 % 251) as u8));
        d
    }

    /// Base64 round-trips every length (padding 0, 1 and 2).
    #[test]
    fn base64_round_trips() {
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let enc = encode_base64(&bytes);
            if n > 0 {
                assert_eq!(decode_base64(&enc).unwrap(), bytes, "length {n}");
            }
        }
        assert_eq!(encode_base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode_base64(b"fo"), "Zm8=");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert!(
            decode_base64("Zm9=").is_err(),
            "non-canonical trailing bits"
        );
        assert!(decode_base64("Zm=8").is_err());
        assert!(decode_base64("Zm8").is_err());
    }

    /// Comments, CRLF line ends and blank lines around the blocks do not reach
    /// the canonical form; the certificates do, in order.
    #[test]
    fn normalize_keeps_only_certificates() {
        let canonical = encode(&[der(100), der(3)]);
        let messy = format!(
            "# trust bundle\r\n\r\n{}",
            canonical
                .replace('\n', "\r\n")
                .replace("-----END", "\n-----END")
        );
        assert_eq!(normalize(&messy).unwrap(), canonical);
        assert_eq!(normalize(&canonical).unwrap(), canonical);
    }

    /// What is not a usable bundle gets a reason that says why.
    #[test]
    fn unusable_bundles_are_named() {
        assert_eq!(certificates(" \n"), Err(PemError::Empty));
        assert_eq!(certificates("hello"), Err(PemError::NoCertificate));
        let key = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            certificates(key),
            Err(PemError::NotCertificate { index: 1, .. })
        ));
        let cut = "-----BEGIN CERTIFICATE-----\nMAA=\n";
        assert_eq!(certificates(cut), Err(PemError::Unterminated { index: 1 }));
        let not_der = "-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            certificates(not_der),
            Err(PemError::Malformed { index: 1, .. })
        ));
    }
}
