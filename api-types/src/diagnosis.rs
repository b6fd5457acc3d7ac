//! "Why isn't my execution running?": the diagnosis of one execution
//! (`GET /v1/executions/{id}/why`, and `diagnosis` on `GET /v1/executions/{id}` while it
//! waits), in the form Kubernetes' scheduler made familiar: how many nodes were
//! considered, why each provider was passed over, the attempt count, the last error and
//! when the next attempt happens.
//!
//! Computed when asked, from what the requesting node knows in memory: never stored.

use mesg_protocol::{
    Execution, ExecutionId, ExecutionStatus, InstanceHash, PublicKey, ServiceHash,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where an execution stands, as its diagnosis sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisState {
    /// Not yet accepted by any provider: this node is looking for one (`peers`,
    /// `attempts`, `next_attempt_at` say how it goes).
    Routing,
    /// Handed to an instance of this node whose container is not connected: the task
    /// waits in its queue.
    Queued,
    /// Running: on an instance of this node, or accepted by another node (`executor`).
    Running,
    /// Completed or failed (`error` says why it failed).
    Finished,
}

impl DiagnosisState {
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosisState::Routing => "routing",
            DiagnosisState::Queued => "queued",
            DiagnosisState::Running => "running",
            DiagnosisState::Finished => "finished",
        }
    }
}

/// Why one provider does not run the execution (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeerVerdict {
    /// The execution is being offered to it right now (its answer has not arrived).
    Offered,
    /// Known to provide the service, not offered the execution yet.
    NotTried,
    /// It refused: too much work in flight.
    Busy,
    /// It refused: it runs no instance of the service (any more).
    NoInstance,
    /// Offered the execution and silent for longer than a provider takes to answer
    /// (`detail` says for how long): connected but frozen, or overloaded.
    NotAnswering,
    /// Not reached, or no answer in time (`detail` has the error).
    Unreachable,
    /// It refused for another reason (`code` and `detail`).
    Refused,
    /// It refused: the task's price is above the request's spending cap (`max_price`),
    /// or the request sets none (`detail` names the price and the cap). Every provider of
    /// the service has the same price: raise the cap.
    PriceAboveCap,
}

impl PeerVerdict {
    /// The words of the one-line summary ("1 busy", "2 unreachable").
    pub fn label(self) -> &'static str {
        match self {
            PeerVerdict::Offered => "being offered it",
            PeerVerdict::NotTried => "not tried yet",
            PeerVerdict::Busy => "busy",
            PeerVerdict::NoInstance => "no running instance",
            PeerVerdict::NotAnswering => "not answering",
            PeerVerdict::Unreachable => "unreachable",
            PeerVerdict::Refused => "refused",
            PeerVerdict::PriceAboveCap => "price above the cap",
        }
    }
}

/// One provider considered, and why it was passed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerDiagnosis {
    pub node: PublicKey,
    pub peer_id: String,
    pub verdict: PeerVerdict,
    /// The provider's reject code (`Busy`, `NoInstance`, `WrongNode`, ...), when it refused.
    pub code: Option<String>,
    /// The error or the provider's message.
    pub detail: Option<String>,
    /// When this was observed (unix ms); null for a provider not tried yet.
    pub at: Option<u64>,
    /// Since when the execution is being offered to it (unix ms), while its answer is
    /// awaited; `verdict` is then what it answered the time before, if anything.
    pub offered_since: Option<u64>,
}

/// The diagnosis of one execution (`GET /v1/executions/{id}/why`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Diagnosis {
    pub execution_id: ExecutionId,
    pub status: ExecutionStatus,
    pub state: DiagnosisState,
    /// One line, e.g. "0/3 nodes are available: 1 busy, 1 unreachable (request timed
    /// out), 1 does not run the service; attempt 4, next in 1.0 s".
    pub summary: String,
    pub service_hash: ServiceHash,
    pub sid: Option<String>,
    /// The node that runs (or ran) it, or the provider it is being offered to.
    pub executor: Option<PublicKey>,
    /// The local instance it runs or waits on.
    pub instance_hash: Option<InstanceHash>,
    /// Tasks waiting in that instance's queue (state `queued`).
    pub queued_tasks: Option<usize>,
    /// Other nodes this node knows (from their announcements).
    pub known_nodes: usize,
    /// Of those, the nodes that do not announce the service.
    pub without_service: usize,
    /// Providers considered (announced, or found in the DHT), with why each was passed over.
    pub peers: Vec<PeerDiagnosis>,
    /// Rounds over the providers so far (a round offers it to each provider once).
    pub attempts: u32,
    /// The last error of a provider (or why the execution failed).
    pub last_error: Option<String>,
    /// When the next round starts (unix ms), while waiting between rounds.
    pub next_attempt_at: Option<u64>,
    /// When this node stops looking for a provider and fails the execution (unix ms).
    pub patience_until: Option<u64>,
    /// When this diagnosis was made (unix ms).
    pub at: u64,
}

/// `GET /v1/executions/{id}`: the execution, with its diagnosis while it is not running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionView {
    #[serde(flatten)]
    pub execution: Execution,
    /// Why it is not running yet (only while it waits for a provider or an instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
    /// The usage receipt of a priced execution run for another node: issued by this node
    /// (executor) or received (requester), and what became of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<crate::ledger::ReceiptView>,
}
