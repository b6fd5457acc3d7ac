//! The verification records of this node's verified executions (requester side): every
//! attempt with its signed commit, reveal or failure and its verdict, and the decision.
//! Kept in their own sled tree next to the executions, written each time a round changes
//! (made durable by the next flush, before the node answers the executor that caused the
//! change), shown by `mesg executions show` and re-checked by `mesg executions verify`.
//! Removed with their execution when the history is pruned.

use crate::store::StoreError;
use mesg_protocol::verification::{MAX_REVEAL_BYTES, VerificationRecord};
use mesg_protocol::{ExecutionId, wire};
use serde::{Deserialize, Serialize};

/// Largest stored record: every attempt may hold a reveal of the largest work message,
/// and the decision repeats the agreed outputs once.
const MAX_RECORD: usize =
    (mesg_protocol::verification::MAX_VERIFY_EXECUTORS as usize + 2) * (MAX_REVEAL_BYTES + 4096);

/// The stored form, versioned.
#[derive(Serialize, Deserialize)]
enum Stored {
    V1(VerificationRecord),
}

/// The tree of verification records (see the module doc).
#[derive(Debug, Clone)]
pub struct VerificationRecords {
    tree: sled::Tree,
}

impl VerificationRecords {
    pub fn open(tree: sled::Tree) -> Self {
        VerificationRecords { tree }
    }

    /// Write `record` (durable with the store's next flush).
    pub fn put(&self, record: &VerificationRecord) -> Result<(), StoreError> {
        let bytes = wire::encode(&Stored::V1(record.clone()), MAX_RECORD)
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        self.tree.insert(record.execution_id.0, bytes)?;
        Ok(())
    }

    pub fn get(&self, id: &ExecutionId) -> Result<Option<VerificationRecord>, StoreError> {
        let Some(bytes) = self.tree.get(id.0)? else {
            return Ok(None);
        };
        match wire::decode::<Stored>(&bytes, MAX_RECORD) {
            Ok(Stored::V1(r)) => Ok(Some(r)),
            Err(e) => Err(StoreError::Corrupt {
                tree: "verifications",
                message: e.to_string(),
            }),
        }
    }

    /// Remove the records whose execution is gone (`exists` says false); returns how many.
    pub fn prune(
        &self,
        exists: impl Fn(&ExecutionId) -> Result<bool, StoreError>,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for key in self.tree.iter().keys() {
            let key = key?;
            let Ok(bytes) = <[u8; 16]>::try_from(key.as_ref()) else {
                self.tree.remove(&key)?;
                continue;
            };
            if !exists(&ExecutionId(bytes))? {
                self.tree.remove(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
