//! Instances running on this node, as the engine sees them: the token their containers
//! present, the queue of tasks waiting to be pushed to their stream, the executions they
//! are running.

use bytes::Bytes;
use mesg_protocol::service_api::TaskStreamMessage;
use mesg_protocol::{ExecutionId, InstanceHash, ServiceDefinition, ServiceHash};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Most tasks queued for one instance before new ones are refused as busy.
pub const MAX_QUEUED_TASKS: usize = 16 * 1024;
/// Interval of keepalive lines on an idle task stream.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct LiveInstance {
    pub hash: InstanceHash,
    pub service_hash: ServiceHash,
    pub definition: Arc<ServiceDefinition>,
    pub token: String,
    queue: Mutex<VecDeque<Bytes>>,
    notify: Notify,
    /// Incremented by each new stream; an older stream sees the change and ends.
    generation: AtomicU64,
    connected: AtomicBool,
    /// Whether its container ever opened a task stream (false while it starts).
    ever_connected: AtomicBool,
    in_flight: Mutex<HashSet<ExecutionId>>,
}

impl LiveInstance {
    pub fn new(
        hash: InstanceHash,
        service_hash: ServiceHash,
        definition: Arc<ServiceDefinition>,
        token: String,
    ) -> LiveInstance {
        LiveInstance {
            hash,
            service_hash,
            definition,
            token,
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            generation: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            ever_connected: AtomicBool::new(false),
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Queue a task for the container. Returns false when the queue is full.
    pub fn push_task(&self, id: ExecutionId, task: &str, inputs: serde_json::Value) -> bool {
        let msg = TaskStreamMessage::Task {
            execution_id: id.to_string(),
            task: task.to_string(),
            inputs,
        };
        let mut line = serde_json::to_vec(&msg).expect("task message serializes");
        line.push(b'\n');
        {
            let mut q = self.queue.lock().expect("queue lock");
            if q.len() >= MAX_QUEUED_TASKS {
                return false;
            }
            q.push_back(Bytes::from(line));
        }
        self.in_flight.lock().expect("in-flight lock").insert(id);
        self.notify.notify_one();
        true
    }

    /// Count an execution as running here (one adopted after a node restart).
    pub fn in_flight_add(&self, id: ExecutionId) {
        self.in_flight.lock().expect("in-flight lock").insert(id);
    }

    pub fn finished(&self, id: &ExecutionId) {
        self.in_flight.lock().expect("in-flight lock").remove(id);
    }

    /// Executions handed to this instance and not finished; clears the set.
    pub fn take_in_flight(&self) -> Vec<ExecutionId> {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .drain()
            .collect()
    }

    pub fn in_flight_count(&self) -> usize {
        self.in_flight.lock().expect("in-flight lock").len()
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Connected, or still starting (never connected yet): tasks given to it now will
    /// be delivered. A container that connected and went away is not ready.
    pub fn is_ready(&self) -> bool {
        self.is_connected() || !self.ever_connected.load(Ordering::SeqCst)
    }

    /// The body of a task stream: a `ready` line, then queued tasks as they come, with
    /// keepalives when idle. A newer stream of the same instance ends this one.
    pub fn task_stream(
        self: Arc<Self>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        // Wake an older stream so it notices it was replaced.
        self.notify.notify_waiters();
        self.connected.store(true, Ordering::SeqCst);
        self.ever_connected.store(true, Ordering::SeqCst);
        let guard = StreamGuard {
            instance: self.clone(),
            generation,
        };
        async_stream::stream! {
            let _guard = guard;
            let ready = TaskStreamMessage::Ready {
                service_hash: self.service_hash.to_string(),
                instance_hash: self.hash.to_string(),
            };
            let mut line = serde_json::to_vec(&ready).expect("ready serializes");
            line.push(b'\n');
            yield Ok(Bytes::from(line));
            loop {
                if self.generation.load(Ordering::SeqCst) != generation {
                    break;
                }
                let batch: Vec<Bytes> = {
                    let mut q = self.queue.lock().expect("queue lock");
                    q.drain(..).collect()
                };
                if !batch.is_empty() {
                    // One chunk per batch: fewer writes under load, same latency when idle.
                    let total: usize = batch.iter().map(|b| b.len()).sum();
                    let mut chunk = Vec::with_capacity(total);
                    for b in batch {
                        chunk.extend_from_slice(&b);
                    }
                    yield Ok(Bytes::from(chunk));
                    continue;
                }
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep(KEEPALIVE) => {
                        let mut line = serde_json::to_vec(&TaskStreamMessage::Keepalive).expect("keepalive serializes");
                        line.push(b'\n');
                        yield Ok(Bytes::from(line));
                    }
                }
            }
        }
    }
}

struct StreamGuard {
    instance: Arc<LiveInstance>,
    generation: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.instance.generation.load(Ordering::SeqCst) == self.generation {
            self.instance.connected.store(false, Ordering::SeqCst);
        }
    }
}

/// The live instances of this node, by hash and by token.
#[derive(Debug, Default)]
pub struct Registry {
    by_hash: RwLock<HashMap<InstanceHash, Arc<LiveInstance>>>,
    by_token: RwLock<HashMap<String, Arc<LiveInstance>>>,
}

impl Registry {
    pub fn insert(&self, inst: Arc<LiveInstance>) {
        self.by_token
            .write()
            .expect("registry lock")
            .insert(inst.token.clone(), inst.clone());
        self.by_hash
            .write()
            .expect("registry lock")
            .insert(inst.hash, inst);
    }

    pub fn remove(&self, hash: &InstanceHash) -> Option<Arc<LiveInstance>> {
        let inst = self.by_hash.write().expect("registry lock").remove(hash)?;
        self.by_token
            .write()
            .expect("registry lock")
            .remove(&inst.token);
        Some(inst)
    }

    pub fn get(&self, hash: &InstanceHash) -> Option<Arc<LiveInstance>> {
        self.by_hash
            .read()
            .expect("registry lock")
            .get(hash)
            .cloned()
    }

    pub fn by_token(&self, token: &str) -> Option<Arc<LiveInstance>> {
        self.by_token
            .read()
            .expect("registry lock")
            .get(token)
            .cloned()
    }

    /// The least loaded instance of a service, preferring ones whose stream is connected.
    pub fn for_service(&self, service: &ServiceHash) -> Option<Arc<LiveInstance>> {
        self.by_hash
            .read()
            .expect("registry lock")
            .values()
            .filter(|i| &i.service_hash == service)
            .min_by_key(|i| (!i.is_connected(), i.in_flight_count()))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<LiveInstance>> {
        self.by_hash
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect()
    }
}
