//! Kubernetes Events (`events.k8s.io/v1`) about consumers and relations, as
//! `kubectl describe` shows them.
//!
//! The operator emits an Event only when a consumer's or relation's state changes,
//! so it needs no client-side deduplication. Events are named from a shortened
//! object name, so an object whose name is near the 253-character limit still
//! gets its Events.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
pub use kube::runtime::events::{Event as KubeEvent, EventType};

/// Publishes Events as one reporting controller instance.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    controller: String,
    instance: String,
}

impl Recorder {
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Self {
        Recorder {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
        }
    }

    /// Creates one Event about `regarding`.
    pub async fn publish(
        &self,
        ev: &KubeEvent,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = regarding.name.as_deref().unwrap_or(&self.controller);
        // `<name>.<time>` as kube-rs and client-go name Events, with the name cut
        // short enough that the result stays a valid object name.
        let mut cut = name.len().min(200);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let prefix = name[..cut].trim_end_matches(['.', '-']);
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }
}
