//! Scenarios of the consumer reconcile against a mocked API server.
//!
//! Each one sets the warm caches, runs [`reconcile`] (and, where the controller
//! would, [`error_policy`]) while a `tower_test` mock behind `kube::Client`
//! answers as the API server does, with its own Status bodies, and then checks
//! every request the operator sent and what the reconcile came to: its result,
//! the requeue, the metrics and the term's memory of failed writes. They show a
//! behaviour of the reconcile in milliseconds; the real-control-plane suites
//! under `tests/` stay the proof that the API server answers so.

mod api;
mod checks;
mod echo;
mod fixtures;
mod term;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::client::Body;
use kube::runtime::controller::Action;

use crate::core::patch;
use crate::core::reason::Reason;
use crate::error::Error;
use crate::reconcile::consumer::{error_policy, key, reconcile};
use crate::reconcile::context::Ctx;
use api::{
    Answer, ApiServer, Sent, etcd_timeout, forbidden, namespace_gone, respond, serve, term,
    throttled_plain, throttled_status, too_long, uid_mismatch, uid_replaced, with_events,
};
use checks::{
    Counts, assert_apply, assert_apply_then_event, assert_bind_body, counts, failed,
    recorded_failure, requeue_after,
};
use fixtures::{fresh_consumer, next_version, shop_tempo, stored};

/// Runs one reconcile of `cm` against the mock.
async fn run(
    ctx: &Arc<Ctx>,
    api: &mut ApiServer,
    cm: &ConfigMap,
    answer: impl FnMut(&Sent) -> Response<Body>,
) -> (Result<Action, Error>, Vec<Sent>) {
    serve(api, reconcile(Arc::new(cm.clone()), ctx.clone()), answer).await
}

/// Reconciles a fresh consumer in a new term while the API server answers the
/// writes with `answer` (and accepts Events); returns the term's context, the
/// consumer, the reconcile's result and the requests sent.
async fn run_fresh(
    answer: impl FnMut(&Sent) -> Response<Body>,
) -> (Arc<Ctx>, ConfigMap, Result<Action, Error>, Vec<Sent>) {
    let cm = fresh_consumer();
    let (ctx, mut api) = term(vec![cm.clone()]);
    let (res, sent) = run(&ctx, &mut api, &cm, with_events(answer)).await;
    (ctx, cm, res, sent)
}

/// Reconciles a fresh consumer while the API server answers with `answer`;
/// checks that its apply was the one request (no Event, no retry).
async fn one_apply(case: &str, answer: Answer) -> (Arc<Ctx>, ConfigMap, Result<Action, Error>) {
    let (ctx, cm, res, sent) = run_fresh(|_| answer()).await;
    let [apply] = sent.as_slice() else {
        panic!("{case}: {sent:#?}")
    };
    assert_apply(apply);
    (ctx, cm, res)
}

/// Checks a failed write that is recorded for the relation's status: the
/// reconcile fails for `reason`, the write for `write_reason`, is retried after
/// 1 s, counted as one failure, and recorded against `shop/tempo`. Returns the
/// recorded message.
fn assert_recorded_failure(
    ctx: &Arc<Ctx>,
    cm: &ConfigMap,
    res: Result<Action, Error>,
    reason: Reason,
    write_reason: Reason,
) -> String {
    let (err, wait) = policy(ctx, cm, res);
    assert_eq!((err.reason(), err.write_reason()), (reason, write_reason));
    assert_eq!(wait, Duration::from_secs(1));
    assert_eq!(counts(ctx), failed(write_reason, 0));
    let (recorded, relation, message) = recorded_failure(ctx).expect("a recorded failure");
    assert_eq!((recorded, relation), (write_reason, shop_tempo()));
    message
}

/// A failed reconcile's error, and the requeue the error policy chooses for it.
fn policy(ctx: &Arc<Ctx>, cm: &ConfigMap, res: Result<Action, Error>) -> (Error, Duration) {
    let err = res.expect_err("the reconcile fails");
    let action = error_policy(Arc::new(cm.clone()), &err, ctx.clone());
    (err, requeue_after(&action).expect("a requeue"))
}

// ---- scenarios ----

/// A consumer that already holds exactly what the operator wants gets no
/// request at all: the steady state costs the API server nothing.
#[tokio::test]
async fn converged_consumer_gets_no_request() {
    let (ctx, _) = term(vec![]);
    let fresh = fresh_consumer();
    let (found, decision) = ctx.decide(&fresh, None);
    let body = patch::patch(&fresh, &found.ownership, &decision)
        .unwrap()
        .unwrap();
    let converged = stored(&fresh, &body.value());

    let (ctx, mut api) = term(vec![converged.clone()]);
    let (res, sent) = run(&ctx, &mut api, &converged, |s| panic!("unexpected {s:#?}")).await;
    assert!(sent.is_empty(), "{sent:#?}");
    assert_eq!(res.unwrap(), Action::await_change());
    let skipped = Counts {
        writes_skipped: 1,
        ..Default::default()
    };
    assert_eq!(counts(&ctx), skipped);
    assert_eq!(recorded_failure(&ctx), None);
}

/// A fresh consumer of a relation with an explicit endpoint is bound by one
/// forced server-side apply (uid precondition, the document keys and the
/// state annotations, nothing of the consumer's) and told so by one Event.
#[tokio::test]
async fn fresh_consumer_is_bound_by_one_apply() {
    let cm = fresh_consumer();
    let (ctx, mut api) = term(vec![cm.clone()]);
    let answer =
        with_events(|s| respond(200, &serde_json::to_value(stored(&cm, &s.body)).unwrap()));
    let (res, sent) = run(&ctx, &mut api, &cm, answer).await;
    let (body, note) = assert_apply_then_event(&sent, "Normal", Reason::Bound, "Bind");
    assert_bind_body(body);
    assert!(
        note.starts_with("bound to TracingRelation shop/tempo; receivers "),
        "{note}"
    );
    assert_eq!(res.unwrap(), Action::await_change());
    assert_eq!(
        counts(&ctx),
        Counts {
            writes_sent: 1,
            ..Default::default()
        }
    );
    assert_eq!(recorded_failure(&ctx), None);
}

/// A reconcile on a cache that has not yet seen this replica's last write
/// (the consumer still at the version the write started from) sends nothing
/// and tells nothing again: the write's echo is on the way.
#[tokio::test]
async fn stale_cache_gets_no_second_write() {
    let cm = fresh_consumer();
    let (ctx, mut api) = term(vec![cm.clone()]);
    let ok = |s: &Sent| respond(200, &serde_json::to_value(stored(&cm, &s.body)).unwrap());
    let (res, sent) = run(&ctx, &mut api, &cm, with_events(ok)).await;
    assert_eq!((res.unwrap(), sent.len()), (Action::await_change(), 2));

    let (res, sent) = run(&ctx, &mut api, &cm, |s| panic!("unexpected {s:#?}")).await;
    assert!(sent.is_empty(), "{sent:#?}");
    assert_eq!(res.unwrap(), Action::await_change());
    let once = Counts {
        writes_sent: 1,
        writes_skipped: 1,
        ..Default::default()
    };
    assert_eq!(counts(&ctx), once);
}

/// A consumer deleted (or replaced by a new one of its name, or its namespace
/// gone) before the write is nothing to do: the uid-preconditioned apply
/// fails, and the reconcile is Ok, with no failure, no Event, no retry.
#[tokio::test]
async fn consumer_gone_before_the_write_is_nothing_to_do() {
    let cases: [(&str, Answer); 3] = [
        ("404 namespace gone", namespace_gone),
        ("409 uid mismatch, no causes", uid_mismatch),
        ("422 metadata.uid immutable", uid_replaced),
    ];
    for (case, answer) in cases {
        let (ctx, cm, res) = one_apply(case, answer).await;
        assert_eq!(res.unwrap(), Action::await_change(), "{case}");
        assert_eq!(counts(&ctx), Counts::default(), "{case}");
        assert_eq!(recorded_failure(&ctx), None, "{case}");
        assert_eq!(ctx.backoff.failures(&key(&cm)), 0, "{case}");
    }
}

/// A document that would make the ConfigMap too large (422 FieldValueTooLong)
/// is a failure of its own reason: recorded for the relation's status, counted,
/// and told by a Warning Event; retried with backoff.
#[tokio::test]
async fn too_large_consumer_is_a_warning_and_a_recorded_failure() {
    let (ctx, cm, res, sent) = run_fresh(|_| too_long()).await;
    let (body, note) = assert_apply_then_event(&sent, "Warning", Reason::ConsumerTooLarge, "Write");
    assert_bind_body(body);
    assert!(
        note.contains("Too long: may not be more than 1048576 bytes"),
        "{note}"
    );
    let message =
        assert_recorded_failure(&ctx, &cm, res, Reason::ApiError, Reason::ConsumerTooLarge);
    assert!(
        message.starts_with("the operator cannot write this ConfigMap: "),
        "{message}"
    );
}

/// A throttled write (429, as APF's plain text or as a Status) is retried
/// within 0.5-2.5 s, is no Warning Event and no recorded failure: throttling is
/// not the consumer's fault.
#[tokio::test]
async fn throttled_write_is_retried_soon_without_a_warning() {
    let cases: [(&str, Answer); 2] = [
        ("APF plain text", throttled_plain),
        ("Status", throttled_status),
    ];
    for (case, answer) in cases {
        let (ctx, cm, res) = one_apply(case, answer).await;
        let (err, wait) = policy(&ctx, &cm, res);
        assert_eq!(err.reason(), Reason::Throttled, "{case}");
        let soon = Duration::from_millis(500)..=Duration::from_millis(2500);
        assert!(soon.contains(&wait), "{case}: {wait:?}");
        assert_eq!(counts(&ctx), Counts::default(), "{case}");
        assert!(recorded_failure(&ctx).is_none(), "{case}");
    }
}

/// A write the operator's RBAC refuses (403) fails with reason Forbidden and is
/// recorded and told (Warning Event) as WriteForbidden, pointing at the RBAC.
#[tokio::test]
async fn forbidden_write_is_recorded_as_write_forbidden() {
    let (ctx, cm, res, sent) = run_fresh(|_| forbidden()).await;
    let (_, note) = assert_apply_then_event(&sent, "Warning", Reason::WriteForbidden, "Write");
    assert!(note.contains("grant it in the operator's RBAC"), "{note}");
    assert_recorded_failure(&ctx, &cm, res, Reason::Forbidden, Reason::WriteForbidden);
}

/// After a failure, a reconcile of the same unchanged consumer (same
/// resourceVersion) sends nothing and waits out the rest of the backoff; a new
/// version is tried at once, and its success forgets the failure.
#[tokio::test]
async fn backoff_holds_an_unchanged_consumer() {
    let cm = fresh_consumer();
    let (ctx, mut api) = term(vec![cm.clone()]);
    let (res, _) = run(&ctx, &mut api, &cm, with_events(|_| forbidden())).await;
    let (_, wait) = policy(&ctx, &cm, res);
    let after_failure = counts(&ctx);

    // Step 1: the same version again: no request, a requeue of what is left.
    let (res, sent) = run(&ctx, &mut api, &cm, |s| panic!("unexpected {s:#?}")).await;
    assert!(sent.is_empty(), "{sent:#?}");
    let left = requeue_after(&res.unwrap()).expect("a requeue");
    assert!(
        left <= wait && left > wait - Duration::from_millis(200),
        "{left:?} of {wait:?}"
    );
    assert_eq!(counts(&ctx), after_failure);

    // Step 2: a new version: written at once; the failure is forgotten.
    let changed = next_version(&cm);
    let ok = |s: &Sent| {
        respond(
            200,
            &serde_json::to_value(stored(&changed, &s.body)).unwrap(),
        )
    };
    let (res, sent) = run(&ctx, &mut api, &changed, with_events(ok)).await;
    assert_apply(&sent[0]);
    assert_eq!(res.unwrap(), Action::await_change());
    assert_eq!(ctx.backoff.failures(&key(&cm)), 0);
    assert_eq!(recorded_failure(&ctx), None);
}

/// Every failed write of a reason is told once by a Warning Event. A throttled
/// write is not told, and must not count as the telling: a real failure of the
/// same reason that follows it (a 500) still gets its Warning.
#[tokio::test]
async fn throttle_does_not_swallow_the_next_warning() {
    let cm = fresh_consumer();
    let (ctx, mut api) = term(vec![cm.clone()]);
    let (res, sent) = run(&ctx, &mut api, &cm, with_events(|_| throttled_plain())).await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    policy(&ctx, &cm, res);

    let changed = next_version(&cm);
    let (res, sent) = run(&ctx, &mut api, &changed, with_events(|_| etcd_timeout())).await;
    let (err, _) = policy(&ctx, &changed, res);
    assert_eq!(err.write_reason(), Reason::WriteFailed);
    let (_, note) = assert_apply_then_event(&sent, "Warning", Reason::WriteFailed, "Write");
    assert!(note.contains("etcdserver: request timed out"), "{note}");
}
