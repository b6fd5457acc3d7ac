//! The requester side of a verified execution: the same signed request offered to n
//! distinct providers (never this node: it does not vote on its own request), their
//! commits, reveals and failures fed to the execution's [`VerificationRound`], more
//! providers asked when the round says so, and the round's decision recorded as the
//! execution's end. Verdicts go to the reputation of each executor as they fall.
//!
//! Every change to a round is written to the verification records and flushed before
//! the executor that caused it is answered, so an executor reveals only once its commit
//! is on this node's disk. The round itself lives in memory: after a restart of this
//! node an unfinished verified execution fails (`recovery.rs`), its record kept.

use super::{Router, reject};
use libp2p::PeerId;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{RejectCode, WorkRequest, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::verification::{
    Decision, MAX_COMMIT_BYTES, MAX_REVEAL_BYTES, Next, OutputCommit, Reveal, RoundError, Verdict,
    VerificationRound, VerifySpec,
};
use mesg_protocol::{Execution, ExecutionId, ExecutionRequest, ExecutionResult, PublicKey, now_ms};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use crate::network::service_key;

/// How long a round waits for enough distinct providers to be known (announced or in
/// the DHT) before it tells the round none is left (at most half the execution's time).
const PROVIDER_PATIENCE_MS: u64 = 5_000;
/// How often a waiting round looks again for providers, and checks that it still runs.
const ROUND_TICK: Duration = Duration::from_millis(250);
/// How long an executor that disconnected has to come back before its attempt times out.
const RECONNECT_GRACE: Duration = Duration::from_secs(2);
/// Longest wait for one provider's answer to the submit.
const SUBMIT_PATIENCE: Duration = Duration::from_millis(3_500);

/// One verified execution in progress on this node.
#[derive(Debug)]
pub(super) struct LiveRound {
    round: VerificationRound,
    /// Woken at every change of the round.
    changed: Arc<Notify>,
    /// Executors whose verdict reputation already heard.
    reported: HashSet<PublicKey>,
    /// Providers that refused or could not be reached (not asked again in this round).
    refused: HashSet<PublicKey>,
    /// Whether the decision was recorded as the execution's end.
    ended: bool,
    /// Executors told to stop (their attempt cancelled by the decision).
    cancelled: HashSet<PublicKey>,
}

/// What a change of a round asks the router to do, worked out under the lock.
#[derive(Default)]
struct AfterChange {
    /// False: there was no round.
    changed: bool,
    verdicts: Vec<(PublicKey, Verdict)>,
    decided: Option<Decision>,
    cancel: Vec<PublicKey>,
    settled: bool,
}

impl Router {
    /// Route a verified execution (see the module doc). Returns when its round is
    /// settled, or the execution ended otherwise (cancelled, timed out, shut down).
    #[tracing::instrument(name = "route_verified", skip_all, fields(execution_id = %execution.id, service = %execution.service_hash, %spec))]
    pub async fn route_verified(
        &self,
        execution: Execution,
        signed: Signed<ExecutionRequest>,
        spec: VerifySpec,
    ) {
        let id = execution.id;
        let Some(net) = self.network().cloned() else {
            let reason = "a verified execution runs on other nodes, and this node has no network";
            self.ledger.finish(&id, Err(reason.into()), None).await;
            return;
        };
        let spec = self.sampled(&execution, spec);
        let changed = Arc::new(Notify::new());
        let live = LiveRound {
            round: VerificationRound::new(id, signed.digest(), spec),
            changed: changed.clone(),
            reported: HashSet::new(),
            refused: HashSet::new(),
            ended: false,
            cancelled: HashSet::new(),
        };
        self.rounds.lock().expect("rounds lock").insert(id, live);
        self.round_changed(&id).await;
        let me = self.node();
        let patience_until = now_ms() + PROVIDER_PATIENCE_MS.min(execution.timeout_ms / 2);
        loop {
            let Some((next, asked)) = self.with_round(&id, |l| {
                let asked: HashSet<PublicKey> = l
                    .round
                    .executors()
                    .copied()
                    .chain(l.refused.iter().copied())
                    .collect();
                (l.round.next(), asked)
            }) else {
                return; // settled, or given up
            };
            if let Next::Ask(k) = next {
                let mut candidates: Vec<PublicKey> = self
                    .providers()
                    .candidates(&execution.service_hash, &me)
                    .into_iter()
                    .filter(|p| !asked.contains(p))
                    .collect();
                if candidates.len() < usize::from(k)
                    && let Ok(peers) = net.providers(service_key(&execution.service_hash)).await
                {
                    for p in peers.iter().filter_map(PublicKey::from_peer_id) {
                        if p != me
                            && !asked.contains(&p)
                            && !candidates.contains(&p)
                            && !self.reputation.is_banned(&p)
                        {
                            candidates.push(p);
                        }
                    }
                }
                candidates.truncate(usize::from(k));
                if candidates.is_empty() && now_ms() >= patience_until {
                    // Nobody else to ask: the round decides what that means.
                    self.with_round(&id, |l| l.round.no_more_executors());
                    self.round_changed(&id).await;
                    continue;
                }
                for target in candidates {
                    let added = self.with_round(&id, |l| l.round.ask(target).is_ok());
                    if added == Some(true) {
                        let router = self.arc();
                        let signed = signed.clone();
                        tokio::spawn(async move { router.offer(id, target, signed).await });
                    }
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = changed.notified() => {}
                () = tokio::time::sleep(ROUND_TICK) => {}
            }
            match self.ledger.find(&id) {
                Ok(Some(e)) if !e.status.is_final() => {}
                Ok(Some(e)) => {
                    let decided = self.with_round(&id, |l| l.ended).unwrap_or(false);
                    if !decided {
                        // Ended otherwise (cancelled): the attempts still running stop.
                        self.abandon_round(&id);
                        return;
                    }
                    if now_ms() >= e.deadline() {
                        // Decided, and attempts that committed had until the deadline.
                        self.close_round(&id).await;
                        return;
                    }
                }
                _ => {
                    self.abandon_round(&id);
                    return;
                }
            }
        }
    }

    /// Adaptive replication: with `--adaptive-verification`, when the first-choice
    /// provider has a long clean record, the execution is verified only at its sample
    /// rate; otherwise the round is 1-of-1 (that provider alone, still committing first).
    /// The record's spec shows which it was.
    fn sampled(&self, execution: &Execution, spec: VerifySpec) -> VerifySpec {
        if !self.adaptive_verification {
            return spec;
        }
        let me = self.node();
        let Some(first) = self
            .providers()
            .candidates(&execution.service_hash, &me)
            .first()
            .copied()
        else {
            return spec;
        };
        let rate = self
            .reputation
            .get(&first)
            .map_or(1.0, |r| crate::engine::reputation::sample_rate(&r));
        let mut draw = [0u8; 8];
        if rate >= 1.0 || mesg_protocol::keys::random_bytes(&mut draw).is_err() {
            return spec;
        }
        let draw = u64::from_le_bytes(draw) as f64 / u64::MAX as f64;
        if draw < rate {
            return spec;
        }
        tracing::debug!(execution_id = %execution.id, provider = %first, rate, "verification sampled out: one trusted executor");
        VerifySpec::new(1, 1, Some(1)).unwrap_or(spec)
    }

    /// Offer the request to one provider of the round; a refusal or silence withdraws it.
    async fn offer(&self, id: ExecutionId, target: PublicKey, signed: Signed<ExecutionRequest>) {
        let (Some(net), Ok(peer)) = (self.network().cloned(), target.peer_id()) else {
            return;
        };
        self.providers().sending(&target);
        let sent = std::time::Instant::now();
        let answer = tokio::time::timeout(
            SUBMIT_PATIENCE,
            net.send_work(peer, WorkRequest::Submit(signed)),
        )
        .await;
        self.providers().ended(&target);
        let taken = match answer {
            Ok(Ok(WorkResponse::Accepted)) => true,
            // It holds the request already (our first submit's answer was lost).
            Ok(Ok(WorkResponse::Rejected(r))) if r.code == RejectCode::Replayed => true,
            Ok(Ok(WorkResponse::Rejected(r))) => {
                tracing::debug!(execution_id = %id, provider = %target, "refused: {r}");
                if !r.code.is_retriable() && r.code != RejectCode::Busy {
                    self.reputation.failure(&target);
                }
                false
            }
            Ok(Ok(other)) => {
                tracing::debug!(execution_id = %id, provider = %target, "unexpected answer: {other:?}");
                false
            }
            Ok(Err(e)) => {
                tracing::debug!(execution_id = %id, provider = %target, "unreachable: {e}");
                self.providers().failed(&target);
                self.reputation.failure(&target);
                false
            }
            Err(_) => {
                self.providers().failed(&target);
                self.reputation.failure(&target);
                false
            }
        };
        if taken {
            let rtt = sent.elapsed().as_micros() as f64;
            self.providers().succeeded(&target, rtt);
            self.reputation.round_trip(&target, rtt);
            if let Err(e) = self.ledger.accepted_by(&id, target) {
                tracing::warn!(execution_id = %id, "after accept: {e}");
            }
            return;
        }
        let withdrawn = self.with_round(&id, |l| {
            l.refused.insert(target);
            l.round.withdraw(&target)
        });
        if withdrawn == Some(true) {
            self.round_changed(&id).await;
        }
    }

    /// Run `f` on the live round of `id`, if there is one.
    fn with_round<T>(&self, id: &ExecutionId, f: impl FnOnce(&mut LiveRound) -> T) -> Option<T> {
        self.rounds.lock().expect("rounds lock").get_mut(id).map(f)
    }

    /// Whether `id` is a verified execution in progress here.
    pub(super) fn is_verifying(&self, id: &ExecutionId) -> bool {
        self.rounds.lock().expect("rounds lock").contains_key(id)
    }

    /// After any change of the round of `id`: write its record (durable with the next
    /// flush), tell reputation the new verdicts, record the decision as the execution's
    /// end, tell cancelled executors, forget the round once every verdict is in.
    async fn round_changed(&self, id: &ExecutionId) {
        let after = self
            .with_round(id, |l| {
                // Written under the lock, so that a newer state is never overwritten
                // by an older one.
                if let Err(e) = self.verifications.put(l.round.record()) {
                    tracing::error!(execution_id = %id, "verification record not written: {e}");
                }
                let mut after = AfterChange {
                    changed: true,
                    ..Default::default()
                };
                for a in &l.round.record().attempts {
                    if let Some(v) = a.verdict
                        && l.reported.insert(a.executor)
                    {
                        after.verdicts.push((a.executor, v));
                        if v == Verdict::Cancelled && l.cancelled.insert(a.executor) {
                            after.cancel.push(a.executor);
                        }
                    }
                }
                if !l.ended
                    && let Some(d) = l.round.decision()
                {
                    l.ended = true;
                    after.decided = Some(d.clone());
                }
                after.settled = l.round.settled();
                l.changed.notify_one();
                after
            })
            .unwrap_or_default();
        if !after.changed {
            return;
        }
        for (executor, verdict) in after.verdicts {
            match verdict {
                Verdict::Agreed => self.reputation.record_verdict(&executor, true),
                Verdict::Disagreed => self.reputation.record_verdict(&executor, false),
                Verdict::TimedOut => self.reputation.timeout(&executor),
                Verdict::Failed => self.reputation.failure(&executor),
                Verdict::Cancelled => {}
            }
        }
        if let Some(decision) = after.decided {
            let outcome = match &decision {
                Decision::Agreed {
                    outputs, executors, ..
                } => {
                    if let Some(first) = executors.first().copied()
                        && let Err(e) = self.store.update_execution(id, &mut |e| {
                            e.executor = Some(first);
                            Ok(())
                        })
                    {
                        tracing::warn!(execution_id = %id, "executor not noted: {e}");
                    }
                    Ok(outputs.0.clone())
                }
                Decision::Undecided { .. } => Err(decision.error().unwrap_or_default()),
            };
            tracing::info!(execution_id = %id, agreed = outcome.is_ok(), "verification decided");
            // Persists the record written above with the end.
            self.ledger.finish(id, outcome, None).await;
        } else if let Err(e) = self.store.persist().await {
            tracing::error!(execution_id = %id, "verification record not persisted: {e}");
        }
        for executor in after.cancel {
            self.cancel_attempt(id, executor);
        }
        if after.settled {
            self.rounds.lock().expect("rounds lock").remove(id);
        }
    }

    /// Tell an executor whose attempt the decision made useless to stop. Best effort.
    fn cancel_attempt(&self, id: &ExecutionId, executor: PublicKey) {
        self.cancel_at(*id, executor, "verification decided without this attempt");
    }

    /// The execution ended without the round (cancelled): forget the round, tell the
    /// executors still running to stop.
    fn abandon_round(&self, id: &ExecutionId) {
        let removed = self.rounds.lock().expect("rounds lock").remove(id);
        let Some(l) = removed else { return };
        let running: Vec<PublicKey> = l
            .round
            .executors()
            .filter(|x| l.round.running(x))
            .copied()
            .collect();
        for x in running {
            self.cancel_attempt(id, x);
        }
    }

    /// The execution's deadline: attempts still running time out, the round ends.
    pub(super) async fn close_round(&self, id: &ExecutionId) -> bool {
        let closed = self.with_round(id, |l| {
            l.round.close();
        });
        if closed.is_none() {
            return false;
        }
        self.round_changed(id).await;
        // Whatever still comes is refused as late: the round is over.
        self.rounds.lock().expect("rounds lock").remove(id);
        true
    }

    /// A peer this node was connected to went away: unless it is back within
    /// [`RECONNECT_GRACE`], its running attempts time out (a crashed executor would
    /// otherwise hold the round until the deadline).
    pub(super) async fn executor_gone(&self, peer: PeerId) {
        let Some(key) = PublicKey::from_peer_id(&peer) else {
            return;
        };
        let running = {
            let rounds = self.rounds.lock().expect("rounds lock");
            rounds.values().any(|l| l.round.running(&key))
        };
        if !running {
            return;
        }
        tokio::time::sleep(RECONNECT_GRACE).await;
        if let Some(net) = self.network()
            && let Ok(peers) = net.peers().await
            && peers
                .iter()
                .any(|p| p.connected && p.peer_id == peer.to_string())
        {
            return; // a connection that came back (or was replaced): still working
        }
        let ids: Vec<ExecutionId> = {
            let rounds = self.rounds.lock().expect("rounds lock");
            rounds
                .iter()
                .filter(|(_, l)| l.round.running(&key))
                .map(|(id, _)| *id)
                .collect()
        };
        for id in ids {
            let timed_out = self.with_round(&id, |l| l.round.timed_out(&key).is_ok());
            if timed_out == Some(true) {
                tracing::info!(execution_id = %id, executor = %key, "executor disconnected during verification");
                self.round_changed(&id).await;
            }
        }
    }

    /// An executor's commit.
    #[tracing::instrument(name = "commit_in", skip_all, fields(%peer))]
    pub(super) async fn on_commit(
        &self,
        peer: PeerId,
        signed: Signed<OutputCommit>,
    ) -> WorkResponse {
        let commit = match signed.verify(domains::VERIFY_COMMIT, now_ms(), MAX_COMMIT_BYTES) {
            Ok(c) => c,
            Err(e) => return reject(RejectCode::BadSignature, e.to_string()),
        };
        if commit.executor.peer_id().ok() != Some(peer) {
            return reject(
                RejectCode::WrongNode,
                "the commit is not signed by the node that sent it",
            );
        }
        let id = commit.execution_id;
        let fed = self.with_round(&id, |l| {
            // The same commitment again (a re-delivery): taken already.
            let same = l.round.record().attempts.iter().any(|a| {
                a.executor == commit.executor
                    && a.commit.as_ref().is_some_and(|c| {
                        c.payload_unverified(MAX_COMMIT_BYTES)
                            .is_ok_and(|held| held.commitment == commit.commitment)
                    })
            });
            if same {
                return Ok(None); // a resend of the commit we hold
            }
            l.round.commit(&signed).map(Some)
        });
        self.answer_round_input(&id, fed).await
    }

    /// An executor's reveal.
    #[tracing::instrument(name = "reveal_in", skip_all, fields(%peer))]
    pub(super) async fn on_reveal(&self, peer: PeerId, signed: Signed<Reveal>) -> WorkResponse {
        let reveal = match signed.verify(domains::VERIFY_REVEAL, now_ms(), MAX_REVEAL_BYTES) {
            Ok(r) => r,
            Err(e) => return reject(RejectCode::BadSignature, e.to_string()),
        };
        if reveal.executor.peer_id().ok() != Some(peer) {
            return reject(
                RejectCode::WrongNode,
                "the reveal is not signed by the node that sent it",
            );
        }
        if self.is_verifying(&reveal.execution_id)
            && let Ok(Some(e)) = self.ledger.find(&reveal.execution_id)
            && let Err(e) = self.check_outputs(&e, &reveal.outputs)
        {
            // Outputs that break the task's schema cannot be the agreed answer: the
            // round hears them as they are and they disagree with any honest group.
            tracing::info!(execution_id = %reveal.execution_id, executor = %reveal.executor, "revealed outputs break the schema: {e}");
        }
        let id = reveal.execution_id;
        let fed = self.with_round(&id, |l| l.round.reveal(&signed).map(Some));
        self.answer_round_input(&id, fed).await
    }

    /// A failed result of a verified execution (completed ones come as commit and reveal).
    pub(super) async fn on_verified_result(
        &self,
        id: &ExecutionId,
        signed: &Signed<ExecutionResult>,
        result: &ExecutionResult,
    ) -> WorkResponse {
        if !matches!(result.outcome, mesg_protocol::Outcome::Failed { .. }) {
            return reject(
                RejectCode::Malformed,
                "a verified execution's outputs come as a commit, then a reveal, not a result",
            );
        }
        let fed = self.with_round(id, |l| l.round.failed(signed).map(Some));
        self.answer_round_input(id, fed).await
    }

    /// The answer to a commit, reveal or failure fed to the round of `id` (`fed` None:
    /// no round here; Ok(None): a resend of what the round holds).
    async fn answer_round_input(
        &self,
        id: &ExecutionId,
        fed: Option<Result<Option<Next>, RoundError>>,
    ) -> WorkResponse {
        match fed {
            None => match self.ledger.find(id) {
                // Over (decided, timed out, cancelled): nothing more to do with it.
                Ok(Some(e)) if e.status.is_final() => WorkResponse::Accepted,
                _ => reject(
                    RejectCode::UnknownExecution,
                    format!("no verified execution {id} in progress here"),
                ),
            },
            Some(Ok(None)) => WorkResponse::Accepted,
            Some(Ok(Some(_))) => {
                self.round_changed(id).await;
                WorkResponse::Accepted
            }
            // Ended (cancelled, timed out) or already revealed: nothing more to take.
            Some(Err(RoundError::Ended(..))) => WorkResponse::Accepted,
            Some(Err(e @ (RoundError::NotAsked(_) | RoundError::AlreadyCommitted(_)))) => {
                reject(RejectCode::WrongNode, e.to_string())
            }
            Some(Err(e @ RoundError::Signature(_))) => {
                reject(RejectCode::BadSignature, e.to_string())
            }
            Some(Err(e)) => reject(RejectCode::Malformed, e.to_string()),
        }
    }
}
