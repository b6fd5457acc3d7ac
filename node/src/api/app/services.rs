//! Services: list, show, forget, and deploy (a package tar in, build progress out).

use super::AppState;
use super::openapi::{PackageTar, PublisherClaimHeader};
use super::streams::progress_response;
use crate::api::{ApiErr, ApiResult, Json, Path, Query};
use crate::engine::EngineError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mesg_api_types::{
    ApiError, DeployLine, DeployProgress, DeployQuery, PUBLISHER_CLAIM_HEADER, ServiceList,
    ServiceView,
};
use mesg_protocol::SignedClaim;
use tokio::sync::mpsc;

/// Services this node knows
#[utoipa::path(
    get,
    path = "/v1/services",
    operation_id = "listServices",
    tag = "services",
    responses((status = 200, description = "Services", body = ServiceList)),
)]
pub(super) async fn list_services(State(s): State<AppState>) -> ApiResult<Response> {
    let services = s.engine.services()?;
    Ok(Json(ServiceList { services }).into_response())
}

/// One service
#[utoipa::path(
    get,
    path = "/v1/services/{id}",
    operation_id = "getService",
    tag = "services",
    params(("id" = String, Path, description = "service hash or sid")),
    responses(
        (status = 200, description = "Service", body = ServiceView),
        (status = 404, description = "No such service", body = ApiError),
    ),
)]
pub(super) async fn get_service(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let entry = s.engine.service(&id)?;
    Ok(Json(s.engine.service_view(&entry)).into_response())
}

/// Forget a service (refused while it has instances)
#[utoipa::path(
    delete,
    path = "/v1/services/{id}",
    operation_id = "deleteService",
    tag = "services",
    params(("id" = String, Path, description = "service hash or sid")),
    responses(
        (status = 200, description = "The deleted service", body = ServiceView),
        (status = 404, description = "No such service", body = ApiError),
        (status = 409, description = "The service has instances", body = ApiError),
    ),
)]
pub(super) async fn delete_service(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.delete_service(&id).await?).into_response())
}

/// Deploy a service: the body is its directory as a tar
///
/// The package and its definition are checked before anything streams (errors are plain
/// 400s); then build progress streams as newline-delimited JSON, ending with a `done` or
/// an `error` line.
#[utoipa::path(
    post,
    path = "/v1/services",
    operation_id = "deployService",
    tag = "services",
    params(
        DeployQuery,
        PublisherClaimHeader,
    ),
    request_body(content = PackageTar, content_type = "application/x-tar"),
    responses(
        (
            status = 200,
            description = "Newline-delimited JSON, one DeployLine per line: {\"type\":\"progress\",\"message\"} lines, then {\"type\":\"done\",\"service\":ServiceView} or {\"type\":\"error\",\"error\":ApiError}",
            content_type = "application/x-ndjson",
            body = String,
        ),
        (status = 400, description = "Not a valid package, definition or publisher claim", body = ApiError),
        (status = 413, description = "Package larger than the node accepts", body = ApiError),
        (status = 415, description = "Body without `content-type: application/x-tar`", body = ApiError),
    ),
)]
pub(super) async fn deploy(
    State(s): State<AppState>,
    Query(query): Query<DeployQuery>,
    headers: HeaderMap,
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
            .map_err(EngineError::from)?;
    }
    let (tx, rx) = mpsc::channel::<DeployProgress>(256);
    let engine = s.engine.clone();
    let work = tokio::spawn(async move {
        engine
            .deploy(package, definition, query.private, claim, tx)
            .await
    });
    Ok(progress_response(
        rx,
        work,
        DeployLine::from,
        |service| DeployLine::Done { service },
        |error| DeployLine::Error { error },
    ))
}
