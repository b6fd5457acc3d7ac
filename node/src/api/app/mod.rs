//! The Application API (HTTP/JSON): services, instances, executions, events, network,
//! processes, node info. One file per resource; each handler validates its request, calls
//! the engine and answers one of the bodies declared in `mesg-api-types`.
//!
//! The OpenAPI document is generated from those bodies and from the handlers'
//! `#[utoipa::path]` annotations ([`openapi`]); it is served at `/v1/openapi.json` and
//! checked in as docs/openapi.json. [`ROUTES`] lists what [`router`] serves, and a test
//! keeps the two in step.

mod catalogue;
mod events;
mod executions;
mod instances;
mod ledger;
mod network;
mod node;
pub mod openapi;
mod processes;
mod services;
mod streams;

use super::guard::AccessPolicy;
use super::{ApiErr, ApiResult};
use crate::engine::Engine;
use crate::processes::ProcessRunner;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use mesg_api_types::DockerStatus;
use std::time::Duration;

pub use mesg_api_types::{NodeInfo, PUBLISHER_CLAIM_HEADER};

/// Every route of this API as (method, path): the OpenAPI document must list exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/node"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/services"),
    ("post", "/v1/services"),
    ("get", "/v1/services/{id}"),
    ("delete", "/v1/services/{id}"),
    ("get", "/v1/instances"),
    ("post", "/v1/instances"),
    ("get", "/v1/instances/{id}"),
    ("delete", "/v1/instances/{id}"),
    ("post", "/v1/instances/{id}/stop"),
    ("get", "/v1/instances/{id}/logs"),
    ("get", "/v1/executions"),
    ("post", "/v1/executions"),
    ("post", "/v1/executions/signed"),
    ("get", "/v1/executions/stream"),
    ("get", "/v1/executions/{id}"),
    ("get", "/v1/executions/{id}/why"),
    ("get", "/v1/executions/{id}/wait"),
    ("post", "/v1/executions/{id}/cancel"),
    ("get", "/v1/executions/{id}/result"),
    ("get", "/v1/executions/{id}/verification"),
    ("get", "/v1/executions/{id}/receipt"),
    ("get", "/v1/executions/{id}/attempts"),
    ("get", "/v1/events"),
    ("get", "/v1/events/stream"),
    ("get", "/v1/peers"),
    ("put", "/v1/peers/{key}/ban"),
    ("delete", "/v1/peers/{key}/ban"),
    ("get", "/v1/network/services"),
    ("get", "/v1/catalogue"),
    ("get", "/metrics"),
    ("get", "/v1/processes"),
    ("post", "/v1/processes"),
    ("post", "/v1/processes/validate"),
    ("get", "/v1/processes/{id}"),
    ("delete", "/v1/processes/{id}"),
    ("get", "/v1/processes/{id}/runs"),
    ("get", "/v1/processes/{id}/logs"),
    ("get", "/v1/runs/{id}"),
    ("get", "/v1/ledger"),
    ("get", "/v1/ledger/log"),
    ("put", "/v1/ledger/limits/{peer}"),
    ("post", "/v1/ledger/settle"),
];

#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Engine,
    /// The processes this node runs (above the engine).
    pub processes: ProcessRunner,
    /// The node's facts for `GET /v1/node` (its `docker` part is checked per call).
    pub info: NodeInfo,
    /// Who may call: the bearer token (always required), allowed Host names.
    pub access: std::sync::Arc<AccessPolicy>,
    /// Prometheus metrics of the node (libp2p bandwidth and protocols, engine counters).
    pub metrics: std::sync::Arc<prometheus_client::registry::Registry>,
    /// The last Docker check of `GET /v1/node`.
    pub docker_status: std::sync::Arc<DockerStatusCache>,
}

/// How long `GET /v1/node` reuses its last Docker check: a client polling the node (or
/// an attacker) would otherwise make the node ping Docker on every call.
pub const DOCKER_STATUS_TTL: Duration = Duration::from_secs(5);

/// The Docker part of `GET /v1/node`, checked at most once per [`DOCKER_STATUS_TTL`];
/// callers arriving during a check wait for its answer rather than start another.
#[derive(Debug, Default)]
pub struct DockerStatusCache(tokio::sync::Mutex<Option<(std::time::Instant, DockerStatus)>>);

impl DockerStatusCache {
    /// The cached value when younger than `ttl`, else the value of `check` (then cached).
    pub async fn get<F>(&self, ttl: Duration, check: impl FnOnce() -> F) -> DockerStatus
    where
        F: std::future::Future<Output = DockerStatus>,
    {
        let mut cached = self.0.lock().await;
        if let Some((at, v)) = &*cached
            && at.elapsed() < ttl
        {
            return v.clone();
        }
        let v = check().await;
        *cached = Some((std::time::Instant::now(), v.clone()));
        v
    }
}

pub fn router(state: AppState) -> Router {
    let deploy_limit = usize::try_from(mesg_package::DEFAULT_MAX_PACKAGE_BYTES + 1024 * 1024)
        .unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/node", get(node::node_info))
        .route("/v1/openapi.json", get(openapi::serve))
        .route(
            "/v1/services",
            get(services::list_services)
                .post(services::deploy)
                .layer(DefaultBodyLimit::max(deploy_limit)),
        )
        .route(
            "/v1/services/{id}",
            get(services::get_service).delete(services::delete_service),
        )
        .route(
            "/v1/instances",
            get(instances::list_instances).post(instances::start_instance),
        )
        .route(
            "/v1/instances/{id}",
            get(instances::get_instance).delete(instances::delete_instance),
        )
        .route("/v1/instances/{id}/stop", post(instances::stop_instance))
        .route("/v1/instances/{id}/logs", get(instances::logs))
        .route(
            "/v1/executions",
            get(executions::list_executions).post(executions::create_execution),
        )
        .route(
            "/v1/executions/signed",
            post(executions::create_signed_execution),
        )
        .route("/v1/executions/stream", get(executions::stream_executions))
        .route("/v1/executions/{id}", get(executions::get_execution))
        .route("/v1/executions/{id}/why", get(executions::why_execution))
        .route("/v1/executions/{id}/wait", get(executions::wait_execution))
        .route(
            "/v1/executions/{id}/cancel",
            post(executions::cancel_execution),
        )
        .route(
            "/v1/executions/{id}/result",
            get(executions::execution_result),
        )
        .route(
            "/v1/executions/{id}/verification",
            get(executions::verify_result),
        )
        .route(
            "/v1/executions/{id}/receipt",
            get(executions::execution_receipt),
        )
        .route(
            "/v1/executions/{id}/attempts",
            get(executions::execution_attempts),
        )
        .route("/v1/events", get(events::recent_events))
        .route("/v1/events/stream", get(events::stream_events))
        .route("/v1/peers", get(network::peers))
        .route(
            "/v1/peers/{key}/ban",
            put(network::ban_peer).delete(network::unban_peer),
        )
        .route("/metrics", get(node::metrics))
        .route(
            "/v1/processes",
            get(processes::list_processes).post(processes::create_process),
        )
        .route("/v1/processes/validate", post(processes::validate_process))
        .route(
            "/v1/processes/{id}",
            get(processes::get_process).delete(processes::delete_process),
        )
        .route("/v1/processes/{id}/runs", get(processes::process_runs))
        .route("/v1/processes/{id}/logs", get(processes::process_logs))
        .route("/v1/runs/{id}", get(processes::get_run))
        .route("/v1/network/services", get(network::network_services))
        .route("/v1/catalogue", get(catalogue::catalogue))
        .route("/v1/ledger", get(ledger::accounts))
        .route("/v1/ledger/log", get(ledger::log))
        .route("/v1/ledger/limits/{peer}", put(ledger::set_limit))
        .route("/v1/ledger/settle", post(ledger::settle))
        // The dashboard (HTML, not part of the OpenAPI document or of ROUTES).
        .merge(super::ui::routes())
        .fallback(super::not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY as usize))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_access,
        ))
        .with_state(state)
}

/// Bodies the Application API reads at once beyond [`LARGE_BODY`] bytes (or of a length
/// not declared up front), all clients together: with bodies of up to 16 MiB (a 10 MiB
/// payload), 768 connections could otherwise hold 12 GiB.
pub const LARGE_BODIES_AT_ONCE: usize = 4;
/// The largest body (a work message and 64 KiB for the rest of the request).
pub const MAX_BODY: u64 = (mesg_protocol::wire::MAX_WORK_MESSAGE + 64 * 1024) as u64;
/// A body above this is large (the former limit of every body).
pub const LARGE_BODY: u64 = (mesg_protocol::wire::LARGE_WORK_MESSAGE + 64 * 1024) as u64;
static LARGE_BODIES: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(LARGE_BODIES_AT_ONCE);

async fn require_access(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(refused) = state.access.check(&req) {
        return refused.into_response();
    }
    // A deploy (a package's tar) has its own limit and is not a work message.
    if req.uri().path() == "/v1/services" {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let chunked = req
        .headers()
        .contains_key(axum::http::header::TRANSFER_ENCODING);
    // A declared length over the limit is refused before any of the body is read.
    if let Some(n) = declared.filter(|n| *n > MAX_BODY) {
        return ApiErr::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a body of {n} bytes: a body may hold at most {MAX_BODY} bytes (a work message's {} plus 64 KiB)", mesg_protocol::wire::MAX_WORK_MESSAGE),
        )
        .into_response();
    }
    if declared.is_some_and(|n| n > LARGE_BODY) || (declared.is_none() && chunked) {
        // Held until the answer is made (a waiting create holds it until the end).
        let Ok(_permit) = LARGE_BODIES.try_acquire() else {
            return ApiErr::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "this node already reads {LARGE_BODIES_AT_ONCE} bodies over {LARGE_BODY} bytes (or without a declared length); retry in a moment"
                ),
            )
            .into_response();
        };
        return next.run(req).await;
    }
    next.run(req).await
}

/// An optional JSON body: empty means none.
fn optional_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<Option<T>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        ApiErr::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid JSON body: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{DockerStatus, DockerStatusCache};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn the_docker_check_is_reused_within_its_ttl() {
        let cache = DockerStatusCache::default();
        let checks = AtomicUsize::new(0);
        let check = || async {
            checks.fetch_add(1, Ordering::SeqCst);
            DockerStatus::available("27.0".into(), "1.46".into())
        };
        for _ in 0..100 {
            assert!(cache.get(Duration::from_secs(60), check).await.available);
        }
        assert_eq!(checks.load(Ordering::SeqCst), 1);
        cache.get(Duration::ZERO, check).await;
        assert_eq!(checks.load(Ordering::SeqCst), 2);
    }
}
