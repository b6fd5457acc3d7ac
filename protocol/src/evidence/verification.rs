//! Re-checking a verified execution from its signed parts alone: every commit, reveal and
//! failure is signed by the executor it is filed under, every reveal either opens its
//! commit or is counted as a disagreement, the groups follow from the reveals, and the
//! decision and every verdict follow from the groups. The basis of `mesg executions
//! verify` for verified executions. Timeouts and cancellations carry nothing signed: they
//! are the requester's word, and a check can only say they hide no reveal.

use crate::envelope::{Claims, Signed};
use crate::hash::Hash32;
use crate::types::{Outcome, domains};
use crate::verification::{
    Decision, MAX_COMMIT_BYTES, MAX_REVEAL_BYTES, UndecidedReason, Verdict, VerificationRecord,
    output_digest,
};
use crate::wire::MAX_WORK_MESSAGE;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;

/// Check `record`; every problem found, in words (none: it holds).
pub fn check_verification(record: &VerificationRecord) -> Vec<String> {
    let mut out = Vec::new();
    let spec = record.spec;
    if let Err(e) = spec.check() {
        out.push(format!("the verification spec is invalid: {e}"));
    }
    if record.attempts.len() > usize::from(spec.max_total) {
        out.push(format!(
            "{} executors were asked, more than max_total {}",
            record.attempts.len(),
            spec.max_total
        ));
    }
    let mut seen = HashSet::new();
    // Digest of each attempt's reveal when it opens its commit, as re-computed here.
    let mut digests: Vec<Option<Hash32>> = Vec::with_capacity(record.attempts.len());
    for a in &record.attempts {
        let who = a.executor;
        if !seen.insert(who) {
            out.push(format!("{who} was asked twice: executors must be distinct"));
        }
        let commit = a.commit.as_ref().and_then(|s| {
            let c = signed_by(
                s,
                domains::VERIFY_COMMIT,
                MAX_COMMIT_BYTES,
                &who,
                "commit",
                &mut out,
            )?;
            if c.execution_id != record.execution_id || c.request_digest != record.request_digest {
                out.push(format!(
                    "{who}'s commit answers another execution or request"
                ));
                return None;
            }
            Some(c)
        });
        let reveal = a.reveal.as_ref().and_then(|s| {
            signed_by(
                s,
                domains::VERIFY_REVEAL,
                MAX_REVEAL_BYTES,
                &who,
                "reveal",
                &mut out,
            )
        });
        let mut digest = None;
        match (&reveal, &commit) {
            (Some(r), Some(c)) => match r.check(c) {
                Ok(d) => digest = Some(d),
                Err(e) => {
                    if a.verdict != Some(Verdict::Disagreed) {
                        out.push(format!(
                            "{who}'s reveal does not open its commit ({e}), so its verdict is disagreed, not {}",
                            verdict_text(a.verdict)
                        ));
                    }
                }
            },
            (Some(_), None) => {
                if a.verdict != Some(Verdict::Disagreed) {
                    out.push(format!(
                        "{who} revealed without a commit, so its verdict is disagreed, not {}",
                        verdict_text(a.verdict)
                    ));
                }
            }
            (None, _) => {}
        }
        if a.output_digest != digest {
            out.push(format!(
                "{who}'s output digest is recorded as {}, its signed reveal gives {}",
                opt(&a.output_digest),
                opt(&digest)
            ));
        }
        if let Some(s) = &a.failure {
            if let Some(r) = signed_by(
                s,
                domains::EXECUTION_RESULT,
                MAX_WORK_MESSAGE,
                &who,
                "failure",
                &mut out,
            ) {
                if r.execution_id != record.execution_id {
                    out.push(format!("{who}'s failure answers another execution"));
                }
                if !matches!(r.outcome, Outcome::Failed { .. }) {
                    out.push(format!("{who}'s failure is a completed result"));
                }
            }
            if a.verdict != Some(Verdict::Failed) {
                out.push(format!(
                    "{who} signed a failure, so its verdict is failed, not {}",
                    verdict_text(a.verdict)
                ));
            }
        } else if a.verdict == Some(Verdict::Failed) {
            out.push(format!(
                "{who}'s verdict is failed but no signed failure is kept"
            ));
        }
        if a.reveal.is_none()
            && a.verdict
                .is_some_and(|v| matches!(v, Verdict::Agreed | Verdict::Disagreed))
        {
            out.push(format!(
                "{who}'s verdict is {} but no reveal of it is kept",
                verdict_text(a.verdict)
            ));
        }
        if a.reveal.is_some() && matches!(a.verdict, Some(Verdict::TimedOut | Verdict::Cancelled)) {
            out.push(format!(
                "{who} revealed, so its verdict cannot be {}",
                verdict_text(a.verdict)
            ));
        }
        digests.push(digest);
    }
    check_decision(record, &digests, &mut out);
    out
}

fn check_decision(record: &VerificationRecord, digests: &[Option<Hash32>], out: &mut Vec<String>) {
    let quorum = usize::from(record.spec.quorum);
    let count = |d: &Hash32| digests.iter().filter(|x| x.as_ref() == Some(d)).count();
    let mut distinct: Vec<Hash32> = digests.iter().flatten().copied().collect();
    distinct.sort();
    distinct.dedup();
    let best = distinct.iter().map(count).max().unwrap_or(0);
    match &record.decision {
        None => {
            for (a, d) in record.attempts.iter().zip(digests) {
                if d.is_some() && a.verdict.is_some() {
                    out.push(format!(
                        "{}'s verdict is {} but the round is not decided",
                        a.executor,
                        verdict_text(a.verdict)
                    ));
                }
            }
        }
        Some(Decision::Agreed {
            digest,
            outputs,
            executors,
        }) => {
            if output_digest(outputs) != *digest {
                out.push("the decided outputs do not hash to the decided digest".into());
            }
            if count(digest) < quorum {
                out.push(format!(
                    "only {} signed reveals give the decided outputs; the quorum is {quorum}",
                    count(digest)
                ));
            }
            if executors.len() < quorum {
                out.push(format!(
                    "the decision names {} agreeing executors; the quorum is {quorum}",
                    executors.len()
                ));
            }
            for e in executors {
                let i = record.attempts.iter().position(|a| &a.executor == e);
                if i.and_then(|i| digests[i]) != Some(*digest) {
                    out.push(format!(
                        "{e} is named as agreeing but did not reveal the decided outputs"
                    ));
                }
            }
            for (a, d) in record.attempts.iter().zip(digests) {
                let Some(d) = d else { continue };
                let expected = if d == digest {
                    Verdict::Agreed
                } else {
                    Verdict::Disagreed
                };
                if a.verdict != Some(expected) {
                    out.push(format!(
                        "{}'s verdict is {}, but its reveal makes it {expected}",
                        a.executor,
                        verdict_text(a.verdict)
                    ));
                }
            }
        }
        Some(Decision::Undecided { reason, groups }) => {
            if best >= quorum {
                out.push(format!(
                    "the round is said undecided but {best} signed reveals agree (quorum {quorum})"
                ));
            }
            let mut shown: Vec<(Hash32, usize)> = groups
                .iter()
                .map(|g| (g.digest, g.executors.len()))
                .collect();
            let mut actual: Vec<(Hash32, usize)> =
                distinct.iter().map(|d| (*d, count(d))).collect();
            shown.sort();
            actual.sort();
            if shown != actual {
                out.push("the groups shown are not the groups of the signed reveals".into());
            }
            for (a, d) in record.attempts.iter().zip(digests) {
                if d.is_some() && a.verdict != Some(Verdict::Disagreed) {
                    out.push(format!(
                        "{} revealed in an undecided round, so its verdict is disagreed, not {}",
                        a.executor,
                        verdict_text(a.verdict)
                    ));
                }
            }
            if *reason == UndecidedReason::Exhausted {
                let cancelled = record
                    .attempts
                    .iter()
                    .filter(|a| a.verdict == Some(Verdict::Cancelled))
                    .count();
                let room = usize::from(record.spec.max_total).saturating_sub(record.attempts.len());
                if best + cancelled + room >= quorum {
                    out.push(format!(
                        "the round is said exhausted, but {} more executors could still have made a quorum of {quorum}",
                        room
                    ));
                }
            }
        }
    }
}

/// The payload of `signed` when it verifies (as of its issue time) and is `who`'s.
fn signed_by<T: Serialize + DeserializeOwned + Claims>(
    signed: &Signed<T>,
    domain: &str,
    max: usize,
    who: &crate::PublicKey,
    what: &str,
    out: &mut Vec<String>,
) -> Option<T> {
    match signed.verify(domain, signed.header.issued_at, max) {
        Ok(p) if &signed.signer() == who => Some(p),
        Ok(_) => {
            out.push(format!(
                "{who}'s {what} is signed by {}, not by {who}",
                signed.signer()
            ));
            None
        }
        Err(e) => {
            out.push(format!("{who}'s {what} does not verify: {e}"));
            None
        }
    }
}

fn verdict_text(v: Option<Verdict>) -> &'static str {
    v.map_or("pending", Verdict::as_str)
}

fn opt(d: &Option<Hash32>) -> String {
    d.map_or_else(|| "none".into(), |d| d.to_string())
}
