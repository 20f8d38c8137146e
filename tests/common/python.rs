//! Running a Python script (PyYAML, the reference the seed's documents come
//! from) with input on stdin.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// `$PYTHON` when set and not empty, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// Runs `script` with [`python`], `input` on its stdin; returns its stdout.
/// Panics when it cannot run, when it exits 17 (the scripts' code for "PyYAML
/// cannot be imported": these tests never skip) or fails otherwise.
pub fn run_pyyaml_script(script: &str, input: Vec<u8>) -> Vec<u8> {
    let py = python();
    let mut child = Command::new(&py)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {py:?} (set PYTHON to a python that has PyYAML): {e}")
        });
    // Write from another thread so neither pipe can fill up and deadlock.
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait for python");
    writer
        .join()
        .expect("writer thread")
        .expect("write to python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(17),
        "PyYAML is not importable by {py:?}: {stderr}\n\
         install it (`pip install pyyaml`) or set PYTHON to a python that has it \
         (hack/test.sh builds such a venv); this test never skips"
    );
    assert!(
        out.status.success(),
        "{py} failed ({}): {stderr}",
        out.status
    );
    out.stdout
}
