//! Scenarios of the echo of the operator's own apply: it is recognised by its
//! resourceVersion without a decide pass, and nothing else is.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::api::{Sent, respond, term, with_events};
use super::checks::assert_apply;
use super::fixtures::{UID, fresh_consumer, next_version, shop_tempo, stored};
use super::run;
use crate::core::document::KEY_TEMPO_ENDPOINT;
use crate::reconcile::context::Ctx;
use crate::reconcile::router::is_echo;
use crate::runtime::metrics::{CONSUMER, ControllerLabel};

/// Consumer reconciles that ran the full pass.
fn reconciles(ctx: &Ctx) -> u64 {
    let l = ControllerLabel {
        controller: CONSUMER,
    };
    ctx.metrics().reconciles.get_or_create(&l).get()
}

/// Binds a fresh consumer; returns it as the API server stored it (the apply's
/// answer). `during` runs while the apply is in flight.
async fn bind(
    ctx: &Arc<Ctx>,
    api: &mut super::api::ApiServer,
    during: impl Fn(&ConfigMap),
) -> ConfigMap {
    let cm = fresh_consumer();
    let answered = std::sync::Mutex::new(None);
    let answer = with_events(|s: &Sent| {
        let after = stored(&cm, &s.body);
        during(&after);
        *answered.lock().unwrap() = Some(after.clone());
        respond(200, &serde_json::to_value(after).unwrap())
    });
    let (res, sent) = run(ctx, api, &cm, answer).await;
    assert_eq!(res.unwrap(), Action::await_change());
    assert_apply(&sent[0]);
    answered.into_inner().unwrap().expect("an apply")
}

/// The watch event of the version the apply answered with is dropped by the
/// router: no reconcile, no decide pass; a fan-out costs one reconcile per consumer.
#[tokio::test]
async fn echo_after_the_answer_is_not_reconciled() {
    let (ctx, mut api) = term(vec![fresh_consumer()]);
    let echoed = bind(&ctx, &mut api, |_| {}).await;
    assert!(is_echo(&ctx, &ObjectRef::from_obj(&echoed)));
    assert_eq!(ctx.metrics().echoes_skipped.get(), 1);
    assert_eq!(reconciles(&ctx), 1);
}

/// An echo that reached the router before the apply's answer is queued, and
/// the reconcile it queued stops at once: no request, no decide pass; its
/// relation is still marked for its status (which counts what consumers hold).
#[tokio::test]
async fn echo_before_the_answer_costs_no_decide() {
    let (ctx, mut api) = term(vec![fresh_consumer()]);
    let early = ctx.clone();
    let echoed = bind(&ctx, &mut api, move |after| {
        assert!(!is_echo(&early, &ObjectRef::from_obj(after)));
    })
    .await;
    ctx.dirty.lock().unwrap().clear();
    let (res, sent) = run(&ctx, &mut api, &echoed, |s| panic!("unexpected {s:#?}")).await;
    assert!(sent.is_empty(), "{sent:#?}");
    assert_eq!(res.unwrap(), Action::await_change());
    assert_eq!(ctx.metrics().echoes_skipped.get(), 1);
    assert_eq!(reconciles(&ctx), 1);
    // The relation's status is recomputed: it counts what the consumer now holds.
    let dirty = ctx.dirty.lock().unwrap();
    assert!(dirty.contains(&shop_tempo().unwrap()), "{dirty:?}");
}

/// A person's edit after the operator's apply (a new version) gets the full
/// pass and is put right; so does an edit whose event the router sees after
/// the store already holds the echo (the event's own version decides), and
/// the echo of a write queued also for another cause (a relation change).
#[tokio::test]
async fn anything_but_the_echo_gets_the_full_pass() {
    let (ctx, mut api) = term(vec![fresh_consumer()]);
    let echoed = bind(&ctx, &mut api, |_| {}).await;
    let mut edited = next_version(&echoed);
    edited
        .data
        .as_mut()
        .unwrap()
        .insert(KEY_TEMPO_ENDPOINT.into(), "edited by hand".into());
    assert!(!is_echo(&ctx, &ObjectRef::from_obj(&edited)));
    let ok = |s: &Sent| {
        respond(
            200,
            &serde_json::to_value(stored(&edited, &s.body)).unwrap(),
        )
    };
    let (res, sent) = run(&ctx, &mut api, &edited, with_events(ok)).await;
    assert_eq!(res.unwrap(), Action::await_change());
    let [apply] = sent.as_slice() else {
        panic!("{sent:#?}")
    };
    let body = assert_apply(apply);
    assert_ne!(body["data"][KEY_TEMPO_ENDPOINT], "edited by hand");
    assert_eq!(reconciles(&ctx), 2);

    // An older event than the store's version is judged by its own version.
    let mut older = ObjectRef::from_obj(&echoed);
    older.extra.resource_version = Some("1".into());
    assert!(!is_echo(&ctx, &older));

    // The early echo of a write that was also queued for another cause.
    let (ctx, mut api) = term(vec![fresh_consumer()]);
    let early = ctx.clone();
    let echoed = bind(&ctx, &mut api, move |after| {
        early.echoes.other(UID);
        assert!(!is_echo(&early, &ObjectRef::from_obj(after)));
    })
    .await;
    let (res, sent) = run(&ctx, &mut api, &echoed, |s| panic!("unexpected {s:#?}")).await;
    assert!(sent.is_empty(), "converged: {sent:#?}");
    assert_eq!(res.unwrap(), Action::await_change());
    assert_eq!(reconciles(&ctx), 2, "a full pass, not an echo");
    assert_eq!(ctx.metrics().echoes_skipped.get(), 0);
}
