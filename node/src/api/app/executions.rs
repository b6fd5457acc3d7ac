//! Executions: create (signed by this node or by an account), show, why it is not
//! running, wait for, cancel, the signed result, the list and the stream.

use super::streams::{sse_json, sse_lagged, sse_response};
use super::{AppState, optional_json};
use crate::api::{ApiErr, ApiResult, Json, Path, Query};
use crate::engine::{Engine, Submitted};
use crate::store::ExecutionFilter;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mesg_api_types::{
    ApiError, CancelExecution, CreateExecution, CreateExecutionQuery, Diagnosis, ExecutionPage,
    ExecutionQuery, ExecutionView, ResultVerification, WaitQuery,
};
use mesg_protocol::envelope::Signed;
use mesg_protocol::openapi::SignedEnvelope;
use mesg_protocol::{
    Execution, ExecutionId, ExecutionRequest, ExecutionResult, ExecutionStatus, Outcome,
    ServiceHash,
};
use std::convert::Infallible;
use std::time::Duration;

/// Default longest wait of `GET /v1/executions/{id}/wait`.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Longest wait of `GET /v1/executions/{id}/wait` a caller may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Execute a task of a service (signed by this node)
#[utoipa::path(
    post,
    path = "/v1/executions",
    operation_id = "createExecution",
    tag = "executions",
    params(CreateExecutionQuery, IdempotencyKeyHeader),
    request_body = CreateExecution,
    responses(
        (status = 201, description = "The execution", body = Execution),
        (status = 200, description = "The execution the idempotency key already named (nothing new ran); header `Idempotent-Replayed: true`", body = Execution),
        (status = 422, description = "The idempotency key already names another request (idempotency_key_reused)", body = ApiError),
        (status = 400, description = "Invalid request or inputs", body = ApiError),
        (status = 404, description = "No such service or task", body = ApiError),
        (status = 409, description = "`execution_id` already used by a different request (the same request answers the existing execution); or the sid is ambiguous (ambiguous_sid: several publishers, no pin; the candidates are listed in details) or pinned to a publisher that runs no service under it (sid_pinned_elsewhere)", body = ApiError),
        (status = 413, description = "Body larger than the node accepts (16 MiB + 64 KiB): payload_too_large", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
        (status = 503, description = "No provider runs the service", body = ApiError),
    ),
)]
pub(super) async fn create_execution(
    State(s): State<AppState>,
    Query(q): Query<CreateExecutionQuery>,
    headers: HeaderMap,
    Json(mut body): Json<CreateExecution>,
) -> ApiResult<Response> {
    if let Some(key) = idempotency_header(&headers)? {
        match &body.idempotency_key {
            Some(in_body) if *in_body != key => {
                return Err(ApiErr::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the Idempotency-Key header and the body's idempotency_key differ",
                ));
            }
            _ => body.idempotency_key = Some(key),
        }
    }
    let e = s.engine.submit_execution(body).await?;
    respond_created(&s.engine, e, q).await
}

/// The `Idempotency-Key` request header.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read from the headers; declared for the OpenAPI document
struct IdempotencyKeyHeader {
    /// Makes retries safe: the same key and request answer the existing execution (200,
    /// `Idempotent-Replayed: true`), on this node or another that saw it; another request
    /// under the key answers 422. 1 to 255 printable ASCII characters.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
}

fn idempotency_header(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v.to_str().map_err(|_| {
        ApiErr::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the Idempotency-Key header must be printable ASCII",
        )
    })?;
    Ok(Some(key.to_string()))
}

/// Execute a request signed by an account key
#[utoipa::path(
    post,
    path = "/v1/executions/signed",
    operation_id = "createSignedExecution",
    tag = "executions",
    params(CreateExecutionQuery),
    request_body(content = SignedEnvelope, description = "an ExecutionRequest signed by the requester's account key"),
    responses(
        (status = 201, description = "The execution", body = Execution),
        (status = 400, description = "Invalid envelope, signature or request", body = ApiError),
        (status = 404, description = "No such service or task", body = ApiError),
        (status = 409, description = "Replayed envelope, or `execution_id` already used by a different request", body = ApiError),
        (status = 413, description = "Body larger than the node accepts (16 MiB + 64 KiB): payload_too_large", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
        (status = 503, description = "No provider runs the service", body = ApiError),
    ),
)]
pub(super) async fn create_signed_execution(
    State(s): State<AppState>,
    Query(q): Query<CreateExecutionQuery>,
    Json(signed): Json<Signed<ExecutionRequest>>,
) -> ApiResult<Response> {
    let e = s.engine.submit_signed(signed).await?;
    respond_created(&s.engine, e, q).await
}

async fn respond_created(
    engine: &Engine,
    submitted: Submitted,
    q: CreateExecutionQuery,
) -> ApiResult<Response> {
    let e = submitted.execution;
    let e = if q.wait && !e.status.is_final() {
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(e.timeout_ms + 1000));
        engine.wait(&e.id, wait).await?
    } else {
        e
    };
    Ok(if submitted.replayed {
        (StatusCode::OK, [("idempotent-replayed", "true")], Json(e)).into_response()
    } else {
        (StatusCode::CREATED, Json(e)).into_response()
    })
}

/// An execution id from a path or a query.
pub(super) fn parse_id(id: &str) -> ApiResult<ExecutionId> {
    id.parse()
        .map_err(|m: String| ApiErr::new(StatusCode::BAD_REQUEST, "bad_request", m))
}

/// A service hash as is, else the service a sid names on this node.
pub(super) fn resolve_service(engine: &Engine, id: &str) -> ApiResult<ServiceHash> {
    match id.parse::<ServiceHash>() {
        Ok(h) => Ok(h),
        Err(_) => Ok(engine.service(id)?.record.service_hash),
    }
}

/// One execution
#[utoipa::path(
    get,
    path = "/v1/executions/{id}",
    operation_id = "getExecution",
    tag = "executions",
    params(("id" = String, Path, description = "execution id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "Execution, with its `diagnosis` while it waits for a provider or an instance", body = ExecutionView),
        (status = 400, description = "Invalid execution id", body = ApiError),
        (status = 404, description = "No such execution", body = ApiError),
    ),
)]
pub(super) async fn get_execution(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.execution_view(&parse_id(&id)?)?).into_response())
}

/// Why the execution is not running: the providers considered and why each was passed over, the attempts, the last error, the next attempt (or that it runs, or ended)
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/why",
    operation_id = "whyExecution",
    tag = "executions",
    params(("id" = String, Path, description = "execution id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "Its diagnosis (computed now, never stored)", body = Diagnosis),
        (status = 400, description = "Invalid execution id", body = ApiError),
        (status = 404, description = "No such execution", body = ApiError),
    ),
)]
pub(super) async fn why_execution(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.why(&parse_id(&id)?)?).into_response())
}

/// Wait until the execution ends (or timeout_ms passes)
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/wait",
    operation_id = "waitExecution",
    tag = "executions",
    params(
        ("id" = String, Path, description = "execution id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$"),
        WaitQuery,
    ),
    responses(
        (status = 200, description = "The execution, ended or as it is when the wait times out", body = Execution),
        (status = 400, description = "Invalid execution id or query", body = ApiError),
        (status = 404, description = "No such execution", body = ApiError),
    ),
)]
pub(super) async fn wait_execution(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let timeout = q
        .timeout_ms
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(MAX_WAIT);
    Ok(Json(s.engine.wait(&id, timeout).await?).into_response())
}

/// Cancel an execution that has not ended
#[utoipa::path(
    post,
    path = "/v1/executions/{id}/cancel",
    operation_id = "cancelExecution",
    tag = "executions",
    params(("id" = String, Path, description = "execution id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    // A reference (not `Option<CancelExecution>`): the body is optional, but `null` is not one.
    request_body(
        content = ref("#/components/schemas/CancelExecution"),
        description = "optional: no body cancels without a reason",
    ),
    responses(
        (status = 200, description = "Execution", body = Execution),
        (status = 400, description = "Invalid execution id or body", body = ApiError),
        (status = 404, description = "No such execution", body = ApiError),
        (status = 409, description = "The execution has ended", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
    ),
)]
pub(super) async fn cancel_execution(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let reason = optional_json::<CancelExecution>(&body)?.and_then(|b| b.reason);
    Ok(Json(s.engine.cancel(&id, reason).await?).into_response())
}

/// The executor node's signed result (verify it with the protocol crate or `mesg executions verify`)
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/result",
    operation_id = "executionResult",
    tag = "executions",
    params(("id" = String, Path, description = "execution id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "Signed ExecutionResult", body = SignedEnvelope),
        (status = 400, description = "Invalid execution id", body = ApiError),
        (status = 404, description = "No such execution, or it has not ended", body = ApiError),
    ),
)]
pub(super) async fn execution_result(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.result_proof(&parse_id(&id)?)?).into_response())
}

/// The usage receipt of a priced execution, as its executor signed it: the one this node issued (executor) or received (requester). Verify it with the protocol crate or `mesg executions verify`
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/receipt",
    operation_id = "executionReceipt",
    tag = "executions",
    params(("id" = String, Path, description = "execution id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "Signed UsageReceipt", body = SignedEnvelope),
        (status = 400, description = "Invalid execution id", body = ApiError),
        (status = 404, description = "No receipt: a free task, a call made on its executor's node, or not ended", body = ApiError),
    ),
)]
pub(super) async fn execution_receipt(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.receipt_proof(&parse_id(&id)?)?).into_response())
}

/// The verification record of a verified execution requested on this node: every executor asked, with its signed commit, reveal or failed result and its verdict, and the decision. Anyone can re-check it from the signatures alone (`mesg executions verify`)
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/attempts",
    operation_id = "executionAttempts",
    tag = "executions",
    params(("id" = String, Path, description = "execution id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "The verification record", body = mesg_protocol::verification::VerificationRecord),
        (status = 400, description = "Invalid execution id", body = ApiError),
        (status = 404, description = "Not a verified execution requested on this node", body = ApiError),
    ),
)]
pub(super) async fn execution_attempts(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.verification_record(&parse_id(&id)?)?).into_response())
}

/// The node checks the signed result it keeps for the execution, now: signature, signer, and that it answers this execution
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/verification",
    operation_id = "verifyExecutionResult",
    tag = "executions",
    params(("id" = String, Path, description = "execution id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "The verdict (`valid`, and the problems when not)", body = ResultVerification),
        (status = 400, description = "Invalid execution id", body = ApiError),
        (status = 404, description = "No such execution, or it has not ended", body = ApiError),
    ),
)]
pub(super) async fn verify_result(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let signed = s.engine.result_proof(&id)?;
    let record = s.engine.execution(&id)?;
    Ok(Json(verification(&signed, &record, mesg_protocol::now_ms())).into_response())
}

/// Check a signed result against its execution. A result is evidence kept after the
/// fact: when its validity window is over, the signature is checked as of its issue time.
fn verification(signed: &Signed<ExecutionResult>, e: &Execution, now: u64) -> ResultVerification {
    use mesg_protocol::evidence::{mismatches, verify_result};
    let h = &signed.header;
    let verdict = verify_result(signed, now);
    let (executor, outcome, problems) = match &verdict.result {
        Ok(r) => {
            let outcome = match r.outcome {
                Outcome::Completed { .. } => ExecutionStatus::Completed,
                Outcome::Failed { .. } => ExecutionStatus::Failed,
            };
            let problems = mismatches(r, &e.id.to_string(), Some(e));
            (Some(r.executor), Some(outcome), problems)
        }
        Err(err) => (None, None, vec![format!("signature invalid: {err}")]),
    };
    ResultVerification {
        execution_id: e.id,
        valid: problems.is_empty(),
        signer: h.signer,
        executor,
        outcome,
        issued_at: h.issued_at,
        expires_at: h.expires_at,
        problems,
        note: verdict.note,
    }
}

fn to_filter(engine: &Engine, q: ExecutionQuery) -> ApiResult<ExecutionFilter> {
    let status = match q.status {
        Some(s) => Some(ExecutionStatus::parse(&s).ok_or_else(|| {
            ApiErr::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("unknown status `{s}`: use Created, InProgress, Completed or Failed"),
            )
        })?),
        None => None,
    };
    let service = match q.service {
        Some(id) => Some(resolve_service(engine, &id)?),
        None => None,
    };
    let parent = q.parent.as_deref().map(parse_id).transpose()?;
    let before = match q.before {
        Some(cursor) => {
            let bad = || {
                ApiErr::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "invalid `before` cursor",
                )
            };
            let (t, id) = cursor.split_once(':').ok_or_else(bad)?;
            Some((t.parse::<u64>().map_err(|_| bad())?, parse_id(id)?))
        }
        None => None,
    };
    Ok(ExecutionFilter {
        status,
        service,
        tag: q.tag,
        parent,
        task: q.task,
        before,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    })
}

/// Executions, newest first
#[utoipa::path(
    get,
    path = "/v1/executions",
    operation_id = "listExecutions",
    tag = "executions",
    params(ExecutionQuery),
    responses(
        (status = 200, description = "A page of executions", body = ExecutionPage),
        (status = 400, description = "Invalid query parameter", body = ApiError),
        (status = 404, description = "Unknown service", body = ApiError),
    ),
)]
pub(super) async fn list_executions(
    State(s): State<AppState>,
    Query(q): Query<ExecutionQuery>,
) -> ApiResult<Response> {
    let filter = to_filter(&s.engine, q)?;
    let executions = s.engine.list_executions(&filter)?;
    let next = (executions.len() == filter.limit)
        .then(|| {
            executions
                .last()
                .map(|e| format!("{}:{}", e.created_at, e.id))
        })
        .flatten();
    Ok(Json(ExecutionPage { executions, next }).into_response())
}

/// Server-sent events: every change of a matching execution
#[utoipa::path(
    get,
    path = "/v1/executions/stream",
    operation_id = "streamExecutions",
    tag = "executions",
    params(ExecutionQuery),
    responses(
        (
            status = 200,
            description = "`execution` events carrying Execution JSON; `lagged` when the client missed some",
            content_type = "text/event-stream",
            body = String,
        ),
        (status = 400, description = "Invalid query parameter", body = ApiError),
        (status = 404, description = "Unknown service", body = ApiError),
    ),
)]
pub(super) async fn stream_executions(
    State(s): State<AppState>,
    Query(q): Query<ExecutionQuery>,
) -> ApiResult<Response> {
    let f = to_filter(&s.engine, q)?;
    let rx = s.engine.subscribe_executions();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |item| {
        let keep = match &item {
            Ok(e) => {
                f.status.is_none_or(|st| e.status == st)
                    && f.service.is_none_or(|sv| e.service_hash == sv)
                    && f.tag.as_ref().is_none_or(|t| e.tags.contains(t))
                    && f.task.as_ref().is_none_or(|t| &e.task_key == t)
                    && f.parent.is_none_or(|p| e.parent == Some(p))
            }
            Err(_) => true,
        };
        let out = keep.then(|| {
            Ok::<_, Infallible>(match item {
                Ok(e) => sse_json("execution", &e),
                Err(lagged) => sse_lagged(lagged),
            })
        });
        futures::future::ready(out)
    });
    Ok(sse_response(stream))
}

#[cfg(test)]
mod tests {
    use super::verification;
    use mesg_protocol::envelope::Signed;
    use mesg_protocol::types::domains::EXECUTION_RESULT;
    use mesg_protocol::wire::MAX_WORK_MESSAGE;
    use mesg_protocol::{
        Execution, ExecutionId, ExecutionResult, ExecutionStatus, Hash32, Json, Keypair, Outcome,
        ServiceHash,
    };

    const NOW: u64 = 1_800_000_000_000;

    fn result(executor: &Keypair) -> ExecutionResult {
        ExecutionResult {
            execution_id: ExecutionId([7; 16]),
            request_digest: Hash32::sha256(b"request"),
            service_hash: ServiceHash(Hash32::sha256(b"service")),
            task_key: "echo".into(),
            executor: executor.public(),
            instance_hash: None,
            outcome: Outcome::Completed {
                outputs: Json(serde_json::json!({"message": "hi"})),
            },
            started_at: Some(NOW - 10),
            finished_at: NOW,
        }
    }

    fn record(r: &ExecutionResult, status: ExecutionStatus) -> Execution {
        let mut e: Execution = serde_json::from_value(serde_json::json!({
            "id": r.execution_id, "service_hash": r.service_hash, "task_key": r.task_key,
            "inputs": {}, "requester": r.executor, "requester_node": r.executor,
            "executor": r.executor, "instance_hash": null, "status": status, "outputs": null,
            "error": null, "parent": null, "process": null, "tags": [], "timeout_ms": 1000,
            "created_at": NOW - 20, "started_at": null, "finished_at": NOW,
            "idempotency_key": null, "cause": null,
        }))
        .unwrap();
        e.status = status;
        e
    }

    #[test]
    fn a_result_is_valid_when_signed_by_its_executor_and_matching_its_execution() {
        let k = Keypair::generate().unwrap();
        let r = result(&k);
        let s = Signed::sign(&k, EXECUTION_RESULT, &r, NOW, 60_000, MAX_WORK_MESSAGE).unwrap();
        let v = verification(&s, &record(&r, ExecutionStatus::Completed), NOW + 1);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.outcome, Some(ExecutionStatus::Completed));
        // A year later: checked as of its issue time, with a note.
        let later = verification(
            &s,
            &record(&r, ExecutionStatus::Completed),
            NOW + 365 * 86_400_000,
        );
        assert!(later.valid && later.note.is_some(), "{later:?}");
        // The execution says Failed: the signed outcome disagrees.
        let v = verification(&s, &record(&r, ExecutionStatus::Failed), NOW + 1);
        assert!(
            !v.valid && v.problems[0].contains("signed outcome"),
            "{v:?}"
        );
        // Signed by another key than the executor it names.
        let other = Keypair::generate().unwrap();
        let forged =
            Signed::sign(&other, EXECUTION_RESULT, &r, NOW, 60_000, MAX_WORK_MESSAGE).unwrap();
        let v = verification(&forged, &record(&r, ExecutionStatus::Completed), NOW + 1);
        assert!(!v.valid && v.executor.is_none(), "{v:?}");
        assert!(v.problems[0].starts_with("signature invalid"), "{v:?}");
    }
}
