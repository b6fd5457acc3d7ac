//! Events: the recent ones, and the stream of new ones (which subscribes this node to the
//! service's event topic while a client listens).

use super::AppState;
use super::executions::resolve_service;
use super::streams::{sse_json, sse_lagged, sse_response};
use crate::api::{ApiResult, Json, Query};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mesg_api_types::{ApiError, EventList, EventQuery};
use std::convert::Infallible;

/// Events `GET /v1/events` answers when the query names no limit.
const DEFAULT_LIMIT: usize = 100;

/// Recent events, newest first
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "recentEvents",
    tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "Events", body = EventList),
        (status = 400, description = "Invalid query parameter", body = ApiError),
        (status = 404, description = "Unknown service", body = ApiError),
    ),
)]
pub(super) async fn recent_events(
    State(s): State<AppState>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Response> {
    let service = q
        .service
        .as_deref()
        .map(|id| resolve_service(&s.engine, id))
        .transpose()?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, crate::engine::RECENT_EVENTS);
    let events = s
        .engine
        .recent_events(limit)?
        .into_iter()
        .filter(|e| service.is_none_or(|sv| e.service_hash == sv))
        .filter(|e| q.event.as_ref().is_none_or(|k| &e.key == k))
        .collect();
    Ok(Json(EventList { events }).into_response())
}

/// Server-sent events: events as they are emitted
#[utoipa::path(
    get,
    path = "/v1/events/stream",
    operation_id = "streamEvents",
    tag = "events",
    params(EventQuery),
    responses(
        (
            status = 200,
            description = "`event` events carrying Event JSON; `lagged` when the client missed some",
            content_type = "text/event-stream",
            body = String,
        ),
        (status = 400, description = "Invalid query parameter", body = ApiError),
        (status = 404, description = "Unknown service", body = ApiError),
    ),
)]
pub(super) async fn stream_events(
    State(s): State<AppState>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Response> {
    let service = match q.service.as_deref() {
        Some(id) => Some(s.engine.resolve_service(id).await?.record.service_hash),
        None => None,
    };
    let key = q.event;
    let rx = s.engine.subscribe_events();
    // Subscribed to the service's event topic while the client listens.
    let interest = s.engine.watch_events(service).await;
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |item| {
        let _interest = &interest;
        let out = match item {
            Ok(e) => (service.is_none_or(|sv| e.service_hash == sv)
                && key.as_ref().is_none_or(|k| &e.key == k))
            .then(|| Ok::<_, Infallible>(sse_json("event", &e))),
            Err(lagged) => Some(Ok(sse_lagged(lagged))),
        };
        futures::future::ready(out)
    });
    Ok(sse_response(stream))
}
