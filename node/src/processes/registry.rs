//! The processes of this node: checking a process file against the services known here
//! and in the network, creating, finding (by id or unique name), listing and deleting
//! processes, and the index of their triggers.

use super::ProcessRunner;
use super::model::{ProcessRecord, ProcessView, RunStatus};
use crate::engine::{EngineError, EventInterest};
use mesg_protocol::process::{
    ProcessDefinition, ProcessError, ProcessErrors, StepKind, TriggerSource,
};
use mesg_protocol::{Hash32, ServiceDefinition, ServiceHash, now_ms};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Processes by id, and which of them each event and each task result triggers.
#[derive(Debug, Default)]
pub(super) struct Registry {
    records: HashMap<String, Arc<ProcessRecord>>,
    /// (service, event key) -> ids of the processes it triggers.
    by_event: HashMap<(ServiceHash, String), Vec<String>>,
    /// (service, task key) -> ids of the processes its Completed executions trigger.
    by_result: HashMap<(ServiceHash, String), Vec<String>>,
    /// Subscriptions to the network events of event-triggered processes.
    interests: HashMap<String, EventInterest>,
}

/// What starts a process: an event or a task result of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TriggerKey {
    Event(ServiceHash, String),
    Result(ServiceHash, String),
}

impl TriggerKey {
    /// The trigger of a process, if its service is known.
    fn of(record: &ProcessRecord) -> Option<TriggerKey> {
        let trigger_key = &record.definition.steps[0].key;
        let service = *record.services.get(trigger_key)?;
        Some(match &record.definition.trigger().source {
            TriggerSource::Event(key) => TriggerKey::Event(service, key.clone()),
            TriggerSource::Result(task) => TriggerKey::Result(service, task.clone()),
        })
    }
}

impl Registry {
    /// Add a process under its trigger (with the event subscription of an event trigger).
    fn insert(
        &mut self,
        record: Arc<ProcessRecord>,
        trigger: TriggerKey,
        interest: Option<EventInterest>,
    ) {
        let id = record.id.clone();
        let list = match trigger {
            TriggerKey::Event(s, k) => self.by_event.entry((s, k)).or_default(),
            TriggerKey::Result(s, k) => self.by_result.entry((s, k)).or_default(),
        };
        list.push(id.clone());
        if let Some(interest) = interest {
            self.interests.insert(id.clone(), interest);
        }
        self.records.insert(id, record);
    }

    /// Remove a process; its event subscription ends.
    fn remove(&mut self, id: &str) {
        self.records.remove(id);
        for list in self.by_event.values_mut() {
            list.retain(|x| x != id);
        }
        for list in self.by_result.values_mut() {
            list.retain(|x| x != id);
        }
        self.interests.remove(id);
    }

    fn get(&self, id: &str) -> Option<Arc<ProcessRecord>> {
        self.records.get(id).cloned()
    }

    /// A process by id, else by name when exactly one has it.
    pub(super) fn find(&self, id: &str) -> Result<Arc<ProcessRecord>, EngineError> {
        if let Some(r) = self.records.get(id) {
            return Ok(r.clone());
        }
        let by_name: Vec<_> = self.records.values().filter(|r| r.name == id).collect();
        match by_name.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(EngineError::NotFound {
                what: "process",
                id: id.to_string(),
            }),
            many => Err(EngineError::BadRequest(format!(
                "{} processes are named `{id}`; use the process id",
                many.len()
            ))),
        }
    }

    /// Ids of the processes `trigger` starts.
    pub(super) fn triggered_by(&self, trigger: &TriggerKey) -> Vec<String> {
        let list = match trigger {
            TriggerKey::Event(s, k) => self.by_event.get(&(*s, k.clone())),
            TriggerKey::Result(s, k) => self.by_result.get(&(*s, k.clone())),
        };
        list.cloned().unwrap_or_default()
    }

    fn all(&self) -> Vec<Arc<ProcessRecord>> {
        self.records.values().cloned().collect()
    }
}

/// The id of a process: the hash of its canonical definition, so the same file (with the
/// same env) is the same process.
pub(super) fn process_id(definition: &ProcessDefinition) -> String {
    let canonical = serde_json::to_vec(definition).unwrap_or_default();
    Hash32::domain("mesg/process/1", &[&canonical]).to_string()
}

impl ProcessRunner {
    /// Validate a process file against what this node knows (services here and in the
    /// network). Returns the definition and its services.
    pub async fn check_process(
        &self,
        yaml: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(ProcessDefinition, BTreeMap<String, ServiceHash>), ProcessErrors> {
        // Resolve every service the file names, so validation knows their definitions
        // and unknown ones are reported along with any other error.
        let mut known: HashMap<String, (ServiceHash, ServiceDefinition)> = HashMap::new();
        let mut unknown = Vec::new();
        for r in mesg_protocol::process::service_refs(yaml) {
            if known.contains_key(&r.name) {
                continue;
            }
            match self.engine().resolve_service(&r.name).await {
                Ok(entry) => {
                    known.insert(
                        r.name.clone(),
                        (entry.record.service_hash, entry.record.definition.clone()),
                    );
                }
                Err(_) => unknown.push(ProcessError {
                    path: r.path,
                    line: Some(r.line),
                    column: Some(r.column),
                    message: format!(
                        "unknown service `{}`: deploy it on this node or start it somewhere in the network first",
                        r.name
                    ),
                    suggestion: None,
                }),
            }
        }
        let lookup = |name: &str| known.get(name).map(|(_, d)| d.clone());
        let parsed = ProcessDefinition::from_yaml(yaml, env, &lookup);
        let def = match parsed {
            Ok(def) if unknown.is_empty() => def,
            Ok(_) => return Err(ProcessErrors(unknown)),
            Err(mut errors) => {
                errors.0.extend(unknown);
                errors
                    .0
                    .sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
                return Err(errors);
            }
        };
        let mut services = BTreeMap::new();
        for step in &def.steps {
            let name = match &step.kind {
                StepKind::Trigger(t) => &t.service,
                StepKind::Task(t) => &t.service,
                _ => continue,
            };
            if let Some((hash, _)) = known.get(name) {
                services.insert(step.key.clone(), *hash);
            }
        }
        Ok((def, services))
    }

    /// Create (or find, if the same definition exists) a process and start listening to
    /// its trigger. True when it was created.
    pub async fn create_process(
        &self,
        yaml: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(ProcessView, bool), EngineError> {
        let (definition, services) = self
            .check_process(yaml, env)
            .await
            .map_err(EngineError::InvalidProcess)?;
        let id = process_id(&definition);
        let existing = self.shared.registry.lock().expect("lock").get(&id);
        if let Some(existing) = existing {
            return Ok((self.view(&existing), false));
        }
        let record = ProcessRecord {
            id: id.clone(),
            name: definition.name.clone(),
            definition,
            services,
            created_at: now_ms(),
        };
        self.store().put_process(&record)?;
        self.store().persist().await?;
        let record = Arc::new(record);
        self.index_process(record.clone()).await;
        tracing::info!(process = %id, name = %record.name, "process created");
        Ok((self.view(&record), true))
    }

    /// Register a process under its trigger; event triggers subscribe to the events of
    /// their service wherever in the network they are emitted.
    pub(super) async fn index_process(&self, record: Arc<ProcessRecord>) {
        let Some(trigger) = TriggerKey::of(&record) else {
            return;
        };
        let interest = match &trigger {
            TriggerKey::Event(service, _) => Some(self.engine().watch_events(Some(*service)).await),
            TriggerKey::Result(..) => None,
        };
        self.shared
            .registry
            .lock()
            .expect("lock")
            .insert(record, trigger, interest);
    }

    fn view(&self, r: &ProcessRecord) -> ProcessView {
        let running = self
            .shared
            .runs
            .lock()
            .expect("lock")
            .values()
            .filter(|run| run.process == r.id && run.status == RunStatus::Running)
            .count();
        let (triggers_refused, last_refusal) =
            self.shared.gates.lock().expect("lock").refusals(&r.id);
        ProcessView {
            id: r.id.clone(),
            name: r.name.clone(),
            definition: r.definition.clone(),
            services: r.services.clone(),
            created_at: r.created_at,
            runs_running: running,
            max_depth: self.depth_limit(r),
            triggers_refused,
            last_refusal,
        }
    }

    /// Every process, newest first.
    pub fn list_processes(&self) -> Vec<ProcessView> {
        let records = self.shared.registry.lock().expect("lock").all();
        let mut out: Vec<ProcessView> = records.iter().map(|r| self.view(r)).collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        out
    }

    /// A process by id, else by name when exactly one has it.
    pub(super) fn process_record(&self, id: &str) -> Result<Arc<ProcessRecord>, EngineError> {
        self.shared.registry.lock().expect("lock").find(id)
    }

    pub fn process(&self, id: &str) -> Result<ProcessView, EngineError> {
        let record = self.process_record(id)?;
        Ok(self.view(&record))
    }

    /// Stop a process: it triggers no more runs; runs in progress end Failed.
    pub async fn delete_process(&self, id: &str) -> Result<ProcessView, EngineError> {
        let record = self.process_record(id)?;
        self.shared
            .registry
            .lock()
            .expect("lock")
            .remove(&record.id);
        self.shared.gates.lock().expect("lock").forget(&record.id);
        self.store().delete_process(&record.id)?;
        let running: Vec<String> = self
            .shared
            .runs
            .lock()
            .expect("lock")
            .values()
            .filter(|r| r.process == record.id && r.status == RunStatus::Running)
            .map(|r| r.id.clone())
            .collect();
        for run in running {
            self.update_run(&run, |r| {
                r.status = RunStatus::Failed;
                r.error = Some("the process was deleted".into());
                r.finished_at = Some(now_ms());
            })
            .await;
        }
        self.store().persist().await?;
        Ok(self.view(&record))
    }
}

#[cfg(test)]
mod tests {
    use super::{Registry, TriggerKey, process_id};
    use crate::engine::EngineError;
    use crate::processes::model::ProcessRecord;
    use mesg_protocol::process::{ProcessDefinition, Step, StepKind, Trigger, TriggerSource};
    use mesg_protocol::{Hash32, ServiceHash};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn service(n: u8) -> ServiceHash {
        ServiceHash(Hash32::sha256(&[n]))
    }

    fn record(id: &str, name: &str, source: TriggerSource) -> Arc<ProcessRecord> {
        let definition = ProcessDefinition {
            name: name.into(),
            max_depth: None,
            rate_limit: None,
            steps: vec![Step {
                key: "t".into(),
                after: None,
                kind: StepKind::Trigger(Trigger {
                    service: "echo".into(),
                    source,
                }),
            }],
        };
        Arc::new(ProcessRecord {
            id: id.into(),
            name: name.into(),
            definition,
            services: BTreeMap::from([("t".to_string(), service(1))]),
            created_at: 1,
        })
    }

    #[test]
    fn a_process_is_found_by_id_or_by_its_name_when_unique() {
        let mut reg = Registry::default();
        for (id, name) in [("p1", "alpha"), ("p2", "twin"), ("p3", "twin")] {
            let r = record(id, name, TriggerSource::Event("tick".into()));
            let trigger = TriggerKey::of(&r).unwrap();
            reg.insert(r, trigger, None);
        }
        assert_eq!(reg.find("p2").unwrap().id, "p2");
        assert_eq!(reg.find("alpha").unwrap().id, "p1");
        assert!(
            matches!(reg.find("twin"), Err(EngineError::BadRequest(m)) if m.contains("2 processes"))
        );
        assert!(matches!(
            reg.find("nope"),
            Err(EngineError::NotFound {
                what: "process",
                ..
            })
        ));
    }

    #[test]
    fn triggers_index_events_and_results_apart_and_forget_removed_processes() {
        let mut reg = Registry::default();
        let on_event = record("e", "on-event", TriggerSource::Event("tick".into()));
        let on_result = record("r", "on-result", TriggerSource::Result("tick".into()));
        for r in [on_event, on_result] {
            let trigger = TriggerKey::of(&r).unwrap();
            reg.insert(r, trigger, None);
        }
        let event = TriggerKey::Event(service(1), "tick".into());
        let result = TriggerKey::Result(service(1), "tick".into());
        assert_eq!(reg.triggered_by(&event), vec!["e".to_string()]);
        assert_eq!(reg.triggered_by(&result), vec!["r".to_string()]);
        assert!(
            reg.triggered_by(&TriggerKey::Event(service(2), "tick".into()))
                .is_empty()
        );
        reg.remove("e");
        assert!(reg.triggered_by(&event).is_empty());
        assert!(reg.find("e").is_err());
        assert_eq!(reg.all().len(), 1);
    }

    #[test]
    fn the_same_definition_has_the_same_id() {
        let a = record("x", "same", TriggerSource::Event("tick".into()));
        let b = record("y", "same", TriggerSource::Event("tick".into()));
        let c = record("z", "same", TriggerSource::Event("tock".into()));
        assert_eq!(process_id(&a.definition), process_id(&b.definition));
        assert_ne!(process_id(&a.definition), process_id(&c.definition));
    }
}
