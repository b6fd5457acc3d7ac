//! The engine's public surface for services, instances and the network (what the
//! Application API and processes call): composed from the components, no state of its
//! own. A service this node does not know is looked up in the network here, above both
//! the catalog and the router.

use super::Engine;
use super::error::EngineError;
use super::net::EventInterest;
use super::views::{DeployProgress, InstanceView, ServiceView};
use crate::network::{NetworkEvent, NetworkHandle};
use crate::runtime::{LogLine, ResourceLimits, RuntimeError};
use crate::store::ServiceEntry;
use futures::stream::BoxStream;
use mesg_package::Package;
use mesg_protocol::{ServiceDefinition, ServiceHash, SignedClaim};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

impl Engine {
    /// Deploy a package checked by [`Engine::check_package`]: store the package, build
    /// the image, record the service, publish it to the network. Progress lines go to
    /// `progress`. A `private` package is never served to peers. `claim` is the
    /// publisher's signed claim on the service's sid (from a CLI account); without one,
    /// this node's key publishes the sid.
    pub async fn deploy(
        &self,
        package: Package,
        definition: ServiceDefinition,
        private: bool,
        claim: Option<SignedClaim>,
        progress: mpsc::Sender<DeployProgress>,
    ) -> Result<ServiceView, EngineError> {
        let entry = self
            .parts
            .services
            .deploy(package, definition, private, claim, progress.clone())
            .await?;
        self.parts.router.publish_service(&entry).await;
        let message = format!("deployed {}", entry.record.service_hash);
        let _ = progress.send(DeployProgress::Progress { message }).await;
        Ok(self.parts.services.view(&entry))
    }

    /// A service as the API shows it, with its sid's publisher.
    pub fn service_view(&self, entry: &ServiceEntry) -> ServiceView {
        self.parts.services.view(entry)
    }

    /// Whether this node may build `package` and run `definition`'s containers.
    pub async fn check_runnable(
        &self,
        package: &Package,
        definition: &ServiceDefinition,
    ) -> Result<(), EngineError> {
        self.parts
            .services
            .check_runnable(package, definition)
            .await
    }

    /// Parse and validate a package tar.
    pub fn check_package(&self, tar: &[u8]) -> Result<(Package, ServiceDefinition), EngineError> {
        self.parts.services.check_package(tar)
    }

    /// A service by hash or sid, from this node or, failing that, from the network (its
    /// signed record only: enough to validate and route executions). A sid resolves
    /// through its publisher (`services::names`); a hash is never ambiguous.
    pub async fn resolve_service(&self, id: &str) -> Result<ServiceEntry, EngineError> {
        let hash = match id.parse::<ServiceHash>() {
            Ok(h) => h,
            Err(_) => self.parts.services.resolve_sid(id)?,
        };
        match self.parts.services.by_hash(&hash)? {
            Some(e) => Ok(e),
            None if self.network().is_some() => self.parts.router.fetch_record(hash).await,
            None => Err(EngineError::NotFound {
                what: "service",
                id: id.to_string(),
            }),
        }
    }

    /// A service by hash or sid (or `sid@PUBLISHER`), as this node knows it.
    pub fn service(&self, id: &str) -> Result<ServiceEntry, EngineError> {
        self.parts.services.local(id)
    }

    pub fn services(&self) -> Result<Vec<ServiceView>, EngineError> {
        self.parts.services.list()
    }

    /// Delete a service this node knows. Refused while instances of it exist.
    pub async fn delete_service(&self, id: &str) -> Result<ServiceView, EngineError> {
        self.parts.services.delete(id).await
    }

    /// Start an instance of a service (fetched from the network and built here if this
    /// node does not have its package) with env overrides. Idempotent.
    pub async fn start_instance(
        &self,
        service_id: &str,
        env: BTreeMap<String, String>,
        limits: Option<ResourceLimits>,
    ) -> Result<InstanceView, EngineError> {
        self.start_instance_reporting(service_id, env, limits, None)
            .await
    }

    /// [`Engine::start_instance`], telling `progress` each step of fetching and building
    /// a service known only from the network.
    pub async fn start_instance_reporting(
        &self,
        service_id: &str,
        env: BTreeMap<String, String>,
        limits: Option<ResourceLimits>,
        progress: Option<&super::net::Progress>,
    ) -> Result<InstanceView, EngineError> {
        let prepared = self.prepare_start(service_id, limits).await?;
        self.start_prepared(prepared, env, progress).await
    }

    /// The checks of a start that answer at once (limits, the service known here or its
    /// record in the network), before anything long begins.
    pub async fn prepare_start(
        &self,
        service_id: &str,
        limits: Option<ResourceLimits>,
    ) -> Result<PreparedStart, EngineError> {
        let limits = self.parts.instances.checked_limits(limits)?;
        let service = self.resolve_service(service_id).await?;
        Ok(PreparedStart { service, limits })
    }

    /// The long part of a start: fetch and build the package if needed, then start.
    pub async fn start_prepared(
        &self,
        prepared: PreparedStart,
        env: BTreeMap<String, String>,
        progress: Option<&super::net::Progress>,
    ) -> Result<InstanceView, EngineError> {
        let PreparedStart {
            mut service,
            limits,
        } = prepared;
        if service.image.is_none() {
            service = self.parts.router.fetch_package(service, progress).await?;
        }
        super::net::tell(progress, "starting the instance".to_string()).await;
        self.parts.instances.start(service, env, limits).await
    }

    pub async fn instances(&self) -> Result<Vec<InstanceView>, EngineError> {
        self.parts.instances.list().await
    }

    pub async fn instance(&self, id: &str) -> Result<InstanceView, EngineError> {
        self.parts.instances.get(id).await
    }

    /// Stop an instance (its containers are kept; `start` resumes it), failing the
    /// executions it was running.
    pub async fn stop_instance(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<InstanceView, EngineError> {
        self.parts.instances.stop(id, grace).await
    }

    /// Remove an instance's containers (and its data unless `keep_data`).
    pub async fn delete_instance(
        &self,
        id: &str,
        keep_data: bool,
    ) -> Result<InstanceView, EngineError> {
        self.parts.instances.delete(id, keep_data).await
    }

    pub fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<BoxStream<'static, Result<LogLine, RuntimeError>>, EngineError> {
        self.parts.instances.logs(id, follow, tail)
    }

    pub fn network(&self) -> Option<&NetworkHandle> {
        self.parts.router.network()
    }

    /// Connect the engine to a started network (see `net::Router::attach_network`).
    pub fn attach_network(&self, handle: NetworkHandle, events: mpsc::Receiver<NetworkEvent>) {
        self.parts.router.attach_network(handle, events)
    }

    /// Sign and publish what this node runs now.
    pub async fn announce(&self) {
        self.parts.router.announce().await
    }

    /// Receive events of `service` (or of every known service) from the network while
    /// the returned guard lives.
    pub async fn watch_events(&self, service: Option<ServiceHash>) -> EventInterest {
        self.parts.router.watch_events(service).await
    }

    /// The event topics this node is subscribed to right now.
    pub fn subscribed_event_topics(&self) -> usize {
        self.parts.router.subscribed_event_topics()
    }

    pub fn network_services(&self) -> Vec<super::providers::NetworkServiceView> {
        self.parts.router.network_services()
    }

    pub fn network_nodes(&self) -> Vec<super::providers::NodeView> {
        self.parts.router.network_nodes()
    }

    /// Learn a service this node never saw from the network (its signed record).
    pub async fn fetch_record(&self, hash: ServiceHash) -> Result<ServiceEntry, EngineError> {
        self.parts.router.fetch_record(hash).await
    }

    /// Download a known service's package from a node that holds it and build it here.
    pub async fn fetch_package(&self, entry: ServiceEntry) -> Result<ServiceEntry, EngineError> {
        self.parts.router.fetch_package(entry, None).await
    }
}

/// A start that passed its quick checks ([`Engine::prepare_start`]).
#[derive(Debug)]
pub struct PreparedStart {
    service: ServiceEntry,
    limits: Option<ResourceLimits>,
}
