//! Child processes that cannot outlive the test process.
//!
//! Rust runs no static destructors, and a test binary may also die by
//! `panic = "abort"` or SIGKILL, so nothing in-process can be relied on to stop
//! the control plane. Instead every child is started through
//! [`SUPERVISE_SCRIPT`]: a `bash -c` wrapper that forks a watchdog subshell and
//! then `exec`s the real binary (so the [`Child`] handle is the binary itself,
//! with its real pid and exit status). The watchdog reads the binary's
//! `/proc/<pid>/stat` every 0.5 s and SIGKILLs it as soon as its parent is no
//! longer the test process (a dead parent's children are re-parented at once,
//! so this also works while the dead test process is still a zombie). A
//! [`spawn_janitor`] process removes the control plane's temporary directories
//! the same way once the test process is gone.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `bash -c SUPERVISE_SCRIPT supervise <watched-pid> <program> [args...]`:
/// runs `<program>` in place of the shell, next to a watchdog that SIGKILLs it
/// once its parent is no longer `<watched-pid>`. The watchdog exits by itself
/// when the program ends (zombie, gone, or its pid reused: start time differs).
pub const SUPERVISE_SCRIPT: &str = r#"
watched=$1; shift
target=$$
(
  trap '' INT TERM HUP
  read -r st 2>/dev/null < "/proc/$target/stat" || exit 0
  st=${st##*) }; set -- $st; started=${20}
  while sleep 0.5; do
    read -r st 2>/dev/null < "/proc/$target/stat" || exit 0
    st=${st##*) }; set -- $st
    if [ "$1" = Z ] || [ "${20}" != "$started" ]; then exit 0; fi
    if [ "$2" != "$watched" ]; then kill -KILL "$target" 2>/dev/null; exit 0; fi
  done
) </dev/null >/dev/null 2>&1 &
exec "$@"
"#;

/// `bash -c JANITOR_SCRIPT janitor <watched-pid> <path>...`: once this
/// process's parent is no longer `<watched-pid>`, waits a second (for the
/// watchdogs to kill the processes writing there) and removes the paths.
const JANITOR_SCRIPT: &str = r#"
watched=$1; shift
paths=("$@")
trap '' INT TERM HUP
while sleep 0.5; do
  read -r _ _ _ ppid _ < "/proc/$$/stat"
  [ "$ppid" = "$watched" ] || break
done
sleep 1
for _ in $(seq 1 20); do
  rm -rf -- "${paths[@]}" 2>/dev/null
  left=0
  for p in "${paths[@]}"; do [ -e "$p" ] && left=1; done
  [ "$left" = 0 ] && exit 0
  sleep 0.5
done
"#;

/// The command that runs `cmd` under the watchdog of [`SUPERVISE_SCRIPT`],
/// watching `watched_pid` (normally [`std::process::id`]). Program, arguments,
/// environment changes and working directory are copied from `cmd`; stdio is
/// left to the caller. The child gets its own process group, so a Ctrl-C in
/// the terminal reaches only the test process (the watchdogs do the rest).
pub fn supervised_command(cmd: &Command, watched_pid: u32) -> Command {
    let mut wrapper = Command::new("bash");
    wrapper
        .arg("-c")
        .arg(SUPERVISE_SCRIPT)
        .arg("supervise")
        .arg(watched_pid.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapper.env(key, value),
            None => wrapper.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapper.current_dir(dir);
    }
    wrapper.process_group(0);
    wrapper
}

/// Spawns `cmd` supervised by the test process, stdin from /dev/null and
/// stdout+stderr appended to `log`. The returned [`Child`] is the program
/// itself (not a shell), once the wrapper's `exec` has happened.
pub fn spawn_supervised(cmd: &Command, log: &Path) -> Child {
    let program = cmd.get_program().to_owned();
    let out = append_file(log);
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot clone log file handle: {e}"));
    supervised_command(cmd, std::process::id())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {program:?} through bash: {e}"))
}

/// Starts the janitor that removes `paths` once the test process is gone.
pub fn spawn_janitor(paths: &[&Path]) -> Child {
    Command::new("bash")
        .arg("-c")
        .arg(JANITOR_SCRIPT)
        .arg("janitor")
        .arg(std::process::id().to_string())
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn the temp-dir janitor: {e}"))
}

/// SIGKILLs `child` (if still running) and reaps it.
pub fn kill_and_wait(child: &mut Child) -> ExitStatus {
    let _ = child.kill();
    child
        .wait()
        .unwrap_or_else(|e| panic!("cannot wait for pid {}: {e}", child.id()))
}

/// Sends SIGTERM to `pid` with the `kill` command.
pub fn sigterm(pid: u32) {
    signal(pid, "TERM");
}

/// Sends SIG`name` (`INT`, `TERM`, ...) to `pid` with the `kill` command.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("cannot run `kill -{name} {pid}`: {e}"));
    assert!(status.success(), "`kill -{name} {pid}` failed: {status}");
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A loopback TCP port that was free a moment ago. Picked at random below the
/// kernel's ephemeral range (so outgoing connections, which take ephemeral
/// ports, cannot hold it), then checked by binding it; falls back to a
/// kernel-chosen port. Another process may still take it before it is used:
/// the control plane retries its start on "address already in use".
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if ephemeral_low > 12_000 {
        for _ in 0..100 {
            let port = rand::random_range(10_000..ephemeral_low);
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a free loopback port: {e}"))
}

/// The last `lines` lines of a log file (or why it could not be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Appends a marker line to a log file (e.g. before a restart).
pub fn log_marker(path: &Path, text: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "\n===== test harness: {text} =====");
    }
}

/// Path of an executable file, or a panic naming the command that builds it.
pub fn require_executable(path: PathBuf, build_hint: &str) -> PathBuf {
    let ok = std::fs::metadata(&path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    assert!(
        ok,
        "required binary {} is missing or not executable; {build_hint}",
        path.display()
    );
    path
}

/// A minimal blocking HTTP/1.0 GET on a plain-HTTP address: (status, body).
pub fn http_get_blocking(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// Opens (creating) a file for appending, for a child's stdout/stderr.
pub fn append_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

/// Runs `cmd` (`what` names it in messages); panics with its output unless it
/// succeeds; returns its stdout.
pub fn run_ok(mut cmd: Command, what: &str) -> String {
    let started = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    println!("{what}: ok in {:.1?}", started.elapsed());
    stdout
}
