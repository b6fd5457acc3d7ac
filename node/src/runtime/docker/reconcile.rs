//! After the node restarts: make Docker match what the node wants to run. This node's
//! containers and networks that belong to no desired instance are removed (volumes are
//! kept: they hold data); desired instances whose containers all run are adopted as they
//! are; the others are started, a few at a time.

use super::names::{label_of, summary_key, summary_name};
use super::{DockerRuntime, start_span};
use crate::runtime::{InstanceSpec, ReconcileReport, RuntimeError, labels};
use bollard::Docker;
use bollard::models::ContainerSummary;
use futures::stream::{self, StreamExt};
use mesg_protocol::InstanceHash;
use std::collections::{BTreeSet, HashMap};
use tracing::{Instrument, debug, info, warn};

/// How many instances `reconcile` starts at once.
const RECONCILE_PARALLELISM: usize = 4;

impl DockerRuntime {
    /// [`crate::runtime::Runtime::reconcile`].
    pub(super) async fn reconcile_instances(
        &self,
        desired: &[InstanceSpec],
    ) -> Result<ReconcileReport, RuntimeError> {
        let docker = self.docker().await?;
        let wanted: HashMap<InstanceHash, &InstanceSpec> =
            desired.iter().map(|s| (s.instance_hash, s)).collect();
        let all = self
            .list_containers(&docker, None)
            .await
            .map_err(|e| self.inner.fail("list containers", e))?;
        let mut report = ReconcileReport::default();

        // Orphans first: they may hold ports or memory the desired ones need.
        let by_instance = self
            .remove_orphan_containers(&docker, &all, &wanted, &mut report)
            .await?;
        self.remove_orphan_networks(&docker, &wanted, &mut report)
            .await?;

        // Desired instances: adopt the ones fully up, start the others.
        let mut to_start = Vec::new();
        for spec in desired {
            if self.all_live(spec, by_instance.get(&spec.instance_hash)) {
                debug!(instance = %spec.instance_hash, service = %spec.service_hash, "adopted");
                report.adopted.push(spec.instance_hash);
            } else {
                to_start.push(spec);
            }
        }
        self.start_all(to_start, &mut report).await?;
        info!(
            adopted = report.adopted.len(),
            restarted = report.restarted.len(),
            removed = report.removed.len(),
            failed = report.failed.len(),
            "reconciled"
        );
        Ok(report)
    }

    /// Remove the containers of instances not `wanted`; returns the others by instance.
    /// Only what the runtime made (it always sets `mesg.instance`) is touched: a container
    /// that merely carries the node label, like the node's own, is left alone.
    async fn remove_orphan_containers<'a>(
        &self,
        docker: &Docker,
        all: &'a [ContainerSummary],
        wanted: &HashMap<InstanceHash, &InstanceSpec>,
        report: &mut ReconcileReport,
    ) -> Result<HashMap<InstanceHash, Vec<&'a ContainerSummary>>, RuntimeError> {
        let self_id = self.self_container_id(docker).await.ok().flatten();
        let mut by_instance: HashMap<InstanceHash, Vec<&ContainerSummary>> = HashMap::new();
        for c in all {
            let instance = label_of(c.labels.as_ref(), labels::INSTANCE)
                .and_then(|i| i.parse::<InstanceHash>().ok());
            match instance {
                None => debug!(container = %summary_name(c), "not an instance container: kept"),
                Some(_) if self_id.is_some() && c.id == self_id => {}
                Some(i) if wanted.contains_key(&i) => by_instance.entry(i).or_default().push(c),
                Some(i) => {
                    let name = summary_name(c);
                    self.remove_container(docker, &name).await?;
                    let service = label_of(c.labels.as_ref(), labels::SERVICE).unwrap_or("");
                    info!(container = %name, instance = %i, service, "orphan container removed");
                    report.removed.push(name);
                }
            }
        }
        Ok(by_instance)
    }

    /// Remove this node's instance networks of instances not `wanted`.
    async fn remove_orphan_networks(
        &self,
        docker: &Docker,
        wanted: &HashMap<InstanceHash, &InstanceSpec>,
        report: &mut ReconcileReport,
    ) -> Result<(), RuntimeError> {
        for n in self.list_networks(docker).await? {
            let instance = label_of(n.labels.as_ref(), labels::INSTANCE)
                .and_then(|i| i.parse::<InstanceHash>().ok());
            let Some(instance) = instance.filter(|i| !wanted.contains_key(i)) else {
                continue;
            };
            let service = label_of(n.labels.as_ref(), labels::SERVICE)
                .unwrap_or("")
                .to_string();
            let Some(name) = n.name else { continue };
            self.remove_network(docker, &name).await?;
            info!(network = %name, %instance, service, "orphan network removed");
            report.removed.push(name);
        }
        Ok(())
    }

    /// Whether every container of `spec` is among `containers` and runs (or restarts).
    fn all_live(&self, spec: &InstanceSpec, containers: Option<&Vec<&ContainerSummary>>) -> bool {
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
        self.container_specs(spec).keys().all(|k| live.contains(k))
    }

    /// Start `specs`, [`RECONCILE_PARALLELISM`] at a time, into `report`. An unreachable
    /// engine fails the whole reconcile; any other error fails that instance only.
    async fn start_all(
        &self,
        specs: Vec<&InstanceSpec>,
        report: &mut ReconcileReport,
    ) -> Result<(), RuntimeError> {
        let starts: Vec<_> = specs
            .into_iter()
            .map(|spec| {
                let instance = spec.instance_hash;
                let fut = self.start_instance(spec).instrument(start_span(spec));
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
        Ok(())
    }
}
