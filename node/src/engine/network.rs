//! The engine's side of the network: routing executions to providers (two-phase:
//! `Submit -> Accepted | Rejected`, later `Result -> Accepted`), serving submits and
//! results from peers, the durable result outbox, announcements, network-wide events, and
//! fetching services (record + package) from other nodes.

use super::*;
use crate::network::{
    ANNOUNCE_TOPIC, NetError, NetworkEvent, NetworkHandle, events_topic, package_key, record_key,
    service_key,
};
use crate::store::OutboxEntry;
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use mesg_protocol::messages::{
    GossipMessage, PackageRequest, PackageResponse, Reject, RejectCode, WorkRequest, WorkResponse,
};
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE, MAX_PACKAGE_CHUNK};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

/// How often a node re-announces what it runs.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);
/// How long an announcement is valid: a few intervals, so one lost message changes nothing.
const ANNOUNCE_TTL_MS: u64 = 20_000;
/// Inbound work requests one peer may have in progress before it gets `Busy`.
const MAX_INBOUND_PER_PEER: usize = 4096;
/// How long an execution waits for some provider to take it before it fails.
const ROUTE_PATIENCE_MS: u64 = 10_000;
/// When the outbox sweep first retries a result whose immediate delivery has not
/// succeeded by then.
const FIRST_REDELIVERY_MS: u64 = 2_000;
/// Event ids remembered to drop duplicates.
const SEEN_EVENTS: usize = 16_384;
/// Service definitions fetched at once to check events of services this node never saw;
/// an event that finds none free is dropped (and counted): a peer announcing many
/// services must not make the node fetch without bound.
pub(super) const MAX_EVENT_DEFINITION_FETCHES: usize = 4;
/// How long an event waits for its service's definition to be fetched.
const EVENT_DEFINITION_PATIENCE: Duration = Duration::from_secs(5);
/// How long the outbox keeps trying to deliver a result, from the time it was signed.
/// The requester's execution has timed out long before (24 h at most); past this the
/// result is dropped, logged and counted (`mesg_results_undelivered`).
pub const MAX_OUTBOX_AGE_MS: u64 = 24 * 3600 * 1000;
/// Delivery attempts before the outbox gives up on a result (the backoff caps at 30 s:
/// about a day of trying).
pub const MAX_OUTBOX_ATTEMPTS: u32 = 3_000;

impl Engine {
    pub fn network(&self) -> Option<&NetworkHandle> {
        self.inner.network.get()
    }

    /// Connect the engine to a started network: handle what peers send, announce what
    /// this node runs, deliver pending results.
    pub fn attach_network(&self, handle: NetworkHandle, mut events: mpsc::Receiver<NetworkEvent>) {
        if self.inner.network.set(handle).is_err() {
            tracing::error!("network attached twice");
            return;
        }
        let weak = self.weak();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let Some(engine) = Engine::from_weak(&weak) else {
                    return;
                };
                engine.on_network_event(event).await;
            }
        });
        self.spawn_announcer();
        self.spawn_outbox();
    }

    async fn on_network_event(&self, event: NetworkEvent) {
        match event {
            NetworkEvent::Work {
                peer,
                request,
                channel,
            } => {
                let engine = self.clone();
                tokio::spawn(async move { engine.on_work(peer, request, channel).await });
            }
            NetworkEvent::Package {
                peer,
                request,
                channel,
            } => {
                let engine = self.clone();
                tokio::spawn(
                    async move { engine.on_package_request(peer, request, channel).await },
                );
            }
            NetworkEvent::Gossip { message, .. } => self.on_gossip(message).await,
            NetworkEvent::PeerConnected(_) => self.inner.announce_now.notify_one(),
            NetworkEvent::PeerDisconnected(_) => {}
        }
    }

    // ------------------------------------------------------------ requester side

    /// The provider a new execution of `service` will be offered to first, if one is
    /// known. Recorded with the execution, so routing it costs no flush of its own.
    pub(super) fn first_provider(&self, service: &ServiceHash) -> Option<PublicKey> {
        self.network()?;
        let me = self.node_key();
        self.inner
            .providers
            .lock()
            .expect("providers lock")
            .candidates(service, &me)
            .into_iter()
            .next()
    }

    /// Route an execution that no local instance can run to a provider in the network.
    pub(super) async fn route(&self, execution: Execution, signed: Signed<ExecutionRequest>) {
        let Some(net) = self.network().cloned() else {
            let reason = format!(
                "no running instance of service {} on this node, and the node has no network",
                execution.service_hash
            );
            self.finish(&execution.id, Err(reason), None).await;
            return;
        };
        let me = self.node_key();
        let id = execution.id;
        let service = execution.service_hash;
        let mut tried: HashSet<PublicKey> = HashSet::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut asked_dht = false;
        // A provider noted before a restart gets the request first.
        let mut preferred = execution.executor.filter(|p| *p != me);
        // When nobody takes it (no provider known yet, all unreachable or busy), try
        // again with backoff for a while: providers appear with the next announcement
        // and partitions heal. Only before any Accepted, so nothing can run twice.
        let mut pause = Duration::from_millis(250);
        let patience_until = now_ms() + ROUTE_PATIENCE_MS.min(execution.timeout_ms / 2);
        loop {
            let mut candidates: Vec<PublicKey> = self
                .inner
                .providers
                .lock()
                .expect("providers lock")
                .candidates(&service, &me)
                .into_iter()
                .filter(|p| !tried.contains(p))
                .collect();
            if candidates.is_empty() && !asked_dht {
                asked_dht = true;
                // Nobody announced it (yet): ask the DHT who provides it.
                if let Ok(peers) = net.providers(service_key(&service)).await {
                    candidates = peers
                        .iter()
                        .filter_map(PublicKey::from_peer_id)
                        .filter(|p| *p != me && !tried.contains(p))
                        .collect();
                }
            }
            if let Some(p) = preferred.take()
                && !tried.contains(&p)
            {
                candidates.insert(0, p);
            }
            let Some(target) = candidates.into_iter().next() else {
                let still_waiting = matches!(
                    self.store().execution(&id),
                    Ok(Some(e)) if e.status == ExecutionStatus::Created
                );
                if !still_waiting {
                    return;
                }
                if now_ms() + pause.as_millis() as u64 >= patience_until {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                tried.clear();
                asked_dht = false;
                continue;
            };
            tried.insert(target);
            let durable_executor = match self.store().execution(&id) {
                Ok(Some(e)) if e.status == ExecutionStatus::Created && e.deadline() > now_ms() => {
                    e.executor
                }
                _ => return, // cancelled or timed out meanwhile
            };
            let Ok(peer) = target.peer_id() else { continue };
            self.set_route(id, target);
            // Durably note where it goes before it goes: after a crash, the request is
            // offered to the same provider first, which recognises it (see Replayed).
            // The first provider is usually noted already, in the flush that recorded
            // the new execution (see `first_provider`).
            if durable_executor != Some(target) {
                let noted = self.store().update_execution(&id, &mut |e| {
                    if e.status == ExecutionStatus::Created {
                        e.executor = Some(target);
                    }
                    Ok(())
                });
                if noted.is_ok()
                    && let Err(e) = self.store().persist().await
                {
                    tracing::error!(execution = %id, "cannot persist the route: {e}");
                }
            }
            let sent = std::time::Instant::now();
            let answer = net
                .send_work(peer, WorkRequest::Submit(signed.clone()))
                .await;
            // The provider already holds this very request (we sent it before a restart,
            // and its Accepted was lost): it runs it and owes us the result.
            let answer = match answer {
                Ok(WorkResponse::Rejected(r)) if r.code == RejectCode::Replayed => {
                    Ok(WorkResponse::Accepted)
                }
                other => other,
            };
            match answer {
                Ok(WorkResponse::Accepted) => {
                    let rtt = sent.elapsed().as_micros() as f64;
                    self.inner
                        .providers
                        .lock()
                        .expect("providers lock")
                        .succeeded(&target, rtt);
                    let updated = self.store().update_execution(&id, &mut |e| {
                        if e.status == ExecutionStatus::Created {
                            e.transition(ExecutionStatus::InProgress, now_ms())?;
                            e.executor = Some(target);
                        }
                        Ok(())
                    });
                    match updated {
                        // A late Accepted for an execution that already ended (timed
                        // out meanwhile): the route is over.
                        Ok(e) if e.status.is_final() => self.take_route(&id),
                        Ok(e) => self.notify(&e),
                        Err(err) => tracing::warn!(execution = %id, "after accept: {err}"),
                    }
                    tracing::debug!(execution = %id, executor = %target, "accepted");
                    return;
                }
                Ok(WorkResponse::Rejected(reject)) => {
                    reasons.push(format!("{peer}: {}", reject.message));
                    self.take_route(&id);
                    if !reject.code.is_retriable() {
                        self.finish(
                            &id,
                            Err(format!("rejected by {peer}: {}", reject.message)),
                            None,
                        )
                        .await;
                        return;
                    }
                    if reject.code != RejectCode::Busy {
                        self.inner
                            .providers
                            .lock()
                            .expect("providers lock")
                            .failed(&target);
                    }
                }
                Err(e) => {
                    reasons.push(e.to_string());
                    self.take_route(&id);
                    self.inner
                        .providers
                        .lock()
                        .expect("providers lock")
                        .failed(&target);
                }
            }
        }
        self.take_route(&id);
        let reason = if reasons.is_empty() {
            format!("no node in the network runs service {service}")
        } else {
            format!("no provider accepted the execution: {}", reasons.join("; "))
        };
        self.finish(&id, Err(reason), None).await;
    }

    /// The executor sends the result back.
    async fn on_result(&self, peer: PeerId, signed: Signed<ExecutionResult>) -> WorkResponse {
        let result = match signed.verify(domains::EXECUTION_RESULT, now_ms(), MAX_WORK_MESSAGE) {
            Ok(r) => r,
            Err(e) => return reject(RejectCode::BadSignature, e.to_string()),
        };
        if result.executor.peer_id().ok() != Some(peer) {
            return reject(
                RejectCode::WrongNode,
                "the result is not signed by the node that sent it",
            );
        }
        let id = result.execution_id;
        let Ok(Some(execution)) = self.store().execution(&id) else {
            return reject(
                RejectCode::UnknownExecution,
                format!("no execution {id} here"),
            );
        };
        let digest = self.store().request(&id).ok().flatten().map(|r| r.digest());
        if digest != Some(result.request_digest) {
            return reject(
                RejectCode::BadSignature,
                "the result answers another request",
            );
        }
        if execution.status.is_final() {
            return WorkResponse::Accepted; // a resend: we already have the end
        }
        let assigned = execution.executor.or_else(|| {
            self.inner
                .routes
                .lock()
                .expect("routes lock")
                .get(&id)
                .copied()
        });
        if assigned != Some(result.executor) {
            return reject(RejectCode::WrongNode, "this execution was not given to you");
        }
        let outcome = match &result.outcome {
            Outcome::Completed { outputs } => {
                // Check the outputs ourselves when we know the definition.
                match self.store().service(&execution.service_hash).ok().flatten() {
                    Some(s) => match s.record.definition.task(&execution.task_key) {
                        Some(t) => {
                            match mesg_protocol::schema::validate(&t.outputs, &outputs.0, "outputs")
                            {
                                Ok(()) => Ok(outputs.0.clone()),
                                Err(e) => {
                                    Err(format!("the executor returned invalid outputs: {e}"))
                                }
                            }
                        }
                        None => Ok(outputs.0.clone()),
                    },
                    None => Ok(outputs.0.clone()),
                }
            }
            Outcome::Failed { error } => Err(error.clone()),
        };
        let executor = result.executor;
        let instance = result.instance_hash;
        let started = result.started_at;
        if execution.status == ExecutionStatus::Created {
            // The result overtook the Accepted answer.
            let _ = self.store().update_execution(&id, &mut |e| {
                if e.status == ExecutionStatus::Created {
                    e.transition(ExecutionStatus::InProgress, started.unwrap_or_else(now_ms))?;
                    e.executor = Some(executor);
                }
                Ok(())
            });
        }
        let _ = self.store().update_execution(&id, &mut |e| {
            e.instance_hash = instance;
            Ok(())
        });
        // finish() persists before we answer: the executor drops its copy on our Accepted.
        match self.finish(&id, outcome, Some(signed)).await {
            Some(_) => WorkResponse::Accepted,
            None => match self.store().execution(&id) {
                Ok(Some(e)) if e.status.is_final() => WorkResponse::Accepted,
                _ => reject(RejectCode::Internal, "could not record the result"),
            },
        }
    }

    pub(super) fn route_ended(&self, e: &Execution) {
        self.take_route(&e.id);
    }

    /// Submitting `id` to `target`: it counts as load on `target` until the route ends.
    fn set_route(&self, id: ExecutionId, target: PublicKey) {
        let previous = self
            .inner
            .routes
            .lock()
            .expect("routes lock")
            .insert(id, target);
        let mut providers = self.inner.providers.lock().expect("providers lock");
        if let Some(p) = previous {
            providers.ended(&p);
        }
        providers.sending(&target);
    }

    /// The route of `id` ended (rejected, unreachable, finished): exactly once per route.
    fn take_route(&self, id: &ExecutionId) {
        let removed = self.inner.routes.lock().expect("routes lock").remove(id);
        if let Some(target) = removed {
            self.inner
                .providers
                .lock()
                .expect("providers lock")
                .ended(&target);
        }
    }

    /// Tell the executor we gave up (timeout, cancel). Best effort.
    pub(super) fn cancel_remote(&self, e: &Execution, reason: &str) {
        let (Some(net), Some(executor)) = (self.network().cloned(), e.executor) else {
            return;
        };
        if executor == self.node_key() || e.requester_node != self.node_key() {
            return;
        }
        let Ok(peer) = executor.peer_id() else { return };
        let cancel = CancelRequest {
            execution_id: e.id,
            requester: self.node_key(),
            reason: reason.to_string(),
        };
        let Ok(signed) = Signed::sign(
            self.keypair(),
            domains::CANCEL,
            &cancel,
            now_ms(),
            600_000,
            MAX_WORK_MESSAGE,
        ) else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = net.send_work(peer, WorkRequest::Cancel(signed)).await {
                tracing::debug!("cancel not delivered: {e}");
            }
        });
    }

    // ------------------------------------------------------------- executor side

    async fn on_work(
        &self,
        peer: PeerId,
        request: WorkRequest,
        channel: ResponseChannel<WorkResponse>,
    ) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        // Before anything costs a signature check or a write: a peer beyond its rate gets
        // `busy` (an honest requester tries another provider or later).
        if !self.inner.peer_rates.allow(peer) {
            self.inner.metrics.peer_work_refused.inc();
            let response = reject(
                RejectCode::Busy,
                format!(
                    "rate limit: at most {} work requests per second from one node; slow down",
                    self.inner.peer_rates.rate()
                ),
            );
            net.respond_work(channel, response).await;
            return;
        }
        let response = match request {
            WorkRequest::Submit(signed) => {
                let count = {
                    let mut m = self.inner.inbound.lock().expect("inbound lock");
                    let c = m.entry(peer).or_insert(0);
                    *c += 1;
                    *c
                };
                let r = if count > MAX_INBOUND_PER_PEER {
                    reject(
                        RejectCode::Busy,
                        "too many requests in progress from your node",
                    )
                } else {
                    self.on_submit(peer, signed).await
                };
                let mut m = self.inner.inbound.lock().expect("inbound lock");
                if let Some(c) = m.get_mut(&peer) {
                    *c -= 1;
                    if *c == 0 {
                        m.remove(&peer);
                    }
                }
                r
            }
            WorkRequest::Result(signed) => self.on_result(peer, signed).await,
            WorkRequest::Cancel(signed) => self.on_cancel(peer, signed).await,
        };
        net.respond_work(channel, response).await;
    }

    async fn on_submit(&self, peer: PeerId, signed: Signed<ExecutionRequest>) -> WorkResponse {
        let request = match signed.verify(domains::EXECUTION_REQUEST, now_ms(), MAX_WORK_MESSAGE) {
            Ok(r) => r,
            Err(mesg_protocol::EnvelopeError::Expired { .. }) => {
                return reject(RejectCode::Expired, "the request expired");
            }
            Err(e) => return reject(RejectCode::BadSignature, e.to_string()),
        };
        // Dated ahead of our clock beyond the tolerated skew: refused (it would never time
        // out). Past its deadline the requester has given up on it: never start it.
        let received_at = now_ms();
        match request.check_times(received_at) {
            Ok(()) => {}
            Err(e @ mesg_protocol::RequestTimeError::DeadlinePassed { .. }) => {
                return reject(RejectCode::Expired, e.to_string());
            }
            Err(e) => return reject(RejectCode::Malformed, e.to_string()),
        }
        if request.requester_node.peer_id().ok() != Some(peer) {
            return reject(
                RejectCode::WrongNode,
                "the request names another node as the requester node",
            );
        }
        let Some(live) = self.inner.live.for_service(&request.service_hash) else {
            return reject(
                RejectCode::NoInstance,
                format!("this node does not run service {}", request.service_hash),
            );
        };
        // One node may fill only its share of an instance's queue: the others (and this
        // node's own work) keep room.
        if live.peer_share_full(&request.requester_node) {
            return reject(
                RejectCode::Busy,
                format!(
                    "your node already has {} executions queued or running on instance {}; wait for some to end",
                    super::instances::MAX_PEER_SHARE,
                    live.hash
                ),
            );
        }
        if let Err(e) = self.validate_request(&live.definition, &request) {
            let code = match e {
                EngineError::UnknownTask { .. } => RejectCode::UnknownTask,
                EngineError::InvalidInputs(_) => RejectCode::InvalidInputs,
                _ => RejectCode::Malformed,
            };
            return reject(code, e.to_string());
        }
        match self.store().record_nonce(
            &signed.header.signer,
            &signed.header.nonce.0,
            signed.header.expires_at,
        ) {
            Ok(true) => {}
            Ok(false) => {
                // The very request we hold (its Accepted was lost): `Replayed` tells the
                // requester it runs here. Anything else reusing the nonce is refused
                // for what it is.
                let same = self
                    .store()
                    .request(&request.execution_id)
                    .ok()
                    .flatten()
                    .is_some_and(|held| held.digest() == signed.digest());
                return if same {
                    reject(RejectCode::Replayed, "this request was already submitted")
                } else {
                    reject(
                        RejectCode::NonceReused,
                        "another request was already signed with this nonce: sign this one with a fresh nonce",
                    )
                };
            }
            Err(e) => return reject(RejectCode::Internal, e.to_string()),
        }
        // Its deadline counts from the receipt here, never from a later claimed time.
        let mut execution = Execution::received(&request, received_at);
        self.assign(&mut execution, &live);
        if let Err(e) = self.store().insert_execution(&execution, &signed) {
            return reject(RejectCode::Replayed, e.to_string());
        }
        // Durable before we say yes: after Accepted the result is owed.
        if let Err(e) = self.store().persist().await {
            return reject(RejectCode::Internal, e.to_string());
        }
        self.inner
            .deadlines
            .watch(execution.id, execution.deadline())
            .await;
        self.inner.metrics.executions_accepted_from_peers.inc();
        self.notify(&execution);
        self.push(execution, &live).await;
        WorkResponse::Accepted
    }

    async fn on_cancel(&self, peer: PeerId, signed: Signed<CancelRequest>) -> WorkResponse {
        let cancel = match signed.verify(domains::CANCEL, now_ms(), MAX_WORK_MESSAGE) {
            Ok(c) => c,
            Err(e) => return reject(RejectCode::BadSignature, e.to_string()),
        };
        let Ok(Some(e)) = self.store().execution(&cancel.execution_id) else {
            return reject(RejectCode::UnknownExecution, "unknown execution");
        };
        if e.requester_node != cancel.requester || cancel.requester.peer_id().ok() != Some(peer) {
            return reject(
                RejectCode::WrongNode,
                "only the requester's node may cancel",
            );
        }
        self.finish(
            &e.id,
            Err(format!("cancelled by the requester: {}", cancel.reason)),
            None,
        )
        .await;
        WorkResponse::Accepted
    }

    /// Put a result owed to another node in the outbox (durable with the caller's next
    /// persist), to be delivered until acknowledged.
    pub(super) fn queue_result(&self, e: &Execution) -> Result<(), EngineError> {
        let Some(result) = self.store().result(&e.id)? else {
            return Ok(());
        };
        self.store().put_outbox(
            &e.id,
            &OutboxEntry {
                result,
                requester_node: e.requester_node,
                attempts: 0,
                // Delivered right away by the caller; the outbox sweep only retries, so
                // it leaves the entry alone while that first attempt is under way.
                next_attempt_at: now_ms() + FIRST_REDELIVERY_MS,
            },
        )?;
        Ok(())
    }

    /// Try to deliver one outbox entry now.
    pub(super) async fn deliver(&self, id: ExecutionId) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        let Ok(Some(mut entry)) = self.store().outbox_entry(&id) else {
            return;
        };
        let Ok(peer) = entry.requester_node.peer_id() else {
            let _ = self.store().remove_outbox(&id);
            return;
        };
        if let Some(reason) = outbox_give_up(&entry, now_ms()) {
            tracing::error!(
                execution = %id,
                requester = %entry.requester_node,
                "result not delivered, dropped from the outbox: {reason}"
            );
            self.inner.metrics.results_undelivered.inc();
            let _ = self.store().remove_outbox(&id);
            return;
        }
        match net
            .send_work(peer, WorkRequest::Result(entry.result.clone()))
            .await
        {
            Ok(WorkResponse::Accepted) => {
                let _ = self.store().remove_outbox(&id);
            }
            Ok(WorkResponse::Rejected(r)) if !r.code.is_retriable() => {
                tracing::warn!(execution = %id, "the requester refused the result: {r}");
                let _ = self.store().remove_outbox(&id);
            }
            other => {
                entry.attempts += 1;
                let backoff = (500u64 << entry.attempts.min(6)).min(30_000);
                entry.next_attempt_at = now_ms() + backoff;
                tracing::debug!(execution = %id, attempts = entry.attempts, "result not delivered: {other:?}");
                let _ = self.store().put_outbox(&id, &entry);
            }
        }
    }

    fn spawn_outbox(&self) {
        let weak = self.weak();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(engine) = Engine::from_weak(&weak) else {
                    return;
                };
                let due: Vec<ExecutionId> = match engine.store().outbox() {
                    Ok(entries) => entries
                        .into_iter()
                        .filter(|(_, e)| e.next_attempt_at <= now_ms())
                        .map(|(id, _)| id)
                        .collect(),
                    Err(e) => {
                        tracing::error!("outbox: {e}");
                        continue;
                    }
                };
                for id in due {
                    let engine = engine.clone();
                    tokio::spawn(async move { engine.deliver(id).await });
                }
            }
        });
    }

    // ------------------------------------------------------------- announcements

    fn spawn_announcer(&self) {
        let weak = self.weak();
        tokio::spawn(async move {
            loop {
                let Some(engine) = Engine::from_weak(&weak) else {
                    return;
                };
                engine.announce().await;
                let notify = engine.inner.clone();
                drop(engine);
                tokio::select! {
                    _ = tokio::time::sleep(ANNOUNCE_INTERVAL) => {}
                    _ = notify.announce_now.notified() => {
                        // Coalesce bursts (many peers connecting at once).
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    /// Sign and publish what this node runs; register as a DHT provider of it.
    pub async fn announce(&self) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        {
            let mut providers = self.inner.providers.lock().expect("providers lock");
            let evicted = providers.evict_expired(now_ms());
            if evicted > 0 {
                tracing::debug!(evicted, "expired providers evicted");
            }
            self.inner
                .metrics
                .provider_nodes
                .set(providers.len() as i64);
        }
        let services = self.local_offers();
        let addrs = net
            .listen_addrs()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.to_string())
            .collect();
        // Milliseconds keep the sequence increasing across restarts.
        let seq = now_ms().max(self.inner.announce_seq.load(Ordering::SeqCst) + 1);
        self.inner.announce_seq.store(seq, Ordering::SeqCst);
        let announcement = Announcement {
            node: self.node_key(),
            seq,
            addrs,
            services: services.clone(),
            ttl_ms: ANNOUNCE_TTL_MS,
        };
        for s in &services {
            let first = self
                .inner
                .provided
                .lock()
                .expect("provided lock")
                .insert(s.service_hash);
            if first {
                net.start_providing(service_key(&s.service_hash)).await;
            }
        }
        let Ok(signed) = Signed::sign(
            self.keypair(),
            domains::ANNOUNCEMENT,
            &announcement,
            now_ms(),
            ANNOUNCE_TTL_MS,
            MAX_GOSSIP_MESSAGE,
        ) else {
            tracing::error!("announcement too large ({} services)", services.len());
            return;
        };
        if let Ok(frame) = wire::encode_frame(&GossipMessage::Announce(signed), MAX_GOSSIP_MESSAGE)
            && let Err(e) = net.publish(ANNOUNCE_TOPIC.to_string(), frame).await
        {
            tracing::debug!("announcement not published: {e}");
        }
    }

    /// Publish a deployed service's record and register as a holder of its package.
    pub(super) async fn publish_service(&self, entry: &ServiceEntry) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        if let Ok(value) = wire::encode(&entry.signed, wire::MAX_PACKAGE_MESSAGE) {
            net.put_record(record_key(&entry.record.service_hash), value)
                .await;
        }
        if !self.is_private_package(&entry.record.package_hash) {
            net.start_providing(package_key(&entry.record.package_hash))
                .await;
        }
    }

    async fn on_gossip(&self, message: GossipMessage) {
        match message {
            GossipMessage::AnnounceV1(signed) => {
                // An older node: its offers carry no claim, so its services stay unpublished.
                if let Ok(a) = signed.payload_unverified(MAX_GOSSIP_MESSAGE) {
                    self.on_announcement(Announcement::from(a)).await;
                }
            }
            GossipMessage::Announce(signed) => {
                let Ok(mut a) = signed.payload_unverified(MAX_GOSSIP_MESSAGE) else {
                    return;
                };
                drop_invalid_claims(&mut a, now_ms());
                self.on_announcement(a).await;
            }
            GossipMessage::Event(signed) => self.on_event(signed).await,
        }
    }

    /// A network event: delivered to processes and event streams only when its emitter
    /// currently announces the instance it claims to come from, it was not seen before
    /// (persisted, so a replay after a restart is ignored too), and its data validates
    /// against the service's event schema. Whatever fails is dropped and counted.
    async fn on_event(&self, signed: Signed<Event>) {
        let Ok(event) = signed.payload_unverified(MAX_GOSSIP_MESSAGE) else {
            return;
        };
        if event.emitter == self.node_key() {
            return;
        }
        // An event dated ahead of this node's clock would stay first in the recent events
        // (never trimmed) and mislead processes that order by time.
        if event.created_at > now_ms().saturating_add(mesg_protocol::envelope::MAX_CLOCK_SKEW_MS) {
            self.inner.metrics.events_dropped_invalid.inc();
            tracing::debug!(event = %event.id, emitter = %event.emitter, "event dropped: dated in the future");
            return;
        }
        let entitled = self
            .inner
            .providers
            .lock()
            .expect("providers lock")
            .announces_instance(&event.emitter, &event.service_hash, &event.instance_hash);
        if !entitled {
            self.inner.metrics.events_dropped_unentitled.inc();
            tracing::debug!(
                event = %event.id,
                emitter = %event.emitter,
                "event dropped: its emitter does not announce instance {} of service {}",
                event.instance_hash,
                event.service_hash
            );
            return;
        }
        if !self.first_sight(&event.id) {
            return;
        }
        // The envelope's nonce, kept until the envelope expires (an expired one is
        // refused on its expiry alone): a replay after a restart is known.
        match self.store().record_nonce(
            &signed.header.signer,
            &signed.header.nonce.0,
            signed.header.expires_at,
        ) {
            Ok(true) => {
                let persist = self.store().persist();
                tokio::spawn(async move {
                    if let Err(e) = persist.await {
                        tracing::warn!("seen event not persisted: {e}");
                    }
                });
            }
            Ok(false) => {
                self.inner.metrics.events_dropped_replayed.inc();
                tracing::debug!(event = %event.id, "event dropped: seen before (replay)");
                return;
            }
            Err(e) => tracing::warn!(event = %event.id, "seen event not recorded: {e}"),
        }
        match self.store().service(&event.service_hash) {
            Ok(Some(entry)) => self.check_and_deliver(&entry, event),
            _ => {
                // The definition is in the network (the emitter runs it): fetch its
                // record, a few at a time; without it the event cannot be checked.
                let Ok(permit) = self.inner.event_checks.clone().try_acquire_owned() else {
                    self.inner.metrics.events_dropped_unchecked.inc();
                    tracing::debug!(event = %event.id, "event dropped: too many definitions being fetched");
                    return;
                };
                let engine = self.clone();
                tokio::spawn(async move {
                    let fetched = tokio::time::timeout(
                        EVENT_DEFINITION_PATIENCE,
                        engine.fetch_record(event.service_hash),
                    )
                    .await;
                    drop(permit);
                    match fetched {
                        Ok(Ok(entry)) => engine.check_and_deliver(&entry, event),
                        Ok(Err(e)) => {
                            engine.inner.metrics.events_dropped_unchecked.inc();
                            tracing::debug!(event = %event.id, "event dropped: no definition to check it against: {e}");
                        }
                        Err(_) => {
                            engine.inner.metrics.events_dropped_unchecked.inc();
                            tracing::debug!(event = %event.id, "event dropped: its service's definition was not found in time");
                        }
                    }
                });
            }
        }
    }

    fn check_and_deliver(&self, entry: &ServiceEntry, event: Event) {
        let valid = match entry.record.definition.events.get(&event.key) {
            None => Err(format!(
                "service {} has no event `{}`",
                event.service_hash, event.key
            )),
            Some(def) => mesg_protocol::schema::validate(&def.data, &event.data.0, "data")
                .map_err(|e| e.to_string()),
        };
        if let Err(reason) = valid {
            self.inner.metrics.events_dropped_invalid.inc();
            tracing::debug!(event = %event.id, emitter = %event.emitter, "event dropped: {reason}");
            return;
        }
        self.inner.metrics.events_received.inc();
        if let Err(e) = self.store().put_event(&event, RECENT_EVENTS) {
            tracing::warn!("event not recorded: {e}");
        }
        let _ = self.inner.events_tx.send(event);
    }

    async fn on_announcement(&self, a: Announcement) {
        if a.node == self.node_key() {
            return;
        }
        let (fresh, new_services) = self
            .inner
            .providers
            .lock()
            .expect("providers lock")
            .apply(&a);
        let size = self.inner.providers.lock().expect("providers lock").len();
        self.inner.metrics.provider_nodes.set(size as i64);
        if fresh && let (Some(net), Ok(peer)) = (self.network(), a.node.peer_id()) {
            let addrs = a.addrs.iter().filter_map(|s| s.parse().ok()).collect();
            net.add_addresses(peer, addrs).await;
        }
        if !new_services.is_empty() && self.inner.all_events_watchers.load(Ordering::SeqCst) > 0 {
            for s in new_services {
                self.subscribe_topic(s).await;
            }
        }
    }

    /// Whether this event id is new to this node (and remember it).
    pub(super) fn first_sight(&self, id: &EventId) -> bool {
        let mut seen = self.inner.seen_events.lock().expect("seen lock");
        if seen.0.contains(id) {
            return false;
        }
        seen.0.insert(*id);
        seen.1.push_back(*id);
        if seen.1.len() > SEEN_EVENTS
            && let Some(old) = seen.1.pop_front()
        {
            seen.0.remove(&old);
        }
        true
    }

    pub(super) async fn publish_event(&self, event: &Event, signed: Signed<Event>) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        let Ok(frame) = wire::encode_frame(&GossipMessage::Event(signed), MAX_GOSSIP_MESSAGE)
        else {
            tracing::warn!(event = %event.id, "event too large for the network; kept local");
            return;
        };
        if let Err(e) = net.publish(events_topic(&event.service_hash), frame).await {
            tracing::debug!("event not published: {e}");
        }
    }

    async fn subscribe_topic(&self, service: ServiceHash) {
        if let Some(net) = self.network() {
            self.track_topic(service, true);
            net.subscribe(events_topic(&service)).await;
        }
    }

    async fn unsubscribe_topic(&self, service: ServiceHash) {
        if let Some(net) = self.network() {
            self.track_topic(service, false);
            net.unsubscribe(events_topic(&service)).await;
        }
    }

    fn track_topic(&self, service: ServiceHash, subscribed: bool) {
        let mut topics = self.inner.subscribed_topics.lock().expect("topics lock");
        if subscribed {
            topics.insert(service);
        } else {
            topics.remove(&service);
        }
        self.inner.metrics.event_topics.set(topics.len() as i64);
    }

    /// The event topics this node is subscribed to right now.
    pub fn subscribed_event_topics(&self) -> usize {
        self.inner
            .subscribed_topics
            .lock()
            .expect("topics lock")
            .len()
    }

    /// After the last watcher of every service went: leave the topics no one else
    /// (a filtered stream, a process) still wants.
    async fn leave_unwanted_topics(&self) {
        let subscribed: Vec<ServiceHash> = self
            .inner
            .subscribed_topics
            .lock()
            .expect("topics lock")
            .iter()
            .copied()
            .collect();
        for s in subscribed {
            let wanted = self.inner.all_events_watchers.load(Ordering::SeqCst) > 0
                || self
                    .inner
                    .event_topics
                    .lock()
                    .expect("topics lock")
                    .contains_key(&s);
            if !wanted {
                self.unsubscribe_topic(s).await;
            }
        }
    }

    /// Receive events of `service` (or of every known service) from the network while
    /// the returned guard lives.
    pub async fn watch_events(&self, service: Option<ServiceHash>) -> EventInterest {
        match service {
            Some(s) => {
                let first = {
                    let mut counts = self.inner.event_topics.lock().expect("topics lock");
                    let c = counts.entry(s).or_insert(0);
                    *c += 1;
                    *c == 1
                };
                if first {
                    self.subscribe_topic(s).await;
                }
            }
            None => {
                self.inner
                    .all_events_watchers
                    .fetch_add(1, Ordering::SeqCst);
                let known = self
                    .inner
                    .providers
                    .lock()
                    .expect("providers lock")
                    .known_services();
                for s in known {
                    self.subscribe_topic(s).await;
                }
            }
        }
        EventInterest {
            engine: self.clone(),
            service,
        }
    }

    // ------------------------------------------------------------------ packages

    async fn on_package_request(
        &self,
        _peer: PeerId,
        request: PackageRequest,
        channel: ResponseChannel<PackageResponse>,
    ) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        let response = match request {
            PackageRequest::Record(hash) => match self.store().service(&hash) {
                Ok(Some(entry)) => PackageResponse::Record(entry.signed),
                _ => PackageResponse::NotFound(format!("no service {hash} here")),
            },
            PackageRequest::Chunk { package, .. } if self.is_private_package(&package) => {
                PackageResponse::NotFound(format!(
                    "package {package} is private: its publisher deployed it with --private and does not serve it to peers; ask them for the service directory"
                ))
            }
            PackageRequest::Chunk { package, offset } => {
                let path = self.package_path(&package);
                match read_chunk(&path, offset).await {
                    Ok((total, data)) => PackageResponse::Chunk {
                        total,
                        data: Bytes(data),
                    },
                    Err(e) => PackageResponse::NotFound(format!("package {package}: {e}")),
                }
            }
        };
        net.respond_package(channel, response).await;
    }

    /// Peers that may hold a service or its package: announced providers, DHT providers.
    async fn holders(&self, net: &NetworkHandle, hash: &ServiceHash) -> Vec<PeerId> {
        let me = self.node_key();
        let mut peers: Vec<PeerId> = self
            .inner
            .providers
            .lock()
            .expect("providers lock")
            .candidates(hash, &me)
            .iter()
            .filter_map(|k| k.peer_id().ok())
            .collect();
        if let Ok(more) = net.providers(service_key(hash)).await {
            peers.extend(more);
        }
        peers
    }

    /// Learn a service this node never saw: its signed record (definition and package
    /// hash), from the DHT or from a node that runs it. Enough to validate and route
    /// executions; [`Engine::fetch_package`] makes it runnable here.
    pub async fn fetch_record(&self, hash: ServiceHash) -> Result<ServiceEntry, EngineError> {
        let not_found = || EngineError::NotFound {
            what: "service (on this node and in the network)",
            id: hash.to_string(),
        };
        let net = self.network().cloned().ok_or_else(not_found)?;
        let mut found: Option<Signed<ServiceRecord>> = None;
        if let Ok(value) = net.get_record(record_key(&hash)).await
            && let Ok(s) = wire::decode::<Signed<ServiceRecord>>(&value, wire::MAX_PACKAGE_MESSAGE)
        {
            found = Some(s);
        }
        if found.is_none() {
            for p in self.holders(&net, &hash).await {
                if let Ok(PackageResponse::Record(s)) =
                    net.send_package(p, PackageRequest::Record(hash)).await
                {
                    found = Some(s);
                    break;
                }
            }
        }
        let signed = found.ok_or_else(not_found)?;
        let record = signed
            .verify(domains::SERVICE_RECORD, now_ms(), wire::MAX_PACKAGE_MESSAGE)
            .map_err(|e| EngineError::BadSignature(format!("service record: {e}")))?;
        record
            .check()
            .map_err(|e| EngineError::InvalidPackage(e.to_string()))?;
        if record.service_hash != hash {
            return Err(EngineError::InvalidPackage(
                "the record is for another service".into(),
            ));
        }
        let entry = ServiceEntry {
            record,
            signed,
            image: None,
            deployed_at: now_ms(),
        };
        // Keep the publisher's claim, to resolve its sid here and announce it with the
        // service if this node runs it one day.
        let announced = self
            .inner
            .providers
            .lock()
            .expect("providers lock")
            .claims_of(&hash);
        if let Some(sid) = &entry.record.definition.sid {
            for c in announced {
                if c.verify_for(&hash, sid, now_ms()).is_ok() {
                    self.store_claim(&c, false)?;
                }
            }
        }
        // Another task may have fetched it meanwhile; keep a built image if there is one.
        if let Some(existing) = self.store().service(&hash)? {
            return Ok(existing);
        }
        self.store().put_service(&entry)?;
        self.store().persist().await?;
        Ok(entry)
    }

    /// Download a known service's package from a node that holds it, check it against the
    /// record's hashes, and build its image here.
    pub async fn fetch_package(
        &self,
        mut entry: ServiceEntry,
    ) -> Result<ServiceEntry, EngineError> {
        let hash = entry.record.service_hash;
        let net = self.network().cloned().ok_or_else(|| {
            EngineError::Conflict(format!("service {hash} has no package on this node"))
        })?;
        let rec = entry.record.clone();
        if rec.package_size > self.inner.config.max_package_bytes {
            return Err(EngineError::InvalidPackage(format!(
                "package of {} bytes exceeds this node's limit",
                rec.package_size
            )));
        }
        let mut peers = self.holders(&net, &hash).await;
        if let Ok(more) = net.providers(package_key(&rec.package_hash)).await {
            peers.extend(more);
        }
        if let Ok(p) = rec.publisher.peer_id() {
            peers.push(p);
        }
        let mut seen = HashSet::new();
        peers.retain(|p| seen.insert(*p));
        let mut last_error = String::from("no node holds the package");
        for peer in peers {
            let tar = match self.download(&net, peer, &rec).await {
                Ok(tar) => tar,
                Err(e) => {
                    last_error = format!("{peer}: {e}");
                    continue;
                }
            };
            // Hash first: the bytes of a peer are only hashed (a streaming read that keeps no
            // content) until they match the signed record; only then is the package parsed.
            match mesg_package::hash_tar(&tar, self.inner.config.max_package_bytes) {
                Ok(h) if h == rec.package_hash => {}
                Ok(h) => {
                    last_error = format!(
                        "{peer} sent package {h}, not {} as the record says",
                        rec.package_hash
                    );
                    continue;
                }
                Err(e) => {
                    last_error = format!("{peer} sent an unreadable package: {e}");
                    continue;
                }
            }
            let (package, definition) = match self.check_package(&tar) {
                Ok(checked) => checked,
                Err(e) => {
                    last_error = format!("{peer} sent an invalid package: {e}");
                    continue;
                }
            };
            if package.hash() != rec.package_hash || definition != rec.definition {
                last_error = format!("{peer} sent a package that does not match the record");
                continue;
            }
            // The publisher's Dockerfile and dependencies under this node's rules.
            self.check_runnable(&package, &definition).await?;
            drop(package);
            self.save_package(&rec.package_hash, &tar)?;
            let image = image_tag(&self.node_key(), &hash);
            let (tx, mut rx) = mpsc::channel::<String>(64);
            let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let built = self.runtime().build(tar, &image, tx).await;
            let _ = drain.await;
            built?;
            entry.image = Some(image);
            self.store().put_service(&entry)?;
            self.store().persist().await?;
            net.start_providing(package_key(&rec.package_hash)).await;
            tracing::info!(service = %hash, from = %peer, "package fetched from the network and built");
            return Ok(entry);
        }
        Err(EngineError::Network(format!(
            "cannot fetch the package of service {hash}: {last_error}"
        )))
    }

    async fn download(
        &self,
        net: &NetworkHandle,
        peer: PeerId,
        rec: &ServiceRecord,
    ) -> Result<Vec<u8>, NetError> {
        let mut tar: Vec<u8> = Vec::new();
        // A tar is a little larger than the files it holds.
        let cap = self.inner.config.max_package_bytes + 16 * 1024 * 1024;
        loop {
            let resp = net
                .send_package(
                    peer,
                    PackageRequest::Chunk {
                        package: rec.package_hash,
                        offset: tar.len() as u64,
                    },
                )
                .await?;
            match resp {
                PackageResponse::Chunk { total, data } => {
                    if total > cap || data.0.is_empty() && (tar.len() as u64) < total {
                        return Err(NetError::Request {
                            peer,
                            reason: "bad package chunk".into(),
                        });
                    }
                    tar.extend_from_slice(&data.0);
                    if tar.len() as u64 >= total {
                        return Ok(tar);
                    }
                }
                PackageResponse::NotFound(m) => return Err(NetError::Request { peer, reason: m }),
                PackageResponse::Record(_) => {
                    return Err(NetError::Request {
                        peer,
                        reason: "unexpected answer".into(),
                    });
                }
            }
        }
    }

    pub fn network_services(&self) -> Vec<super::providers::NetworkServiceView> {
        let local = self.local_offers();
        self.inner
            .providers
            .lock()
            .expect("providers lock")
            .services_view(self.node_key(), &local)
    }

    /// What this node runs, as it announces it.
    fn local_offers(&self) -> Vec<ServiceOffer> {
        self.inner
            .live
            .all()
            .iter()
            .map(|live| ServiceOffer {
                service_hash: live.service_hash,
                sid: live.definition.sid.clone(),
                instance_hash: live.hash,
                in_flight: live.in_flight_count() as u32,
                claim: self
                    .store()
                    .service(&live.service_hash)
                    .ok()
                    .flatten()
                    .and_then(|e| self.claim_of(&e)),
            })
            .collect()
    }

    pub fn network_nodes(&self) -> Vec<super::providers::NodeView> {
        self.inner
            .providers
            .lock()
            .expect("providers lock")
            .nodes_view()
    }
}

async fn read_chunk(path: &std::path::Path, offset: u64) -> std::io::Result<(u64, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    let total = f.metadata().await?.len();
    f.seek(std::io::SeekFrom::Start(offset.min(total))).await?;
    let want = (total.saturating_sub(offset)).min(MAX_PACKAGE_CHUNK as u64) as usize;
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf).await?;
    Ok((total, buf))
}

/// Why the outbox stops trying to deliver `entry` at `now`, if it does.
fn outbox_give_up(entry: &OutboxEntry, now: u64) -> Option<String> {
    let signed_at = entry.result.header.issued_at;
    if now >= entry.result.header.expires_at {
        return Some("the signed result expired (the requester would refuse it)".into());
    }
    if now.saturating_sub(signed_at) > MAX_OUTBOX_AGE_MS {
        return Some(format!(
            "the requester's node did not take it for {} h",
            MAX_OUTBOX_AGE_MS / 3_600_000
        ));
    }
    if entry.attempts >= MAX_OUTBOX_ATTEMPTS {
        return Some(format!("{} delivery attempts failed", entry.attempts));
    }
    None
}

/// A claim that does not verify for its offer (forged, for another service or sid) is
/// dropped: the offer stays, unpublished (usable by hash, never by sid).
pub(super) fn drop_invalid_claims(a: &mut Announcement, now: u64) {
    for offer in &mut a.services {
        let valid = match (&offer.claim, &offer.sid) {
            (Some(c), Some(sid)) => c.verify_for(&offer.service_hash, sid, now).is_ok(),
            _ => false,
        };
        if !valid && offer.claim.take().is_some() {
            tracing::debug!(node = %a.node, service = %offer.service_hash, "invalid publisher claim dropped");
        }
    }
}

fn reject(code: RejectCode, message: impl Into<String>) -> WorkResponse {
    WorkResponse::Rejected(Reject::new(code, message))
}

/// Interest in network events; unsubscribes when dropped.
#[derive(Debug)]
pub struct EventInterest {
    engine: Engine,
    service: Option<ServiceHash>,
}

impl Drop for EventInterest {
    fn drop(&mut self) {
        match self.service {
            None => {
                let before = self
                    .engine
                    .inner
                    .all_events_watchers
                    .fetch_sub(1, Ordering::SeqCst);
                if before == 1 {
                    let engine = self.engine.clone();
                    tokio::spawn(async move { engine.leave_unwanted_topics().await });
                }
            }
            Some(s) => {
                let last = {
                    let mut counts = self.engine.inner.event_topics.lock().expect("topics lock");
                    match counts.get_mut(&s) {
                        Some(c) => {
                            *c -= 1;
                            if *c == 0 {
                                counts.remove(&s);
                                true
                            } else {
                                false
                            }
                        }
                        None => false,
                    }
                };
                // A watcher of every service still wants the topic.
                let all = self.engine.inner.all_events_watchers.load(Ordering::SeqCst) > 0;
                if last && !all {
                    let engine = self.engine.clone();
                    tokio::spawn(async move { engine.unsubscribe_topic(s).await });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(issued_at: u64, ttl: u64, attempts: u32) -> OutboxEntry {
        let key = Keypair::generate().unwrap();
        let result = ExecutionResult {
            execution_id: ExecutionId::random(),
            request_digest: Hash32::sha256(b"r"),
            service_hash: ServiceHash(Hash32::sha256(b"s")),
            task_key: "t".into(),
            executor: key.public(),
            instance_hash: None,
            outcome: Outcome::Failed { error: "x".into() },
            started_at: None,
            finished_at: issued_at,
        };
        OutboxEntry {
            result: Signed::sign(
                &key,
                domains::EXECUTION_RESULT,
                &result,
                issued_at,
                ttl,
                MAX_WORK_MESSAGE,
            )
            .unwrap(),
            requester_node: key.public(),
            attempts,
            next_attempt_at: 0,
        }
    }

    #[test]
    fn the_outbox_gives_up_on_old_expired_or_too_often_tried_results() {
        let now = now_ms();
        assert_eq!(outbox_give_up(&entry(now, 3_600_000, 10), now), None);
        let expired = outbox_give_up(&entry(now - 10_000, 5_000, 1), now).unwrap();
        assert!(expired.contains("expired"), "{expired}");
        let week = 7 * 24 * 3_600_000;
        let old = outbox_give_up(&entry(now - MAX_OUTBOX_AGE_MS - 1, week, 1), now).unwrap();
        assert!(old.contains("did not take it"), "{old}");
        let tried = outbox_give_up(&entry(now, week, MAX_OUTBOX_ATTEMPTS), now).unwrap();
        assert!(tried.contains("attempts"), "{tried}");
    }
}
