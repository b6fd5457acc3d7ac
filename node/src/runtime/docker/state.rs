//! An instance's state as Docker shows it: each container inspected (running,
//! restarting, exit code, restart count, killed for memory), then judged by the shared
//! rules of [`crate::runtime::status`].

use super::DockerRuntime;
use super::connection::is_not_found;
use super::inventory::record_service;
use super::names::{summary_key, summary_name};
use crate::runtime::status::aggregate;
use crate::runtime::{ContainerState, InstanceState, RuntimeError};
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use mesg_protocol::InstanceHash;

impl DockerRuntime {
    /// [`crate::runtime::Runtime::status`].
    pub(super) async fn instance_state(
        &self,
        instance: &InstanceHash,
    ) -> Result<InstanceState, RuntimeError> {
        let docker = self.docker().await?;
        let list = self.instance_containers(&docker, instance).await?;
        record_service(&list);
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

/// Whether the container runs or is being restarted by Docker.
pub(super) fn is_live(c: &ContainerInspectResponse) -> bool {
    c.state
        .as_ref()
        .is_some_and(|s| s.running == Some(true) || s.restarting == Some(true))
}
