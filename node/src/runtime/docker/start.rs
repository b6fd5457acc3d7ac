//! Starting an instance: check that it can run (env, images, policy), then create what is
//! missing in five steps (network, the node's endpoint on it, volumes, containers, start)
//! and, when a step fails, remove again what this call created. Idempotent: what exists
//! and runs is kept.

use super::DockerRuntime;
use super::body::{Attachment, CONFIG_LABEL};
use super::connection::is_not_found;
use super::names::label_of;
use super::state::is_live;
use crate::runtime::{InstanceSpec, NODE_ALIAS, RuntimeError, labels};
use bollard::Docker;
use bollard::models::{
    EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkInspect,
    VolumeCreateRequest,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveVolumeOptions};
use mesg_protocol::definition::{ContainerSpec, MAIN_CONTAINER_KEY};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, info, warn};

/// What one `start` call created, to undo it on failure.
#[derive(Debug, Default)]
struct Created {
    network: Option<String>,
    self_connected: Option<String>,
    volumes: Vec<String>,
    containers: Vec<String>,
}

impl DockerRuntime {
    /// [`crate::runtime::Runtime::start`] (also used by `reconcile`).
    pub(super) async fn start_instance(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        spec.check_env()?;
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
        let _guard = self.inner.locks.acquire(&spec.instance_hash).await;
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

    /// The five steps of a start, each recording in `created` what it made.
    async fn apply(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        order: &[String],
        created: &mut Created,
    ) -> Result<(), RuntimeError> {
        let net_name = self.network_name(&spec.instance_hash);
        let network = self
            .ensure_network(docker, spec, &net_name, created)
            .await?;
        let network_id = network.id.clone().unwrap_or_default();
        let endpoint = self
            .node_endpoint(docker, &network, &net_name, created)
            .await?;
        let containers = self.container_specs(spec);
        self.ensure_volumes(docker, spec, &containers, created)
            .await?;
        let at = Attachment {
            net_name: &net_name,
            network_id: &network_id,
            endpoint: &endpoint,
        };
        let running = self
            .ensure_containers(docker, spec, order, &containers, at, created)
            .await?;
        self.start_containers(docker, spec, order, &running).await?;
        info!(
            containers = order.len(),
            created = created.containers.len(),
            "instance started"
        );
        Ok(())
    }

    /// Step 1: the instance network, created if missing.
    async fn ensure_network(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        net_name: &str,
        created: &mut Created,
    ) -> Result<NetworkInspect, RuntimeError> {
        if let Some(n) = self.inspect_network(docker, net_name).await? {
            return Ok(n);
        }
        let req = NetworkCreateRequest {
            name: net_name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(self.network_labels(spec)),
            ..Default::default()
        };
        docker
            .create_network(req)
            .await
            .map_err(|e| self.inner.fail(format!("create network {net_name}"), e))?;
        created.network = Some(net_name.to_string());
        debug!(network = %net_name, "network created");
        self.inspect_network(docker, net_name)
            .await?
            .ok_or_else(|| {
                RuntimeError::Docker(format!("network {net_name} vanished after creation"))
            })
    }

    /// Step 2: where containers reach the node (`MESG_ENDPOINT`): the network's gateway,
    /// or, when the node runs in a container, that container, connected to the network
    /// with the alias [`NODE_ALIAS`].
    async fn node_endpoint(
        &self,
        docker: &Docker,
        network: &NetworkInspect,
        net_name: &str,
        created: &mut Created,
    ) -> Result<String, RuntimeError> {
        let port = self.inner.config.service_api_port;
        let Some(self_id) = self.self_container_id(docker).await? else {
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
            return Ok(format!("http://{host}:{port}"));
        };
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
            docker.connect_network(net_name, req).await.map_err(|e| {
                self.inner
                    .fail(format!("connect the node's container to {net_name}"), e)
            })?;
            created.self_connected = Some(net_name.to_string());
        }
        Ok(format!("http://{NODE_ALIAS}:{port}"))
    }

    /// Step 3: volumes, named by sid so they outlive containers and redeploys.
    async fn ensure_volumes(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        containers: &BTreeMap<&str, &ContainerSpec>,
        created: &mut Created,
    ) -> Result<(), RuntimeError> {
        for (key, c) in containers {
            for path in &c.volumes {
                let name = self.volume_name(spec, key, path);
                match docker.inspect_volume(&name).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {
                        let req = VolumeCreateRequest {
                            name: Some(name.clone()),
                            labels: Some(self.volume_labels(spec, key)),
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
        Ok(())
    }

    /// Step 4: containers, in volumesFrom order. An existing container is kept when it
    /// runs or its settings are unchanged, else recreated. Returns the keys already
    /// running.
    async fn ensure_containers(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        order: &[String],
        containers: &BTreeMap<&str, &ContainerSpec>,
        at: Attachment<'_>,
        created: &mut Created,
    ) -> Result<BTreeSet<String>, RuntimeError> {
        let node_id = &self.inner.config.node_id;
        let mut running: BTreeSet<String> = BTreeSet::new();
        for key in order {
            let Some(c) = containers.get(key.as_str()) else {
                continue;
            };
            let name = self.container_name(&spec.instance_hash, key);
            let body = self.container_body(spec, key, c, at)?;
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
        Ok(running)
    }

    /// Step 5: start what does not run, dependencies first, then the main container.
    async fn start_containers(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        order: &[String],
        running: &BTreeSet<String>,
    ) -> Result<(), RuntimeError> {
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

#[cfg(test)]
mod tests {
    use super::create_order;

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
}
