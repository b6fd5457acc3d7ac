//! Services this node knows: deployed here or learned from the network. Deploy (checks,
//! package, image, record), the catalog (lookup by hash or sid, list, delete), package
//! files, and the names (sids bound to their publishers).
//!
//! It calls the store and the runtime (to build), and reads the provider table only for
//! the claims other nodes announce (sid resolution); it never calls the network: the
//! engine publishes a deployed service and fetches unknown ones (see `net`).

mod deploy;
pub mod names;
mod packages;

use super::config::EngineConfig;
use super::error::EngineError;
use super::providers::ProviderTable;
use super::views::ServiceView;
use crate::runtime::Runtime;
use crate::store::{ServiceEntry, Store};
use mesg_protocol::{Keypair, PublicKey, ServiceHash};
use std::sync::{Arc, Mutex};

/// The catalog of services. Shared behind an `Arc`.
pub struct Services {
    key: Keypair,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    config: EngineConfig,
    /// What peers announce (shared with the router, which keeps it up to date).
    providers: Arc<Mutex<ProviderTable>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl Services {
    pub fn new(
        key: Keypair,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        config: EngineConfig,
        providers: Arc<Mutex<ProviderTable>>,
    ) -> Self {
        Services {
            key,
            store,
            runtime,
            config,
            providers,
        }
    }

    fn node(&self) -> PublicKey {
        self.key.public()
    }

    /// A service by hash, if this node knows it.
    pub fn by_hash(&self, hash: &ServiceHash) -> Result<Option<ServiceEntry>, EngineError> {
        Ok(self.store.service(hash)?)
    }

    /// Record a service learned from the network (unless another task recorded it
    /// meanwhile: a built image is kept), durably.
    pub async fn learned(&self, entry: ServiceEntry) -> Result<ServiceEntry, EngineError> {
        if let Some(existing) = self.store.service(&entry.record.service_hash)? {
            return Ok(existing);
        }
        self.store.put_service(&entry)?;
        self.store.persist().await?;
        Ok(entry)
    }

    /// Build the image of a fetched package (checked against its record by the caller)
    /// and record it as runnable here.
    pub async fn install_fetched(
        &self,
        mut entry: ServiceEntry,
        tar: Vec<u8>,
        progress: Option<&tokio::sync::mpsc::Sender<String>>,
    ) -> Result<ServiceEntry, EngineError> {
        let rec = &entry.record;
        self.save_package(&rec.package_hash, &tar)?;
        let image = super::image_tag(&self.node(), &rec.service_hash);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
        // The build's output goes to whoever follows the progress, else nowhere.
        let forward = progress.cloned();
        let drain = tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if let Some(p) = &forward {
                    let _ = p.send(line).await;
                }
            }
        });
        let built = self.runtime.build(tar, &image, tx).await;
        let _ = drain.await;
        built?;
        entry.image = Some(image);
        self.store.put_service(&entry)?;
        self.store.persist().await?;
        Ok(entry)
    }

    /// The largest package this node accepts.
    pub fn max_package_bytes(&self) -> u64 {
        self.config.max_package_bytes
    }

    /// A service by hash or sid (or `sid@PUBLISHER`), as this node knows it.
    pub fn local(&self, id: &str) -> Result<ServiceEntry, EngineError> {
        let hash = match id.parse::<ServiceHash>() {
            Ok(hash) => hash,
            Err(_) => self.resolve_sid(id)?,
        };
        self.store
            .service(&hash)?
            .ok_or_else(|| EngineError::NotFound {
                what: "service",
                id: id.to_string(),
            })
    }

    pub fn list(&self) -> Result<Vec<ServiceView>, EngineError> {
        let mut all: Vec<ServiceView> = self
            .store
            .services()?
            .iter()
            .map(|e| self.view(e))
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.deployed_at));
        Ok(all)
    }

    /// Delete a service this node knows. Refused while instances of it exist.
    pub async fn delete(&self, id: &str) -> Result<ServiceView, EngineError> {
        let entry = self.local(id)?;
        let hash = entry.record.service_hash;
        let instances: Vec<_> = self
            .store
            .instances()?
            .into_iter()
            .filter(|i| i.service_hash == hash)
            .collect();
        if !instances.is_empty() {
            return Err(EngineError::Conflict(format!(
                "service {hash} has {} instance(s); delete them first (mesg service stop --delete)",
                instances.len()
            )));
        }
        let view = self.view(&entry);
        self.store.delete_service(&hash)?;
        self.store.persist().await?;
        Ok(view)
    }
}
