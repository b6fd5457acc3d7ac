//! HTTP APIs: the Application API (loopback by default) and the service API (for the
//! node's containers). Thin: they parse and validate requests, call the engine, and turn
//! engine errors into JSON errors with a stable code.

pub mod app;
pub mod serve;
pub mod service;

use crate::engine::EngineError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use mesg_protocol::service_api::ApiError;
use serde::de::DeserializeOwned;

/// An API error: status, stable code, message, details.
#[derive(Debug)]
pub struct ApiErr {
    pub status: StatusCode,
    pub body: ApiError,
}

impl ApiErr {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiErr {
        ApiErr {
            status,
            body: ApiError {
                code: code.to_string(),
                message: message.into(),
                details: Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

pub fn status_of(e: &EngineError) -> StatusCode {
    match e.code() {
        "not_found" => StatusCode::NOT_FOUND,
        "conflict" | "replayed" => StatusCode::CONFLICT,
        "not_owner" => StatusCode::FORBIDDEN,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "busy" | "docker_unavailable" | "no_provider" => StatusCode::SERVICE_UNAVAILABLE,
        "build_failed" => StatusCode::UNPROCESSABLE_ENTITY,
        "runtime_error" | "network_error" => StatusCode::BAD_GATEWAY,
        "store_error" => StatusCode::INTERNAL_SERVER_ERROR,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<EngineError> for ApiErr {
    fn from(e: EngineError) -> ApiErr {
        let status = status_of(&e);
        if status.is_server_error() {
            tracing::warn!(code = e.code(), "{e}");
        }
        ApiErr {
            status,
            body: ApiError {
                code: e.code().to_string(),
                message: e.to_string(),
                details: e.details(),
            },
        }
    }
}

pub type ApiResult<T> = Result<T, ApiErr>;

/// `axum::Json` whose rejections are our JSON errors.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiErr;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiErr> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiErr {
    let status = match &r {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiErr::new(status, "bad_request", r.body_text())
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with JSON errors.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiErr;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiErr> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r: QueryRejection| {
                ApiErr::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
            })
    }
}

/// `axum::extract::Path` with JSON errors.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiErr;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiErr> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r: PathRejection| {
                ApiErr::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
            })
    }
}

/// The answer to a route that does not exist.
pub async fn not_found(uri: axum::http::Uri) -> ApiErr {
    ApiErr::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route {uri}; see /v1/openapi.json"),
    )
}

pub async fn method_not_allowed() -> ApiErr {
    ApiErr::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method; see /v1/openapi.json",
    )
}

/// Bearer token from the Authorization header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Compare secrets without leaking their content through timing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
