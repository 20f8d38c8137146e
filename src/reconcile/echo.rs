//! The term's memory of its own writes: what it last applied to each consumer,
//! from which version, and the version the API server answered with; and why
//! each consumer was queued since its last reconcile.
//!
//! A watch event that carries exactly the resourceVersion of the operator's
//! last apply to that consumer is the echo of that apply: the consumer holds
//! what the operator just decided, so nothing is decided again (an O(1) look-up,
//! before any dereference). Any other version (a person's edit, a write of
//! someone else) and any other cause (the relation, its Service or the namespace
//! changed; a re-list) still gets the full pass.
//!
//! The echo can reach the router before the apply's answer reaches the writer.
//! The router then queues it like any other event and remembers its version;
//! the reconcile that follows skips only when every cause it was queued for is
//! that echo.

use std::collections::HashMap;
use std::sync::Mutex;

/// Most causes remembered per consumer; beyond that, a full pass is due anyway.
const MAX_CAUSES: usize = 4;

/// Why a consumer was queued.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cause {
    /// A watch event of the consumer at this resourceVersion.
    Event(String),
    /// Anything else: the relation, a Service, the namespace, a re-list.
    Other,
}

/// The operator's last successful apply to a consumer.
#[derive(Debug)]
struct Sent {
    /// The consumer's resourceVersion the apply was decided on.
    before: String,
    /// A hash of the body.
    fingerprint: u64,
    /// The resourceVersion of the API server's answer.
    after: Option<String>,
}

#[derive(Debug, Default)]
struct Entry {
    sent: Option<Sent>,
    causes: Vec<Cause>,
}

/// Per consumer uid: the last write and the causes it was queued for.
#[derive(Debug, Default)]
pub struct Echoes {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Echoes {
    fn with<T>(&self, uid: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut m = self.entries.lock().ok()?;
        Some(f(m.entry(uid.to_string()).or_default()))
    }

    /// Whether the body of `fingerprint` was already applied from version `before`
    /// (a reconcile on a cache that has not seen that apply yet).
    pub fn already_sent(&self, uid: &str, before: &str, fingerprint: u64) -> bool {
        self.entries.lock().is_ok_and(|m| {
            m.get(uid)
                .and_then(|e| e.sent.as_ref())
                .is_some_and(|s| s.before == before && s.fingerprint == fingerprint)
        })
    }

    /// Records a successful apply and the version the API server answered with.
    pub fn sent(&self, uid: &str, before: String, fingerprint: u64, after: Option<String>) {
        self.with(uid, |e| {
            e.sent = Some(Sent {
                before,
                fingerprint,
                after,
            })
        });
    }

    /// The router, on a watch event of consumer `uid` at `version`: `true` when it
    /// is the echo of the last apply (drop it); otherwise the event is remembered
    /// as a cause of the reconcile it queues.
    pub fn event(&self, uid: &str, version: &str) -> bool {
        self.with(uid, |e| {
            let echo = e
                .sent
                .as_ref()
                .and_then(|s| s.after.as_deref())
                .is_some_and(|a| a == version);
            if !echo {
                push(&mut e.causes, Cause::Event(version.to_string()));
            }
            echo
        })
        .unwrap_or(false)
    }

    /// The router queues consumer `uid` for another cause than its own change.
    pub fn other(&self, uid: &str) {
        self.with(uid, |e| push(&mut e.causes, Cause::Other));
    }

    /// At the start of a reconcile of consumer `uid` at `version`: `true` when
    /// the only causes it was queued for are the echo of the last apply (which
    /// reached the router before the apply's answer). Forgets the causes either way.
    pub fn take_echo(&self, uid: &str, version: &str) -> bool {
        self.with(uid, |e| {
            let causes = std::mem::take(&mut e.causes);
            let after = e.sent.as_ref().and_then(|s| s.after.as_deref());
            after == Some(version)
                && !causes.is_empty()
                && causes
                    .iter()
                    .all(|c| *c == Cause::Event(version.to_string()))
        })
        .unwrap_or(false)
    }

    /// Forgets consumer `uid` (it is gone).
    pub fn forget(&self, uid: &str) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(uid);
        }
    }
}

fn push(causes: &mut Vec<Cause>, c: Cause) {
    if causes.len() >= MAX_CAUSES {
        causes.clear();
        causes.push(Cause::Other);
    } else if !causes.contains(&c) {
        causes.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watch event that carries the version the apply answered with is the
    /// echo; any other version is not, and is remembered as a cause.
    #[test]
    fn only_the_answered_version_is_the_echo() {
        let e = Echoes::default();
        e.sent("u", "1".into(), 7, Some("2".into()));
        assert!(e.event("u", "2"));
        assert!(!e.event("u", "3"));
        assert!(!e.take_echo("u", "3"));
    }

    /// Before any write, no event is an echo.
    #[test]
    fn nothing_is_an_echo_before_a_write() {
        let e = Echoes::default();
        assert!(!e.event("u", "1"));
        assert!(!e.take_echo("u", "1"));
    }

    /// An echo that reached the router before the apply's answer is recognised
    /// by the reconcile it queued, but only when nothing else queued it: a
    /// person's edit meanwhile, or another cause, gets the full pass.
    #[test]
    fn early_echo_skips_only_when_it_is_the_only_cause() {
        let e = Echoes::default();
        assert!(!e.event("u", "2"));
        e.sent("u", "1".into(), 7, Some("2".into()));
        assert!(e.take_echo("u", "2"));

        assert!(!e.event("u", "3"));
        assert!(!e.event("u", "4"));
        e.sent("u", "3".into(), 8, Some("4".into()));
        assert!(!e.take_echo("u", "4"));

        assert!(!e.event("u", "5"));
        e.other("u");
        e.sent("u", "4".into(), 9, Some("5".into()));
        assert!(!e.take_echo("u", "5"));
    }

    /// A reconcile queued for no remembered cause (a requeue) is a full pass,
    /// and the causes are forgotten by the reconcile that read them.
    #[test]
    fn causes_are_taken_once() {
        let e = Echoes::default();
        e.sent("u", "1".into(), 7, Some("2".into()));
        assert!(!e.take_echo("u", "2"));
        assert!(!e.event("u", "3"));
        assert!(!e.take_echo("u", "3"));
        assert!(!e.take_echo("u", "3"));
    }

    /// A body already applied from the same version is not sent again; a new
    /// version or another body is.
    #[test]
    fn already_sent_is_by_version_and_body() {
        let e = Echoes::default();
        assert!(!e.already_sent("u", "1", 7));
        e.sent("u", "1".into(), 7, Some("2".into()));
        assert!(e.already_sent("u", "1", 7));
        assert!(!e.already_sent("u", "2", 7));
        assert!(!e.already_sent("u", "1", 8));
        e.forget("u");
        assert!(!e.already_sent("u", "1", 7));
    }
}
