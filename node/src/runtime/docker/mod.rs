//! [`Runtime`] on the local Docker Engine, through bollard.
//!
//! - The connection is lazy: [`DockerRuntime::new`] never fails; the first call connects
//!   and negotiates the API version (bollard defaults to a newer API than Docker 20.10
//!   speaks). When the engine cannot be reached, calls return
//!   [`RuntimeError::Unavailable`] and the next call connects again.
//! - Every object carries `mesg.node=<node id>`; lists are always filtered by it, so
//!   nodes sharing an engine never see each other's objects.
//! - Per instance: one user-defined bridge network (`mesg-<node8>-<instance12>`) where
//!   each container has its key as DNS alias (`service` for the main one), named volumes
//!   keyed by sid (they outlive the containers), and containers with `init`,
//!   `no-new-privileges`, every capability dropped (plus those the operator grants),
//!   ports published on the policy's address (loopback by default), resource limits and an
//!   `on-failure` restart policy capped at `max_restarts` (Docker does the doubling
//!   backoff). Dependency images must be built by this node or allowed by the operator
//!   ([`super::policy`]).
//! - Builds run without network and within [`BUILD_MEMORY`] and one CPU: a package is
//!   built `FROM scratch` or local images (mesg never pulls), so a build needs no network,
//!   and a hostile Dockerfile must not reach one or exhaust the host.
//! - `start` is idempotent and transactional: what one call created is removed again when
//!   it fails. A stopped container whose creation settings changed (label `mesg.config`,
//!   e.g. a new token or endpoint) is recreated; running containers are always kept.
//! - `command` replaces the image's entrypoint and `args` its command, as in the original
//!   MESG (Swarm's `ContainerSpec.Command`/`Args`), so a definition can run the image's
//!   binary with other arguments (`args` alone) or another program (`command`).
//!
//! This file holds the shared state and the [`Runtime`] implementation, which only opens
//! the operation's span (fields `instance` and `service`) and hands over to one file per
//! concern:
//! - `connection`: the client, its lazy connection and how bollard errors map to ours;
//! - `names`: names and labels of the networks, containers and volumes;
//! - `inventory`: listing and inspecting this node's objects;
//! - `images`: which images exist and may be used (dependencies, `FROM`);
//! - `build`: image builds;
//! - `start`: `start`, step by step, and its rollback;
//! - `body`: the settings a container is created with;
//! - `teardown`: stop, delete, and removing single objects;
//! - `state`: an instance's state from its containers;
//! - `reconcile`: adopting, restarting and cleaning up after the node restarts;
//! - `events`: Docker's event stream as [`RuntimeEvent`]s;
//! - `logs`: the containers' output;
//! - `locks`: one operation at a time per instance.

use super::{
    DockerInfo, InstanceSpec, InstanceState, LogLine, ReconcileReport, Runtime, RuntimeConfig,
    RuntimeError, RuntimeEvent,
};
use async_trait::async_trait;
use bollard::Docker;
use futures::stream::BoxStream;
use mesg_protocol::{InstanceHash, ServiceDefinition};
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{Instrument, field, info_span};

mod body;
mod build;
mod connection;
mod events;
mod images;
mod inventory;
mod locks;
mod logs;
mod names;
mod reconcile;
mod start;
mod state;
mod teardown;

pub use build::{BUILD_CPU_PERIOD, BUILD_CPU_QUOTA, BUILD_MEMORY};

/// The Docker implementation of [`Runtime`]. Cheap to clone (shared state).
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: RuntimeConfig,
    /// `None`: the local default (`DOCKER_HOST` if it is a `unix://` URL, else
    /// `/var/run/docker.sock`).
    host: Option<String>,
    /// Connected and version-negotiated client; dropped when the engine stops answering.
    client: Mutex<Option<Docker>>,
    events: broadcast::Sender<RuntimeEvent>,
    /// Set by `subscribe`: the event watcher should run.
    watch_wanted: AtomicBool,
    /// Taken by the task that follows Docker events when it starts.
    watcher_stop: Mutex<Option<oneshot::Receiver<()>>>,
    /// Dropped with `Inner`, which ends the watcher.
    _watcher_stop_tx: oneshot::Sender<()>,
    /// Serializes start/stop/delete of one instance within this process.
    locks: locks::InstanceLocks,
}

impl fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("node_id", &self.inner.config.node_id)
            .field("host", &self.inner.host_display())
            .field("connected", &lock(&self.inner.client).is_some())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DockerRuntime {
    /// A runtime on the local engine. Never fails: it connects on first use.
    pub fn new(config: RuntimeConfig) -> DockerRuntime {
        DockerRuntime::build_with(config, None)
    }

    /// A runtime on the engine at `host` (`unix:///path/docker.sock`, `tcp://host:2375`,
    /// `http://...`), like `DOCKER_HOST`. Never fails: a bad host shows up as
    /// [`RuntimeError::Unavailable`] on use.
    pub fn with_docker_host(config: RuntimeConfig, host: impl Into<String>) -> DockerRuntime {
        DockerRuntime::build_with(config, Some(host.into()))
    }

    fn build_with(config: RuntimeConfig, host: Option<String>) -> DockerRuntime {
        let (events, _) = broadcast::channel(events::EVENT_CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        DockerRuntime {
            inner: Arc::new(Inner {
                config,
                host,
                client: Mutex::new(None),
                events,
                watch_wanted: AtomicBool::new(false),
                watcher_stop: Mutex::new(Some(stop_rx)),
                _watcher_stop_tx: stop_tx,
                locks: locks::InstanceLocks::default(),
            }),
        }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn instance_subnets(&self) -> Result<Vec<String>, RuntimeError> {
        self.network_subnets().await
    }

    async fn check(&self) -> Result<DockerInfo, RuntimeError> {
        self.version().await
    }

    async fn build(
        &self,
        tar: Vec<u8>,
        tag: &str,
        progress: mpsc::Sender<String>,
    ) -> Result<(), RuntimeError> {
        let span = info_span!("runtime.build", %tag, service = field::Empty);
        if let Some(service) = build::service_of_tag(tag) {
            span.record("service", field::display(service));
        }
        self.build_image(tar, tag, progress).instrument(span).await
    }

    async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        let docker = self.docker().await?;
        self.image_exists_with(&docker, image).await
    }

    async fn check_definition(&self, definition: &ServiceDefinition) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        self.check_definition_with(&docker, definition).await
    }

    async fn check_build(&self, dockerfile: &str) -> Result<(), RuntimeError> {
        self.check_build_images(dockerfile).await
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        self.start_instance(spec).instrument(start_span(spec)).await
    }

    async fn stop(&self, instance: &InstanceHash, grace: Duration) -> Result<(), RuntimeError> {
        let span = info_span!("runtime.stop", %instance, service = field::Empty);
        self.stop_instance(instance, grace).instrument(span).await
    }

    async fn delete(&self, instance: &InstanceHash, keep_data: bool) -> Result<(), RuntimeError> {
        let span = info_span!("runtime.delete", %instance, service = field::Empty);
        self.delete_instance(instance, keep_data)
            .instrument(span)
            .await
    }

    async fn status(&self, instance: &InstanceHash) -> Result<InstanceState, RuntimeError> {
        let span = info_span!("runtime.status", %instance, service = field::Empty);
        self.instance_state(instance).instrument(span).await
    }

    fn logs(
        &self,
        instance: &InstanceHash,
        follow: bool,
        tail: Option<usize>,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        self.log_stream(*instance, follow, tail)
    }

    async fn reconcile(&self, desired: &[InstanceSpec]) -> Result<ReconcileReport, RuntimeError> {
        let span = info_span!("runtime.reconcile", desired = desired.len());
        self.reconcile_instances(desired).instrument(span).await
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.subscribe_events()
    }
}

/// The span of one instance's start, by `start` or by `reconcile`.
fn start_span(spec: &InstanceSpec) -> tracing::Span {
    info_span!(
        "runtime.start",
        instance = %spec.instance_hash,
        service = %spec.service_hash
    )
}
