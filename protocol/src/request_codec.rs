//! The serialized forms of [`ExecutionRequest`]: why it is written by hand.
//!
//! A request is signed as bincode bytes, and bincode has no field names: a field added at
//! the end would make every older request undecodable (and every newer one undecodable by
//! older nodes). So fields added after `max_price` ride in its slot: the binary form's last
//! field is a [`Tail`] enum whose first two variants encode exactly as the old
//! `Option<u64>` did (tag 0: no cap; tag 1 and a varint: a cap). A request without the new
//! fields is byte for byte what it was, signed under the same domain; one that uses them
//! is variant 2, which an older node refuses as undecodable rather than misreading. New
//! fields later get variant 3 and so on.
//!
//! The JSON form is the plain struct, the new fields left out while unset.

use crate::control::Cause;
use crate::hash::ServiceHash;
use crate::keys::PublicKey;
use crate::types::{ExecutionId, ExecutionRequest, ProcessStepRef};
use crate::value::Json;
use crate::verification::VerifySpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The binary slot of `max_price` and what came after it.
#[derive(Serialize, Deserialize)]
enum Tail {
    /// No spending cap, nothing else: the old `None`.
    NoCap,
    /// A spending cap, nothing else: the old `Some(cap)`.
    Cap(u64),
    /// Version 2 of the tail: the cap and a verification request.
    Extended {
        max_price: Option<u64>,
        verify: Option<VerifySpec>,
    },
}

#[derive(Serialize)]
struct BinaryRef<'a> {
    execution_id: &'a ExecutionId,
    service_hash: &'a ServiceHash,
    task_key: &'a str,
    inputs: &'a Json,
    requester: &'a PublicKey,
    requester_node: &'a PublicKey,
    parent: &'a Option<ExecutionId>,
    process: &'a Option<ProcessStepRef>,
    tags: &'a [String],
    timeout_ms: u64,
    created_at: u64,
    idempotency_key: &'a Option<String>,
    cause: &'a Option<Cause>,
    tail: Tail,
}

#[derive(Deserialize)]
struct Binary {
    execution_id: ExecutionId,
    service_hash: ServiceHash,
    task_key: String,
    inputs: Json,
    requester: PublicKey,
    requester_node: PublicKey,
    parent: Option<ExecutionId>,
    process: Option<ProcessStepRef>,
    tags: Vec<String>,
    timeout_ms: u64,
    created_at: u64,
    idempotency_key: Option<String>,
    cause: Option<Cause>,
    tail: Tail,
}

#[derive(Serialize)]
#[serde(rename = "ExecutionRequest")]
struct TextRef<'a> {
    execution_id: &'a ExecutionId,
    service_hash: &'a ServiceHash,
    task_key: &'a str,
    inputs: &'a Json,
    requester: &'a PublicKey,
    requester_node: &'a PublicKey,
    parent: &'a Option<ExecutionId>,
    process: &'a Option<ProcessStepRef>,
    tags: &'a [String],
    timeout_ms: u64,
    created_at: u64,
    idempotency_key: &'a Option<String>,
    cause: &'a Option<Cause>,
    max_price: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<VerifySpec>,
}

#[derive(Deserialize)]
struct Text {
    execution_id: ExecutionId,
    service_hash: ServiceHash,
    task_key: String,
    inputs: Json,
    requester: PublicKey,
    requester_node: PublicKey,
    parent: Option<ExecutionId>,
    process: Option<ProcessStepRef>,
    tags: Vec<String>,
    timeout_ms: u64,
    created_at: u64,
    idempotency_key: Option<String>,
    cause: Option<Cause>,
    max_price: Option<u64>,
    #[serde(default)]
    verify: Option<VerifySpec>,
}

impl Serialize for ExecutionRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self;
        if s.is_human_readable() {
            return TextRef {
                execution_id: &r.execution_id,
                service_hash: &r.service_hash,
                task_key: &r.task_key,
                inputs: &r.inputs,
                requester: &r.requester,
                requester_node: &r.requester_node,
                parent: &r.parent,
                process: &r.process,
                tags: &r.tags,
                timeout_ms: r.timeout_ms,
                created_at: r.created_at,
                idempotency_key: &r.idempotency_key,
                cause: &r.cause,
                max_price: r.max_price,
                verify: r.verify,
            }
            .serialize(s);
        }
        let tail = match (r.max_price, r.verify) {
            (None, None) => Tail::NoCap,
            (Some(cap), None) => Tail::Cap(cap),
            (max_price, verify) => Tail::Extended { max_price, verify },
        };
        BinaryRef {
            execution_id: &r.execution_id,
            service_hash: &r.service_hash,
            task_key: &r.task_key,
            inputs: &r.inputs,
            requester: &r.requester,
            requester_node: &r.requester_node,
            parent: &r.parent,
            process: &r.process,
            tags: &r.tags,
            timeout_ms: r.timeout_ms,
            created_at: r.created_at,
            idempotency_key: &r.idempotency_key,
            cause: &r.cause,
            tail,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ExecutionRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let t = Text::deserialize(d)?;
            return Ok(ExecutionRequest {
                execution_id: t.execution_id,
                service_hash: t.service_hash,
                task_key: t.task_key,
                inputs: t.inputs,
                requester: t.requester,
                requester_node: t.requester_node,
                parent: t.parent,
                process: t.process,
                tags: t.tags,
                timeout_ms: t.timeout_ms,
                created_at: t.created_at,
                idempotency_key: t.idempotency_key,
                cause: t.cause,
                max_price: t.max_price,
                verify: t.verify,
            });
        }
        let b = Binary::deserialize(d)?;
        let (max_price, verify) = match b.tail {
            Tail::NoCap => (None, None),
            Tail::Cap(cap) => (Some(cap), None),
            Tail::Extended { max_price, verify } => (max_price, verify),
        };
        Ok(ExecutionRequest {
            execution_id: b.execution_id,
            service_hash: b.service_hash,
            task_key: b.task_key,
            inputs: b.inputs,
            requester: b.requester,
            requester_node: b.requester_node,
            parent: b.parent,
            process: b.process,
            tags: b.tags,
            timeout_ms: b.timeout_ms,
            created_at: b.created_at,
            idempotency_key: b.idempotency_key,
            cause: b.cause,
            max_price,
            verify,
        })
    }
}
