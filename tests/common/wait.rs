//! Polling helpers with clear panic messages.

use std::fmt::Display;
use std::future::Future;
use std::panic::Location;
use std::time::{Duration, Instant};

/// Pause between two attempts of the `wait_*` helpers.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Polls `condition` every 200 ms until it returns `true`; panics after
/// `timeout`, naming the caller's source location.
///
/// ```ignore
/// wait_for(Duration::from_secs(30), || async { api.get_opt("x").await.unwrap().is_none() }).await;
/// ```
#[track_caller]
pub fn wait_for<F, Fut>(timeout: Duration, condition: F) -> impl Future<Output = ()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let caller = Location::caller();
    async move { wait_for_named(format!("the condition at {caller}"), timeout, condition).await }
}

/// [`wait_for`] with a description of what is awaited, for the panic message.
pub async fn wait_for_named<F, Fut>(what: impl Display, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_some_named(what, timeout, || {
        let attempt = condition();
        async move { attempt.await.then_some(()) }
    })
    .await
}

/// Polls `probe` until it returns `Some(value)` and returns the value; panics
/// after `timeout`, naming the caller's source location.
#[track_caller]
pub fn wait_for_some<T, F, Fut>(timeout: Duration, probe: F) -> impl Future<Output = T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let caller = Location::caller();
    async move { wait_for_some_named(format!("the probe at {caller}"), timeout, probe).await }
}

/// [`wait_for_some`] with a description of what is awaited.
pub async fn wait_for_some_named<T, F, Fut>(
    what: impl Display,
    timeout: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // A hanging attempt must not hang the test: it gets what is left of
        // the timeout (at least one second).
        let left = timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(1));
        match tokio::time::timeout(left, probe()).await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(_) => panic!(
                "timed out after {:.1?} waiting for {what}: attempt {attempts} did not finish",
                start.elapsed()
            ),
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {:.1?} (limit {timeout:?}, {attempts} attempts) waiting for {what}",
                start.elapsed()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `api.get_opt(name)` until the object exists and `pred` holds, and
/// returns it; panics after `timeout` naming the kind, the object and `what`.
pub async fn wait_object<K>(
    api: &kube::Api<K>,
    name: &str,
    what: impl Display,
    timeout: Duration,
    pred: impl Fn(&K) -> bool,
) -> K
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pred = &pred;
    wait_for_some_named(format!("{} {name}: {what}", K::kind(&())), timeout, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().filter(|o| pred(o)) }
    })
    .await
}

/// Waits until the operator's `/readyz` answers 200.
pub async fn operator_ready(op: &super::Operator, timeout: Duration) {
    wait_for_some_named("the operator's /readyz", timeout, || async {
        matches!(op.http_get("/readyz").await, Ok((200, _))).then_some(())
    })
    .await
}
