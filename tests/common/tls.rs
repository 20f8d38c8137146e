//! The control plane's TLS: a CA of its own signs the API server's serving
//! certificate (`hack/tls-certs.sh`, which `hack/local-up.sh` uses too), and
//! every client and kubeconfig trusts that CA instead of skipping verification.

use std::path::Path;
use std::process::Command;

/// Writes `ca.crt`, `ca.der`, `serving.crt` and `serving.key` into `dir`.
pub fn write_certs(dir: &Path) {
    let out = Command::new(super::repo_dir().join("hack/tls-certs.sh"))
        .arg(dir)
        .output()
        .expect("cannot run hack/tls-certs.sh");
    assert!(
        out.status.success(),
        "hack/tls-certs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Standard base64 with padding (kubeconfig `*-data` fields).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
