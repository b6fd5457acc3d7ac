//! [`VerificationRound`]: the verdict logic of one verified execution, as a pure state
//! machine. The node asks executors, feeds it what they send (signed commits, reveals,
//! failures) and what did not come (timeouts), and does what [`Next`] says. The state is
//! the [`VerificationRecord`] itself, so what is shown and re-checked is what decided.
//!
//! Rules: results are grouped by output digest; the round is decided as soon as one group
//! reaches the quorum. When no group can still reach it (even if every attempt still
//! running joined the largest), it asks for just enough more executors, within
//! `max_total`; when even those could not make a quorum it is undecided. A reveal that
//! does not open its executor's commit is a disagreement, so an executor cannot copy an
//! answer revealed after it committed.

use super::record::{AttemptRecord, Decision, Group, UndecidedReason, Verdict, VerificationRecord};
use super::{MAX_COMMIT_BYTES, MAX_REVEAL_BYTES, OutputCommit, Reveal, VerifySpec};
use crate::envelope::{Claims, Signed};
use crate::hash::Hash32;
use crate::keys::PublicKey;
use crate::types::{ExecutionId, ExecutionResult, Outcome, domains};
use crate::value::Json;
use crate::wire::MAX_WORK_MESSAGE;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What the node does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Ask this many more distinct executors (then [`VerificationRound::ask`] each), or
    /// say none is left ([`VerificationRound::no_more_executors`]).
    Ask(u8),
    /// Wait for the executors already asked.
    Wait,
    /// [`VerificationRound::decision`] is set. Attempts that committed may still reveal
    /// (their verdict), or time out ([`VerificationRound::close`]).
    Decided,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoundError {
    #[error("{0} was already asked: the executors of a verified execution are distinct")]
    AlreadyAsked(PublicKey),
    #[error("asking {0} more would pass max_total ({1})")]
    TooMany(u8, u8),
    #[error("the round is decided: no more executors are asked")]
    Decided,
    #[error("{0} was not asked for this execution")]
    NotAsked(PublicKey),
    #[error("{0} already committed")]
    AlreadyCommitted(PublicKey),
    #[error("{0}'s attempt has ended ({1})")]
    Ended(PublicKey, &'static str),
    #[error("the commit answers another execution or request")]
    OtherExecution,
    #[error("a completed result is not a failure: completed work is committed and revealed")]
    NotAFailure,
    #[error("invalid signed message: {0}")]
    Signature(String),
}

/// One verified execution's round; see the module documentation.
#[derive(Debug, Clone)]
pub struct VerificationRound {
    record: VerificationRecord,
    /// Executors asked for by [`Next::Ask`] and not yet asked.
    requested: u8,
}

/// Check a signed message as evidence (signature and signer, as of its issue time; the
/// node checks the window against its clock on receipt).
fn checked<T: Serialize + DeserializeOwned + Claims>(
    signed: &Signed<T>,
    domain: &str,
    max: usize,
) -> Result<T, RoundError> {
    signed
        .verify(domain, signed.header.issued_at, max)
        .map_err(|e| RoundError::Signature(e.to_string()))
}

impl VerificationRound {
    /// A round that starts by asking `spec.replicas` executors.
    pub fn new(execution_id: ExecutionId, request_digest: Hash32, spec: VerifySpec) -> Self {
        VerificationRound {
            record: VerificationRecord {
                execution_id,
                request_digest,
                spec,
                attempts: Vec::new(),
                decision: None,
            },
            requested: spec.replicas,
        }
    }

    pub fn record(&self) -> &VerificationRecord {
        &self.record
    }

    pub fn into_record(self) -> VerificationRecord {
        self.record
    }

    pub fn decision(&self) -> Option<&Decision> {
        self.record.decision.as_ref()
    }

    /// Executors asked so far, in order.
    pub fn executors(&self) -> impl Iterator<Item = &PublicKey> {
        self.record.attempts.iter().map(|a| &a.executor)
    }

    /// Record that `executor` was asked.
    pub fn ask(&mut self, executor: PublicKey) -> Result<(), RoundError> {
        if self.record.decision.is_some() {
            return Err(RoundError::Decided);
        }
        if self.record.attempts.iter().any(|a| a.executor == executor) {
            return Err(RoundError::AlreadyAsked(executor));
        }
        if self.record.attempts.len() >= usize::from(self.record.spec.max_total) {
            return Err(RoundError::TooMany(1, self.record.spec.max_total));
        }
        self.record.attempts.push(AttemptRecord {
            executor,
            commit: None,
            reveal: None,
            failure: None,
            output_digest: None,
            verdict: None,
            note: None,
        });
        self.requested = self.requested.saturating_sub(1);
        Ok(())
    }

    /// `executor` refused the work or could not be reached: it never took it, so it is
    /// no attempt (and its place goes back to the executors still to ask). Only before it
    /// committed or ended; returns whether it was withdrawn.
    pub fn withdraw(&mut self, executor: &PublicKey) -> bool {
        if self.record.decision.is_some() {
            return false;
        }
        let Some(i) = self.record.attempts.iter().position(|a| {
            &a.executor == executor
                && a.commit.is_none()
                && a.verdict.is_none()
                && a.output_digest.is_none()
        }) else {
            return false;
        };
        self.record.attempts.remove(i);
        self.requested += 1;
        true
    }

    /// Whether `executor`'s attempt is still running (asked, no verdict, not revealed).
    pub fn running(&self, executor: &PublicKey) -> bool {
        self.record
            .attempts
            .iter()
            .any(|a| &a.executor == executor && a.verdict.is_none() && a.output_digest.is_none())
    }

    /// Whether every attempt has its verdict (nothing more can come).
    pub fn settled(&self) -> bool {
        self.record.decision.is_some() && self.record.attempts.iter().all(|a| a.verdict.is_some())
    }

    fn attempt(&mut self, executor: &PublicKey) -> Result<&mut AttemptRecord, RoundError> {
        self.record
            .attempts
            .iter_mut()
            .find(|a| &a.executor == executor)
            .ok_or(RoundError::NotAsked(*executor))
    }

    /// An executor's signed commit.
    pub fn commit(&mut self, signed: &Signed<OutputCommit>) -> Result<Next, RoundError> {
        let commit = checked(signed, domains::VERIFY_COMMIT, MAX_COMMIT_BYTES)?;
        if commit.execution_id != self.record.execution_id
            || commit.request_digest != self.record.request_digest
        {
            return Err(RoundError::OtherExecution);
        }
        let a = self.attempt(&commit.executor)?;
        if let Some(v) = a.verdict {
            return Err(RoundError::Ended(a.executor, v.as_str()));
        }
        if a.commit.is_some() {
            return Err(RoundError::AlreadyCommitted(a.executor));
        }
        a.commit = Some(signed.clone());
        Ok(self.evaluate())
    }

    /// An executor's signed reveal. One that does not open its commit (or comes without
    /// one) ends the attempt as [`Verdict::Disagreed`].
    pub fn reveal(&mut self, signed: &Signed<Reveal>) -> Result<Next, RoundError> {
        let reveal = checked(signed, domains::VERIFY_REVEAL, MAX_REVEAL_BYTES)?;
        if reveal.execution_id != self.record.execution_id {
            return Err(RoundError::OtherExecution);
        }
        let decided = self.record.decision.clone();
        let a = self.attempt(&reveal.executor)?;
        if let Some(v) = a.verdict {
            return Err(RoundError::Ended(a.executor, v.as_str()));
        }
        if a.output_digest.is_some() {
            return Err(RoundError::Ended(a.executor, "revealed"));
        }
        a.reveal = Some(signed.clone());
        let opened = match &a.commit {
            None => Err("revealed without committing first".to_string()),
            Some(c) => {
                let commit = c
                    .payload_unverified(MAX_COMMIT_BYTES)
                    .map_err(|e| RoundError::Signature(e.to_string()))?;
                reveal.check(&commit).map_err(|e| e.to_string())
            }
        };
        match opened {
            Err(why) => {
                a.verdict = Some(Verdict::Disagreed);
                a.note = Some(why);
            }
            Ok(digest) => {
                a.output_digest = Some(digest);
                // Decided already: this late reveal only gets its verdict.
                if let Some(d) = decided {
                    a.verdict = Some(late_verdict(&d, &digest));
                }
            }
        }
        Ok(self.evaluate())
    }

    /// An executor's signed failed result.
    pub fn failed(&mut self, signed: &Signed<ExecutionResult>) -> Result<Next, RoundError> {
        let result = checked(signed, domains::EXECUTION_RESULT, MAX_WORK_MESSAGE)?;
        if result.execution_id != self.record.execution_id {
            return Err(RoundError::OtherExecution);
        }
        let Outcome::Failed { error } = &result.outcome else {
            return Err(RoundError::NotAFailure);
        };
        let a = self.attempt(&result.executor)?;
        if let Some(v) = a.verdict {
            return Err(RoundError::Ended(a.executor, v.as_str()));
        }
        if a.output_digest.is_some() {
            return Err(RoundError::Ended(a.executor, "revealed"));
        }
        a.failure = Some(signed.clone());
        a.verdict = Some(Verdict::Failed);
        a.note = Some(error.chars().take(512).collect());
        Ok(self.evaluate())
    }

    /// `executor` did not commit, or did not reveal, in time (or crashed).
    pub fn timed_out(&mut self, executor: &PublicKey) -> Result<Next, RoundError> {
        let a = self.attempt(executor)?;
        if let Some(v) = a.verdict {
            return Err(RoundError::Ended(a.executor, v.as_str()));
        }
        if a.output_digest.is_some() {
            return Err(RoundError::Ended(a.executor, "revealed"));
        }
        a.verdict = Some(Verdict::TimedOut);
        Ok(self.evaluate())
    }

    /// No other distinct provider can be asked: what was asked for will not come.
    pub fn no_more_executors(&mut self) -> Next {
        if self.requested > 0 && self.record.decision.is_none() {
            self.requested = 0;
            let next = self.evaluate();
            if let Next::Ask(_) = next {
                self.requested = 0;
                self.decide_undecided(UndecidedReason::NoMoreExecutors);
                return Next::Decided;
            }
            return next;
        }
        self.next()
    }

    /// The deadline: every attempt still running times out, and an undecided round ends.
    pub fn close(&mut self) -> &Decision {
        for a in &mut self.record.attempts {
            if a.verdict.is_none() && a.output_digest.is_none() {
                a.verdict = Some(Verdict::TimedOut);
            }
        }
        self.requested = 0;
        if self.record.decision.is_none() {
            self.evaluate();
        }
        if self.record.decision.is_none() {
            self.decide_undecided(UndecidedReason::Deadline);
        }
        self.record.decision.as_ref().expect("decided above")
    }

    /// What to do now, without new input.
    pub fn next(&self) -> Next {
        if self.record.decision.is_some() {
            Next::Decided
        } else if self.requested > 0 {
            Next::Ask(self.requested)
        } else {
            Next::Wait
        }
    }

    /// Revealed groups, largest first (then by digest), executors in asked order.
    pub fn groups(&self) -> Vec<Group> {
        groups_of(&self.record.attempts)
    }

    fn evaluate(&mut self) -> Next {
        if self.record.decision.is_some() {
            return Next::Decided;
        }
        let spec = self.record.spec;
        let quorum = usize::from(spec.quorum);
        let groups = self.groups();
        if let Some(winner) = groups.iter().find(|g| g.executors.len() >= quorum) {
            let outputs = self.outputs_of(&winner.digest);
            self.decide(Decision::Agreed {
                digest: winner.digest,
                outputs,
                executors: winner.executors.clone(),
            });
            return Next::Decided;
        }
        let best = groups.first().map_or(0, |g| g.executors.len());
        let running = self
            .record
            .attempts
            .iter()
            .filter(|a| a.verdict.is_none() && a.output_digest.is_none())
            .count();
        let outstanding = running + usize::from(self.requested);
        if best + outstanding >= quorum {
            return self.next();
        }
        let needed = quorum - best - outstanding;
        let room = usize::from(spec.max_total)
            .saturating_sub(self.record.attempts.len() + usize::from(self.requested));
        if needed <= room {
            self.requested += needed as u8;
            Next::Ask(self.requested)
        } else {
            self.decide_undecided(UndecidedReason::Exhausted);
            Next::Decided
        }
    }

    fn outputs_of(&self, digest: &Hash32) -> Json {
        self.record
            .attempts
            .iter()
            .filter(|a| a.output_digest.as_ref() == Some(digest))
            .find_map(|a| a.reveal.as_ref()?.payload_unverified(MAX_REVEAL_BYTES).ok())
            .map_or_else(Json::null, |r| r.outputs)
    }

    fn decide_undecided(&mut self, reason: UndecidedReason) {
        let groups = self.groups();
        self.decide(Decision::Undecided { reason, groups });
    }

    /// Set the decision and every verdict it settles: revealed attempts agree or
    /// disagree; attempts that had not committed are cancelled; attempts that committed
    /// may still reveal when a group won (and are cancelled when none did).
    fn decide(&mut self, decision: Decision) {
        self.requested = 0;
        for a in &mut self.record.attempts {
            if a.verdict.is_some() {
                continue;
            }
            a.verdict = match (&a.output_digest, &a.commit) {
                (Some(d), _) => Some(late_verdict(&decision, d)),
                (None, None) => Some(Verdict::Cancelled),
                (None, Some(_)) => match decision {
                    Decision::Agreed { .. } => None,
                    Decision::Undecided { .. } => Some(Verdict::Cancelled),
                },
            };
        }
        self.record.decision = Some(decision);
    }
}

/// The verdict of outputs with `digest` under `decision`.
fn late_verdict(decision: &Decision, digest: &Hash32) -> Verdict {
    match decision {
        Decision::Agreed { digest: d, .. } if d == digest => Verdict::Agreed,
        _ => Verdict::Disagreed,
    }
}

/// Groups of attempts whose reveal opened their commit, largest first, then by digest.
pub(crate) fn groups_of(attempts: &[AttemptRecord]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for a in attempts {
        let Some(d) = a.output_digest else { continue };
        if a.verdict
            .is_some_and(|v| !matches!(v, Verdict::Agreed | Verdict::Disagreed))
        {
            continue;
        }
        match groups.iter_mut().find(|g| g.digest == d) {
            Some(g) => g.executors.push(a.executor),
            None => groups.push(Group {
                digest: d,
                executors: vec![a.executor],
            }),
        }
    }
    groups.sort_by(|a, b| {
        b.executors
            .len()
            .cmp(&a.executors.len())
            .then(a.digest.cmp(&b.digest))
    });
    groups
}
