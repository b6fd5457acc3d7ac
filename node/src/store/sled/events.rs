//! Recent events (for `GET /v1/events`) and the replay nonces of signed envelopes.

use super::codec::{dec, enc};
use crate::store::StoreError;
use mesg_protocol::{Event, PublicKey};
use std::sync::atomic::{AtomicU64, Ordering};

/// The `events` tree, by time then id.
#[derive(Debug)]
pub(super) struct EventTree {
    events: sled::Tree,
    inserts: AtomicU64,
}

impl EventTree {
    pub(super) fn open(db: &sled::Db) -> Result<EventTree, StoreError> {
        Ok(EventTree {
            events: db.open_tree("events")?,
            inserts: AtomicU64::new(0),
        })
    }

    pub(super) fn put(&self, event: &Event, keep: usize) -> Result<(), StoreError> {
        let mut key = event.created_at.to_be_bytes().to_vec();
        key.extend_from_slice(&event.id.0);
        self.events.insert(key, enc(event)?)?;
        // Trim now and then rather than on every insert: counting a sled tree is a scan.
        if self.inserts.fetch_add(1, Ordering::Relaxed) % 256 == 255 {
            let len = self.events.len();
            if len > keep {
                for item in self.events.iter().take(len - keep) {
                    let (k, _) = item?;
                    self.events.remove(k)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn recent(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.events
            .iter()
            .rev()
            .filter_map(|r| match r {
                Err(e) => Some(Err(e.into())),
                // An event stored by an older version (without a sequence number) or
                // damaged is left out, not an error for the whole list.
                Ok((_, v)) => dec("events", &v).ok().map(Ok),
            })
            .take(limit)
            .collect()
    }
}

/// The `nonces` tree ((signer, nonce) -> expiry) and `nonce_expiry`, its index by expiry.
#[derive(Debug)]
pub(super) struct NonceTrees {
    nonces: sled::Tree,
    by_expiry: sled::Tree,
}

impl NonceTrees {
    pub(super) fn open(db: &sled::Db) -> Result<NonceTrees, StoreError> {
        Ok(NonceTrees {
            nonces: db.open_tree("nonces")?,
            by_expiry: db.open_tree("nonce_expiry")?,
        })
    }

    pub(super) fn record(
        &self,
        signer: &PublicKey,
        nonce: &[u8; 16],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let mut key = signer.0.to_vec();
        key.extend_from_slice(nonce);
        let fresh = self
            .nonces
            .compare_and_swap(&key, None as Option<&[u8]>, Some(&expires_at.to_be_bytes()))?
            .is_ok();
        if fresh {
            let mut exp = expires_at.to_be_bytes().to_vec();
            exp.extend_from_slice(&key);
            self.by_expiry.insert(exp, &[])?;
        }
        Ok(fresh)
    }

    pub(super) fn purge(&self, now: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.by_expiry.range(..now.to_be_bytes().to_vec()) {
            let (k, _) = item?;
            self.nonces.remove(&k[8..])?;
            self.by_expiry.remove(&k)?;
            n += 1;
        }
        Ok(n)
    }
}
