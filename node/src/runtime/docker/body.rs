//! The settings a container is created with: image, command, env (with the service API's
//! `MESG_*` variables for the main container), volumes, published ports, resource limits,
//! restart policy, hardening (`init`, `no-new-privileges`, every capability dropped but
//! those the operator grants) and its network alias; plus a fingerprint of all of it
//! (label `mesg.config`), so a stopped container made with other settings is recreated.

use super::DockerRuntime;
use crate::runtime::{InstanceSpec, ResourceLimits, RuntimeConfig, RuntimeError};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use mesg_protocol::Hash32;
use mesg_protocol::definition::{ContainerSpec, MAIN_CONTAINER_KEY};
use mesg_protocol::service_api::{ENV_ENDPOINT, ENV_INSTANCE_HASH, ENV_SERVICE_HASH, ENV_TOKEN};
use std::collections::{BTreeMap, HashMap};

/// Label holding a hash of the settings a container was created with.
pub(super) const CONFIG_LABEL: &str = "mesg.config";

/// Where a container is attached and where it reaches the node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attachment<'a> {
    /// Name of the instance network.
    pub(super) net_name: &'a str,
    /// Its id: part of the fingerprint, so a container made for a network since
    /// replaced is recreated.
    pub(super) network_id: &'a str,
    /// `MESG_ENDPOINT` of the main container.
    pub(super) endpoint: &'a str,
}

impl DockerRuntime {
    /// `service` and the dependencies, by key.
    pub(super) fn container_specs<'a>(
        &self,
        spec: &'a InstanceSpec,
    ) -> BTreeMap<&'a str, &'a ContainerSpec> {
        let mut m: BTreeMap<&str, &ContainerSpec> = spec
            .definition
            .dependencies
            .iter()
            .map(|(k, c)| (k.as_str(), c))
            .collect();
        m.insert(MAIN_CONTAINER_KEY, &spec.definition.configuration);
        m
    }

    /// The create settings of container `key` (described by `c`) of `spec`, with its
    /// fingerprint in the [`CONFIG_LABEL`] label.
    pub(super) fn container_body(
        &self,
        spec: &InstanceSpec,
        key: &str,
        c: &ContainerSpec,
        at: Attachment<'_>,
    ) -> Result<ContainerCreateBody, RuntimeError> {
        let image = if key == MAIN_CONTAINER_KEY {
            spec.image.clone()
        } else {
            c.image.clone().unwrap_or_default()
        };
        let exposed: Vec<String> = c
            .ports
            .iter()
            .map(|p| format!("{}/tcp", p.container))
            .collect();
        let mut body = ContainerCreateBody {
            image: Some(image),
            env: Some(container_env(spec, key, c, at.endpoint)),
            entrypoint: c.command.as_ref().map(|cmd| vec![cmd.clone()]),
            cmd: (!c.args.is_empty()).then(|| c.args.clone()),
            labels: Some(self.container_labels(spec, key)),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(self.host_config(spec, key, c, at.net_name)),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    at.net_name.to_string(),
                    EndpointSettings {
                        aliases: Some(vec![key.to_string()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let fingerprint = fingerprint(&body, at.network_id)?;
        if let Some(l) = body.labels.as_mut() {
            l.insert(CONFIG_LABEL.to_string(), fingerprint);
        }
        Ok(body)
    }

    /// Mounts, ports, limits, restart policy and hardening of container `key`.
    fn host_config(
        &self,
        spec: &InstanceSpec,
        key: &str,
        c: &ContainerSpec,
        net_name: &str,
    ) -> HostConfig {
        let cfg = &self.inner.config;
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
        let port_bindings = port_bindings(cfg, c);
        let limits: ResourceLimits = spec.limits.unwrap_or(cfg.default_limits);
        HostConfig {
            init: Some(true),
            privileged: Some(false),
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: (!cfg.policy.capabilities.is_empty()).then(|| cfg.policy.capabilities.clone()),
            restart_policy: Some(restart_policy(cfg.max_restarts)),
            memory: limits.memory,
            nano_cpus: limits.nano_cpus,
            pids_limit: limits.pids,
            binds: (!binds.is_empty()).then_some(binds),
            volumes_from: (!volumes_from.is_empty()).then_some(volumes_from),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            network_mode: Some(net_name.to_string()),
            ..Default::default()
        }
    }
}

/// The definition's env; for the main container the instance's overrides and the service
/// API's variables on top.
fn container_env(spec: &InstanceSpec, key: &str, c: &ContainerSpec, endpoint: &str) -> Vec<String> {
    let mut env: BTreeMap<String, String> = c.env.clone();
    if key == MAIN_CONTAINER_KEY {
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert(ENV_ENDPOINT.into(), endpoint.to_string());
        env.insert(ENV_TOKEN.into(), spec.token.clone());
        env.insert(ENV_SERVICE_HASH.into(), spec.service_hash.to_string());
        env.insert(ENV_INSTANCE_HASH.into(), spec.instance_hash.to_string());
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Every declared port, published on the policy's address.
fn port_bindings(
    cfg: &RuntimeConfig,
    c: &ContainerSpec,
) -> HashMap<String, Option<Vec<PortBinding>>> {
    c.ports
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
        .collect()
}

/// `on-failure` up to `max_restarts` times (Docker doubles the delay each time); never
/// when it is 0.
fn restart_policy(max_restarts: u32) -> RestartPolicy {
    if max_restarts == 0 {
        RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }
    } else {
        RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(i64::from(max_restarts)),
        }
    }
}

/// Fingerprint of `body` plus the network it was made for, so a stopped container made
/// with other settings (token, endpoint, limits) gets recreated.
fn fingerprint(body: &ContainerCreateBody, network_id: &str) -> Result<String, RuntimeError> {
    let value = serde_json::to_value(body)
        .map_err(|e| RuntimeError::Docker(format!("encode container settings: {e}")))?;
    let mut bytes = mesg_protocol::canonical::to_canonical_json(&value);
    bytes.extend_from_slice(network_id.as_bytes());
    Ok(hex::encode(&Hash32::sha256(&bytes).as_bytes()[..8]))
}
