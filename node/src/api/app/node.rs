//! The node itself: `GET /v1/node` (identity, addresses, Docker) and `GET /metrics`.

use super::{AppState, DOCKER_STATUS_TTL};
use crate::api::{ApiErr, Json};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mesg_api_types::{DockerStatus, NodeInfo};

/// Node identity, addresses and Docker status
#[utoipa::path(
    get,
    path = "/v1/node",
    operation_id = "nodeInfo",
    tag = "node",
    responses((status = 200, description = "Node info", body = NodeInfo)),
)]
pub(super) async fn node_info(State(state): State<AppState>) -> Json<NodeInfo> {
    let runtime = state.engine.runtime().clone();
    let docker = state
        .docker_status
        .get(DOCKER_STATUS_TTL, || async move {
            match runtime.check().await {
                Ok(info) => DockerStatus::available(info.server_version, info.api_version),
                Err(e) => DockerStatus::unavailable(e.to_string()),
            }
        })
        .await;
    let mut info = state.info.clone();
    info.docker = Some(docker);
    info.memory_rss_bytes = resident_memory();
    info.uptime_ms = info
        .started_at
        .map(|t| mesg_protocol::now_ms().saturating_sub(t));
    Json(info)
}

/// The node's resident memory (bytes), from `/proc/self/status` (Linux; None elsewhere).
fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Prometheus metrics: libp2p bandwidth and protocol counters, execution and event counters
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "node",
    responses((
        status = 200,
        description = "OpenMetrics text",
        content_type = "application/openmetrics-text",
        body = String,
    )),
)]
pub(super) async fn metrics(State(s): State<AppState>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &s.metrics) {
        return ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics", e.to_string())
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
