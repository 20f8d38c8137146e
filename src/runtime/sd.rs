//! (`--scrape-jobs`) What each relation publishes of its consumers' scrape
//! jobs, kept in memory for the HTTP service-discovery endpoint
//! (`/sd/<namespace>/<relation>`, Prometheus `http_sd_configs`). The leader
//! fills it as it publishes; a replica that has not published a relation (a
//! standby) answers from the relation's scrape ConfigMap, which the leader
//! wrote, so every replica behind the Service gives the same answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::core::declaration::RelationKey;

/// One relation's publication, as served.
#[derive(Clone, Debug)]
pub struct Published {
    /// The target groups (`file_sd`/HTTP SD JSON).
    pub target_groups: String,
    /// The hash of everything published (scrape_configs and target groups).
    pub hash: String,
    /// When the relation's ConfigMap was last seen holding it.
    pub verified: std::time::Instant,
}

/// The publications of this process, by relation.
#[derive(Default)]
pub struct Publications {
    map: Mutex<HashMap<RelationKey, Arc<Published>>>,
}

impl Publications {
    pub fn get(&self, k: &RelationKey) -> Option<Arc<Published>> {
        self.map.lock().ok()?.get(k).cloned()
    }

    pub fn set(&self, k: RelationKey, p: Published) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(k, Arc::new(p));
        }
    }

    pub fn remove(&self, k: &RelationKey) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(k);
        }
    }
}
