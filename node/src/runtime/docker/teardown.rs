//! Taking instances down: `stop` (SIGTERM, SIGKILL after the grace period; containers are
//! kept), `delete` (containers, network, and the volumes unless the data is kept), and
//! removing single containers and networks, which `start`'s rollback and `reconcile` use
//! too. Removing what is already gone is never an error.

use super::DockerRuntime;
use super::connection::{is_not_found, is_status};
use super::inventory::record_service;
use super::names::{summary_key, summary_name};
use crate::runtime::RuntimeError;
use bollard::Docker;
use bollard::models::{ContainerSummary, NetworkDisconnectRequest, NetworkInspect};
use bollard::query_parameters::{
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, StopContainerOptionsBuilder,
};
use mesg_protocol::InstanceHash;
use mesg_protocol::definition::MAIN_CONTAINER_KEY;
use std::collections::BTreeSet;
use std::time::Duration;
use tracing::{debug, info};

impl DockerRuntime {
    /// [`crate::runtime::Runtime::stop`].
    pub(super) async fn stop_instance(
        &self,
        instance: &InstanceHash,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let _guard = self.inner.locks.acquire(instance).await;
        let containers = self.instance_containers(&docker, instance).await?;
        record_service(&containers);
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

    /// [`crate::runtime::Runtime::delete`].
    pub(super) async fn delete_instance(
        &self,
        instance: &InstanceHash,
        keep_data: bool,
    ) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let guard = self.inner.locks.acquire(instance).await;
        let containers = self.instance_containers(&docker, instance).await?;
        record_service(&containers);
        let volumes = if keep_data {
            BTreeSet::new()
        } else {
            self.mounted_volumes(&docker, &containers).await?
        };
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
        self.inner.locks.forget(instance);
        info!(
            containers = containers.len(),
            keep_data,
            volumes = volumes.len(),
            "instance deleted"
        );
        Ok(())
    }

    /// Named volumes mounted by `containers` (own or through volumesFrom).
    async fn mounted_volumes(
        &self,
        docker: &Docker,
        containers: &[ContainerSummary],
    ) -> Result<BTreeSet<String>, RuntimeError> {
        let mut volumes: BTreeSet<String> = BTreeSet::new();
        for c in containers {
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
        Ok(volumes)
    }

    /// Disconnect the node's own container from `network` if it is connected.
    pub(super) async fn disconnect_self(
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

    /// Remove this node's network `name` (disconnecting the node's own container first).
    pub(super) async fn remove_network(
        &self,
        docker: &Docker,
        name: &str,
    ) -> Result<(), RuntimeError> {
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

    /// Remove container `name`, running or not, with its anonymous volumes.
    pub(super) async fn remove_container(
        &self,
        docker: &Docker,
        name: &str,
    ) -> Result<(), RuntimeError> {
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
}
