//! The executor side of a verified execution: its completed outputs go back to the
//! requester's node as a signed commit first and, once the requester has it on disk, as
//! a signed reveal (outputs and salt); a failed task goes back as a plain result. Which
//! executions are verified is marked when they are accepted (`reveal_marks`, written in
//! the accept's flush), so that delivering other results costs no extra read.
//!
//! The salt is derived from this node's key and the execution id (an ed25519 signature
//! is deterministic and secret until published), so a re-delivery after a restart
//! commits and reveals the same thing, and nothing more has to be stored.

use super::Router;
use crate::store::OutboxEntry;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{WorkRequest, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::verification::{
    COMMIT_TTL_MS, MAX_COMMIT_BYTES, MAX_REVEAL_BYTES, OutputCommit, Reveal, Salt,
};
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{ExecutionId, ExecutionResult, Hash32, Outcome, PublicKey, now_ms};

/// How a verified delivery went.
pub(super) enum Delivered {
    /// Taken (or no longer wanted): drop the outbox entry.
    Done,
    /// Try again later.
    Retry(String),
}

impl Router {
    /// Mark an accepted request as verified (durable with the accept's flush).
    pub(super) fn mark_verified(&self, id: &ExecutionId) {
        if let Err(e) = self.reveal_marks.insert(id.0, &[]) {
            tracing::error!(execution_id = %id, "verified mark not written: {e}");
        }
    }

    /// Whether the result of `id` goes back as commit and reveal.
    pub(super) fn is_marked_verified(&self, id: &ExecutionId) -> bool {
        self.reveal_marks.contains_key(id.0).unwrap_or(false)
    }

    pub(super) fn unmark_verified(&self, id: &ExecutionId) {
        if let Err(e) = self.reveal_marks.remove(id.0) {
            tracing::warn!(execution_id = %id, "verified mark not removed: {e}");
        }
    }

    /// This node's salt for the outputs of `id` (see the module doc).
    fn salt_for(&self, id: &ExecutionId) -> Salt {
        let tag = [b"mesg/verify-salt/1".as_slice(), &id.0].concat();
        Hash32::domain("mesg/verify-salt/1", &[&self.key.sign(&tag)])
    }

    /// Deliver a verified execution's completed outputs: commit, then reveal. A failed
    /// result returns None (it goes as a plain result).
    pub(super) async fn deliver_verified(
        &self,
        id: &ExecutionId,
        node: &PublicKey,
        entry: &OutboxEntry,
    ) -> Option<Delivered> {
        let result: ExecutionResult = match entry.result.payload_unverified(MAX_WORK_MESSAGE) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(execution_id = %id, "outbox result unreadable: {e}");
                return Some(Delivered::Done);
            }
        };
        let Outcome::Completed { outputs } = result.outcome else {
            return None;
        };
        let net = self.network().cloned()?;
        let peer = node.peer_id().ok()?;
        let me = self.node();
        let salt = self.salt_for(id);
        let now = now_ms();
        // The same commitment at every (re)delivery: a resend is recognised as such.
        let commit = OutputCommit::new(
            *id,
            result.request_digest,
            me,
            &salt,
            &outputs,
            result.finished_at,
        );
        let signed_commit = match Signed::sign(
            &self.key,
            domains::VERIFY_COMMIT,
            &commit,
            now,
            COMMIT_TTL_MS,
            MAX_COMMIT_BYTES,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(execution_id = %id, "commit not signed: {e}");
                return Some(Delivered::Done);
            }
        };
        match net
            .send_work(peer, WorkRequest::Commit(signed_commit))
            .await
        {
            Ok(WorkResponse::Accepted) => {}
            Ok(WorkResponse::Rejected(r)) if !r.code.is_retriable() => {
                tracing::warn!(execution_id = %id, "the requester refused the commit: {r}");
                return Some(Delivered::Done);
            }
            other => return Some(Delivered::Retry(format!("commit: {other:?}"))),
        }
        // The commit is on the requester's disk: now the outputs.
        let reveal = Reveal {
            execution_id: *id,
            executor: me,
            salt,
            outputs,
        };
        let signed_reveal = match Signed::sign(
            &self.key,
            domains::VERIFY_REVEAL,
            &reveal,
            now_ms(),
            COMMIT_TTL_MS,
            MAX_REVEAL_BYTES,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(execution_id = %id, "reveal not signed: {e}");
                return Some(Delivered::Done);
            }
        };
        match net
            .send_work(peer, WorkRequest::Reveal(signed_reveal))
            .await
        {
            Ok(WorkResponse::Accepted) => Some(Delivered::Done),
            Ok(WorkResponse::Rejected(r)) if !r.code.is_retriable() => {
                tracing::warn!(execution_id = %id, "the requester refused the reveal: {r}");
                Some(Delivered::Done)
            }
            other => Some(Delivered::Retry(format!("reveal: {other:?}"))),
        }
    }
}
