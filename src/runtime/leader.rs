//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go does it:
//! the holder renews every `renew_interval`; a standby takes over once it has seen
//! the same record unchanged for `lease_duration` (measured on its own clock, so
//! clock skew between replicas does not matter). A leader that cannot renew within
//! `lease_duration` steps down before anyone else can take over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// Settings of the elector.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

/// Holds or waits for the Lease, publishing leadership on a watch channel.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The last record seen (holder, renew time, resourceVersion) and when.
    observed: Option<(String, Instant)>,
    /// When this replica last renewed successfully.
    last_renew: Option<Instant>,
}

impl Elector {
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            last_renew: None,
        }
    }

    fn spec(&self, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: returns whether this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let pp = PostParams::default();
        let current = match self.api.get_opt(&self.cfg.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(0, None)),
                };
                return match self.api.create(&pp, &lease).await {
                    Ok(_) => {
                        self.last_renew = Some(Instant::now());
                        Ok(true)
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Some(l) => l,
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = format!(
            "{holder}|{:?}|{}",
            spec.renew_time,
            current
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default()
        );
        let now = Instant::now();
        match &self.observed {
            Some((r, _)) if *r == record => {}
            _ => self.observed = Some((record, now)),
        }
        let held_by_me = holder == self.cfg.identity;
        let expired = holder.is_empty()
            || self
                .observed
                .as_ref()
                .is_some_and(|(_, at)| now.duration_since(*at) >= self.cfg.lease_duration);
        if !held_by_me && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!held_by_me);
        let acquire = if held_by_me { spec.acquire_time } else { None };
        let mut next = current.clone();
        next.spec = Some(self.spec(transitions, acquire));
        match self.api.replace(&self.cfg.name, &pp, &next).await {
            Ok(_) => {
                self.last_renew = Some(Instant::now());
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up so a standby can take over at once.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let mine = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.cfg.identity.as_str());
        if !mine {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.acquire_time = None;
            spec.renew_time = None;
            spec.lease_duration_seconds = Some(1);
        }
        self.api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await?;
        self.last_renew = None;
        Ok(())
    }

    /// Runs rounds forever, publishing leadership on `tx`. A leader whose last
    /// successful renewal is older than the lease duration steps down.
    pub async fn run(mut self, tx: watch::Sender<bool>) {
        loop {
            // A round that hangs (an API server that stopped answering) counts as
            // failed after one renew interval, so a cut-off leader steps down in time.
            let round =
                tokio::time::timeout(self.cfg.renew_interval, self.try_acquire_or_renew()).await;
            let leading = match round.unwrap_or_else(|_| {
                Err(kube::Error::Service(
                    "leader election round timed out".into(),
                ))
            }) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.cfg.name, "leader election round failed");
                    // Keep leading only while the last renewal is still valid.
                    *tx.borrow()
                        && self.last_renew.is_some_and(|t| {
                            t.elapsed() + self.cfg.renew_interval < self.cfg.lease_duration
                        })
                }
            };
            if leading != *tx.borrow() {
                if leading {
                    tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.name, "became leader");
                } else {
                    tracing::warn!(identity = %self.cfg.identity, lease = %self.cfg.name, "lost leadership");
                }
                let _ = tx.send(leading);
            }
            tokio::time::sleep(self.cfg.renew_interval).await;
        }
    }
}
