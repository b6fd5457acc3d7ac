//! The executor side: serving what peers send (submits, results of executions this
//! node requested, cancels), each checked (rate, signature, times, requester node,
//! instance share, schema, replay) before it costs a write.

use super::{Router, reject};
use crate::engine::error::EngineError;
use crate::engine::executions::{AcceptError, Keyed, KeyedRequest, Origin, Placement};
use crate::engine::instances::MAX_PEER_SHARE;
use crate::engine::requests::validate_request;
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{RejectCode, WorkRequest, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{CancelRequest, Execution, ExecutionRequest, PublicKey, now_ms};

/// Inbound work requests one peer may have in progress before it gets `Busy`.
const MAX_INBOUND_PER_PEER: usize = 4096;

impl Router {
    pub(super) async fn on_work(
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
        if !self.peer_rates.allow(peer) {
            self.metrics.peer_work_refused.inc();
            let response = reject(
                RejectCode::Busy,
                format!(
                    "rate limit: at most {} work requests per second from one node; slow down",
                    self.peer_rates.rate()
                ),
            );
            net.respond_work(channel, response).await;
            return;
        }
        let response = match request {
            WorkRequest::Submit(signed) => {
                if let Some(refused) = self.refuse_banned(peer) {
                    net.respond_work(channel, refused).await;
                    return;
                }
                let count = {
                    let mut m = self.inbound.lock().expect("inbound lock");
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
                let mut m = self.inbound.lock().expect("inbound lock");
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
            WorkRequest::PricedResult { result, receipt } => {
                self.on_priced_result(peer, result, receipt).await
            }
            WorkRequest::Settle { settlement, ack } => self.on_settle(peer, settlement, ack).await,
            WorkRequest::Commit(signed) => self.on_commit(peer, signed).await,
            WorkRequest::Reveal(signed) => self.on_reveal(peer, signed).await,
            WorkRequest::Exchange(x) => self.on_exchange(peer, x).await,
            WorkRequest::EventsSince(since) => self.on_events_since(since),
            WorkRequest::Reconcile(x) => self.on_reconcile(peer, x).await,
            WorkRequest::Receipts(list) => self.on_receipts(peer, list).await,
        };
        net.respond_work(channel, response).await;
    }

    /// A submit from a node this one banned is refused before any other check.
    fn refuse_banned(&self, peer: PeerId) -> Option<WorkResponse> {
        let ban = self.reputation.ban_of(&PublicKey::from_peer_id(&peer)?)?;
        self.metrics.peer_work_refused.inc();
        let why = ban.reason.map(|r| format!(": {r}")).unwrap_or_default();
        Some(reject(
            RejectCode::Banned,
            format!("this node has banned your node{why}"),
        ))
    }

    #[tracing::instrument(name = "submit_in", skip_all, fields(%peer, execution_id = tracing::field::Empty, service = tracing::field::Empty))]
    pub(super) async fn on_submit(
        &self,
        peer: PeerId,
        signed: Signed<ExecutionRequest>,
    ) -> WorkResponse {
        let request = match signed.verify(domains::EXECUTION_REQUEST, now_ms(), MAX_WORK_MESSAGE) {
            Ok(r) => r,
            Err(mesg_protocol::EnvelopeError::Expired { .. }) => {
                return reject(RejectCode::Expired, "the request expired");
            }
            Err(e) => return reject(RejectCode::BadSignature, e.to_string()),
        };
        tracing::Span::current()
            .record(
                "execution_id",
                tracing::field::display(&request.execution_id),
            )
            .record("service", tracing::field::display(&request.service_hash));
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
        let Some(live) = self.instances.live().for_service(&request.service_hash) else {
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
                    MAX_PEER_SHARE, live.hash
                ),
            );
        }
        if let Err(e) = validate_request(&live.definition, &request) {
            let code = match e {
                EngineError::UnknownTask { .. } => RejectCode::UnknownTask,
                EngineError::InvalidInputs(_) => RejectCode::InvalidInputs,
                EngineError::PriceAboveCap { .. } => RejectCode::PriceAboveCap,
                _ => RejectCode::Malformed,
            };
            return reject(code, e.to_string());
        }
        // A keyed request whose key already names an execution here: the same request
        // (from the node that sent it first, or another node the Application retried
        // through) is answered by that execution and never runs again.
        if let Some(key) = &request.idempotency_key {
            let asked = KeyedRequest {
                id: request.execution_id,
                key,
                service: request.service_hash,
                task: &request.task_key,
                inputs: &request.inputs,
            };
            match self.ledger.keyed(&asked, self.idempotency_ttl_ms) {
                Ok(Keyed::New) => {}
                Ok(Keyed::Replay(existing)) => {
                    return self.on_duplicate(&existing, &request, &signed).await;
                }
                Err(EngineError::IdempotencyKeyReused(m)) => {
                    return reject(RejectCode::IdempotencyKeyReused, m);
                }
                Err(e) => return reject(RejectCode::Internal, e.to_string()),
            }
        }
        match self.store.record_nonce(
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
                    .store
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
        // A priced call: its cap is reserved against the requester node first, within
        // the credit limit it has here.
        let priced = live
            .definition
            .price_of(&request.task_key)
            .is_some_and(|p| !p.is_free());
        if priced && let Some(cap) = request.max_price {
            match self
                .books
                .reserve(&request.requester_node, &request.execution_id, cap)
            {
                Ok(()) => {}
                Err(e @ crate::ledger::LedgerError::CreditLimit { .. }) => {
                    self.metrics.calls_refused_credit.inc();
                    return reject(RejectCode::CreditLimit, e.to_string());
                }
                Err(e) => return reject(RejectCode::Internal, e.to_string()),
            }
        }
        // Verified: its outputs go back as a commit, then a reveal (marked before the
        // accept's flush).
        if request.verify.is_some() {
            self.mark_verified(&request.execution_id);
        }
        // Its deadline counts from the receipt here, never from a later claimed time.
        // Durable before we say yes: after Accepted the result is owed.
        let accepted = self
            .ledger
            .accept(
                &request,
                &signed,
                received_at,
                Placement::Local(live.hash),
                Origin::Peer,
            )
            .await;
        let execution = match accepted {
            Ok(e) => e,
            Err(e @ AcceptError::Exists(_)) => return reject(RejectCode::Replayed, e.to_string()),
            Err(AcceptError::Store(e)) => {
                self.books.release(&request.execution_id);
                return reject(RejectCode::Internal, e.to_string());
            }
        };
        self.instances.push(execution, &live).await;
        WorkResponse::Accepted
    }

    /// A keyed request for `existing`, which runs or ran here. From the node that sent it
    /// first: `Replayed` (it holds the execution already). From another node: that node is
    /// owed a copy of the result signed for its own request, and told `Accepted`.
    async fn on_duplicate(
        &self,
        existing: &Execution,
        request: &ExecutionRequest,
        signed: &Signed<ExecutionRequest>,
    ) -> WorkResponse {
        if existing.requester_node == request.requester_node {
            return reject(
                RejectCode::Replayed,
                format!(
                    "execution {} was already submitted by your node under this idempotency key",
                    existing.id
                ),
            );
        }
        match self
            .owe_copy(existing, request.requester_node, signed.digest())
            .await
        {
            Ok(()) => {
                self.metrics.idempotent_replays.inc();
                tracing::info!(execution_id = %existing.id, requester = %request.requester_node, "a duplicate under an idempotency key: answered with the execution held here");
                WorkResponse::Accepted
            }
            Err(e) => reject(RejectCode::Internal, e.to_string()),
        }
    }

    #[tracing::instrument(name = "cancel_in", skip_all, fields(%peer))]
    pub(super) async fn on_cancel(
        &self,
        peer: PeerId,
        signed: Signed<CancelRequest>,
    ) -> WorkResponse {
        let cancel = match signed.verify(domains::CANCEL, now_ms(), MAX_WORK_MESSAGE) {
            Ok(c) => c,
            Err(e) => return reject(RejectCode::BadSignature, e.to_string()),
        };
        let Ok(Some(e)) = self.store.execution(&cancel.execution_id) else {
            return reject(RejectCode::UnknownExecution, "unknown execution");
        };
        if e.requester_node != cancel.requester || cancel.requester.peer_id().ok() != Some(peer) {
            return reject(
                RejectCode::WrongNode,
                "only the requester's node may cancel",
            );
        }
        self.ledger
            .finish(
                &e.id,
                Err(format!("cancelled by the requester: {}", cancel.reason)),
                None,
            )
            .await;
        WorkResponse::Accepted
    }
}
