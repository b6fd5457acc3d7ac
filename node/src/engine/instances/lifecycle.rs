//! An instance's life on this node: started (idempotent), stopped (containers kept),
//! deleted, and restored after a restart of the node (reconciled with Docker).

use super::{Instances, random_token};
use crate::engine::error::EngineError;
use crate::engine::views::InstanceView;
use crate::runtime::{ReconcileReport, ResourceLimits};
use crate::store::{DesiredState, InstanceEntry, ServiceEntry};
use mesg_protocol::{EnvHash, InstanceHash, now_ms};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

impl Instances {
    /// Limits an Application asks for, checked against the node's bounds and completed
    /// with its defaults; checked before anything is stored: a refused value must not
    /// break later starts.
    pub fn checked_limits(
        &self,
        limits: Option<ResourceLimits>,
    ) -> Result<Option<ResourceLimits>, EngineError> {
        let defaults = self.config.default_limits;
        let limits = limits
            .map(|l| self.config.limit_bounds.check(l))
            .transpose()?;
        Ok(limits.map(|l| ResourceLimits {
            memory: l.memory.or(defaults.memory),
            nano_cpus: l.nano_cpus.or(defaults.nano_cpus),
            pids: l.pids.or(defaults.pids),
        }))
    }

    /// Start an instance of a service (known here with its image) with env overrides and
    /// limits from [`Instances::checked_limits`]. Idempotent: starting the same service
    /// with the same env returns the existing instance.
    #[tracing::instrument(name = "start_instance", skip_all, fields(service = %service.record.service_hash))]
    pub async fn start(
        &self,
        service: ServiceEntry,
        env: BTreeMap<String, String>,
        limits: Option<ResourceLimits>,
    ) -> Result<InstanceView, EngineError> {
        let service_hash = service.record.service_hash;
        let declared = &service.record.definition.configuration.env;
        for key in env.keys() {
            if !declared.contains_key(key) {
                return Err(crate::runtime::RuntimeError::UndeclaredEnv {
                    key: key.clone(),
                    declared: declared.keys().cloned().collect(),
                }
                .into());
            }
        }
        let env_hash = EnvHash::of(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let instance_hash = InstanceHash::of(&service_hash, &env_hash);
        let entry = match self.store.instance(&instance_hash)? {
            Some(mut existing) => {
                existing.desired = DesiredState::Running;
                if limits.is_some() {
                    existing.limits = limits;
                }
                existing
            }
            None => InstanceEntry {
                instance_hash,
                service_hash,
                env,
                token: random_token(),
                desired: DesiredState::Running,
                created_at: now_ms(),
                limits,
            },
        };
        let spec = self.spec(&entry, &service)?;
        // Register before the container starts so its first connection is accepted.
        self.register_live(&entry, &service);
        if let Err(e) = self.runtime.start(&spec).await {
            if self.store.instance(&instance_hash)?.is_none() {
                self.live.remove(&instance_hash);
            }
            return Err(e.into());
        }
        self.store.put_instance(&entry)?;
        self.store.persist().await?;
        self.changed.notify_one();
        tracing::info!(instance = %instance_hash, service = %service_hash, "instance started");
        self.view(&entry).await
    }

    /// Stop an instance (its containers are kept; `start` resumes it), failing the
    /// executions it was running.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<InstanceView, EngineError> {
        let mut entry = self.find(id)?;
        entry.desired = DesiredState::Stopped;
        self.store.put_instance(&entry)?;
        self.store.persist().await?;
        if let Some(live) = self.live.remove(&entry.instance_hash) {
            self.fail_all(&live, "the instance was stopped while the task was running")
                .await;
        }
        self.changed.notify_one();
        self.runtime.stop(&entry.instance_hash, grace).await?;
        self.view(&entry).await
    }

    /// Remove an instance's containers (and its data unless `keep_data`).
    pub async fn delete(&self, id: &str, keep_data: bool) -> Result<InstanceView, EngineError> {
        let entry = self.find(id)?;
        if let Some(live) = self.live.remove(&entry.instance_hash) {
            self.fail_all(&live, "the instance was deleted while the task was running")
                .await;
        }
        self.runtime.delete(&entry.instance_hash, keep_data).await?;
        self.store.delete_instance(&entry.instance_hash)?;
        self.store.persist().await?;
        let mut view = self.view(&entry).await?;
        view.desired = DesiredState::Stopped;
        Ok(view)
    }

    /// After a (re)start of the node: register every instance meant to run and reconcile
    /// Docker with them. Returns Docker's report (None when it could not be reached) and
    /// the instances whose containers survived (adopted).
    pub async fn restore(
        &self,
    ) -> Result<(Option<ReconcileReport>, HashSet<InstanceHash>), EngineError> {
        let mut specs = Vec::new();
        for entry in self.store.instances()? {
            if entry.desired != DesiredState::Running {
                continue;
            }
            let Some(service) = self.store.service(&entry.service_hash)? else {
                tracing::warn!(instance = %entry.instance_hash, "instance of an unknown service; skipped");
                continue;
            };
            match self.spec(&entry, &service) {
                Ok(spec) => {
                    self.register_live(&entry, &service);
                    specs.push(spec);
                }
                Err(e) => tracing::warn!(instance = %entry.instance_hash, "cannot restore: {e}"),
            }
        }
        let reconcile = match self.runtime.reconcile(&specs).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!("cannot reconcile containers: {e}");
                None
            }
        };
        let adopted = reconcile
            .as_ref()
            .map(|r| r.adopted.iter().copied().collect())
            .unwrap_or_default();
        Ok((reconcile, adopted))
    }
}
