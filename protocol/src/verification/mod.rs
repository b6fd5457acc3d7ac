//! k-of-n verification of deterministic tasks: the request's [`VerifySpec`], the
//! commit-and-reveal messages an executor signs ([`OutputCommit`], [`Reveal`]), the
//! canonical hash results are grouped by, and the verdict logic ([`VerificationRound`]),
//! a pure state machine the node feeds with what its executors send.
//!
//! Why it exists: a signed result proves who said it, not that it is right. Running a
//! deterministic task on several distinct executors and taking the answer a quorum agrees
//! on does, unless the quorum colludes. See docs/verification.md.
//!
//! - `spec.rs`: [`VerifySpec`] (`replicas`, `quorum`, `max_total`), its `"2/3"` text form.
//! - `commit.rs`: canonical output digests, salted commitments, signed commits and reveals.
//! - `round.rs`: [`VerificationRound`], grouping, early completion, "ask more", undecided.
//! - `record.rs`: what a finished round keeps (attempts, verdicts, decision), for the
//!   execution record and for re-checking it ([`crate::evidence::check_verification`]).

mod commit;
mod record;
mod round;
mod spec;

pub use commit::{
    COMMIT_TTL_MS, MAX_COMMIT_BYTES, MAX_REVEAL_BYTES, OutputCommit, Reveal, RevealMismatch, Salt,
    commitment, new_salt, output_digest,
};
pub use record::{AttemptRecord, Decision, Group, UndecidedReason, Verdict, VerificationRecord};
pub use round::{Next, RoundError, VerificationRound};
pub use spec::{MAX_VERIFY_EXECUTORS, VerifySpec, VerifySpecError};

#[cfg(test)]
mod tests;
