//! Instances of services running on this node: their lifecycle (`lifecycle`), the tasks
//! handed to them (`tasks`), and the live registry of what their containers are doing
//! (`live`: tokens, task queues, executions in flight).
//!
//! It calls the store, the runtime and, to end the executions an instance was running,
//! the execution ledger; it is told of every end through [`EndHook`] to free the
//! instance's slot. When what runs here changes, it wakes [`Instances::changes`] (the
//! router announces it).

mod lifecycle;
pub mod live;
mod tasks;

pub use live::{KEEPALIVE, LiveInstance, MAX_PEER_SHARE, MAX_QUEUED_TASKS, Registry};

use super::config::EngineConfig;
use super::error::EngineError;
use super::executions::{EndHook, ExecutionLedger};
use super::services::Services;
use super::views::InstanceView;
use crate::runtime::{InstanceSpec, Runtime};
use crate::store::{InstanceEntry, ServiceEntry, Store};
use mesg_protocol::{Execution, InstanceHash, PublicKey};
use std::sync::Arc;
use tokio::sync::Notify;

/// The instances of this node. Shared behind an `Arc`.
pub struct Instances {
    node: PublicKey,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    config: EngineConfig,
    live: Registry,
    ledger: Arc<ExecutionLedger>,
    services: Arc<Services>,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances").finish_non_exhaustive()
    }
}

impl Instances {
    pub fn new(
        node: PublicKey,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        config: EngineConfig,
        ledger: Arc<ExecutionLedger>,
        services: Arc<Services>,
    ) -> Self {
        Instances {
            node,
            store,
            runtime,
            config,
            live: Registry::default(),
            ledger,
            services,
            changed: Arc::new(Notify::new()),
        }
    }

    fn node(&self) -> PublicKey {
        self.node
    }

    /// What the containers of this node's instances are doing right now.
    pub fn live(&self) -> &Registry {
        &self.live
    }

    /// Woken when an instance starts or stops here (what the node offers changed).
    pub fn changes(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// The container API's authentication: the live instance a token belongs to.
    pub fn by_token(&self, token: &str) -> Result<Arc<LiveInstance>, EngineError> {
        self.live.by_token(token).ok_or(EngineError::Unauthorized)
    }

    fn spec(
        &self,
        entry: &InstanceEntry,
        service: &ServiceEntry,
    ) -> Result<InstanceSpec, EngineError> {
        let image = service.image.clone().ok_or_else(|| {
            EngineError::Conflict(format!(
                "service {} has no image on this node yet",
                service.record.service_hash
            ))
        })?;
        Ok(InstanceSpec {
            instance_hash: entry.instance_hash,
            service_hash: entry.service_hash,
            definition: service.record.definition.clone(),
            publisher: service.record.publisher,
            image,
            env: entry.env.clone(),
            token: entry.token.clone(),
            // Limits stored by older versions were not checked: one Docker cannot apply
            // falls back to the defaults rather than failing every start.
            limits: entry.limits.map(|l| {
                self.config
                    .limit_bounds
                    .check(l)
                    .unwrap_or(self.config.default_limits)
            }),
        })
    }

    fn register_live(&self, entry: &InstanceEntry, service: &ServiceEntry) -> Arc<LiveInstance> {
        if let Some(existing) = self.live.get(&entry.instance_hash) {
            return existing;
        }
        let live = Arc::new(LiveInstance::new(
            entry.instance_hash,
            entry.service_hash,
            Arc::new(service.record.definition.clone()),
            entry.token.clone(),
        ));
        self.live.insert(live.clone());
        live
    }

    pub fn entry(&self, hash: &InstanceHash) -> Result<InstanceEntry, EngineError> {
        self.store
            .instance(hash)?
            .ok_or_else(|| EngineError::NotFound {
                what: "instance",
                id: hash.to_string(),
            })
    }

    /// Resolve an instance by its hash, or by a service (hash or sid) with one instance.
    pub fn find(&self, id: &str) -> Result<InstanceEntry, EngineError> {
        if let Ok(hash) = id.parse::<InstanceHash>()
            && let Some(e) = self.store.instance(&hash)?
        {
            return Ok(e);
        }
        let service = self.services.local(id).map_err(|_| EngineError::NotFound {
            what: "instance",
            id: id.to_string(),
        })?;
        let mut of_service: Vec<InstanceEntry> = self
            .store
            .instances()?
            .into_iter()
            .filter(|i| i.service_hash == service.record.service_hash)
            .collect();
        match of_service.len() {
            0 => Err(EngineError::NotFound {
                what: "instance of service",
                id: id.to_string(),
            }),
            1 => Ok(of_service.remove(0)),
            n => Err(EngineError::BadRequest(format!(
                "service `{id}` has {n} instances; name one by its instance hash"
            ))),
        }
    }

    pub async fn view(&self, entry: &InstanceEntry) -> Result<InstanceView, EngineError> {
        let state = self.runtime.status(&entry.instance_hash).await.ok();
        let live = self.live.get(&entry.instance_hash);
        let sid = self
            .store
            .service(&entry.service_hash)?
            .and_then(|s| s.record.definition.sid);
        Ok(InstanceView {
            hash: entry.instance_hash,
            service: entry.service_hash,
            sid,
            env: entry.env.clone(),
            desired: entry.desired,
            state,
            connected: live.as_ref().is_some_and(|l| l.is_connected()),
            in_flight: live.as_ref().map_or(0, |l| l.in_flight_count()),
            created_at: entry.created_at,
        })
    }

    pub async fn list(&self) -> Result<Vec<InstanceView>, EngineError> {
        let mut out = Vec::new();
        for entry in self.store.instances()? {
            out.push(self.view(&entry).await?);
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.created_at));
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<InstanceView, EngineError> {
        let entry = self.find(id)?;
        self.view(&entry).await
    }

    pub fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<
        futures::stream::BoxStream<
            'static,
            Result<crate::runtime::LogLine, crate::runtime::RuntimeError>,
        >,
        EngineError,
    > {
        let entry = self.find(id)?;
        Ok(self.runtime.logs(&entry.instance_hash, follow, tail))
    }
}

impl EndHook for Instances {
    fn ended_before_flush(&self, execution: &Execution) {
        if let Some(h) = &execution.instance_hash
            && let Some(live) = self.live.get(h)
        {
            live.finished(&execution.id);
        }
    }

    fn ended_after_flush(&self, _execution: &Execution) {}
}

/// A per-instance secret for the service API (not a guessable hash).
fn random_token() -> String {
    let mut b = [0u8; 32];
    mesg_protocol::keys::random_bytes(&mut b).expect("OS random source");
    hex::encode(b)
}
