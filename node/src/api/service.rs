//! The service API: what a node's containers call (docs/service-api.md).
//!
//! `GET /v1/service/tasks` streams newline-delimited JSON: a `ready` line, then one line
//! per task, and `keepalive` lines when idle. `POST /v1/service/results` and
//! `POST /v1/service/events` take JSON bodies. Every call carries
//! `Authorization: Bearer $MESG_TOKEN`, checked by a middleware before any handler runs:
//! a caller without a valid token is answered 401 before its body is read.

use super::{ApiErr, ApiResult, Json, bearer};
use crate::engine::instances::LiveInstance;
use crate::engine::{Engine, EngineError};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mesg_protocol::service_api::{
    EVENTS_PATH, EmitEventRequest, RESULTS_PATH, TASKS_PATH, TaskResultRequest,
};
use serde_json::json;
use std::sync::Arc;

/// Largest result or event body a container may post.
pub const MAX_BODY: usize = mesg_protocol::wire::MAX_WORK_MESSAGE;

pub fn router(engine: Engine) -> Router {
    Router::new()
        .route(TASKS_PATH, get(tasks))
        .route(RESULTS_PATH, post(result))
        .route(EVENTS_PATH, post(event))
        .fallback(super::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(engine.clone(), authenticate))
        .with_state(engine)
}

/// The instance whose token the request carries, found before the body is read; the
/// handlers take it from the request's extensions.
async fn authenticate(State(engine): State<Engine>, mut req: Request, next: Next) -> Response {
    match instance(&engine, req.headers()) {
        Ok(live) => {
            req.extensions_mut().insert(live);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

fn instance(engine: &Engine, headers: &HeaderMap) -> ApiResult<Arc<LiveInstance>> {
    let token = bearer(headers).ok_or_else(|| {
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer $MESG_TOKEN`",
        )
    })?;
    Ok(engine.authenticate(token)?)
}

async fn tasks(Extension(live): Extension<Arc<LiveInstance>>) -> ApiResult<Response> {
    tracing::info!(instance = %live.hash, "task stream connected");
    let body = Body::from_stream(live.task_stream());
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

async fn result(
    State(engine): State<Engine>,
    Extension(live): Extension<Arc<LiveInstance>>,
    Json(body): Json<TaskResultRequest>,
) -> ApiResult<Response> {
    match engine.submit_result(&live, body).await {
        Ok(e) => Ok(Json(json!({"execution_id": e.id, "status": e.status})).into_response()),
        // The execution failed with the validation error; tell the service why.
        Err(EngineError::InvalidInputs(errors)) => Err(ApiErr {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: mesg_protocol::service_api::ApiError {
                code: "invalid_outputs".into(),
                message: format!(
                    "outputs do not match the task's definition; the execution failed: {errors}"
                ),
                details: errors.0.iter().map(|e| e.to_string()).collect(),
            },
        }),
        Err(e) => Err(e.into()),
    }
}

async fn event(
    State(engine): State<Engine>,
    Extension(live): Extension<Arc<LiveInstance>>,
    Json(body): Json<EmitEventRequest>,
) -> ApiResult<Response> {
    let e = engine.emit_event(&live, body).await?;
    Ok(Json(json!({"event_id": e.id})).into_response())
}
