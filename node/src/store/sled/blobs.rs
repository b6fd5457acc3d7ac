//! Small named trees of raw bytes for modules without typed trees of their own (the
//! name pins and publisher claims of `engine::names`). Tree `name` is stored as
//! `blob:{name}`.

use crate::store::StoreError;

/// Opens blob trees by name on demand.
#[derive(Debug)]
pub(super) struct BlobTrees {
    db: sled::Db,
}

impl BlobTrees {
    pub(super) fn new(db: sled::Db) -> BlobTrees {
        BlobTrees { db }
    }

    fn tree(&self, name: &'static str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(format!("blob:{name}"))?)
    }

    pub(super) fn put(
        &self,
        tree: &'static str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.tree(tree)?.insert(key, value)?;
        Ok(())
    }

    pub(super) fn get(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(tree)?.get(key)?.map(|v| v.to_vec()))
    }
}
