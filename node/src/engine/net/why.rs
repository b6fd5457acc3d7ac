//! "Why isn't my execution running?": the router keeps a [`RouteDiagnosis`] for each
//! execution it is routing and no provider accepted yet (in memory, removed when the
//! route ends), and answers the diagnosis of any execution from it, the provider table
//! and the local instances.

use super::Router;
use super::diagnosis::{RouteDiagnosis, blank, routing_summary, short_peer};
use super::failover::ROUTE_PATIENCE_MS;
use mesg_api_types::{Diagnosis, DiagnosisState, PeerDiagnosis, PeerVerdict};
use mesg_protocol::{Execution, ExecutionId, ExecutionStatus, now_ms};

/// Removes the diagnosis of a route when the route ends, whichever way it ends.
pub(super) struct Tracked<'a> {
    router: &'a Router,
    id: ExecutionId,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.router
            .diagnoses
            .lock()
            .expect("diagnoses lock")
            .remove(&self.id);
    }
}

impl Router {
    /// Start the diagnosis of the route of `id`, which gives up at `patience_until`.
    pub(super) fn track_route(&self, id: ExecutionId, patience_until: u64) -> Tracked<'_> {
        self.diagnoses
            .lock()
            .expect("diagnoses lock")
            .insert(id, RouteDiagnosis::new(patience_until));
        Tracked { router: self, id }
    }

    /// Note what the route of `id` learned.
    pub(super) fn diagnose(&self, id: &ExecutionId, f: impl FnOnce(&mut RouteDiagnosis)) {
        if let Some(d) = self.diagnoses.lock().expect("diagnoses lock").get_mut(id) {
            f(d);
        }
    }

    /// Why `e` is not running, or that it runs or ended: always an answer.
    pub fn diagnosis(&self, e: &Execution) -> Diagnosis {
        let mut d = self.diagnosis_by_status(e);
        if d.sid.is_none() {
            d.sid = self.sid_of(e);
        }
        d
    }

    fn diagnosis_by_status(&self, e: &Execution) -> Diagnosis {
        let now = now_ms();
        let me = self.node();
        match e.status {
            ExecutionStatus::Created => self.routing_diagnosis(e, now),
            ExecutionStatus::InProgress if e.executor == Some(me) => {
                let live = e.instance_hash.and_then(|h| self.instances.live().get(&h));
                let instance = e
                    .instance_hash
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "?".into());
                match live {
                    Some(l) if !l.is_connected() => {
                        let mut d = blank(e, DiagnosisState::Queued, now);
                        let queued = l.queued_tasks();
                        d.queued_tasks = Some(queued);
                        d.summary = format!(
                            "queued on instance {instance} of this node, whose container is not connected ({queued} task(s) waiting in its queue)"
                        );
                        d
                    }
                    Some(_) => {
                        let mut d = blank(e, DiagnosisState::Running, now);
                        d.summary = format!("running on this node (instance {instance})");
                        d
                    }
                    None => {
                        let mut d = blank(e, DiagnosisState::Running, now);
                        d.summary = format!(
                            "started on this node (instance {instance}, which is not running any more: the execution ends at its deadline)"
                        );
                        d
                    }
                }
            }
            ExecutionStatus::InProgress => {
                let mut d = blank(e, DiagnosisState::Running, now);
                d.summary = match e.executor {
                    Some(x) => format!(
                        "accepted by node {x} ({}), running there",
                        x.peer_id()
                            .map(|p| short_peer(&p.to_string()))
                            .unwrap_or_default()
                    ),
                    None => "running".to_string(),
                };
                d
            }
            ExecutionStatus::Completed | ExecutionStatus::Failed => {
                let mut d = blank(e, DiagnosisState::Finished, now);
                d.last_error = e.error.clone();
                d.executor = e.executor.filter(|_| e.started_at.is_some());
                // Only where it started: a route noted with an execution that no
                // provider accepted is not where it ran.
                let on = match e.executor.filter(|_| e.started_at.is_some()) {
                    Some(x) if x == me => " on this node".to_string(),
                    Some(x) => format!(" on node {x}"),
                    None => String::new(),
                };
                d.summary = match &e.error {
                    Some(err) => format!("failed{on}: {err}"),
                    None => format!("completed{on}"),
                };
                d
            }
        }
    }

    /// A created execution: what its route learned, completed with the providers and
    /// nodes known now.
    fn routing_diagnosis(&self, e: &Execution, now: u64) -> Diagnosis {
        let mut d = blank(e, DiagnosisState::Routing, now);
        d.sid = self.sid_of(e);
        match self.diagnoses.lock().expect("diagnoses lock").get(&e.id) {
            Some(route) => route.fill(&mut d, now),
            // Its route has not started yet (it starts as the execution is created):
            // the patience it will have.
            None => d.patience_until = Some(e.created_at + ROUTE_PATIENCE_MS.min(e.timeout_ms / 2)),
        }
        let census = self.providers().census(&e.service_hash, &self.node());
        d.known_nodes = census.providers.len() + census.without.len();
        for p in census.providers {
            if !d.peers.iter().any(|x| x.node == p) {
                // A banned provider is passed over: say so.
                let detail = self.reputation.ban_of(&p).map(|b| match b.reason {
                    Some(r) => format!("banned by this node: {r}"),
                    None => "banned by this node".to_string(),
                });
                d.peers.push(PeerDiagnosis {
                    node: p,
                    peer_id: p.peer_id().map(|p| p.to_string()).unwrap_or_default(),
                    verdict: PeerVerdict::NotTried,
                    code: None,
                    detail,
                    at: None,
                    offered_since: None,
                });
            }
        }
        d.without_service = census
            .without
            .iter()
            .filter(|k| !d.peers.iter().any(|x| x.node == **k))
            .count();
        d.summary = if self.network().is_none() {
            "not routed: this node has no network and runs no instance of the service".into()
        } else {
            routing_summary(&d, now)
        };
        d
    }

    /// The sid of the execution's service: from its record here, else as announced.
    fn sid_of(&self, e: &Execution) -> Option<String> {
        match self.store.service(&e.service_hash) {
            Ok(Some(s)) => s.record.definition.sid.clone(),
            _ => self.providers().sid_of(&e.service_hash),
        }
    }
}
