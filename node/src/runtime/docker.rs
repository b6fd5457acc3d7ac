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

use super::{
    ContainerState, DockerInfo, InstanceSpec, InstanceState, InstanceStatus, LogLine, NODE_ALIAS,
    PolicyError, ReconcileReport, ResourceLimits, Runtime, RuntimeConfig, RuntimeError,
    RuntimeEvent, labels,
};
use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    EndpointSettings, EventMessage, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest, NetworkInspect, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptions,
    StopContainerOptionsBuilder,
};
use futures::stream::{self, BoxStream, StreamExt};
use mesg_protocol::definition::{ContainerSpec, MAIN_CONTAINER_KEY};
use mesg_protocol::service_api::{ENV_ENDPOINT, ENV_INSTANCE_HASH, ENV_SERVICE_HASH, ENV_TOKEN};
use mesg_protocol::{Hash32, InstanceHash, ServiceDefinition};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};

/// Label holding a hash of the settings a container was created with.
const CONFIG_LABEL: &str = "mesg.config";
/// How long the first contact (`/version`) may take before the engine counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Capacity of the event broadcast; slow subscribers lag (and are told so) rather than
/// holding memory.
const EVENT_CAPACITY: usize = 1024;
const EVENT_BACKOFF_MIN: Duration = Duration::from_millis(200);
const EVENT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How many instances `reconcile` starts at once.
const RECONCILE_PARALLELISM: usize = 4;
/// Bytes of the (publisher, sid) hash in a volume name: 64 bits, so nobody can make up a
/// publisher key whose volumes collide with another's.
const VOLUME_OWNER_BYTES: usize = 8;
/// Memory of one image build (bytes, swap included): enough to copy a package of
/// [`mesg_package::DEFAULT_MAX_PACKAGE_BYTES`] several times over, not enough to take the
/// host down.
pub const BUILD_MEMORY: i32 = 1024 * 1024 * 1024;
/// CPU of one image build, as a CFS quota over [`BUILD_CPU_PERIOD`]: one CPU.
pub const BUILD_CPU_QUOTA: i32 = 100_000;
/// The CFS period (µs) of [`BUILD_CPU_QUOTA`].
pub const BUILD_CPU_PERIOD: i32 = 100_000;

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
    locks: Mutex<HashMap<InstanceHash, Arc<tokio::sync::Mutex<()>>>>,
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
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
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
                locks: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Name of the network of `instance`.
    pub fn network_name(&self, instance: &InstanceHash) -> String {
        format!(
            "mesg-{}-{}",
            self.inner.node8(),
            short(&instance.to_string(), 12)
        )
    }

    /// Name of the container `key` (`service` or a dependency key) of `instance`.
    pub fn container_name(&self, instance: &InstanceHash, key: &str) -> String {
        format!("{}-{}", self.network_name(instance), sanitize(key))
    }

    /// Name of the volume mounted at `path` in container `key` of `spec`'s service: the
    /// same for every version of a sid by one publisher (data survives redeploys), another
    /// for the same sid by anyone else.
    pub fn volume_name(&self, spec: &InstanceSpec, key: &str, path: &str) -> String {
        let owner = match &spec.definition.sid {
            Some(sid) => {
                let publisher = spec.publisher.to_string();
                let owner = Hash32::domain(
                    "mesg/volume-owner/1",
                    &[publisher.as_bytes(), sid.as_bytes()],
                );
                format!(
                    "{}-{}",
                    sanitize(sid),
                    hex::encode(&owner.as_bytes()[..VOLUME_OWNER_BYTES])
                )
            }
            None => short(&spec.service_hash.to_string(), 12).to_string(),
        };
        let path_hash = hex::encode(&Hash32::sha256(path.as_bytes()).as_bytes()[..4]);
        format!(
            "mesg-{}-{owner}-{}-{path_hash}",
            self.inner.node8(),
            sanitize(key)
        )
    }

    /// Start the event watcher if someone subscribed and we are inside a tokio runtime.
    fn ensure_watcher(&self) {
        if !self.inner.watch_wanted.load(Ordering::Relaxed) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(stop) = lock(&self.inner.watcher_stop).take() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let span = info_span!("runtime.events", node = %self.inner.config.node_id);
        handle.spawn(watch_events(weak, stop, SystemTime::now()).instrument(span));
    }

    async fn docker(&self) -> Result<Docker, RuntimeError> {
        self.ensure_watcher();
        self.inner.docker().await
    }

    async fn instance_lock(&self, instance: &InstanceHash) -> tokio::sync::OwnedMutexGuard<()> {
        let m = lock(&self.inner.locks)
            .entry(*instance)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        m.lock_owned().await
    }

    fn forget_lock(&self, instance: &InstanceHash) {
        let mut locks = lock(&self.inner.locks);
        // Called after the caller's guard is gone: only the map holds it, nobody waits.
        if locks
            .get(instance)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(instance);
        }
    }

    /// Containers of `instance` on this node (all states), main container first.
    async fn instance_containers(
        &self,
        docker: &Docker,
        instance: &InstanceHash,
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let mut list = self
            .list_containers(docker, Some(instance))
            .await
            .map_err(|e| self.inner.fail("list containers", e))?;
        list.sort_by(|a, b| {
            let (a, b) = (summary_key(a), summary_key(b));
            (a != MAIN_CONTAINER_KEY, a).cmp(&(b != MAIN_CONTAINER_KEY, b))
        });
        Ok(list)
    }

    async fn list_containers(
        &self,
        docker: &Docker,
        instance: Option<&InstanceHash>,
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let mut label = vec![format!("{}={}", labels::NODE, self.inner.config.node_id)];
        if let Some(i) = instance {
            label.push(format!("{}={i}", labels::INSTANCE));
        }
        let filters = HashMap::from([("label", label)]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        docker.list_containers(Some(opts)).await
    }

    async fn inspect_network(
        &self,
        docker: &Docker,
        name: &str,
    ) -> Result<Option<NetworkInspect>, RuntimeError> {
        match docker.inspect_network(name, None).await {
            Ok(n) => {
                if label_of(n.labels.as_ref(), labels::NODE)
                    != Some(self.inner.config.node_id.as_str())
                {
                    return Err(RuntimeError::Docker(format!(
                        "network `{name}` exists but does not belong to this node (label {}); remove it or use another node id",
                        labels::NODE
                    )));
                }
                Ok(Some(n))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.inner.fail(format!("inspect network {name}"), e)),
        }
    }

    /// Full id of the node's own container, when it runs in one.
    async fn self_container_id(&self, docker: &Docker) -> Result<Option<String>, RuntimeError> {
        let Some(name) = &self.inner.config.self_container else {
            return Ok(None);
        };
        let c = docker.inspect_container(name, None).await.map_err(|e| {
            self.inner
                .fail(format!("inspect the node's container `{name}`"), e)
        })?;
        Ok(c.id)
    }

    /// Disconnect the node's own container from `network` if it is connected.
    async fn disconnect_self(
        &self,
        docker: &Docker,
        network: &NetworkInspect,
    ) -> Result<(), RuntimeError> {
        let Some(self_id) = self.self_container_id(docker).await? else {
            return Ok(());
        };
        let connected = network
            .containers
            .as_ref()
            .is_some_and(|c| c.contains_key(&self_id));
        if !connected {
            return Ok(());
        }
        let name = network.name.clone().unwrap_or_default();
        let req = NetworkDisconnectRequest {
            container: self_id,
            force: Some(true),
        };
        match docker.disconnect_network(&name, req).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self
                .inner
                .fail(format!("disconnect the node's container from {name}"), e)),
        }
    }

    async fn remove_network(&self, docker: &Docker, name: &str) -> Result<(), RuntimeError> {
        let Some(net) = self.inspect_network(docker, name).await? else {
            return Ok(());
        };
        self.disconnect_self(docker, &net).await?;
        // The engine may still be tearing down endpoints of containers just removed.
        let mut attempt = 0;
        loop {
            match docker.remove_network(name).await {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if attempt < 5 && is_status(&e, 403) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(self.inner.fail(format!("remove network {name}"), e)),
            }
        }
    }

    async fn remove_container(&self, docker: &Docker, name: &str) -> Result<(), RuntimeError> {
        // `v`: anonymous volumes (an image VOLUME not declared in mesg.yml) can never be
        // attached again, so they go with their container. Named volumes stay.
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Already being removed by someone else.
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(self.inner.fail(format!("remove container {name}"), e)),
        }
    }

    async fn image_exists_with(&self, docker: &Docker, image: &str) -> Result<bool, RuntimeError> {
        Ok(self.image_owner(docker, image).await?.is_some())
    }

    /// The image's `mesg.node` label (set on every image this node builds), `None` when
    /// the image does not exist.
    async fn image_owner(
        &self,
        docker: &Docker,
        image: &str,
    ) -> Result<Option<String>, RuntimeError> {
        match docker.inspect_image(image).await {
            Ok(info) => Ok(Some(
                label_of(
                    info.config.as_ref().and_then(|c| c.labels.as_ref()),
                    labels::NODE,
                )
                .unwrap_or("")
                .to_string(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.inner.fail(format!("inspect image {image}"), e)),
        }
    }

    /// [`Runtime::check_definition`] on a connected engine.
    async fn check_definition_with(
        &self,
        docker: &Docker,
        def: &ServiceDefinition,
    ) -> Result<(), RuntimeError> {
        let policy = &self.inner.config.policy;
        policy.check_ports(def)?;
        for (key, dep) in &def.dependencies {
            let image = dep.image.clone().unwrap_or_default();
            let owner = if image.is_empty() {
                None
            } else {
                self.image_owner(docker, &image).await?
            };
            let Some(owner) = owner else {
                return Err(RuntimeError::MissingImage {
                    key: key.clone(),
                    image,
                });
            };
            if owner != self.inner.config.node_id && !policy.image_listed(&image) {
                return Err(PolicyError::ImageNotAllowed {
                    key: key.clone(),
                    image,
                }
                .into());
            }
        }
        Ok(())
    }

    async fn start_impl(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        check_env(spec)?;
        let docker = self.docker().await?;
        // Every image first: nothing is created for a definition that cannot run.
        if !self.image_exists_with(&docker, &spec.image).await? {
            return Err(RuntimeError::MissingImage {
                key: MAIN_CONTAINER_KEY.to_string(),
                image: spec.image.clone(),
            });
        }
        self.check_definition_with(&docker, &spec.definition)
            .await?;
        let order = create_order(&spec.definition)?;
        let _guard = self.instance_lock(&spec.instance_hash).await;
        let mut created = Created::default();
        match self.apply(&docker, spec, &order, &mut created).await {
            Ok(()) => Ok(()),
            Err(e) => {
                warn!("start failed, removing what it created: {e}");
                self.rollback(&docker, &created).await;
                Err(e)
            }
        }
    }

    async fn apply(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        order: &[String],
        created: &mut Created,
    ) -> Result<(), RuntimeError> {
        let node_id = &self.inner.config.node_id;
        let net_name = self.network_name(&spec.instance_hash);
        let mut net_labels = HashMap::from([
            (labels::NODE.to_string(), node_id.clone()),
            (labels::SERVICE.to_string(), spec.service_hash.to_string()),
            (labels::INSTANCE.to_string(), spec.instance_hash.to_string()),
        ]);
        if let Some(sid) = &spec.definition.sid {
            net_labels.insert(labels::SID.to_string(), sid.clone());
        }

        // 1. The instance network.
        let network = match self.inspect_network(docker, &net_name).await? {
            Some(n) => n,
            None => {
                let req = NetworkCreateRequest {
                    name: net_name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(net_labels.clone()),
                    ..Default::default()
                };
                docker
                    .create_network(req)
                    .await
                    .map_err(|e| self.inner.fail(format!("create network {net_name}"), e))?;
                created.network = Some(net_name.clone());
                debug!(network = %net_name, "network created");
                self.inspect_network(docker, &net_name)
                    .await?
                    .ok_or_else(|| {
                        RuntimeError::Docker(format!("network {net_name} vanished after creation"))
                    })?
            }
        };
        let network_id = network.id.clone().unwrap_or_default();

        // 2. Where containers reach the node.
        let port = self.inner.config.service_api_port;
        let endpoint = match self.self_container_id(docker).await? {
            None => {
                let gateway = network
                    .ipam
                    .as_ref()
                    .and_then(|i| i.config.as_ref())
                    .and_then(|c| c.iter().find_map(|c| c.gateway.clone()))
                    .filter(|g| !g.is_empty())
                    .ok_or_else(|| {
                        RuntimeError::Docker(format!(
                            "network {net_name} has no gateway address for containers to reach the node"
                        ))
                    })?;
                let host = if gateway.contains(':') {
                    format!("[{gateway}]")
                } else {
                    gateway
                };
                format!("http://{host}:{port}")
            }
            Some(self_id) => {
                let connected = network
                    .containers
                    .as_ref()
                    .is_some_and(|c| c.contains_key(&self_id));
                if !connected {
                    let req = NetworkConnectRequest {
                        container: self_id.clone(),
                        endpoint_config: Some(EndpointSettings {
                            aliases: Some(vec![NODE_ALIAS.to_string()]),
                            ..Default::default()
                        }),
                    };
                    docker.connect_network(&net_name, req).await.map_err(|e| {
                        self.inner
                            .fail(format!("connect the node's container to {net_name}"), e)
                    })?;
                    created.self_connected = Some(net_name.clone());
                }
                format!("http://{NODE_ALIAS}:{port}")
            }
        };

        // 3. Volumes, named by sid so they outlive containers and redeploys.
        let containers = self.container_specs(spec);
        for (key, c) in &containers {
            for path in &c.volumes {
                let name = self.volume_name(spec, key, path);
                match docker.inspect_volume(&name).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {
                        let mut vlabels = HashMap::from([
                            (labels::NODE.to_string(), node_id.clone()),
                            (labels::SERVICE.to_string(), spec.service_hash.to_string()),
                            (labels::KEY.to_string(), key.to_string()),
                        ]);
                        if let Some(sid) = &spec.definition.sid {
                            vlabels.insert(labels::SID.to_string(), sid.clone());
                        }
                        let req = VolumeCreateRequest {
                            name: Some(name.clone()),
                            labels: Some(vlabels),
                            ..Default::default()
                        };
                        docker
                            .create_volume(req)
                            .await
                            .map_err(|e| self.inner.fail(format!("create volume {name}"), e))?;
                        created.volumes.push(name);
                    }
                    Err(e) => return Err(self.inner.fail(format!("inspect volume {name}"), e)),
                }
            }
        }

        // 4. Containers, in volumesFrom order.
        let mut running: BTreeSet<String> = BTreeSet::new();
        for key in order {
            let Some(c) = containers.get(key.as_str()) else {
                continue;
            };
            let name = self.container_name(&spec.instance_hash, key);
            let body = self.container_body(spec, key, c, &net_name, &network_id, &endpoint)?;
            let wanted_config = body
                .labels
                .as_ref()
                .and_then(|l| l.get(CONFIG_LABEL).cloned())
                .unwrap_or_default();
            match docker.inspect_container(&name, None).await {
                Ok(existing) => {
                    let labels_of = existing.config.as_ref().and_then(|c| c.labels.as_ref());
                    if label_of(labels_of, labels::NODE) != Some(node_id.as_str()) {
                        return Err(RuntimeError::Docker(format!(
                            "container `{name}` exists but does not belong to this node"
                        )));
                    }
                    let live = is_live(&existing);
                    if live {
                        running.insert(key.clone());
                    }
                    if label_of(labels_of, CONFIG_LABEL) == Some(wanted_config.as_str()) {
                        debug!(container = %name, live, "container kept");
                        continue;
                    }
                    if live {
                        debug!(container = %name, "running container kept although its settings changed");
                        continue;
                    }
                    info!(container = %name, "settings changed: recreating the stopped container");
                    self.remove_container(docker, &name).await?;
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(self.inner.fail(format!("inspect container {name}"), e)),
            }
            let opts = CreateContainerOptionsBuilder::new().name(&name).build();
            docker
                .create_container(Some(opts), body)
                .await
                .map_err(|e| self.inner.fail(format!("create container {name}"), e))?;
            created.containers.push(name.clone());
            debug!(container = %name, "container created");
        }

        // 5. Start: dependencies first, then the main container.
        let starts = order
            .iter()
            .filter(|k| k.as_str() != MAIN_CONTAINER_KEY)
            .chain(order.iter().filter(|k| k.as_str() == MAIN_CONTAINER_KEY));
        for key in starts {
            if running.contains(key) {
                continue;
            }
            let name = self.container_name(&spec.instance_hash, key);
            docker
                .start_container(&name, None)
                .await
                .map_err(|e| self.inner.fail(format!("start container {name}"), e))?;
            debug!(container = %name, "container started");
        }
        info!(
            containers = order.len(),
            created = created.containers.len(),
            "instance started"
        );
        Ok(())
    }

    /// Remove what a failed `start` created. Best effort: failures are logged.
    async fn rollback(&self, docker: &Docker, created: &Created) {
        for name in created.containers.iter().rev() {
            if let Err(e) = self.remove_container(docker, name).await {
                warn!(container = %name, "rollback: {e}");
            }
        }
        if let Some(net) = &created.self_connected
            && created.network.is_none()
        {
            // We connected the node to a network that existed before: undo that only.
            match self.inspect_network(docker, net).await {
                Ok(Some(n)) => {
                    if let Err(e) = self.disconnect_self(docker, &n).await {
                        warn!(network = %net, "rollback: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => warn!(network = %net, "rollback: {e}"),
            }
        }
        if let Some(net) = &created.network
            && let Err(e) = self.remove_network(docker, net).await
        {
            warn!(network = %net, "rollback: {e}");
        }
        for name in &created.volumes {
            if let Err(e) = docker
                .remove_volume(name, None::<RemoveVolumeOptions>)
                .await
                && !is_not_found(&e)
            {
                warn!(volume = %name, "rollback: {}", self.inner.fail("remove volume", e));
            }
        }
    }

    /// `service` and the dependencies, by key.
    fn container_specs<'a>(&self, spec: &'a InstanceSpec) -> BTreeMap<&'a str, &'a ContainerSpec> {
        let mut m: BTreeMap<&str, &ContainerSpec> = spec
            .definition
            .dependencies
            .iter()
            .map(|(k, c)| (k.as_str(), c))
            .collect();
        m.insert(MAIN_CONTAINER_KEY, &spec.definition.configuration);
        m
    }

    fn container_body(
        &self,
        spec: &InstanceSpec,
        key: &str,
        c: &ContainerSpec,
        net_name: &str,
        network_id: &str,
        endpoint: &str,
    ) -> Result<ContainerCreateBody, RuntimeError> {
        let cfg = &self.inner.config;
        let is_main = key == MAIN_CONTAINER_KEY;
        let image = if is_main {
            spec.image.clone()
        } else {
            c.image.clone().unwrap_or_default()
        };

        let mut env: BTreeMap<String, String> = c.env.clone();
        if is_main {
            env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            env.insert(ENV_ENDPOINT.into(), endpoint.to_string());
            env.insert(ENV_TOKEN.into(), spec.token.clone());
            env.insert(ENV_SERVICE_HASH.into(), spec.service_hash.to_string());
            env.insert(ENV_INSTANCE_HASH.into(), spec.instance_hash.to_string());
        }
        let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();

        let binds: Vec<String> = c
            .volumes
            .iter()
            .map(|path| format!("{}:{path}", self.volume_name(spec, key, path)))
            .collect();
        let volumes_from: Vec<String> = c
            .volumes_from
            .iter()
            .map(|k| self.container_name(&spec.instance_hash, k))
            .collect();
        let exposed: Vec<String> = c
            .ports
            .iter()
            .map(|p| format!("{}/tcp", p.container))
            .collect();
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = c
            .ports
            .iter()
            .map(|p| {
                (
                    format!("{}/tcp", p.container),
                    Some(vec![PortBinding {
                        host_ip: Some(cfg.policy.publish_ip.to_string()),
                        host_port: p.host.map(|h| h.to_string()),
                    }]),
                )
            })
            .collect();

        let limits: ResourceLimits = spec.limits.unwrap_or(cfg.default_limits);
        let restart_policy = if cfg.max_restarts == 0 {
            RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }
        } else {
            RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(i64::from(cfg.max_restarts)),
            }
        };

        let mut labels = HashMap::from([
            (labels::NODE.to_string(), cfg.node_id.clone()),
            (labels::SERVICE.to_string(), spec.service_hash.to_string()),
            (labels::INSTANCE.to_string(), spec.instance_hash.to_string()),
            (labels::KEY.to_string(), key.to_string()),
        ]);
        if let Some(sid) = &spec.definition.sid {
            labels.insert(labels::SID.to_string(), sid.clone());
        }

        let mut body = ContainerCreateBody {
            image: Some(image),
            env: Some(env),
            entrypoint: c.command.as_ref().map(|cmd| vec![cmd.clone()]),
            cmd: (!c.args.is_empty()).then(|| c.args.clone()),
            labels: Some(labels),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(HostConfig {
                init: Some(true),
                privileged: Some(false),
                security_opt: Some(vec!["no-new-privileges".into()]),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: (!cfg.policy.capabilities.is_empty())
                    .then(|| cfg.policy.capabilities.clone()),
                restart_policy: Some(restart_policy),
                memory: limits.memory,
                nano_cpus: limits.nano_cpus,
                pids_limit: limits.pids,
                binds: (!binds.is_empty()).then_some(binds),
                volumes_from: (!volumes_from.is_empty()).then_some(volumes_from),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                network_mode: Some(net_name.to_string()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    net_name.to_string(),
                    EndpointSettings {
                        aliases: Some(vec![key.to_string()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        // Fingerprint of everything above plus the network it was made for, so a stopped
        // container made with other settings (token, endpoint, limits) gets recreated.
        let value = serde_json::to_value(&body)
            .map_err(|e| RuntimeError::Docker(format!("encode container settings: {e}")))?;
        let mut bytes = mesg_protocol::canonical::to_canonical_json(&value);
        bytes.extend_from_slice(network_id.as_bytes());
        let fingerprint = hex::encode(&Hash32::sha256(&bytes).as_bytes()[..8]);
        if let Some(l) = body.labels.as_mut() {
            l.insert(CONFIG_LABEL.to_string(), fingerprint);
        }
        Ok(body)
    }

    async fn stop_impl(
        &self,
        instance: &InstanceHash,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let _guard = self.instance_lock(instance).await;
        let containers = self.instance_containers(&docker, instance).await?;
        if containers.is_empty() {
            debug!("nothing to stop");
            return Ok(());
        }
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let t = i32::try_from(secs).unwrap_or(i32::MAX);
        // The HTTP call lasts as long as the grace period: give it room.
        let docker = docker.with_timeout(Duration::from_secs(secs.saturating_add(60).max(120)));
        let stop_one = |c: &ContainerSummary| {
            let docker = docker.clone();
            let name = summary_name(c);
            async move {
                let opts = StopContainerOptionsBuilder::new().t(t).build();
                match docker.stop_container(&name, Some(opts)).await {
                    Ok(()) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(self.inner.fail(format!("stop container {name}"), e)),
                }
            }
        };
        // The main container first, so it does not see its dependencies vanish.
        let (main, deps): (Vec<_>, Vec<_>) = containers
            .iter()
            .partition(|c| summary_key(c) == MAIN_CONTAINER_KEY);
        for c in main {
            stop_one(c).await?;
        }
        for r in futures::future::join_all(deps.into_iter().map(stop_one)).await {
            r?;
        }
        info!(containers = containers.len(), "instance stopped");
        Ok(())
    }

    async fn delete_impl(
        &self,
        instance: &InstanceHash,
        keep_data: bool,
    ) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let guard = self.instance_lock(instance).await;
        let containers = self.instance_containers(&docker, instance).await?;
        // Named volumes mounted by the instance (own or through volumesFrom).
        let mut volumes: BTreeSet<String> = BTreeSet::new();
        if !keep_data {
            for c in &containers {
                let name = summary_name(c);
                match docker.inspect_container(&name, None).await {
                    Ok(info) => {
                        for m in info.mounts.unwrap_or_default() {
                            if m.typ.as_deref() == Some("volume")
                                && let Some(v) = m.name
                            {
                                volumes.insert(v);
                            }
                        }
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(self.inner.fail(format!("inspect container {name}"), e)),
                }
            }
        }
        for r in futures::future::join_all(
            containers
                .iter()
                .map(|c| async { self.remove_container(&docker, &summary_name(c)).await }),
        )
        .await
        {
            r?;
        }
        self.remove_network(&docker, &self.network_name(instance))
            .await?;
        if !volumes.is_empty() {
            let ours = self.own_volumes(&docker).await?;
            for v in volumes.intersection(&ours) {
                match docker.remove_volume(v, None::<RemoveVolumeOptions>).await {
                    Ok(()) => debug!(volume = %v, "volume removed"),
                    Err(e) if is_not_found(&e) => {}
                    // Shared with another instance of the same sid that still runs.
                    Err(e) if is_status(&e, 409) => {
                        info!(volume = %v, "volume kept: another container uses it")
                    }
                    Err(e) => return Err(self.inner.fail(format!("remove volume {v}"), e)),
                }
            }
        }
        drop(guard);
        self.forget_lock(instance);
        info!(
            containers = containers.len(),
            keep_data,
            volumes = volumes.len(),
            "instance deleted"
        );
        Ok(())
    }

    async fn own_volumes(&self, docker: &Docker) -> Result<BTreeSet<String>, RuntimeError> {
        let filters = HashMap::from([(
            "label",
            vec![format!("{}={}", labels::NODE, self.inner.config.node_id)],
        )]);
        let opts = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let list = docker
            .list_volumes(Some(opts))
            .await
            .map_err(|e| self.inner.fail("list volumes", e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    async fn status_impl(&self, instance: &InstanceHash) -> Result<InstanceState, RuntimeError> {
        let docker = self.docker().await?;
        let list = self.instance_containers(&docker, instance).await?;
        let mut states = Vec::with_capacity(list.len());
        let mut oom = Vec::with_capacity(list.len());
        for c in &list {
            let name = summary_name(c);
            match docker.inspect_container(&name, None).await {
                Ok(info) => {
                    oom.push(
                        info.state
                            .as_ref()
                            .and_then(|s| s.oom_killed)
                            .unwrap_or(false),
                    );
                    states.push(container_state(summary_key(c), name, &info));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(self.inner.fail(format!("inspect container {name}"), e)),
            }
        }
        Ok(aggregate(states, &oom, self.inner.config.max_restarts))
    }

    async fn reconcile_impl(
        &self,
        desired: &[InstanceSpec],
    ) -> Result<ReconcileReport, RuntimeError> {
        let docker = self.docker().await?;
        let node = &self.inner.config.node_id;
        let wanted: HashMap<InstanceHash, &InstanceSpec> =
            desired.iter().map(|s| (s.instance_hash, s)).collect();
        let all = self
            .list_containers(&docker, None)
            .await
            .map_err(|e| self.inner.fail("list containers", e))?;
        let mut report = ReconcileReport::default();

        // Orphans first: they may hold ports or memory the desired ones need. Only what
        // the runtime made (it always sets `mesg.instance`) is touched: a container that
        // merely carries the node label, like the node's own, is left alone.
        let self_id = self.self_container_id(&docker).await.ok().flatten();
        let mut by_instance: HashMap<InstanceHash, Vec<&ContainerSummary>> = HashMap::new();
        for c in &all {
            let instance = label_of(c.labels.as_ref(), labels::INSTANCE)
                .and_then(|i| i.parse::<InstanceHash>().ok());
            match instance {
                None => debug!(container = %summary_name(c), "not an instance container: kept"),
                Some(_) if self_id.is_some() && c.id == self_id => {}
                Some(i) if wanted.contains_key(&i) => by_instance.entry(i).or_default().push(c),
                Some(_) => {
                    let name = summary_name(c);
                    self.remove_container(&docker, &name).await?;
                    info!(container = %name, "orphan container removed");
                    report.removed.push(name);
                }
            }
        }
        let filters = HashMap::from([("label", vec![format!("{}={node}", labels::NODE)])]);
        let networks = docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| self.inner.fail("list networks", e))?;
        for n in networks {
            let instance = label_of(n.labels.as_ref(), labels::INSTANCE)
                .and_then(|i| i.parse::<InstanceHash>().ok());
            if instance.is_none_or(|i| wanted.contains_key(&i)) {
                continue;
            }
            let Some(name) = n.name else { continue };
            self.remove_network(&docker, &name).await?;
            info!(network = %name, "orphan network removed");
            report.removed.push(name);
        }

        // Desired instances: adopt the ones fully up, start the others.
        let mut to_start = Vec::new();
        for spec in desired {
            let containers = by_instance.get(&spec.instance_hash);
            let live: BTreeSet<&str> = containers
                .into_iter()
                .flatten()
                .filter(|c| {
                    matches!(
                        c.state.map(|s| s.to_string()).as_deref(),
                        Some("running" | "restarting")
                    )
                })
                .map(|c| summary_key(c))
                .collect();
            let all_up = self.container_specs(spec).keys().all(|k| live.contains(k));
            if all_up {
                report.adopted.push(spec.instance_hash);
            } else {
                to_start.push(spec);
            }
        }
        let starts: Vec<_> = to_start
            .into_iter()
            .map(|spec| {
                let span = info_span!("runtime.start", instance = %spec.instance_hash);
                let instance = spec.instance_hash;
                let fut = self.start_impl(spec).instrument(span);
                async move { (instance, fut.await) }
            })
            .collect();
        let results: Vec<(InstanceHash, Result<(), RuntimeError>)> = stream::iter(starts)
            .buffer_unordered(RECONCILE_PARALLELISM)
            .collect()
            .await;
        for (instance, r) in results {
            match r {
                Ok(()) => report.restarted.push(instance),
                Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                Err(e) => {
                    warn!(%instance, "cannot start desired instance: {e}");
                    report.failed.push((instance, e.to_string()));
                }
            }
        }
        info!(
            adopted = report.adopted.len(),
            restarted = report.restarted.len(),
            removed = report.removed.len(),
            failed = report.failed.len(),
            "reconciled"
        );
        Ok(report)
    }
}

impl Inner {
    fn node8(&self) -> String {
        sanitize(short(&self.config.node_id, 8))
    }

    fn host_display(&self) -> String {
        match &self.host {
            Some(h) => h.clone(),
            None => match std::env::var("DOCKER_HOST") {
                Ok(h) if h.starts_with("unix://") => h,
                _ => "unix:///var/run/docker.sock".to_string(),
            },
        }
    }

    async fn docker(&self) -> Result<Docker, RuntimeError> {
        if let Some(d) = lock(&self.client).clone() {
            return Ok(d);
        }
        let host = self.host_display();
        let docker = match &self.host {
            Some(h) => Docker::connect_with_host(h),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| RuntimeError::Unavailable(format!("{host}: {e}")))?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| {
                RuntimeError::Unavailable(format!(
                    "{host}: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| RuntimeError::Unavailable(format!("{host}: {e}")))?;
        info!(%host, api = %docker.client_version(), "connected to the Docker Engine");
        *lock(&self.client) = Some(docker.clone());
        Ok(docker)
    }

    /// A bollard error as a [`RuntimeError`]; transport failures drop the client so the
    /// next call connects (and negotiates) again.
    fn fail(&self, what: impl fmt::Display, e: DockerError) -> RuntimeError {
        if is_transport(&e) {
            *lock(&self.client) = None;
            RuntimeError::Unavailable(format!("{}: {what}: {e}", self.host_display()))
        } else {
            match e {
                DockerError::DockerResponseServerError { message, .. } => {
                    RuntimeError::Docker(format!("{what}: {message}"))
                }
                e => RuntimeError::Docker(format!("{what}: {e}")),
            }
        }
    }
}

/// What one `start` call created, to undo it on failure.
#[derive(Debug, Default)]
struct Created {
    network: Option<String>,
    self_connected: Option<String>,
    volumes: Vec<String>,
    containers: Vec<String>,
}

fn is_transport(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::SocketNotFoundError(_)
            | DockerError::HyperLegacyError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::IOError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::UnsupportedURISchemeError { .. }
    )
}

fn is_status(e: &DockerError, code: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

fn is_not_found(e: &DockerError) -> bool {
    is_status(e, 404)
}

fn label_of<'a>(labels: Option<&'a HashMap<String, String>>, key: &str) -> Option<&'a str> {
    labels.and_then(|l| l.get(key)).map(String::as_str)
}

fn summary_key(c: &ContainerSummary) -> &str {
    label_of(c.labels.as_ref(), labels::KEY).unwrap_or("")
}

fn summary_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .or_else(|| c.id.clone())
        .unwrap_or_default()
}

fn is_live(c: &ContainerInspectResponse) -> bool {
    c.state
        .as_ref()
        .is_some_and(|s| s.running == Some(true) || s.restarting == Some(true))
}

/// The first `n` characters of `s`.
fn short(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Only characters Docker accepts in object names.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Overrides may only use keys the definition declares.
fn check_env(spec: &InstanceSpec) -> Result<(), RuntimeError> {
    let declared = &spec.definition.configuration.env;
    match spec.env.keys().find(|k| !declared.contains_key(*k)) {
        Some(key) => Err(RuntimeError::UndeclaredEnv {
            key: key.clone(),
            declared: declared.keys().cloned().collect(),
        }),
        None => Ok(()),
    }
}

/// Keys in creation order: a container comes after those it takes volumes from;
/// otherwise dependencies (by key) before `service`.
fn create_order(def: &mesg_protocol::ServiceDefinition) -> Result<Vec<String>, RuntimeError> {
    let mut nodes: Vec<(&str, &ContainerSpec)> = def
        .dependencies
        .iter()
        .map(|(k, c)| (k.as_str(), c))
        .collect();
    nodes.push((MAIN_CONTAINER_KEY, &def.configuration));
    for (key, c) in &nodes {
        if let Some(unknown) = c
            .volumes_from
            .iter()
            .find(|f| !nodes.iter().any(|(k, _)| k == f) || f == key)
        {
            return Err(RuntimeError::Docker(format!(
                "invalid definition: container `{key}` takes volumes from `{unknown}`, which is not another container of the service"
            )));
        }
    }
    let mut order: Vec<String> = Vec::with_capacity(nodes.len());
    while order.len() < nodes.len() {
        let next = nodes.iter().find(|(k, c)| {
            !order.iter().any(|o| o == k) && c.volumes_from.iter().all(|f| order.contains(f))
        });
        match next {
            Some((k, _)) => order.push((*k).to_string()),
            None => {
                let left: Vec<&str> = nodes
                    .iter()
                    .map(|(k, _)| *k)
                    .filter(|k| !order.iter().any(|o| o == k))
                    .collect();
                return Err(RuntimeError::Docker(format!(
                    "invalid definition: volumesFrom forms a cycle between {}",
                    left.join(", ")
                )));
            }
        }
    }
    Ok(order)
}

fn container_state(key: &str, name: String, info: &ContainerInspectResponse) -> ContainerState {
    let s = info.state.as_ref();
    ContainerState {
        key: key.to_string(),
        name,
        running: s.and_then(|s| s.running).unwrap_or(false),
        restarting: s.and_then(|s| s.restarting).unwrap_or(false),
        exit_code: s.and_then(|s| s.exit_code),
        restart_count: info.restart_count.unwrap_or(0),
        state: s
            .and_then(|s| s.status)
            .unwrap_or(ContainerStateStatusEnum::EMPTY)
            .to_string(),
    }
}

enum Verdict {
    Running,
    Starting(String),
    Stopped(String),
    Crashed(String),
}

fn restarts(n: i64) -> String {
    if n == 1 {
        "1 restart".to_string()
    } else {
        format!("{n} restarts")
    }
}

fn verdict(c: &ContainerState, oom_killed: bool, max_restarts: u32) -> Verdict {
    let key = &c.key;
    let code = c.exit_code.unwrap_or(0);
    if c.restarting {
        return Verdict::Starting(format!(
            "container `{key}` exited with code {code} and is being restarted ({} of at most {max_restarts})",
            c.restart_count + 1
        ));
    }
    if c.running {
        return Verdict::Running;
    }
    match c.state.as_str() {
        "created" => Verdict::Starting(format!("container `{key}` is created, not yet started")),
        "dead" => Verdict::Crashed(format!(
            "container `{key}` is dead (Docker failed to stop or remove it)"
        )),
        "paused" => Verdict::Stopped(format!("container `{key}` is paused")),
        _ => {
            // Docker's own restarts stopped: the cap was reached. A stop by signal
            // (143 SIGTERM, 137 SIGKILL without OOM) or a clean exit is deliberate.
            let by_signal = code == 143 || (code == 137 && !oom_killed);
            let capped = c.restart_count >= i64::from(max_restarts);
            if code != 0 && !by_signal && capped {
                let what = if oom_killed {
                    format!("container `{key}` was killed for lack of memory (exit code {code})")
                } else {
                    format!("container `{key}` exited with code {code}")
                };
                Verdict::Crashed(format!("{what} after {}", restarts(c.restart_count)))
            } else {
                Verdict::Stopped(format!("container `{key}` exited with code {code}"))
            }
        }
    }
}

fn aggregate(containers: Vec<ContainerState>, oom: &[bool], max_restarts: u32) -> InstanceState {
    if containers.is_empty() {
        return InstanceState {
            status: InstanceStatus::Missing,
            reason: Some("no container of this instance exists on this node".into()),
            containers,
        };
    }
    let mut running = 0;
    let mut starting = Vec::new();
    let mut stopped = Vec::new();
    let mut crashed = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        match verdict(c, oom.get(i).copied().unwrap_or(false), max_restarts) {
            Verdict::Running => running += 1,
            Verdict::Starting(r) => starting.push(r),
            Verdict::Stopped(r) => stopped.push(r),
            Verdict::Crashed(r) => crashed.push(r),
        }
    }
    let (status, reason) = if !crashed.is_empty() {
        (InstanceStatus::Crashed, Some(crashed.join("; ")))
    } else if !starting.is_empty() {
        (InstanceStatus::Starting, Some(starting.join("; ")))
    } else if running == containers.len() {
        (InstanceStatus::Running, None)
    } else if running == 0 {
        (InstanceStatus::Stopped, Some(stopped.join("; ")))
    } else {
        (InstanceStatus::Partial, Some(stopped.join("; ")))
    };
    InstanceState {
        status,
        reason,
        containers,
    }
}

fn event_of(ev: &EventMessage) -> Option<RuntimeEvent> {
    let attrs = ev.actor.as_ref()?.attributes.as_ref()?;
    let instance: InstanceHash = attrs.get(labels::INSTANCE)?.parse().ok()?;
    let key = attrs.get(labels::KEY)?.clone();
    match ev.action.as_deref()? {
        "start" => Some(RuntimeEvent::Started { instance, key }),
        "die" => Some(RuntimeEvent::Died {
            instance,
            key,
            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        }),
        _ => None,
    }
}

fn nanos_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Follow this node's container `start`/`die` events and broadcast them, reconnecting
/// (from the last event seen, so none is lost or repeated) when the stream breaks.
async fn watch_events(weak: Weak<Inner>, mut stop: oneshot::Receiver<()>, started: SystemTime) {
    let mut last_nano = nanos_since_epoch(started);
    let mut backoff = EVENT_BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        let attempt = {
            let Some(inner) = weak.upgrade() else { return };
            let filters = HashMap::from([
                ("type", vec!["container".to_string()]),
                ("event", vec!["start".to_string(), "die".to_string()]),
                (
                    "label",
                    vec![format!("{}={}", labels::NODE, inner.config.node_id)],
                ),
            ]);
            inner
                .docker()
                .await
                .map(|d| (d, inner.events.clone(), filters))
        };
        match attempt {
            Err(e) => {
                if failures == 0 {
                    warn!("cannot follow Docker events: {e}; retrying");
                } else {
                    debug!("cannot follow Docker events: {e}");
                }
                failures += 1;
            }
            Ok((docker, tx, filters)) => {
                let since = format!(
                    "{}.{:09}",
                    last_nano.div_euclid(1_000_000_000),
                    last_nano.rem_euclid(1_000_000_000)
                );
                let opts = EventsOptionsBuilder::new()
                    .since(&since)
                    .filters(&filters)
                    .build();
                let mut events = docker.events(Some(opts));
                let connected = Instant::now();
                if failures > 0 {
                    info!("following Docker events again");
                }
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        item = events.next() => match item {
                            Some(Ok(ev)) => {
                                failures = 0;
                                if let Some(t) = ev.time_nano {
                                    if t <= last_nano {
                                        continue;
                                    }
                                    last_nano = t;
                                }
                                if let Some(e) = event_of(&ev) {
                                    debug!(?e, "container event");
                                    let _ = tx.send(e);
                                }
                            }
                            Some(Err(e)) => {
                                warn!("Docker event stream broke: {e}; reconnecting");
                                if let Some(inner) = weak.upgrade() {
                                    *lock(&inner.client) = None;
                                }
                                failures += 1;
                                break;
                            }
                            None => {
                                warn!("Docker event stream ended; reconnecting");
                                if let Some(inner) = weak.upgrade() {
                                    *lock(&inner.client) = None;
                                }
                                failures += 1;
                                break;
                            }
                        }
                    }
                }
                if connected.elapsed() > Duration::from_secs(10) {
                    backoff = EVENT_BACKOFF_MIN;
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(EVENT_BACKOFF_MAX);
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn instance_subnets(&self) -> Result<Vec<String>, RuntimeError> {
        let docker = self.docker().await?;
        let node = &self.inner.config.node_id;
        let filters = HashMap::from([("label", vec![format!("{}={node}", labels::NODE)])]);
        let networks = docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| self.inner.fail("list networks", e))?;
        Ok(networks
            .into_iter()
            .filter_map(|n| n.ipam?.config)
            .flatten()
            .filter_map(|c| c.subnet)
            .collect())
    }

    async fn check(&self) -> Result<DockerInfo, RuntimeError> {
        let docker = self.docker().await?;
        let v = docker
            .version()
            .await
            .map_err(|e| self.inner.fail("version", e))?;
        Ok(DockerInfo {
            server_version: v.version.unwrap_or_default(),
            api_version: docker.client_version().to_string(),
        })
    }

    async fn build(
        &self,
        tar: Vec<u8>,
        tag: &str,
        progress: mpsc::Sender<String>,
    ) -> Result<(), RuntimeError> {
        let span = info_span!("runtime.build", %tag);
        async move {
            let docker = self.docker().await?;
            let labels = HashMap::from([(labels::NODE, self.inner.config.node_id.as_str())]);
            let opts = BuildImageOptionsBuilder::new()
                .t(tag)
                .rm(true)
                .forcerm(true)
                .networkmode("none")
                .memory(BUILD_MEMORY)
                .memswap(BUILD_MEMORY)
                .cpuperiod(BUILD_CPU_PERIOD)
                .cpuquota(BUILD_CPU_QUOTA)
                .labels(&labels)
                .build();
            let body = bollard::body_full(bytes::Bytes::from(tar));
            let mut out = docker.build_image(opts, None, Some(body));
            while let Some(item) = out.next().await {
                match item {
                    Ok(info) => {
                        if let Some(text) = info.stream {
                            for line in text.lines() {
                                let line = line.trim_end();
                                if !line.is_empty() {
                                    // A gone receiver only means nobody watches.
                                    let _ = progress.send(line.to_string()).await;
                                }
                            }
                        }
                        if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                            return Err(RuntimeError::Build(msg));
                        }
                    }
                    Err(DockerError::DockerStreamError { error }) => {
                        return Err(RuntimeError::Build(error));
                    }
                    Err(DockerError::DockerResponseServerError { message, .. }) => {
                        return Err(RuntimeError::Build(message));
                    }
                    Err(e) => return Err(self.inner.fail(format!("build {tag}"), e)),
                }
            }
            info!("image built");
            Ok(())
        }
        .instrument(span)
        .await
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
        let images = super::policy::dockerfile_images(dockerfile)?;
        if images.is_empty() {
            return Ok(());
        }
        let docker = self.docker().await?;
        for image in images {
            let owner = self.image_owner(&docker, &image).await?;
            let allowed = owner.is_some_and(|o| {
                o == self.inner.config.node_id || self.inner.config.policy.image_listed(&image)
            });
            if !allowed {
                return Err(PolicyError::BaseImageNotAllowed { image }.into());
            }
        }
        Ok(())
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        let span = info_span!("runtime.start", instance = %spec.instance_hash);
        self.start_impl(spec).instrument(span).await
    }

    async fn stop(&self, instance: &InstanceHash, grace: Duration) -> Result<(), RuntimeError> {
        let span = info_span!("runtime.stop", %instance);
        self.stop_impl(instance, grace).instrument(span).await
    }

    async fn delete(&self, instance: &InstanceHash, keep_data: bool) -> Result<(), RuntimeError> {
        let span = info_span!("runtime.delete", %instance);
        self.delete_impl(instance, keep_data).instrument(span).await
    }

    async fn status(&self, instance: &InstanceHash) -> Result<InstanceState, RuntimeError> {
        let span = info_span!("runtime.status", %instance);
        self.status_impl(instance).instrument(span).await
    }

    fn logs(
        &self,
        instance: &InstanceHash,
        follow: bool,
        tail: Option<usize>,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let this = self.clone();
        let instance = *instance;
        let s = async_stream::stream! {
            let docker = match this.docker().await {
                Ok(d) => d,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            let containers = match this.instance_containers(&docker, &instance).await {
                Ok(c) => c,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            if containers.is_empty() {
                yield Err(RuntimeError::UnknownInstance(instance));
                return;
            }
            let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
            let streams = containers.iter().map(|c| {
                let key = summary_key(c).to_string();
                let name = summary_name(c);
                let opts = LogsOptionsBuilder::new()
                    .follow(follow)
                    .stdout(true)
                    .stderr(true)
                    .tail(&tail)
                    .build();
                let inner = this.inner.clone();
                docker
                    .logs(&name, Some(opts))
                    .flat_map(move |item| {
                        let lines: Vec<Result<LogLine, RuntimeError>> = match item {
                            Ok(out) => {
                                let (stream, bytes) = match out {
                                    bollard::container::LogOutput::StdErr { message } => ("stderr", message),
                                    bollard::container::LogOutput::StdOut { message }
                                    | bollard::container::LogOutput::Console { message } => ("stdout", message),
                                    bollard::container::LogOutput::StdIn { message } => ("stdin", message),
                                };
                                String::from_utf8_lossy(&bytes)
                                    .lines()
                                    .map(|text| {
                                        Ok(LogLine {
                                            key: key.clone(),
                                            stream: stream.to_string(),
                                            text: text.to_string(),
                                        })
                                    })
                                    .collect()
                            }
                            Err(e) => vec![Err(inner.fail(format!("logs of {name}"), e))],
                        };
                        stream::iter(lines)
                    })
                    .boxed()
            });
            let mut merged = stream::select_all(streams);
            while let Some(item) = merged.next().await {
                yield item;
            }
        };
        Box::pin(s)
    }

    async fn reconcile(&self, desired: &[InstanceSpec]) -> Result<ReconcileReport, RuntimeError> {
        let span = info_span!("runtime.reconcile", desired = desired.len());
        self.reconcile_impl(desired).instrument(span).await
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        let rx = self.inner.events.subscribe();
        self.inner.watch_wanted.store(true, Ordering::Relaxed);
        self.ensure_watcher();
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(
        state: &str,
        running: bool,
        restarting: bool,
        code: i64,
        restarts: i64,
    ) -> ContainerState {
        ContainerState {
            key: "service".into(),
            name: "n".into(),
            running,
            restarting,
            exit_code: Some(code),
            restart_count: restarts,
            state: state.into(),
        }
    }

    #[test]
    fn status_rules() {
        let s = aggregate(vec![cs("exited", false, false, 3, 5)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Crashed);
        assert_eq!(
            s.reason.as_deref(),
            Some("container `service` exited with code 3 after 5 restarts")
        );
        // Stopped by `docker stop` after restarts: not a crash.
        let s = aggregate(vec![cs("exited", false, false, 143, 5)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Stopped);
        // Killed for memory: a crash even though 137.
        let s = aggregate(vec![cs("exited", false, false, 137, 2)], &[true], 2);
        assert_eq!(s.status, InstanceStatus::Crashed);
        let s = aggregate(vec![cs("restarting", false, true, 3, 1)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Starting);
        let s = aggregate(vec![cs("created", false, false, 0, 0)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Starting);
        let mut dep = cs("exited", false, false, 0, 0);
        dep.key = "db".into();
        let s = aggregate(
            vec![cs("running", true, false, 0, 0), dep],
            &[false, false],
            5,
        );
        assert_eq!(s.status, InstanceStatus::Partial);
        let s = aggregate(vec![cs("running", true, false, 0, 0)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Running);
        assert!(s.reason.is_none());
        let s = aggregate(vec![], &[], 5);
        assert_eq!(s.status, InstanceStatus::Missing);
    }

    #[test]
    fn volumes_from_order() {
        let mut def = mesg_protocol::ServiceDefinition::from_yaml(
            "name: t\ndependencies:\n  a:\n    image: x\n    volumesFrom: [service]\n  b:\n    image: y\nconfiguration:\n  volumesFrom: [b]\n",
        )
        .expect("definition");
        assert_eq!(create_order(&def).expect("order"), ["b", "service", "a"]);
        def.configuration.volumes_from = vec!["a".into()];
        assert!(create_order(&def).is_err());
    }

    #[test]
    fn volumes_of_one_sid_are_per_publisher() {
        let rt = DockerRuntime::new(RuntimeConfig {
            node_id: "node1234abcd".into(),
            service_api_port: 1,
            self_container: None,
            default_limits: ResourceLimits::default(),
            max_restarts: 1,
            policy: super::super::ContainerPolicy::default(),
        });
        let def = mesg_protocol::ServiceDefinition::from_yaml("name: t\nsid: acme.db\n").unwrap();
        let spec = |seed: u8, hash: u8| InstanceSpec {
            instance_hash: mesg_protocol::InstanceHash(Hash32::sha256(&[hash])),
            service_hash: mesg_protocol::ServiceHash(Hash32::sha256(&[hash])),
            definition: def.clone(),
            publisher: mesg_protocol::Keypair::from_secret_bytes([seed; 32]).public(),
            image: "i".into(),
            env: BTreeMap::new(),
            token: "t".into(),
            limits: None,
        };
        let name = |s: &InstanceSpec| rt.volume_name(s, "service", "/data");
        // A redeploy (another service hash) by the same publisher: the same volume.
        assert_eq!(name(&spec(1, 1)), name(&spec(1, 2)));
        // The same sid by another publisher: another volume.
        assert_ne!(name(&spec(1, 1)), name(&spec(2, 1)));
        assert!(name(&spec(1, 1)).starts_with("mesg-node1234-acme.db-"));
    }

    #[test]
    fn names_are_docker_safe() {
        assert_eq!(sanitize("a b/c"), "a-b-c");
        assert_eq!(short("abcdef", 3), "abc");
        assert_eq!(short("ab", 3), "ab");
    }
}
