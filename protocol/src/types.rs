//! Domain types shared by every part: executions and their status machine, execution
//! requests and results, events, announcements, service records.

use crate::control::Cause;
use crate::definition::ServiceDefinition;
use crate::envelope::Claims;
use crate::hash::{Hash32, InstanceHash, PackageHash, ServiceHash};
use crate::keys::{PublicKey, random_bytes};
use crate::value::Json;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Signing domains: one per kind of signed payload.
pub mod domains {
    /// Version 2: requests carry an idempotency key and a cause (version 1 is refused
    /// with this domain named, rather than misread).
    pub const EXECUTION_REQUEST: &str = "mesg/execution-request/2";
    pub const EXECUTION_RESULT: &str = "mesg/execution-result/1";
    pub const CANCEL: &str = "mesg/cancel/1";
    /// Version 2: events carry a cause.
    pub const EVENT: &str = "mesg/event/2";
    /// Announcements of the first format (offers without publisher claims): still accepted.
    pub const ANNOUNCEMENT_V1: &str = "mesg/announce/1";
    /// Announcements whose offers carry their publisher's claim.
    pub const ANNOUNCEMENT: &str = "mesg/announce/2";
    pub const SERVICE_RECORD: &str = "mesg/service-record/1";
    /// A usage receipt, signed by the executor of a priced execution.
    pub const RECEIPT: &str = "mesg/receipt/1";
    /// A requester's acknowledgement of a pair's cumulative total.
    pub const CUMULATIVE_ACK: &str = "mesg/cumulative-ack/1";
    /// A payer's statement of the cumulative total it settled to a payee.
    pub const SETTLEMENT: &str = "mesg/settlement/1";
    /// An executor's commitment to its outputs in a verified execution.
    pub const VERIFY_COMMIT: &str = "mesg/verify-commit/1";
    /// The opening of a commitment: outputs and salt.
    pub const VERIFY_REVEAL: &str = "mesg/verify-reveal/1";
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            pub fn random() -> $name {
                let mut b = [0u8; 16];
                random_bytes(&mut b).expect("OS random source");
                $name(b)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let bytes = hex::decode(s.trim())
                    .map_err(|_| format!("`{s}` is not an id (32 hex characters)"))?;
                let arr: [u8; 16] = bytes
                    .try_into()
                    .map_err(|_| format!("`{s}` is not an id (32 hex characters)"))?;
                Ok($name(arr))
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_string())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    Ok($name(<[u8; 16]>::deserialize(d)?))
                }
            }
        }
    };
}

id_type!(
    /// Identity of one execution, chosen by the requester's node; the same on every node.
    ExecutionId
);
id_type!(
    /// Identity of one emitted event.
    EventId
);

/// `Created -> InProgress -> Completed | Failed`; `Created -> Failed` when an execution
/// never started (rejected everywhere, timed out, cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ExecutionStatus {
    Created,
    InProgress,
    Completed,
    Failed,
}

impl ExecutionStatus {
    pub fn can_become(self, next: ExecutionStatus) -> bool {
        use ExecutionStatus::*;
        matches!(
            (self, next),
            (Created, InProgress)
                | (Created, Failed)
                | (InProgress, Completed)
                | (InProgress, Failed)
        )
    }

    pub fn is_final(self) -> bool {
        matches!(self, ExecutionStatus::Completed | ExecutionStatus::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Created => "Created",
            ExecutionStatus::InProgress => "InProgress",
            ExecutionStatus::Completed => "Completed",
            ExecutionStatus::Failed => "Failed",
        }
    }

    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        [
            ExecutionStatus::Created,
            ExecutionStatus::InProgress,
            ExecutionStatus::Completed,
            ExecutionStatus::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition {from} -> {to}")]
pub struct TransitionError {
    pub from: ExecutionStatus,
    pub to: ExecutionStatus,
}

/// Where an execution sits in a process run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessStepRef {
    pub process: String,
    pub run: String,
    pub step: String,
}

/// One task run, as a node records it (the requester's node and the executor's node each
/// keep one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Execution {
    pub id: ExecutionId,
    pub service_hash: ServiceHash,
    pub task_key: String,
    pub inputs: Json,
    /// Account or node key that signed the request.
    pub requester: PublicKey,
    /// Node the result is delivered to.
    pub requester_node: PublicKey,
    /// Node that runs it, once one accepted it.
    pub executor: Option<PublicKey>,
    pub instance_hash: Option<InstanceHash>,
    pub status: ExecutionStatus,
    /// Null until the execution completes. (Any JSON value, null included: a schema of
    /// "null or any" would be ambiguous.)
    #[cfg_attr(feature = "openapi", schema(value_type = Json))]
    pub outputs: Option<Json>,
    pub error: Option<String>,
    pub parent: Option<ExecutionId>,
    pub process: Option<ProcessStepRef>,
    pub tags: Vec<String>,
    pub timeout_ms: u64,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// The Application's idempotency key, when it gave one.
    pub idempotency_key: Option<String>,
    /// Where it sits in a chain of process triggers (none: asked for directly).
    pub cause: Option<Cause>,
    /// The request's spending cap in micro-credits (none: no cap, for a free service).
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub max_price: Option<u64>,
    /// What it cost: set by its executor when a priced execution completes (on the
    /// executor's node only, for now).
    pub cost: Option<crate::economy::Cost>,
}

impl Execution {
    /// The record of a request received at `received_at` (this node's clock): its
    /// `created_at`, hence its deadline, is never later than the receipt, whatever time
    /// the request claims (within the tolerated skew it may claim a little ahead).
    pub fn received(req: &ExecutionRequest, received_at: u64) -> Execution {
        let mut e = Execution::from_request(req);
        e.created_at = req.created_at.min(received_at);
        e
    }

    /// The record of a freshly accepted request, with the request's own `created_at`.
    pub fn from_request(req: &ExecutionRequest) -> Execution {
        Execution {
            id: req.execution_id,
            service_hash: req.service_hash,
            task_key: req.task_key.clone(),
            inputs: req.inputs.clone(),
            requester: req.requester,
            requester_node: req.requester_node,
            executor: None,
            instance_hash: None,
            status: ExecutionStatus::Created,
            outputs: None,
            error: None,
            parent: req.parent,
            process: req.process.clone(),
            tags: req.tags.clone(),
            timeout_ms: req.timeout_ms,
            created_at: req.created_at,
            started_at: None,
            finished_at: None,
            idempotency_key: req.idempotency_key.clone(),
            cause: req.cause,
            max_price: req.max_price,
            cost: None,
        }
    }

    /// Move to `next` if the status machine allows it.
    pub fn transition(&mut self, next: ExecutionStatus, now: u64) -> Result<(), TransitionError> {
        if !self.status.can_become(next) {
            return Err(TransitionError {
                from: self.status,
                to: next,
            });
        }
        self.status = next;
        match next {
            ExecutionStatus::InProgress => self.started_at = Some(now),
            ExecutionStatus::Completed | ExecutionStatus::Failed => self.finished_at = Some(now),
            ExecutionStatus::Created => {}
        }
        Ok(())
    }

    pub fn complete(&mut self, outputs: Json, now: u64) -> Result<(), TransitionError> {
        self.transition(ExecutionStatus::Completed, now)?;
        self.outputs = Some(outputs);
        Ok(())
    }

    pub fn fail(&mut self, error: impl Into<String>, now: u64) -> Result<(), TransitionError> {
        self.transition(ExecutionStatus::Failed, now)?;
        self.error = Some(error.into());
        Ok(())
    }

    /// Milliseconds after which an unfinished execution fails.
    pub fn deadline(&self) -> u64 {
        self.created_at.saturating_add(self.timeout_ms)
    }
}

/// A request to run a task, signed by the requester (account or node). Its serialized
/// forms are written by hand in `request_codec.rs` (fields added after `max_price` keep
/// older requests' bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRequest {
    pub execution_id: ExecutionId,
    pub service_hash: ServiceHash,
    pub task_key: String,
    pub inputs: Json,
    pub requester: PublicKey,
    pub requester_node: PublicKey,
    pub parent: Option<ExecutionId>,
    pub process: Option<ProcessStepRef>,
    pub tags: Vec<String>,
    pub timeout_ms: u64,
    pub created_at: u64,
    /// Set by the Application to make retries safe: the execution id is then
    /// `idempotent_execution_id(requester, key)`, checked by every node.
    pub idempotency_key: Option<String>,
    /// Where this request sits in a chain of process triggers (none: asked for directly).
    pub cause: Option<Cause>,
    /// The most the requester agrees to pay for this execution, in micro-credits. Required
    /// for a priced task (and at least its `call` price); the executor charges at most
    /// this. None: no cap, for a free task only.
    pub max_price: Option<u64>,
    /// k-of-n verification asked for this execution (a deterministic task only; none: the
    /// first executor's result is taken). Signed with the request.
    pub verify: Option<crate::verification::VerifySpec>,
}

impl Claims for ExecutionRequest {
    fn claimed_signer(&self) -> PublicKey {
        self.requester
    }
}

/// Why a request's own times are refused (its envelope's window is checked separately).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestTimeError {
    #[error(
        "created_at {created_at} is {ahead_ms} ms ahead of this node's clock ({now}); at most {max} ms of clock skew is tolerated: check the requester's clock"
    )]
    InTheFuture {
        created_at: u64,
        now: u64,
        ahead_ms: u64,
        max: u64,
    },
    #[error("the execution's deadline ({deadline}) has passed (now {now})")]
    DeadlinePassed { deadline: u64, now: u64 },
}

impl ExecutionRequest {
    /// Check the request's claimed `created_at` against the receiver's clock: at most
    /// [`crate::envelope::MAX_CLOCK_SKEW_MS`] ahead (a request dated years ahead would
    /// otherwise never time out), and its deadline not yet passed.
    pub fn check_times(&self, now_ms: u64) -> Result<(), RequestTimeError> {
        let max = crate::envelope::MAX_CLOCK_SKEW_MS;
        if self.created_at > now_ms.saturating_add(max) {
            return Err(RequestTimeError::InTheFuture {
                created_at: self.created_at,
                now: now_ms,
                ahead_ms: self.created_at - now_ms,
                max,
            });
        }
        let deadline = self.created_at.saturating_add(self.timeout_ms);
        if now_ms >= deadline {
            return Err(RequestTimeError::DeadlinePassed {
                deadline,
                now: now_ms,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Completed { outputs: Json },
    Failed { error: String },
}

/// The end of an execution, signed by the executor node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionResult {
    pub execution_id: ExecutionId,
    /// Digest of the signed request this answers: binds the result to that request.
    pub request_digest: Hash32,
    pub service_hash: ServiceHash,
    pub task_key: String,
    pub executor: PublicKey,
    pub instance_hash: Option<InstanceHash>,
    pub outcome: Outcome,
    pub started_at: Option<u64>,
    pub finished_at: u64,
}

impl Claims for ExecutionResult {
    fn claimed_signer(&self) -> PublicKey {
        self.executor
    }
}

/// The requester asks the executor to stop an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub execution_id: ExecutionId,
    pub requester: PublicKey,
    pub reason: String,
}

impl Claims for CancelRequest {
    fn claimed_signer(&self) -> PublicKey {
        self.requester
    }
}

/// An event emitted by an instance, signed by the node that runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: EventId,
    pub service_hash: ServiceHash,
    pub instance_hash: InstanceHash,
    pub key: String,
    pub data: Json,
    pub emitter: PublicKey,
    pub created_at: u64,
    /// The chain the execution that led the service to emit it belongs to (none: the
    /// service emitted it on its own).
    pub cause: Option<Cause>,
    /// Position among the events its emitter emitted for this service: 1, 2, 3... A
    /// subscriber that sees a gap, or comes back after being away, asks the emitter for
    /// what came after the last one it saw (`WorkRequest::EventsSince`). 0: unsequenced.
    #[serde(default)]
    pub seq: u64,
}

impl Claims for Event {
    fn claimed_signer(&self) -> PublicKey {
        self.emitter
    }
}

/// One running instance a node offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceOffer {
    pub service_hash: ServiceHash,
    pub sid: Option<String>,
    pub instance_hash: InstanceHash,
    /// Executions in progress on this instance.
    pub in_flight: u32,
    /// The publisher's claim on `sid` for this service. Without a valid one the service is
    /// unpublished: usable by hash, never resolvable by sid.
    pub claim: Option<crate::publisher::SignedClaim>,
}

/// An offer in the first announcement format (no publisher claim).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceOfferV1 {
    pub service_hash: ServiceHash,
    pub sid: Option<String>,
    pub instance_hash: InstanceHash,
    pub in_flight: u32,
}

/// The first announcement format, as older nodes send it ([`domains::ANNOUNCEMENT_V1`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnouncementV1 {
    pub node: PublicKey,
    pub seq: u64,
    pub addrs: Vec<String>,
    pub services: Vec<ServiceOfferV1>,
    pub ttl_ms: u64,
}

impl Claims for AnnouncementV1 {
    fn claimed_signer(&self) -> PublicKey {
        self.node
    }
}

impl From<AnnouncementV1> for Announcement {
    /// Older nodes' offers carry no claim: their services are unpublished.
    fn from(a: AnnouncementV1) -> Announcement {
        Announcement {
            node: a.node,
            seq: a.seq,
            addrs: a.addrs,
            services: a
                .services
                .into_iter()
                .map(|s| ServiceOffer {
                    service_hash: s.service_hash,
                    sid: s.sid,
                    instance_hash: s.instance_hash,
                    in_flight: s.in_flight,
                    claim: None,
                })
                .collect(),
            ttl_ms: a.ttl_ms,
        }
    }
}

/// What a node runs, signed by the node; announced on gossip with a TTL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub node: PublicKey,
    /// Increases with every announcement of the node; older ones are ignored.
    pub seq: u64,
    pub addrs: Vec<String>,
    pub services: Vec<ServiceOffer>,
    pub ttl_ms: u64,
}

impl Claims for Announcement {
    fn claimed_signer(&self) -> PublicKey {
        self.node
    }
}

/// A service definition published to the network (a Kademlia record): what any node needs
/// to fetch the package and run the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub service_hash: ServiceHash,
    pub definition: ServiceDefinition,
    pub package_hash: PackageHash,
    pub package_size: u64,
    pub publisher: PublicKey,
}

impl Claims for ServiceRecord {
    fn claimed_signer(&self) -> PublicKey {
        self.publisher
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record claims service {claimed} but its definition and package hash to {actual}")]
    HashMismatch {
        claimed: ServiceHash,
        actual: ServiceHash,
    },
    #[error("record definition is invalid: {0}")]
    Definition(String),
}

impl ServiceRecord {
    /// The record is self-certifying: the hash must follow from its content.
    pub fn check(&self) -> Result<(), RecordError> {
        let actual = self.definition.service_hash(&self.package_hash);
        if actual != self.service_hash {
            return Err(RecordError::HashMismatch {
                claimed: self.service_hash,
                actual,
            });
        }
        self.definition
            .validate()
            .map_err(|e| RecordError::Definition(e.to_string()))
    }
}

#[cfg(test)]
#[path = "types_tests.rs"]
mod tests;
