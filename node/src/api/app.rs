//! The Application API (HTTP/JSON): services, instances, executions, events, node info.
//! Documented in docs/openapi.json, served at `/v1/openapi.json`; a test keeps the two in
//! step ([`ROUTES`]).

use super::guard::AccessPolicy;
use super::{ApiErr, ApiResult, Json, Path, Query};
use crate::engine::{CreateExecution, DeployProgress, Engine};
use crate::store::ExecutionFilter;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use mesg_protocol::envelope::Signed;
use mesg_protocol::{ExecutionId, ExecutionRequest, ExecutionStatus, ServiceHash, SignedClaim};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;

pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

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
    ("get", "/v1/executions/{id}/wait"),
    ("post", "/v1/executions/{id}/cancel"),
    ("get", "/v1/executions/{id}/result"),
    ("get", "/v1/events"),
    ("get", "/v1/events/stream"),
    ("get", "/v1/peers"),
    ("get", "/v1/network/services"),
    ("get", "/metrics"),
    ("get", "/v1/processes"),
    ("post", "/v1/processes"),
    ("post", "/v1/processes/validate"),
    ("get", "/v1/processes/{id}"),
    ("delete", "/v1/processes/{id}"),
    ("get", "/v1/processes/{id}/runs"),
    ("get", "/v1/processes/{id}/logs"),
    ("get", "/v1/runs/{id}"),
];

/// Static facts about the node, for `GET /v1/node`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub public_key: String,
    pub peer_id: String,
    pub version: String,
    pub data_dir: String,
    pub api: String,
    pub service_api: String,
    #[serde(default)]
    pub listen_addrs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Engine,
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
pub struct DockerStatusCache(tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>);

impl DockerStatusCache {
    /// The cached value when younger than `ttl`, else the value of `check` (then cached).
    pub async fn get<F>(&self, ttl: Duration, check: impl FnOnce() -> F) -> serde_json::Value
    where
        F: std::future::Future<Output = serde_json::Value>,
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
        .route("/v1/node", get(node_info))
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/services",
            get(list_services)
                .post(deploy)
                .layer(DefaultBodyLimit::max(deploy_limit)),
        )
        .route("/v1/services/{id}", get(get_service).delete(delete_service))
        .route("/v1/instances", get(list_instances).post(start_instance))
        .route(
            "/v1/instances/{id}",
            get(get_instance).delete(delete_instance),
        )
        .route("/v1/instances/{id}/stop", post(stop_instance))
        .route("/v1/instances/{id}/logs", get(logs))
        .route(
            "/v1/executions",
            get(list_executions).post(create_execution),
        )
        .route("/v1/executions/signed", post(create_signed_execution))
        .route("/v1/executions/stream", get(stream_executions))
        .route("/v1/executions/{id}", get(get_execution))
        .route("/v1/executions/{id}/wait", get(wait_execution))
        .route("/v1/executions/{id}/cancel", post(cancel_execution))
        .route("/v1/executions/{id}/result", get(execution_result))
        .route("/v1/events", get(recent_events))
        .route("/v1/events/stream", get(stream_events))
        .route("/v1/peers", get(peers))
        .route("/metrics", get(metrics))
        .route("/v1/processes", get(list_processes).post(create_process))
        .route("/v1/processes/validate", post(validate_process))
        .route(
            "/v1/processes/{id}",
            get(get_process).delete(delete_process),
        )
        .route("/v1/processes/{id}/runs", get(process_runs))
        .route("/v1/processes/{id}/logs", get(process_logs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/network/services", get(network_services))
        .fallback(super::not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .layer(DefaultBodyLimit::max(
            mesg_protocol::wire::MAX_WORK_MESSAGE + 64 * 1024,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_access,
        ))
        .with_state(state)
}

async fn require_access(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.access.check(&req) {
        Ok(()) => next.run(req).await,
        Err(refused) => refused.into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn node_info(State(state): State<AppState>) -> Json<serde_json::Value> {
    let runtime = state.engine.runtime().clone();
    let docker = state
        .docker_status
        .get(DOCKER_STATUS_TTL, || async move {
            match runtime.check().await {
                Ok(info) => {
                    json!({"available": true, "version": info.server_version, "api_version": info.api_version})
                }
                Err(e) => json!({"available": false, "error": e.to_string()}),
            }
        })
        .await;
    let mut v = serde_json::to_value(&state.info).unwrap_or_default();
    v["docker"] = docker;
    Json(v)
}

// ---------------------------------------------------------------- services

async fn list_services(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(json!({"services": s.engine.services()?})).into_response())
}

async fn get_service(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let entry = s.engine.service(&id)?;
    Ok(Json(s.engine.service_view(&entry)).into_response())
}

async fn delete_service(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.engine.delete_service(&id).await?).into_response())
}

/// Deploy: the body is the package as a tar. The package and its definition are checked
/// before anything streams (errors are plain 400s); then build progress streams as
/// newline-delimited JSON, ending with a `done` or an `error` line.
/// The header that carries a deploy's publisher claim ([`SignedClaim::to_hex`]).
pub const PUBLISHER_CLAIM_HEADER: &str = "x-mesg-publisher-claim";

async fn deploy(
    State(s): State<AppState>,
    Query(query): Query<DeployQuery>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let claim = match headers.get(PUBLISHER_CLAIM_HEADER) {
        None => None,
        Some(v) => {
            let bad = |m: String| ApiErr::new(StatusCode::BAD_REQUEST, "bad_publisher_claim", m);
            let text = v
                .to_str()
                .map_err(|_| bad(format!("{PUBLISHER_CLAIM_HEADER} is not text")))?;
            Some(SignedClaim::from_hex(text).map_err(|e| bad(e.to_string()))?)
        }
    };
    if body.is_empty() {
        return Err(ApiErr::new(
            StatusCode::BAD_REQUEST,
            "invalid_package",
            "the body must be the service directory as a tar (mesg service deploy DIR does this)",
        ));
    }
    // Parsed once, from the request's own buffer; the buffer goes as soon as the package
    // holds the files (no copies of an upload of up to 257 MiB).
    let (package, definition) = s.engine.check_package(&body)?;
    drop(body);
    s.engine.check_runnable(&package, &definition).await?;
    // A claim that does not fit the package is refused before anything is built.
    if let Some(c) = &claim {
        let hash = definition.service_hash(&package.hash());
        let sid = definition.sid.as_deref().unwrap_or_default();
        c.verify_for(&hash, sid, mesg_protocol::now_ms())
            .map_err(crate::engine::EngineError::from)?;
    }
    let (tx, mut rx) = mpsc::channel::<DeployProgress>(256);
    let engine = s.engine.clone();
    let work = tokio::spawn(async move {
        engine
            .deploy(package, definition, query.private, claim, tx)
            .await
    });
    let stream = async_stream::stream! {
        while let Some(p) = rx.recv().await {
            yield Ok::<_, Infallible>(ndjson(&p));
        }
        let last = match work.await {
            Ok(Ok(service)) => json!({"type": "done", "service": service}),
            Ok(Err(e)) => {
                json!({"type": "error", "error": ApiErr::from(e).bounded_body()})
            }
            Err(e) => json!({"type": "error", "error": {"code": "internal", "message": e.to_string()}}),
        };
        yield Ok(ndjson(&last));
    };
    Ok(ndjson_response(stream))
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

fn ndjson<T: Serialize>(v: &T) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn ndjson_response<S>(stream: S) -> Response
where
    S: Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

// --------------------------------------------------------------- instances

#[derive(Debug, Deserialize)]
struct StartInstance {
    service: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Memory (bytes), CPUs (billionths) and pids for the containers; omitted fields
    /// keep the node's defaults (512 MiB, 1 CPU, 512 pids).
    #[serde(default)]
    limits: Option<crate::runtime::ResourceLimits>,
}

async fn start_instance(
    State(s): State<AppState>,
    Json(body): Json<StartInstance>,
) -> ApiResult<Response> {
    // Run to completion even if the client goes away: a half-started instance would
    // be left behind otherwise.
    let engine = s.engine.clone();
    let view = tokio::spawn(async move {
        engine
            .start_instance(&body.service, body.env, body.limits)
            .await
    })
    .await
    .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list_instances(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(json!({"instances": s.engine.instances().await?})).into_response())
}

async fn get_instance(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.engine.instance(&id).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct StopInstance {
    #[serde(default)]
    grace_ms: Option<u64>,
}

async fn stop_instance(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: Option<StopInstance> = optional_json(&body)?;
    let grace = Duration::from_millis(body.and_then(|b| b.grace_ms).unwrap_or(10_000).min(300_000));
    Ok(Json(s.engine.stop_instance(&id, grace).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct DeployQuery {
    /// Keep the package on this node: never served to peers.
    #[serde(default)]
    private: bool,
}

#[derive(Debug, Deserialize)]
struct DeleteInstance {
    #[serde(default)]
    keep_data: bool,
}

async fn delete_instance(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DeleteInstance>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.delete_instance(&id, q.keep_data).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    tail: Option<usize>,
}

async fn logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let lines = s.engine.logs(&id, q.follow, q.tail)?;
    let stream = lines.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(line) => ndjson(&line),
            Err(e) => ndjson(&json!({"error": e.to_string()})),
        })
    });
    Ok(ndjson_response(stream))
}

// -------------------------------------------------------------- executions

#[derive(Debug, Deserialize)]
struct CreateQuery {
    /// Answer only when the execution ends (or `timeout_ms` passes).
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    wait_ms: Option<u64>,
}

async fn create_execution(
    State(s): State<AppState>,
    Query(q): Query<CreateQuery>,
    Json(body): Json<CreateExecution>,
) -> ApiResult<Response> {
    let e = s.engine.create_execution(body).await?;
    respond_created(&s.engine, e, q).await
}

async fn create_signed_execution(
    State(s): State<AppState>,
    Query(q): Query<CreateQuery>,
    Json(signed): Json<Signed<ExecutionRequest>>,
) -> ApiResult<Response> {
    let e = s.engine.submit_signed(signed).await?;
    respond_created(&s.engine, e, q).await
}

async fn respond_created(
    engine: &Engine,
    e: mesg_protocol::Execution,
    q: CreateQuery,
) -> ApiResult<Response> {
    let e = if q.wait && !e.status.is_final() {
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(e.timeout_ms + 1000));
        engine.wait(&e.id, wait).await?
    } else {
        e
    };
    Ok((StatusCode::CREATED, Json(e)).into_response())
}

fn parse_id(id: &str) -> ApiResult<ExecutionId> {
    id.parse()
        .map_err(|m: String| ApiErr::new(StatusCode::BAD_REQUEST, "bad_request", m))
}

async fn get_execution(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.engine.execution(&parse_id(&id)?)?).into_response())
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    #[serde(default)]
    timeout_ms: Option<u64>,
}

async fn wait_execution(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(60_000).min(3_600_000));
    Ok(Json(s.engine.wait(&id, timeout).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn cancel_execution(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let reason = optional_json::<CancelBody>(&body)?.and_then(|b| b.reason);
    Ok(Json(s.engine.cancel(&id, reason).await?).into_response())
}

async fn execution_result(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.result_proof(&parse_id(&id)?)?).into_response())
}

/// Filters shared by the list and the stream of executions.
#[derive(Debug, Default, Deserialize)]
struct ExecutionQuery {
    status: Option<String>,
    service: Option<String>,
    tag: Option<String>,
    task: Option<String>,
    parent: Option<String>,
    limit: Option<usize>,
    /// Cursor from a previous page's `next`.
    before: Option<String>,
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

fn resolve_service(engine: &Engine, id: &str) -> ApiResult<ServiceHash> {
    match id.parse::<ServiceHash>() {
        Ok(h) => Ok(h),
        Err(_) => Ok(engine.service(id)?.record.service_hash),
    }
}

async fn list_executions(
    State(s): State<AppState>,
    Query(q): Query<ExecutionQuery>,
) -> ApiResult<Response> {
    let filter = to_filter(&s.engine, q)?;
    let list = s.engine.list_executions(&filter)?;
    let next = (list.len() == filter.limit)
        .then(|| list.last().map(|e| format!("{}:{}", e.created_at, e.id)))
        .flatten();
    Ok(Json(json!({"executions": list, "next": next})).into_response())
}

async fn stream_executions(
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
        let out = keep.then(|| match item {
            Ok(e) => Ok::<_, Infallible>(
                SseEvent::default()
                    .event("execution")
                    .json_data(&e)
                    .unwrap_or_default(),
            ),
            Err(lagged) => Ok(SseEvent::default().event("lagged").data(lagged.to_string())),
        });
        futures::future::ready(out)
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ------------------------------------------------------------------ events

#[derive(Debug, Deserialize)]
struct EventsQuery {
    service: Option<String>,
    event: Option<String>,
    limit: Option<usize>,
}

async fn recent_events(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Response> {
    let service = q
        .service
        .as_deref()
        .map(|id| resolve_service(&s.engine, id))
        .transpose()?;
    let events: Vec<_> = s
        .engine
        .recent_events(q.limit.unwrap_or(100).clamp(1, 10_000))?
        .into_iter()
        .filter(|e| service.is_none_or(|sv| e.service_hash == sv))
        .filter(|e| q.event.as_ref().is_none_or(|k| &e.key == k))
        .collect();
    Ok(Json(json!({"events": events})).into_response())
}

async fn stream_events(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
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
            .then(|| {
                Ok::<_, Infallible>(
                    SseEvent::default()
                        .event("event")
                        .json_data(&e)
                        .unwrap_or_default(),
                )
            }),
            Err(lagged) => Some(Ok(SseEvent::default()
                .event("lagged")
                .data(lagged.to_string()))),
        };
        futures::future::ready(out)
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ----------------------------------------------------------------- network

async fn peers(State(s): State<AppState>) -> ApiResult<Response> {
    let connections = match s.engine.network() {
        Some(net) => net
            .peers()
            .await
            .map_err(|e| crate::engine::EngineError::Network(e.to_string()))?,
        None => Vec::new(),
    };
    Ok(Json(json!({"peers": connections, "nodes": s.engine.network_nodes()})).into_response())
}

async fn network_services(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(json!({"services": s.engine.network_services()})).into_response())
}

/// Prometheus text format.
async fn metrics(State(s): State<AppState>) -> Response {
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

// --------------------------------------------------------------- processes

#[derive(Debug, Deserialize)]
struct ProcessBody {
    /// The process file (YAML).
    definition: String,
    /// Values for `$(env:NAME)` in the file.
    #[serde(default)]
    env: BTreeMap<String, String>,
}

async fn create_process(
    State(s): State<AppState>,
    Json(body): Json<ProcessBody>,
) -> ApiResult<Response> {
    let (p, created) = s.engine.create_process(&body.definition, &body.env).await?;
    // 201 when created; 200 when the same definition already existed.
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(p)).into_response())
}

async fn validate_process(
    State(s): State<AppState>,
    Json(body): Json<ProcessBody>,
) -> ApiResult<Response> {
    Ok(
        match s.engine.check_process(&body.definition, &body.env).await {
            Ok((definition, services)) => {
                Json(json!({"valid": true, "definition": definition, "services": services}))
                    .into_response()
            }
            Err(errors) => Json(json!({
                "valid": false,
                "errors": super::bounded_details(errors.0.iter().map(|e| e.to_string()).collect()),
            }))
            .into_response(),
        },
    )
}

async fn list_processes(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(json!({"processes": s.engine.list_processes()})).into_response())
}

async fn get_process(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.engine.process(&id)?).into_response())
}

async fn delete_process(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.engine.delete_process(&id).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    limit: Option<usize>,
}

async fn process_runs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Response> {
    let runs = s
        .engine
        .process_runs(&id, q.limit.unwrap_or(20).clamp(1, 1000))?;
    Ok(Json(json!({"runs": runs})).into_response())
}

async fn get_run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.engine.run(&id)?).into_response())
}

/// Server-sent `run` events: every change of a run of the process.
async fn process_logs(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let process = s.engine.process(&id)?.id;
    let rx = s.engine.subscribe_runs();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |item| {
        let out = match item {
            Ok(run) => (run.process == process).then(|| {
                Ok::<_, Infallible>(
                    SseEvent::default()
                        .event("run")
                        .json_data(&run)
                        .unwrap_or_default(),
                )
            }),
            Err(lagged) => Some(Ok(SseEvent::default()
                .event("lagged")
                .data(lagged.to_string()))),
        };
        futures::future::ready(out)
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn the_docker_check_is_reused_within_its_ttl() {
        let cache = DockerStatusCache::default();
        let checks = AtomicUsize::new(0);
        let check = || async {
            checks.fetch_add(1, Ordering::SeqCst);
            json!({"available": true})
        };
        for _ in 0..100 {
            assert_eq!(
                cache.get(Duration::from_secs(60), check).await["available"],
                true
            );
        }
        assert_eq!(checks.load(Ordering::SeqCst), 1);
        cache.get(Duration::ZERO, check).await;
        assert_eq!(checks.load(Ordering::SeqCst), 2);
    }
}
