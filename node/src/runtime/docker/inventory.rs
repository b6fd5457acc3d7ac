//! Finding this node's objects in Docker: containers (of one instance or all), networks
//! and their subnets, volumes, and the node's own container. Every list is filtered by the
//! `mesg.node` label, and a network found by name must carry it, so nodes sharing an
//! engine never see or touch each other's objects.

use super::DockerRuntime;
use super::connection::is_not_found;
use super::names::{label_of, summary_key};
use crate::runtime::{RuntimeError, labels};
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerSummary, Network, NetworkInspect};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};
use mesg_protocol::InstanceHash;
use mesg_protocol::definition::MAIN_CONTAINER_KEY;
use std::collections::{BTreeSet, HashMap};
use tracing::field;

impl DockerRuntime {
    /// Containers of `instance` on this node (all states), main container first.
    pub(super) async fn instance_containers(
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

    /// This node's containers (all states), of `instance` only if given.
    pub(super) async fn list_containers(
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

    /// This node's networks.
    pub(super) async fn list_networks(
        &self,
        docker: &Docker,
    ) -> Result<Vec<Network>, RuntimeError> {
        let node = &self.inner.config.node_id;
        let filters = HashMap::from([("label", vec![format!("{}={node}", labels::NODE)])]);
        docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| self.inner.fail("list networks", e))
    }

    /// [`crate::runtime::Runtime::instance_subnets`]: the subnets of this node's networks.
    pub(super) async fn network_subnets(&self) -> Result<Vec<String>, RuntimeError> {
        let docker = self.docker().await?;
        let networks = self.list_networks(&docker).await?;
        Ok(networks
            .into_iter()
            .filter_map(|n| n.ipam?.config)
            .flatten()
            .filter_map(|c| c.subnet)
            .collect())
    }

    /// The network `name`, `None` when it does not exist; an error when it exists but is
    /// not this node's.
    pub(super) async fn inspect_network(
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
    pub(super) async fn self_container_id(
        &self,
        docker: &Docker,
    ) -> Result<Option<String>, RuntimeError> {
        let Some(name) = &self.inner.config.self_container else {
            return Ok(None);
        };
        let c = docker.inspect_container(name, None).await.map_err(|e| {
            self.inner
                .fail(format!("inspect the node's container `{name}`"), e)
        })?;
        Ok(c.id)
    }

    /// Names of this node's volumes.
    pub(super) async fn own_volumes(
        &self,
        docker: &Docker,
    ) -> Result<BTreeSet<String>, RuntimeError> {
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
}

/// Put the service of an instance's containers (their `mesg.service` label) on the current
/// span's `service` field, for operations that know only the instance.
pub(super) fn record_service(containers: &[ContainerSummary]) {
    if let Some(service) = containers
        .iter()
        .find_map(|c| label_of(c.labels.as_ref(), labels::SERVICE))
    {
        tracing::Span::current().record("service", field::display(service));
    }
}
