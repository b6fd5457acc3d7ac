//! What a verification round decides and what an execution record keeps of it: every
//! attempt with its signed commit, reveal or failure and its verdict, and the decision.
//! Anyone holding a [`VerificationRecord`] can re-check it
//! ([`crate::evidence::check_verification`]).

use super::{OutputCommit, Reveal, VerifySpec};
use crate::envelope::Signed;
use crate::hash::Hash32;
use crate::keys::PublicKey;
use crate::types::{ExecutionId, ExecutionResult};
use crate::value::Json;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Verdict {
    /// Revealed the outputs the quorum agreed on.
    Agreed,
    /// Revealed other outputs, a reveal that does not open its commit, or a reveal
    /// without a commit; or revealed in a round no group won.
    Disagreed,
    /// Did not commit, or did not reveal, in time.
    TimedOut,
    /// Reported that the task failed.
    Failed,
    /// Not needed: the round was decided before it committed (its work is cancelled;
    /// says nothing for or against it).
    Cancelled,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Agreed => "agreed",
            Verdict::Disagreed => "disagreed",
            Verdict::TimedOut => "timed out",
            Verdict::Failed => "failed",
            Verdict::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Executors that revealed the same outputs (by [`super::output_digest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Group {
    pub digest: Hash32,
    /// In the order they were asked.
    pub executors: Vec<PublicKey>,
}

/// Why no group reached the quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UndecidedReason {
    /// No group could reach the quorum even with every executor `max_total` allows.
    Exhausted,
    /// More executors were needed but no other distinct provider was found.
    NoMoreExecutors,
    /// The execution's deadline came first.
    Deadline,
}

impl fmt::Display for UndecidedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UndecidedReason::Exhausted => "no group can reach the quorum within max_total",
            UndecidedReason::NoMoreExecutors => "no other provider to ask",
            UndecidedReason::Deadline => "the deadline passed",
        })
    }
}

/// The end of a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Decision {
    /// `executors` (at least the quorum) revealed outputs with `digest`: the result.
    Agreed {
        digest: Hash32,
        #[cfg_attr(feature = "openapi", schema(value_type = crate::value::Json))]
        outputs: Json,
        executors: Vec<PublicKey>,
    },
    /// "verification undecided": no group reached the quorum; every group, largest first.
    Undecided {
        reason: UndecidedReason,
        groups: Vec<Group>,
    },
}

impl Decision {
    /// The execution's error when it is undecided, groups shown.
    pub fn error(&self) -> Option<String> {
        match self {
            Decision::Agreed { .. } => None,
            Decision::Undecided { reason, groups } => {
                let shown: Vec<String> = groups
                    .iter()
                    .map(|g| format!("{} ({} executors)", g.digest, g.executors.len()))
                    .collect();
                Some(format!(
                    "verification undecided: {reason}; groups: {}",
                    if shown.is_empty() {
                        "none".to_string()
                    } else {
                        shown.join(", ")
                    }
                ))
            }
        }
    }
}

/// One executor's part, as the requester keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptRecord {
    pub executor: PublicKey,
    /// Its signed `OutputCommit`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::SignedEnvelope>))]
    pub commit: Option<Signed<OutputCommit>>,
    /// Its signed `Reveal` (outputs and salt).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::SignedEnvelope>))]
    pub reveal: Option<Signed<Reveal>>,
    /// The signed failed result, when it reported a failure.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::SignedEnvelope>))]
    pub failure: Option<Signed<ExecutionResult>>,
    /// Digest of its revealed outputs, when the reveal opened its commit.
    pub output_digest: Option<Hash32>,
    /// None while it is still running.
    pub verdict: Option<Verdict>,
    /// Why, when the verdict needs a word (a reveal that does not open its commit).
    pub note: Option<String>,
}

/// Everything a verified execution keeps: enough to re-check the verdict from the signed
/// commits, reveals and results alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerificationRecord {
    pub execution_id: ExecutionId,
    /// Digest of the signed request every commit answers.
    pub request_digest: Hash32,
    pub spec: VerifySpec,
    /// In the order the executors were asked.
    pub attempts: Vec<AttemptRecord>,
    /// None while the round runs.
    pub decision: Option<Decision>,
}
