//! The outbox: results this node executed and still owes to requesters' nodes, and the
//! nodes that asked for an execution already under way here with the same idempotency key
//! (each is owed its own copy of the result when the execution ends).

use super::codec::{dec, enc};
use super::spill::Spill;
use crate::store::{OutboxEntry, StoreError};
use mesg_protocol::{ExecutionId, Hash32, PublicKey};
use std::sync::Arc;

/// The `outbox` tree, by execution id then requester node; the `owed_copies` tree, by
/// execution id then node, holding the digest of that node's request.
#[derive(Debug)]
pub(super) struct OutboxTree {
    outbox: sled::Tree,
    copies: sled::Tree,
    /// Entries of 64 KiB or more (a result with large outputs) live in files.
    spill: Arc<Spill>,
}

fn key(id: &ExecutionId, node: &PublicKey) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..16].copy_from_slice(&id.0);
    k[16..].copy_from_slice(&node.0);
    k
}

fn split(tree: &'static str, k: &[u8]) -> Result<(ExecutionId, PublicKey), StoreError> {
    let corrupt = || StoreError::Corrupt {
        tree,
        message: "key is not an execution id and a node key".into(),
    };
    if k.len() != 48 {
        return Err(corrupt());
    }
    let id: [u8; 16] = k[..16].try_into().map_err(|_| corrupt())?;
    let node: [u8; 32] = k[16..].try_into().map_err(|_| corrupt())?;
    Ok((ExecutionId(id), PublicKey(node)))
}

impl OutboxTree {
    pub(super) fn open(db: &sled::Db, spill: Arc<Spill>) -> Result<OutboxTree, StoreError> {
        Ok(OutboxTree {
            outbox: db.open_tree("outbox")?,
            copies: db.open_tree("owed_copies")?,
            spill,
        })
    }

    /// Whether a result of the execution with these id bytes is still owed to anyone.
    pub(super) fn holds(&self, id_bytes: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .outbox
            .scan_prefix(id_bytes)
            .next()
            .transpose()?
            .is_some()
            || self
                .copies
                .scan_prefix(id_bytes)
                .next()
                .transpose()?
                .is_some())
    }

    pub(super) fn entry(
        &self,
        id: &ExecutionId,
        node: &PublicKey,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        match self.outbox.get(key(id, node))? {
            Some(v) => Ok(Some(dec("outbox", &self.spill.load("outbox", v)?)?)),
            None => Ok(None),
        }
    }

    pub(super) fn put(&self, id: &ExecutionId, entry: &OutboxEntry) -> Result<(), StoreError> {
        let stored = self.spill.store(enc(entry)?)?;
        match self
            .outbox
            .insert(key(id, &entry.requester_node), stored.as_slice())
        {
            Ok(Some(old)) => self.spill.doom(&old),
            Ok(None) => {}
            Err(e) => {
                self.spill.discard(&stored);
                return Err(e.into());
            }
        }
        Ok(())
    }

    pub(super) fn remove(&self, id: &ExecutionId, node: &PublicKey) -> Result<(), StoreError> {
        if let Some(old) = self.outbox.remove(key(id, node))? {
            self.spill.doom(&old);
        }
        Ok(())
    }

    pub(super) fn all(&self) -> Result<Vec<(ExecutionId, OutboxEntry)>, StoreError> {
        self.outbox
            .iter()
            .map(|r| {
                let (k, v) = r?;
                let (id, _) = split("outbox", &k)?;
                Ok((id, dec("outbox", &self.spill.load("outbox", v)?)?))
            })
            .collect()
    }

    pub(super) fn add_copy(
        &self,
        id: &ExecutionId,
        node: &PublicKey,
        request_digest: &Hash32,
    ) -> Result<(), StoreError> {
        self.copies.insert(key(id, node), enc(request_digest)?)?;
        Ok(())
    }

    /// The nodes owed a copy of this execution's result, with their request's digest;
    /// forgets them (the caller queues their copies in the same flush).
    pub(super) fn take_copies(
        &self,
        id: &ExecutionId,
    ) -> Result<Vec<(PublicKey, Hash32)>, StoreError> {
        let mut out = Vec::new();
        for r in self.copies.scan_prefix(id.0) {
            let (k, v) = r?;
            let (_, node) = split("owed_copies", &k)?;
            out.push((node, dec("owed_copies", &v)?));
            self.copies.remove(k)?;
        }
        Ok(out)
    }
}
