//! [`FakeRuntime`]: an in-memory [`Runtime`] for unit tests of the engine, without
//! Docker. Compiled for this crate's tests and, for other crates' tests, with the
//! `test-fakes` feature.
//!
//! What it models:
//! - images: `build` always succeeds (unless told to fail) and remembers the tag; images a
//!   test puts there with [`FakeRuntime::add_image`] count as built or allowed;
//! - the checks of `start`, `check_definition` and `check_build`: env overrides must be
//!   declared, the main image and every dependency image (and every image a Dockerfile
//!   builds from) must be known;
//! - instances: `start` records the instance with one container per key (`service` and the
//!   dependencies), all running, idempotently; `stop` stops them (exit code 143, kept);
//!   `delete` forgets them; `status` judges them by the same rules as the Docker runtime;
//! - `reconcile` from its memory, like Docker after a node restart: instances whose
//!   containers all run are adopted, other desired ones started, undesired ones removed.
//!   Hand clones of one `FakeRuntime` (they share their state) to a first and a second
//!   engine to simulate a node restart; [`FakeRuntime::stop_all`] simulates a host reboot;
//! - events: nothing is sent on its own; a test injects events with
//!   [`FakeRuntime::emit`], or makes a container die with [`FakeRuntime::crash`] (state
//!   and a `Died` event together);
//! - failures: [`FakeRuntime::fail_next_start`] / [`FakeRuntime::fail_next_build`] make
//!   the next call fail with the given error (a start inside `reconcile` counts; its
//!   failure lands in the report's `failed`), [`FakeRuntime::set_unavailable`] makes every
//!   call fail as when Docker is down;
//! - what was asked: [`FakeRuntime::calls`] counts the calls of each [`Runtime`] method,
//!   [`FakeRuntime::history`] lists the ones that change something, in order.
//!
//! What it does not model: the operator's container policy (ports, capabilities, allowed
//! images: any known image is allowed), networks, volumes and their data, resource limits,
//! `volumesFrom` order, Docker's restarts of crashed containers (a crash is final at
//! once), build output beyond one line, following logs (the stream ends after the lines a
//! test set with [`FakeRuntime::set_logs`]), subnets (none), and timing (everything
//! answers at once; `stop` ignores its grace period).

use super::policy::dockerfile_images;
use super::status::aggregate;
use super::{
    ContainerState, DockerInfo, InstanceSpec, InstanceState, LogLine, PolicyError, ReconcileReport,
    Runtime, RuntimeError, RuntimeEvent,
};
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use mesg_protocol::definition::MAIN_CONTAINER_KEY;
use mesg_protocol::{InstanceHash, ServiceDefinition};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Capacity of the event broadcast, as in the Docker runtime.
const EVENT_CAPACITY: usize = 1024;
/// Exit code of a container stopped by `stop` (SIGTERM).
const STOPPED_EXIT_CODE: i64 = 143;

/// An in-memory [`Runtime`] (see the module doc). Clones share their state.
#[derive(Debug, Clone)]
pub struct FakeRuntime {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<FakeState>,
    events: broadcast::Sender<RuntimeEvent>,
}

#[derive(Debug, Default)]
struct FakeState {
    images: BTreeSet<String>,
    instances: BTreeMap<InstanceHash, FakeInstance>,
    logs: HashMap<InstanceHash, Vec<LogLine>>,
    fail_start: Option<RuntimeError>,
    fail_build: Option<RuntimeError>,
    unavailable: bool,
    calls: FakeCalls,
    history: Vec<FakeCall>,
}

/// An instance the fake runs (or ran): its last spec and its containers, `service` first.
#[derive(Debug)]
struct FakeInstance {
    spec: InstanceSpec,
    containers: Vec<ContainerState>,
}

/// How many times each [`Runtime`] method was called (failed calls included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeCalls {
    pub check: usize,
    pub build: usize,
    pub image_exists: usize,
    pub check_definition: usize,
    pub check_build: usize,
    pub start: usize,
    pub stop: usize,
    pub delete: usize,
    pub status: usize,
    pub logs: usize,
    pub reconcile: usize,
    pub subscribe: usize,
    pub instance_subnets: usize,
}

/// A call that changes something, as [`FakeRuntime::history`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    Build {
        tag: String,
    },
    Start {
        instance: InstanceHash,
    },
    Stop {
        instance: InstanceHash,
    },
    Delete {
        instance: InstanceHash,
        keep_data: bool,
    },
    Reconcile {
        desired: Vec<InstanceHash>,
    },
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime::new()
    }
}

impl FakeRuntime {
    /// A fake with no image, no instance, and Docker "up".
    pub fn new() -> FakeRuntime {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        FakeRuntime {
            shared: Arc::new(Shared {
                state: Mutex::new(FakeState::default()),
                events,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Make `image` known, as if built by this node or allowed by its operator.
    pub fn add_image(&self, image: impl Into<String>) {
        self.state().images.insert(image.into());
    }

    /// Whether `image` was built or added.
    pub fn has_image(&self, image: &str) -> bool {
        self.state().images.contains(image)
    }

    /// The next `start` (or start inside `reconcile`) fails with `error`.
    pub fn fail_next_start(&self, error: RuntimeError) {
        self.state().fail_start = Some(error);
    }

    /// The next `build` fails with `error`.
    pub fn fail_next_build(&self, error: RuntimeError) {
        self.state().fail_build = Some(error);
    }

    /// While `down`, every call fails with [`RuntimeError::Unavailable`], as when the
    /// Docker Engine cannot be reached.
    pub fn set_unavailable(&self, down: bool) {
        self.state().unavailable = down;
    }

    /// Send `event` to every subscriber; returns how many there are.
    pub fn emit(&self, event: RuntimeEvent) -> usize {
        self.shared.events.send(event).unwrap_or(0)
    }

    /// Container `key` of `instance` exits with `exit_code` for good (a non-zero code,
    /// other than a signal's, makes the instance `Crashed`), and subscribers get `Died`.
    /// Returns false when the instance has no such container.
    pub fn crash(&self, instance: &InstanceHash, key: &str, exit_code: i64) -> bool {
        {
            let mut state = self.state();
            let Some(c) = state
                .instances
                .get_mut(instance)
                .and_then(|i| i.containers.iter_mut().find(|c| c.key == key))
            else {
                return false;
            };
            exit(c, exit_code);
        }
        self.emit(RuntimeEvent::Died {
            instance: *instance,
            key: key.to_string(),
            exit_code: Some(exit_code),
        });
        true
    }

    /// Every container of every instance stops (kept), as after a reboot of the host.
    pub fn stop_all(&self) {
        for instance in self.state().instances.values_mut() {
            instance
                .containers
                .iter_mut()
                .for_each(|c| exit(c, STOPPED_EXIT_CODE));
        }
    }

    /// The lines `logs` answers for `instance`.
    pub fn set_logs(&self, instance: &InstanceHash, lines: Vec<LogLine>) {
        self.state().logs.insert(*instance, lines);
    }

    /// How many times each method was called so far.
    pub fn calls(&self) -> FakeCalls {
        self.state().calls
    }

    /// The calls that change something, oldest first.
    pub fn history(&self) -> Vec<FakeCall> {
        self.state().history.clone()
    }

    /// Instances that have containers (running or not).
    pub fn instances(&self) -> Vec<InstanceHash> {
        self.state().instances.keys().copied().collect()
    }

    /// Whether every container of `instance` runs.
    pub fn is_running(&self, instance: &InstanceHash) -> bool {
        self.state()
            .instances
            .get(instance)
            .is_some_and(FakeInstance::all_running)
    }

    /// The spec `instance` was last started with.
    pub fn spec(&self, instance: &InstanceHash) -> Option<InstanceSpec> {
        self.state().instances.get(instance).map(|i| i.spec.clone())
    }
}

impl FakeState {
    fn up(&self) -> Result<(), RuntimeError> {
        if self.unavailable {
            Err(RuntimeError::Unavailable(
                "fake: the Docker Engine is down".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn check_definition(&self, definition: &ServiceDefinition) -> Result<(), RuntimeError> {
        for (key, dep) in &definition.dependencies {
            let image = dep.image.clone().unwrap_or_default();
            if !self.images.contains(&image) {
                return Err(RuntimeError::MissingImage {
                    key: key.clone(),
                    image,
                });
            }
        }
        Ok(())
    }

    /// A start, by `start` or `reconcile`: the failure switch, the checks, then every
    /// container of the instance runs.
    fn start(&mut self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        if let Some(e) = self.fail_start.take() {
            return Err(e);
        }
        self.up()?;
        spec.check_env()?;
        if !self.images.contains(&spec.image) {
            return Err(RuntimeError::MissingImage {
                key: MAIN_CONTAINER_KEY.to_string(),
                image: spec.image.clone(),
            });
        }
        self.check_definition(&spec.definition)?;
        let instance = self
            .instances
            .entry(spec.instance_hash)
            .or_insert_with(|| FakeInstance {
                spec: spec.clone(),
                containers: Vec::new(),
            });
        instance.spec = spec.clone();
        let keys = std::iter::once(MAIN_CONTAINER_KEY)
            .chain(spec.definition.dependencies.keys().map(String::as_str));
        for key in keys {
            match instance.containers.iter_mut().find(|c| c.key == key) {
                Some(c) => run(c),
                None => {
                    let mut c = ContainerState {
                        key: key.to_string(),
                        name: format!("fake-{}-{key}", spec.instance_hash),
                        running: false,
                        restarting: false,
                        exit_code: None,
                        restart_count: 0,
                        state: "created".into(),
                    };
                    run(&mut c);
                    instance.containers.push(c);
                }
            }
        }
        Ok(())
    }
}

impl FakeInstance {
    fn all_running(&self) -> bool {
        let keys = std::iter::once(MAIN_CONTAINER_KEY)
            .chain(self.spec.definition.dependencies.keys().map(String::as_str));
        keys.into_iter()
            .all(|k| self.containers.iter().any(|c| c.key == k && c.running))
    }
}

fn run(c: &mut ContainerState) {
    c.running = true;
    c.restarting = false;
    c.exit_code = None;
    c.state = "running".into();
}

fn exit(c: &mut ContainerState, code: i64) {
    c.running = false;
    c.restarting = false;
    c.exit_code = Some(code);
    c.state = "exited".into();
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn check(&self) -> Result<DockerInfo, RuntimeError> {
        let mut state = self.state();
        state.calls.check += 1;
        state.up()?;
        Ok(DockerInfo {
            server_version: "fake".into(),
            api_version: "fake".into(),
        })
    }

    async fn build(
        &self,
        tar: Vec<u8>,
        tag: &str,
        progress: mpsc::Sender<String>,
    ) -> Result<(), RuntimeError> {
        {
            let mut state = self.state();
            state.calls.build += 1;
            state.history.push(FakeCall::Build {
                tag: tag.to_string(),
            });
            if let Some(e) = state.fail_build.take() {
                return Err(e);
            }
            state.up()?;
            state.images.insert(tag.to_string());
        }
        // A gone receiver only means nobody watches.
        let _ = progress
            .send(format!("fake build of {tag} ({} bytes)", tar.len()))
            .await;
        Ok(())
    }

    async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        let mut state = self.state();
        state.calls.image_exists += 1;
        state.up()?;
        Ok(state.images.contains(image))
    }

    async fn check_definition(&self, definition: &ServiceDefinition) -> Result<(), RuntimeError> {
        let mut state = self.state();
        state.calls.check_definition += 1;
        state.up()?;
        state.check_definition(definition)
    }

    async fn check_build(&self, dockerfile: &str) -> Result<(), RuntimeError> {
        let mut state = self.state();
        state.calls.check_build += 1;
        let images = dockerfile_images(dockerfile)?;
        if images.is_empty() {
            return Ok(());
        }
        state.up()?;
        match images.into_iter().find(|i| !state.images.contains(i)) {
            Some(image) => Err(PolicyError::BaseImageNotAllowed { image }.into()),
            None => Ok(()),
        }
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        let mut state = self.state();
        state.calls.start += 1;
        state.history.push(FakeCall::Start {
            instance: spec.instance_hash,
        });
        state.start(spec)
    }

    async fn stop(&self, instance: &InstanceHash, _grace: Duration) -> Result<(), RuntimeError> {
        let mut state = self.state();
        state.calls.stop += 1;
        state.history.push(FakeCall::Stop {
            instance: *instance,
        });
        state.up()?;
        if let Some(i) = state.instances.get_mut(instance) {
            i.containers
                .iter_mut()
                .for_each(|c| exit(c, STOPPED_EXIT_CODE));
        }
        Ok(())
    }

    async fn delete(&self, instance: &InstanceHash, keep_data: bool) -> Result<(), RuntimeError> {
        let mut state = self.state();
        state.calls.delete += 1;
        state.history.push(FakeCall::Delete {
            instance: *instance,
            keep_data,
        });
        state.up()?;
        state.instances.remove(instance);
        state.logs.remove(instance);
        Ok(())
    }

    async fn status(&self, instance: &InstanceHash) -> Result<InstanceState, RuntimeError> {
        let mut state = self.state();
        state.calls.status += 1;
        state.up()?;
        let containers = state
            .instances
            .get(instance)
            .map(|i| i.containers.clone())
            .unwrap_or_default();
        // Docker's restarts are not modelled: every exit is the last one.
        Ok(aggregate(containers, &[], 0))
    }

    fn logs(
        &self,
        instance: &InstanceHash,
        _follow: bool,
        tail: Option<usize>,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let mut state = self.state();
        state.calls.logs += 1;
        let items: Vec<Result<LogLine, RuntimeError>> = if let Err(e) = state.up() {
            vec![Err(e)]
        } else if !state.instances.contains_key(instance) {
            vec![Err(RuntimeError::UnknownInstance(*instance))]
        } else {
            let lines = state.logs.get(instance).cloned().unwrap_or_default();
            let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
            lines.into_iter().skip(skip).map(Ok).collect()
        };
        stream::iter(items).boxed()
    }

    async fn reconcile(&self, desired: &[InstanceSpec]) -> Result<ReconcileReport, RuntimeError> {
        let mut state = self.state();
        state.calls.reconcile += 1;
        state.history.push(FakeCall::Reconcile {
            desired: desired.iter().map(|s| s.instance_hash).collect(),
        });
        state.up()?;
        let wanted: BTreeSet<InstanceHash> = desired.iter().map(|s| s.instance_hash).collect();
        let mut report = ReconcileReport::default();
        let orphans: Vec<InstanceHash> = state
            .instances
            .keys()
            .filter(|i| !wanted.contains(i))
            .copied()
            .collect();
        for orphan in orphans {
            if let Some(i) = state.instances.remove(&orphan) {
                report
                    .removed
                    .extend(i.containers.into_iter().map(|c| c.name));
            }
            state.logs.remove(&orphan);
        }
        for spec in desired {
            let adopted = state
                .instances
                .get(&spec.instance_hash)
                .is_some_and(FakeInstance::all_running);
            if adopted {
                report.adopted.push(spec.instance_hash);
                continue;
            }
            match state.start(spec) {
                Ok(()) => report.restarted.push(spec.instance_hash),
                Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                Err(e) => report.failed.push((spec.instance_hash, e.to_string())),
            }
        }
        Ok(report)
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.state().calls.subscribe += 1;
        self.shared.events.subscribe()
    }

    async fn instance_subnets(&self) -> Result<Vec<String>, RuntimeError> {
        let mut state = self.state();
        state.calls.instance_subnets += 1;
        state.up()?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
#[path = "fake_tests.rs"]
mod tests;
