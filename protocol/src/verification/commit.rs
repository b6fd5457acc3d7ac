//! Commit and reveal: an executor first signs a commitment to its outputs, then, asked by
//! the requester, reveals the outputs and the salt. The commitment hides the outputs (a
//! random salt, so that even a yes/no answer cannot be guessed from it) and binds them to
//! the execution and to the executor (so that copying another executor's commitment
//! commits to nothing the copier can open). Results are grouped by [`output_digest`], the
//! unsalted hash of the canonical outputs.

use crate::canonical::to_canonical_json;
use crate::envelope::Claims;
use crate::hash::Hash32;
use crate::keys::{PublicKey, random_bytes};
use crate::types::ExecutionId;
use crate::value::Json;
use crate::wire::MAX_WORK_MESSAGE;
use serde::{Deserialize, Serialize};

/// Largest signed commit payload: a few ids and hashes.
pub const MAX_COMMIT_BYTES: usize = 1024;
/// Largest signed reveal payload: outputs inline, as in a result.
pub const MAX_REVEAL_BYTES: usize = MAX_WORK_MESSAGE;
/// Validity of a commit's or a reveal's envelope on the wire (the execution's own
/// deadline is shorter; afterwards they are evidence, checked as of their issue time).
pub const COMMIT_TTL_MS: u64 = 24 * 3600 * 1000;

/// The random secret an executor mixes into its commitment (sha256-sized).
pub type Salt = Hash32;

/// A fresh random salt.
pub fn new_salt() -> Salt {
    let mut b = [0u8; 32];
    random_bytes(&mut b).expect("OS random source");
    Hash32(b)
}

/// The hash results are grouped by: sha256 of the canonical JSON of the outputs (object
/// keys sorted, no whitespace), so that two executors that computed the same value agree
/// whatever order their JSON writer put the keys in.
pub fn output_digest(outputs: &Json) -> Hash32 {
    Hash32::domain("mesg/verify-outputs/1", &[&to_canonical_json(&outputs.0)])
}

/// `H(execution id, executor, salt, output digest)`: what an executor commits to.
pub fn commitment(
    execution_id: &ExecutionId,
    executor: &PublicKey,
    salt: &Salt,
    digest: &Hash32,
) -> Hash32 {
    Hash32::domain(
        "mesg/verify-commitment/1",
        &[
            &execution_id.0,
            &executor.0,
            salt.as_bytes(),
            digest.as_bytes(),
        ],
    )
}

/// An executor's commitment to its outputs, signed under
/// [`crate::types::domains::VERIFY_COMMIT`] before any outputs are revealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputCommit {
    pub execution_id: ExecutionId,
    /// Digest of the signed request this answers.
    pub request_digest: Hash32,
    pub executor: PublicKey,
    /// [`commitment`] of the outputs it will reveal.
    pub commitment: Hash32,
    /// Unix milliseconds (executor's clock).
    pub committed_at: u64,
}

impl Claims for OutputCommit {
    fn claimed_signer(&self) -> PublicKey {
        self.executor
    }
}

/// The opening of a commit: the outputs and the salt, signed under
/// [`crate::types::domains::VERIFY_REVEAL`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reveal {
    pub execution_id: ExecutionId,
    pub executor: PublicKey,
    pub salt: Salt,
    pub outputs: Json,
}

impl Claims for Reveal {
    fn claimed_signer(&self) -> PublicKey {
        self.executor
    }
}

/// Why a reveal does not open a commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevealMismatch {
    #[error("the reveal answers execution {reveal}, the commit {commit}")]
    OtherExecution {
        reveal: ExecutionId,
        commit: ExecutionId,
    },
    #[error("the reveal is {reveal}'s, the commit {commit}'s")]
    OtherExecutor {
        reveal: PublicKey,
        commit: PublicKey,
    },
    #[error(
        "the revealed outputs and salt do not hash to the commitment: not the outputs it committed to"
    )]
    Commitment,
}

impl OutputCommit {
    /// The commit of `outputs` with `salt`, by `executor`.
    pub fn new(
        execution_id: ExecutionId,
        request_digest: Hash32,
        executor: PublicKey,
        salt: &Salt,
        outputs: &Json,
        committed_at: u64,
    ) -> OutputCommit {
        OutputCommit {
            execution_id,
            request_digest,
            executor,
            commitment: commitment(&execution_id, &executor, salt, &output_digest(outputs)),
            committed_at,
        }
    }
}

impl Reveal {
    /// The digest results are grouped by.
    pub fn digest(&self) -> Hash32 {
        output_digest(&self.outputs)
    }

    /// Whether this reveal opens `commit`: same execution, same executor, and the outputs
    /// and salt hash to the commitment. Returns the outputs' digest.
    pub fn check(&self, commit: &OutputCommit) -> Result<Hash32, RevealMismatch> {
        if self.execution_id != commit.execution_id {
            return Err(RevealMismatch::OtherExecution {
                reveal: self.execution_id,
                commit: commit.execution_id,
            });
        }
        if self.executor != commit.executor {
            return Err(RevealMismatch::OtherExecutor {
                reveal: self.executor,
                commit: commit.executor,
            });
        }
        let digest = self.digest();
        if commitment(&self.execution_id, &self.executor, &self.salt, &digest) != commit.commitment
        {
            return Err(RevealMismatch::Commitment);
        }
        Ok(digest)
    }
}
