//! The catch-up log: the events this node emitted, signed, by service and sequence
//! number, kept for the retention window so that a subscriber that missed some (a gap,
//! a restart, a partition) can ask for them again (`WorkRequest::EventsSince`).
//!
//! Key: service hash (32 bytes) then the sequence number (big-endian), so one service's
//! events are one ordered range. Value: the creation time (8 bytes, big-endian, for the
//! pruning by age) then the encoded signed event.

use super::codec::{dec, enc};
use crate::store::StoreError;
use mesg_protocol::envelope::Signed;
use mesg_protocol::{Event, ServiceHash};

/// Events kept per service whatever their age: a service emitting fast must not fill
/// the disk within the retention window.
const MAX_LOGGED_PER_SERVICE: u64 = 20_000;

#[derive(Debug)]
pub(super) struct EventLogTree {
    log: sled::Tree,
}

fn key(service: &ServiceHash, seq: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&service.0.0);
    k[32..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl EventLogTree {
    pub(super) fn open(db: &sled::Db) -> Result<EventLogTree, StoreError> {
        Ok(EventLogTree {
            log: db.open_tree("event_log")?,
        })
    }

    pub(super) fn put(&self, event: &Event, signed: &Signed<Event>) -> Result<(), StoreError> {
        let mut value = event.created_at.to_be_bytes().to_vec();
        value.extend_from_slice(&enc(signed)?);
        self.log
            .insert(key(&event.service_hash, event.seq), value)?;
        if event.seq > MAX_LOGGED_PER_SERVICE {
            self.log
                .remove(key(&event.service_hash, event.seq - MAX_LOGGED_PER_SERVICE))?;
        }
        Ok(())
    }

    pub(super) fn after(
        &self,
        service: &ServiceHash,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Signed<Event>>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let start = key(service, after.saturating_add(1));
        let end = key(service, u64::MAX);
        for item in self.log.range(start..=end) {
            let (_, v) = item?;
            if out.len() >= limit || bytes + v.len() > max_bytes {
                break;
            }
            bytes += v.len();
            match v.get(8..).map(|b| dec::<Signed<Event>>("event_log", b)) {
                Some(Ok(signed)) => out.push(signed),
                // One unreadable entry does not hide the others.
                _ => tracing::warn!("event log: an entry of service {service} does not decode"),
            }
        }
        Ok(out)
    }

    pub(super) fn last_seq(&self, service: &ServiceHash) -> Result<u64, StoreError> {
        let range = key(service, 0)..=key(service, u64::MAX);
        Ok(match self.log.range(range).next_back() {
            Some(item) => {
                let (k, _) = item?;
                k.get(32..40)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0)
            }
            None => 0,
        })
    }

    /// Drop the entries created before `before`, and those that do not read; returns
    /// how many. A scan: called now and then, the log holds a retention window.
    pub(super) fn prune(&self, before: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for item in self.log.iter() {
            let (k, v) = item?;
            let created = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if created.is_none_or(|t| t < before) {
                self.log.remove(k)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
