//! Processes: create, check, list, show, delete, and their runs (listed, shown, streamed).

use super::AppState;
use super::streams::{sse_json, sse_lagged, sse_response};
use crate::api::{ApiResult, Json, Path, Query, bounded_details};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mesg_api_types::{
    ApiError, ProcessBody, ProcessCheck, ProcessList, ProcessView, Run, RunList, RunsQuery,
};
use std::convert::Infallible;

/// Runs `GET /v1/processes/{id}/runs` answers when the query names no limit.
const DEFAULT_RUNS: usize = 20;
/// Most runs one call of `GET /v1/processes/{id}/runs` answers.
const MAX_RUNS: usize = 1000;

/// Create a process from its YAML definition (idempotent: the same definition gives the same process)
#[utoipa::path(
    post,
    path = "/v1/processes",
    operation_id = "createProcess",
    tag = "processes",
    request_body = ProcessBody,
    responses(
        (status = 200, description = "The same definition existed: that process", body = ProcessView),
        (status = 201, description = "The process", body = ProcessView),
        (status = 400, description = "Invalid process file", body = ApiError),
        (status = 413, description = "Body larger than the node accepts (16 MiB + 64 KiB): payload_too_large", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
    ),
)]
pub(super) async fn create_process(
    State(s): State<AppState>,
    Json(body): Json<ProcessBody>,
) -> ApiResult<Response> {
    let (p, created) = s
        .processes
        .create_process(&body.definition, &body.env)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(p)).into_response())
}

/// Validate a process definition without creating it
#[utoipa::path(
    post,
    path = "/v1/processes/validate",
    operation_id = "validateProcess",
    tag = "processes",
    request_body = ProcessBody,
    responses(
        (status = 200, description = "Whether the definition is valid, with its errors", body = ProcessCheck),
        (status = 400, description = "Invalid body", body = ApiError),
        (status = 413, description = "Body larger than the node accepts (16 MiB + 64 KiB): payload_too_large", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
    ),
)]
pub(super) async fn validate_process(
    State(s): State<AppState>,
    Json(body): Json<ProcessBody>,
) -> ApiResult<Response> {
    let check = match s.processes.check_process(&body.definition, &body.env).await {
        Ok((definition, services)) => ProcessCheck {
            definition: Some(definition),
            errors: None,
            services: Some(services),
            valid: true,
        },
        Err(errors) => ProcessCheck {
            definition: None,
            errors: Some(bounded_details(
                errors.0.iter().map(|e| e.to_string()).collect(),
            )),
            services: None,
            valid: false,
        },
    };
    Ok(Json(check).into_response())
}

/// Processes this node runs
#[utoipa::path(
    get,
    path = "/v1/processes",
    operation_id = "listProcesses",
    tag = "processes",
    responses((status = 200, description = "Processes", body = ProcessList)),
)]
pub(super) async fn list_processes(State(s): State<AppState>) -> ApiResult<Response> {
    let processes = s.processes.list_processes();
    Ok(Json(ProcessList { processes }).into_response())
}

/// One process
#[utoipa::path(
    get,
    path = "/v1/processes/{id}",
    operation_id = "getProcess",
    tag = "processes",
    params(("id" = String, Path, description = "process id or name")),
    responses(
        (status = 200, description = "Process", body = ProcessView),
        (status = 404, description = "No such process", body = ApiError),
    ),
)]
pub(super) async fn get_process(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.processes.process(&id)?).into_response())
}

/// Delete a process: no more runs; running ones end Failed
#[utoipa::path(
    delete,
    path = "/v1/processes/{id}",
    operation_id = "deleteProcess",
    tag = "processes",
    params(("id" = String, Path, description = "process id or name")),
    responses(
        (status = 200, description = "Process", body = ProcessView),
        (status = 404, description = "No such process", body = ApiError),
    ),
)]
pub(super) async fn delete_process(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.processes.delete_process(&id).await?).into_response())
}

/// Runs of a process, newest first
#[utoipa::path(
    get,
    path = "/v1/processes/{id}/runs",
    operation_id = "processRuns",
    tag = "processes",
    params(("id" = String, Path, description = "process id or name"), RunsQuery),
    responses(
        (status = 200, description = "Runs", body = RunList),
        (status = 400, description = "Invalid query parameter", body = ApiError),
        (status = 404, description = "No such process", body = ApiError),
    ),
)]
pub(super) async fn process_runs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Response> {
    let runs = s
        .processes
        .process_runs(&id, q.limit.unwrap_or(DEFAULT_RUNS).clamp(1, MAX_RUNS))?;
    Ok(Json(RunList { runs }).into_response())
}

/// One run with its steps, executions and timing
#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    operation_id = "getRun",
    tag = "processes",
    params(("id" = String, Path, description = "run id")),
    responses(
        (status = 200, description = "Run", body = Run),
        (status = 404, description = "No such run", body = ApiError),
    ),
)]
pub(super) async fn get_run(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.processes.run(&id)?).into_response())
}

/// Server-sent events: `run` events with each change of a run
#[utoipa::path(
    get,
    path = "/v1/processes/{id}/logs",
    operation_id = "processLogs",
    tag = "processes",
    params(("id" = String, Path, description = "process id or name")),
    responses(
        (
            status = 200,
            description = "`run` events carrying Run JSON; `lagged` when the client missed some",
            content_type = "text/event-stream",
            body = String,
        ),
        (status = 404, description = "No such process", body = ApiError),
    ),
)]
pub(super) async fn process_logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let process = s.processes.process(&id)?.id;
    let rx = s.processes.subscribe_runs();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |item| {
        let out = match item {
            Ok(run) => (run.process == process).then(|| Ok::<_, Infallible>(sse_json("run", &run))),
            Err(lagged) => Some(Ok(sse_lagged(lagged))),
        };
        futures::future::ready(out)
    });
    Ok(sse_response(stream))
}
