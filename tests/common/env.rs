//! The environment most test files share: a control plane with the CRDs and
//! one operator on it, ready; and switching the consumer admission policy off
//! so that declarations it would refuse reach the operator.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams};
use tokio::sync::OnceCell;

use super::fixtures::dry_run_create;
use super::wait::{operator_ready, wait_for_some_named};
use super::{ControlPlane, Operator};

/// Name of the shipped binding of the consumer admission policy
/// (`crds/validating-admission-policy.yaml`).
pub const POLICY_BINDING: &str = "tracing-relation-consumers.tracing.relations.dev";

/// A control plane (usually [`ControlPlane::shared`]) and the one operator of
/// the test file on it.
pub struct OperatorEnv {
    pub cp: &'static ControlPlane,
    pub op: Operator,
}

impl OperatorEnv {
    /// Spawns the operator on `cp` with the harness's defaults and waits (up to
    /// `timeout`) until its `/readyz` answers 200.
    pub async fn start(cp: &'static ControlPlane, timeout: Duration) -> OperatorEnv {
        let op = cp.operator();
        operator_ready(&op, timeout).await;
        OperatorEnv { cp, op }
    }
}

static SHARED: OnceCell<OperatorEnv> = OnceCell::const_new();

/// The test binary's one operator, on [`ControlPlane::shared`] with `crds/`
/// applied: on first use, `prepare` runs (say, to change the admission policy)
/// and then the operator is started and waited for (up to `timeout`). Later
/// calls return the same environment and do not run `prepare`.
pub async fn shared_operator<F>(
    timeout: Duration,
    prepare: impl FnOnce(&'static ControlPlane) -> F,
) -> &'static OperatorEnv
where
    F: Future<Output = ()>,
{
    SHARED
        .get_or_init(|| async {
            let cp = ControlPlane::shared();
            cp.apply_crds().await;
            prepare(cp).await;
            OperatorEnv::start(cp, timeout).await
        })
        .await
}

/// Deletes the consumer policy's binding and waits (up to `timeout`) until the
/// API server admits `probe`, a consumer the policy refuses (a dry-run create
/// in namespace `default`).
pub async fn unbind_consumer_policy(client: &kube::Client, probe: &ConfigMap, timeout: Duration) {
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(POLICY_BINDING, &DeleteParams::default())
        .await
        .expect("delete the consumer policy's binding");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    wait_for_some_named(
        "the consumer policy to stop being enforced",
        timeout,
        || {
            let api = api.clone();
            async move { dry_run_create(&api, probe).await.ok() }
        },
    )
    .await;
}
