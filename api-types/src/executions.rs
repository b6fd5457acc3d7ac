//! Executions: the request that creates one, the queries that list, wait for and filter
//! them, and a page of them. An execution itself is [`mesg_protocol::Execution`].

use mesg_protocol::{Execution, ExecutionId, ProcessStepRef};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

/// Most tags an execution may carry.
pub const MAX_TAGS: usize = 32;
/// Longest tag (bytes).
pub const MAX_TAG_LEN: usize = 128;

/// What an Application asks for when it creates an execution (`POST /v1/executions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateExecution {
    /// Service hash, sid, or sid@PUBLISHER_KEY (a sid resolves to one publisher:
    /// configured, pinned or first seen).
    pub service: String,
    pub task: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: serde_json::Value,
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub tags: Vec<String>,
    /// Overrides the task's default timeout.
    #[serde(default, deserialize_with = "crate::whole::option_u64")]
    #[schema(minimum = 1, maximum = 86400000)]
    pub timeout_ms: Option<u64>,
    /// Parent execution id.
    #[serde(default)]
    pub parent: Option<ExecutionId>,
    /// The process step this execution runs for.
    #[serde(default)]
    pub process: Option<ProcessStepRef>,
    /// Choose the execution id (an idempotency key): creating an execution whose id
    /// exists returns the existing one instead of running the task again; a different
    /// request with that id answers 409.
    #[serde(default)]
    pub execution_id: Option<ExecutionId>,
    /// Make retries safe: the execution id is derived from the requester (this node's
    /// key) and the key, so the same key and request answer the existing execution
    /// (`replayed: true`), on this node or any other that saw it; the same key with
    /// another service, task or inputs answers 422. The `Idempotency-Key` header sets it
    /// too. 1 to 255 printable ASCII characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
    /// Where the execution sits in a chain of process triggers (set by the process
    /// runner, never by the API).
    #[serde(skip)]
    pub cause: Option<mesg_protocol::Cause>,
    /// The most this execution may cost, in micro-credits (signed into the request; the
    /// executor charges at most this). Required by a priced task, and at least its `call`
    /// price (else 400 `price_above_cap`); ignored by a free one.
    #[serde(default, deserialize_with = "crate::whole::option_u64")]
    #[schema(maximum = 18446744073709551615u64)]
    pub max_price: Option<u64>,
    /// k-of-n verification of a deterministic task: `"2/3"` (2 of 3 distinct executors
    /// must agree), `"2/3/5"` (at most 5 executors in all when results disagree), or an
    /// object `{"replicas": 3, "quorum": 2, "max_total": 5}`. Default: the task's
    /// `verify` in its mesg.yml. Signed into the request; a task that is not
    /// deterministic refuses it (400 `bad_request`).
    #[serde(
        default,
        deserialize_with = "crate::verify::option_spec",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = crate::verify::spec_schema)]
    pub verify: Option<mesg_protocol::verification::VerifySpec>,
}

/// At most [`MAX_TAGS`] tags of 1 to [`MAX_TAG_LEN`] bytes.
fn tags_schema() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_TAG_LEN)),
        )
        .max_items(Some(MAX_TAGS))
        .description(Some("labels to find the execution by"))
        .into()
}

/// The query of `POST /v1/executions` and `POST /v1/executions/signed`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateExecutionQuery {
    /// Answer only when the execution ends (or `wait_ms` passes).
    #[serde(default)]
    pub wait: bool,
    /// Longest wait (default: the execution's timeout plus one second).
    #[serde(default)]
    #[param(maximum = 18446744073709551615u64)]
    pub wait_ms: Option<u64>,
}

/// The query of `GET /v1/executions/{id}/wait`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Longest wait (default 60000, at most 3600000).
    #[serde(default)]
    #[param(maximum = 18446744073709551615u64)]
    pub timeout_ms: Option<u64>,
}

/// The body of `POST /v1/executions/{id}/cancel` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CancelExecution {
    /// Why, recorded as the execution's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Filters of the list and the stream of executions (`GET /v1/executions`,
/// `GET /v1/executions/stream`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    /// Created, InProgress, Completed or Failed.
    #[param(value_type = Option<mesg_protocol::ExecutionStatus>)]
    pub status: Option<String>,
    /// Service hash or sid.
    pub service: Option<String>,
    /// Executions carrying this tag.
    pub tag: Option<String>,
    /// Task key.
    pub task: Option<String>,
    /// Parent execution id.
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    pub parent: Option<String>,
    /// Page size (default 100; clamped to 1-1000). The stream ignores it.
    #[param(maximum = 18446744073709551615u64)]
    pub limit: Option<usize>,
    /// Cursor: `next` of the previous page. The stream ignores it.
    #[param(pattern = "^[0-9]{1,15}:[0-9a-fA-F]{32}$")]
    pub before: Option<String>,
}

/// A page of executions, newest first (`GET /v1/executions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionPage {
    pub executions: Vec<Execution>,
    /// Cursor of the next page (`before`); null on the last page.
    pub next: Option<String>,
}

/// `GET /v1/executions/{id}/verification`: the node checks the signed result it keeps
/// for the execution, now (the dashboard shows this; `mesg executions verify` does the
/// same on the client side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResultVerification {
    pub execution_id: ExecutionId,
    /// The signature checks out, its signer is the executor the result names, and the
    /// result answers this execution (same id, service, task, executor and outcome).
    pub valid: bool,
    /// Who signed the result (the envelope's signer).
    pub signer: mesg_protocol::PublicKey,
    /// The executor the signed result names, when the signature checks out.
    pub executor: Option<mesg_protocol::PublicKey>,
    /// `Completed` or `Failed`, as signed.
    pub outcome: Option<mesg_protocol::ExecutionStatus>,
    /// When it was signed and until when it is valid on the wire (unix ms).
    pub issued_at: u64,
    pub expires_at: u64,
    /// What is wrong, when not valid.
    pub problems: Vec<String>,
    /// Why the signature was checked as of its issue time (its validity window is over).
    pub note: Option<String>,
}
