//! How records are encoded in the sled trees: the wire codec, with a size cap, and the
//! tree a record came from named in decoding errors.

use crate::store::StoreError;
use mesg_protocol::wire;
use serde::Serialize;

/// Cap on one stored record (an execution with large inputs and outputs).
pub(super) const MAX_RECORD: usize = 64 * 1024 * 1024;

pub(super) fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    wire::encode(v, MAX_RECORD).map_err(|e| StoreError::Encode(e.to_string()))
}

pub(super) fn dec<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    wire::decode(bytes, MAX_RECORD).map_err(|e| StoreError::Corrupt {
        tree,
        message: e.to_string(),
    })
}
