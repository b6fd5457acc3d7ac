//! One operation at a time per instance: start, stop and delete of the same instance
//! within this process wait for each other, so a delete never races a start halfway
//! through creating containers. Different instances never wait for each other.

use super::lock;
use mesg_protocol::InstanceHash;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// A lock per instance, made on first use and forgotten when the instance is deleted.
#[derive(Debug, Default)]
pub(super) struct InstanceLocks {
    by_instance: Mutex<HashMap<InstanceHash, Arc<tokio::sync::Mutex<()>>>>,
}

impl InstanceLocks {
    /// Wait until nobody else works on `instance`; the guard holds it.
    pub(super) async fn acquire(&self, instance: &InstanceHash) -> OwnedMutexGuard<()> {
        let m = lock(&self.by_instance)
            .entry(*instance)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        m.lock_owned().await
    }

    /// Drop the lock of a deleted instance unless someone holds or waits for it.
    pub(super) fn forget(&self, instance: &InstanceHash) {
        let mut locks = lock(&self.by_instance);
        // Called after the caller's guard is gone: only the map holds it, nobody waits.
        if locks
            .get(instance)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(instance);
        }
    }
}
