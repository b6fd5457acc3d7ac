//! Services this node knows (by hash, and the newest one of each sid) and the instances it
//! runs.

use super::codec::{dec, enc};
use crate::store::{InstanceEntry, ServiceEntry, StoreError};
use mesg_protocol::{InstanceHash, ServiceHash};

/// The `services`, `sids` and `instances` trees.
#[derive(Debug)]
pub(super) struct ServiceTrees {
    services: sled::Tree,
    /// Sid -> hash of the service most recently deployed under it.
    sids: sled::Tree,
    instances: sled::Tree,
}

impl ServiceTrees {
    pub(super) fn open(db: &sled::Db) -> Result<ServiceTrees, StoreError> {
        Ok(ServiceTrees {
            services: db.open_tree("services")?,
            sids: db.open_tree("sids")?,
            instances: db.open_tree("instances")?,
        })
    }

    pub(super) fn put_service(&self, entry: &ServiceEntry) -> Result<(), StoreError> {
        let hash = entry.record.service_hash;
        self.services.insert(hash.as_bytes(), enc(entry)?)?;
        if let Some(sid) = &entry.record.definition.sid {
            self.sids.insert(sid.as_bytes(), hash.as_bytes())?;
        }
        Ok(())
    }

    pub(super) fn service(&self, hash: &ServiceHash) -> Result<Option<ServiceEntry>, StoreError> {
        match self.services.get(hash.as_bytes())? {
            Some(v) => Ok(Some(dec("services", &v)?)),
            None => Ok(None),
        }
    }

    pub(super) fn service_by_sid(&self, sid: &str) -> Result<Option<ServiceEntry>, StoreError> {
        let Some(h) = self.sids.get(sid.to_ascii_lowercase().as_bytes())? else {
            return Ok(None);
        };
        let arr: [u8; 32] = h.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            tree: "sids",
            message: "hash is not 32 bytes".into(),
        })?;
        self.service(&ServiceHash(mesg_protocol::Hash32(arr)))
    }

    pub(super) fn services(&self) -> Result<Vec<ServiceEntry>, StoreError> {
        self.services
            .iter()
            .map(|r| {
                let (_, v) = r?;
                dec("services", &v)
            })
            .collect()
    }

    pub(super) fn delete_service(&self, hash: &ServiceHash) -> Result<bool, StoreError> {
        let Some(old) = self.service(hash)? else {
            return Ok(false);
        };
        self.services.remove(hash.as_bytes())?;
        if let Some(sid) = &old.record.definition.sid
            && self.sids.get(sid.as_bytes())?.as_deref() == Some(hash.as_bytes().as_slice())
        {
            self.sids.remove(sid.as_bytes())?;
        }
        Ok(true)
    }

    pub(super) fn put_instance(&self, entry: &InstanceEntry) -> Result<(), StoreError> {
        self.instances
            .insert(entry.instance_hash.as_bytes(), enc(entry)?)?;
        Ok(())
    }

    pub(super) fn instance(
        &self,
        hash: &InstanceHash,
    ) -> Result<Option<InstanceEntry>, StoreError> {
        match self.instances.get(hash.as_bytes())? {
            Some(v) => Ok(Some(dec("instances", &v)?)),
            None => Ok(None),
        }
    }

    pub(super) fn instances(&self) -> Result<Vec<InstanceEntry>, StoreError> {
        self.instances
            .iter()
            .map(|r| {
                let (_, v) = r?;
                dec("instances", &v)
            })
            .collect()
    }

    pub(super) fn delete_instance(&self, hash: &InstanceHash) -> Result<bool, StoreError> {
        Ok(self.instances.remove(hash.as_bytes())?.is_some())
    }
}
