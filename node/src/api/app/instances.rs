//! Instances: start, list, show, stop, remove, and their containers' output.

use super::streams::{ndjson, ndjson_response, progress_response};
use super::{AppState, optional_json};
use crate::api::{ApiErr, ApiResult, Json, Path, Query};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mesg_api_types::{
    ApiError, DeleteInstanceQuery, InstanceList, InstanceView, LogsQuery, StartInstance,
    StartInstanceQuery, StartLine, StopInstance, StreamError,
};
use std::convert::Infallible;
use std::time::Duration;

/// Default time between SIGTERM and SIGKILL when stopping an instance.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Longest time between SIGTERM and SIGKILL a caller may ask for.
const MAX_GRACE: Duration = Duration::from_secs(300);

/// Start an instance of a service
#[utoipa::path(
    post,
    path = "/v1/instances",
    operation_id = "startInstance",
    tag = "instances",
    params(StartInstanceQuery),
    request_body = StartInstance,
    responses(
        (status = 201, description = "The instance", body = InstanceView),
        (
            status = 200,
            description = "With ?progress=true: newline-delimited JSON, one StartLine per line: {\"type\":\"progress\",\"message\"} lines, then {\"type\":\"done\",\"instance\":InstanceView} or {\"type\":\"error\",\"error\":ApiError}",
            content_type = "application/x-ndjson",
            body = String,
        ),
        (status = 400, description = "Invalid body, env or limits", body = ApiError),
        (status = 404, description = "No such service", body = ApiError),
        (status = 413, description = "Body larger than the node accepts (16 MiB + 64 KiB): payload_too_large", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
        (status = 503, description = "Docker is unavailable", body = ApiError),
    ),
)]
pub(super) async fn start_instance(
    State(s): State<AppState>,
    Query(query): Query<StartInstanceQuery>,
    Json(body): Json<StartInstance>,
) -> ApiResult<Response> {
    // Run to completion even if the client goes away: a half-started instance would
    // be left behind otherwise.
    let engine = s.engine.clone();
    if !query.progress {
        let view = tokio::spawn(async move {
            engine
                .start_instance(&body.service, body.env, body.limits)
                .await
        })
        .await
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
        return Ok((StatusCode::CREATED, Json(view)).into_response());
    }
    // What answers at once (limits, an unknown service) is a plain error, not a stream.
    let prepared = s.engine.prepare_start(&body.service, body.limits).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    let work =
        tokio::spawn(async move { engine.start_prepared(prepared, body.env, Some(&tx)).await });
    Ok(progress_response(
        rx,
        work,
        |message| StartLine::Progress { message },
        |instance| StartLine::Done { instance },
        |error| StartLine::Error { error },
    ))
}

/// Instances on this node with their status
#[utoipa::path(
    get,
    path = "/v1/instances",
    operation_id = "listInstances",
    tag = "instances",
    responses((status = 200, description = "Instances", body = InstanceList)),
)]
pub(super) async fn list_instances(State(s): State<AppState>) -> ApiResult<Response> {
    let instances = s.engine.instances().await?;
    Ok(Json(InstanceList { instances }).into_response())
}

/// One instance
#[utoipa::path(
    get,
    path = "/v1/instances/{id}",
    operation_id = "getInstance",
    tag = "instances",
    params(("id" = String, Path, description = INSTANCE_ID)),
    responses(
        (status = 200, description = "Instance", body = InstanceView),
        (status = 404, description = "No such instance", body = ApiError),
    ),
)]
pub(super) async fn get_instance(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.instance(&id).await?).into_response())
}

/// How the `{id}` of an instance route is read.
const INSTANCE_ID: &str = "instance hash, or a service hash or sid with one instance";

/// Stop an instance (containers are kept)
#[utoipa::path(
    post,
    path = "/v1/instances/{id}/stop",
    operation_id = "stopInstance",
    tag = "instances",
    params(("id" = String, Path, description = INSTANCE_ID)),
    // A reference (not `Option<StopInstance>`): the body is optional, but `null` is not one.
    request_body(
        content = ref("#/components/schemas/StopInstance"),
        description = "optional: no body keeps the default grace",
    ),
    responses(
        (status = 200, description = "Instance", body = InstanceView),
        (status = 400, description = "Invalid JSON body", body = ApiError),
        (status = 404, description = "No such instance", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
    ),
)]
pub(super) async fn stop_instance(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: Option<StopInstance> = optional_json(&body)?;
    let grace = body
        .and_then(|b| b.grace_ms)
        .map_or(DEFAULT_GRACE, Duration::from_millis)
        .min(MAX_GRACE);
    Ok(Json(s.engine.stop_instance(&id, grace).await?).into_response())
}

/// Remove an instance's containers and network (and data unless keep_data)
#[utoipa::path(
    delete,
    path = "/v1/instances/{id}",
    operation_id = "deleteInstance",
    tag = "instances",
    params(("id" = String, Path, description = INSTANCE_ID), DeleteInstanceQuery),
    responses(
        (status = 200, description = "Instance", body = InstanceView),
        (status = 400, description = "Invalid query parameter", body = ApiError),
        (status = 404, description = "No such instance", body = ApiError),
    ),
)]
pub(super) async fn delete_instance(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DeleteInstanceQuery>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.delete_instance(&id, q.keep_data).await?).into_response())
}

/// Container output
#[utoipa::path(
    get,
    path = "/v1/instances/{id}/logs",
    operation_id = "instanceLogs",
    tag = "instances",
    params(("id" = String, Path, description = INSTANCE_ID), LogsQuery),
    responses(
        (
            status = 200,
            description = "Newline-delimited LogLine objects; a StreamError line if the output cannot be read any more",
            content_type = "application/x-ndjson",
            body = String,
        ),
        (status = 400, description = "Invalid query parameter", body = ApiError),
        (status = 404, description = "No such instance", body = ApiError),
    ),
)]
pub(super) async fn logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let lines = s.engine.logs(&id, q.follow, q.tail)?;
    let stream = lines.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(line) => ndjson(&line),
            Err(e) => ndjson(&StreamError {
                error: e.to_string(),
            }),
        })
    });
    Ok(ndjson_response(stream))
}
