//! Instances running on this node, as the engine sees them: the token their containers
//! present, the queue of tasks waiting to be pushed to their stream, the executions they
//! are running.

use bytes::Bytes;
use mesg_protocol::service_api::TaskStreamMessage;
use mesg_protocol::{ExecutionId, InstanceHash, PublicKey, ServiceDefinition, ServiceHash};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Most tasks queued for one instance before new ones are refused as busy.
pub const MAX_QUEUED_TASKS: usize = 16 * 1024;
/// Most executions one other node may have handed to one instance and not yet seen end
/// (queued or running): a quarter of the queue, so that one peer flooding submits makes
/// only itself `busy` while at least three others (and this node's own work) still fit.
pub const MAX_PEER_SHARE: usize = MAX_QUEUED_TASKS / 4;
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
    in_flight: Mutex<InFlight>,
}

/// Executions handed to an instance and not finished, with the other node each came
/// from (none: this node's own, or adopted after a restart), counted per node.
#[derive(Debug, Default)]
struct InFlight {
    ids: HashMap<ExecutionId, Option<PublicKey>>,
    by_peer: HashMap<PublicKey, usize>,
}

impl InFlight {
    fn insert(&mut self, id: ExecutionId, peer: Option<PublicKey>) {
        if let Some(old) = self.ids.insert(id, peer) {
            self.release(old);
        }
        if let Some(p) = peer {
            *self.by_peer.entry(p).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, id: &ExecutionId) {
        if let Some(peer) = self.ids.remove(id) {
            self.release(peer);
        }
    }

    fn release(&mut self, peer: Option<PublicKey>) {
        if let Some(p) = peer
            && let Some(n) = self.by_peer.get_mut(&p)
        {
            *n -= 1;
            if *n == 0 {
                self.by_peer.remove(&p);
            }
        }
    }
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
            in_flight: Mutex::new(InFlight::default()),
        }
    }

    /// Queue a task for the container, for `peer` (the other node it came from, if any).
    /// Returns false when the queue is full.
    pub fn push_task(
        &self,
        id: ExecutionId,
        task: &str,
        inputs: serde_json::Value,
        peer: Option<PublicKey>,
    ) -> bool {
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
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .insert(id, peer);
        self.notify.notify_one();
        true
    }

    /// Whether `peer` already has its whole share ([`MAX_PEER_SHARE`]) of this instance.
    pub fn peer_share_full(&self, peer: &PublicKey) -> bool {
        self.peer_load(peer) >= MAX_PEER_SHARE
    }

    /// Executions of `peer` handed to this instance and not finished.
    pub fn peer_load(&self, peer: &PublicKey) -> usize {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .by_peer
            .get(peer)
            .copied()
            .unwrap_or(0)
    }

    /// Count an execution as running here (one adopted after a node restart).
    pub fn in_flight_add(&self, id: ExecutionId) {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .insert(id, None);
    }

    pub fn finished(&self, id: &ExecutionId) {
        self.in_flight.lock().expect("in-flight lock").remove(id);
    }

    /// Executions handed to this instance and not finished; clears the set.
    pub fn take_in_flight(&self) -> Vec<ExecutionId> {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        in_flight.by_peer.clear();
        in_flight.ids.drain().map(|(id, _)| id).collect()
    }

    /// Executions handed to this instance and not finished (a snapshot).
    pub fn in_flight_ids(&self) -> Vec<ExecutionId> {
        let in_flight = self.in_flight.lock().expect("in-flight lock");
        in_flight.ids.keys().copied().collect()
    }

    /// Tasks waiting in the queue for the container to take them.
    pub fn queued_tasks(&self) -> usize {
        self.queue.lock().expect("queue lock").len()
    }

    pub fn in_flight_count(&self) -> usize {
        self.in_flight.lock().expect("in-flight lock").ids.len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_protocol::{Hash32, Keypair};

    fn instance() -> LiveInstance {
        LiveInstance::new(
            InstanceHash(Hash32::sha256(b"i")),
            ServiceHash(Hash32::sha256(b"s")),
            Arc::new(ServiceDefinition::from_yaml("name: x\n").unwrap()),
            "token".into(),
        )
    }

    #[test]
    fn one_peer_fills_only_its_share_of_an_instance() {
        let live = instance();
        let rogue = Keypair::generate().unwrap().public();
        let honest = Keypair::generate().unwrap().public();
        let mut rogue_ids = Vec::new();
        for _ in 0..MAX_PEER_SHARE {
            let id = ExecutionId::random();
            assert!(live.push_task(id, "t", serde_json::Value::Null, Some(rogue)));
            rogue_ids.push(id);
        }
        assert!(live.peer_share_full(&rogue));
        assert!(!live.peer_share_full(&honest));
        assert_eq!(live.peer_load(&honest), 0);
        // This node's own work and another peer's still fit in the queue.
        assert!(live.push_task(ExecutionId::random(), "t", serde_json::Value::Null, None));
        assert!(live.push_task(
            ExecutionId::random(),
            "t",
            serde_json::Value::Null,
            Some(honest)
        ));
        assert_eq!(live.peer_load(&honest), 1);
        // The share frees as the peer's executions end.
        live.finished(&rogue_ids[0]);
        assert!(!live.peer_share_full(&rogue));
        assert_eq!(live.peer_load(&rogue), MAX_PEER_SHARE - 1);
        assert_eq!(live.in_flight_count(), MAX_PEER_SHARE + 1);
        live.take_in_flight();
        assert_eq!(live.peer_load(&rogue), 0);
    }
}
