//! HTTP APIs: the Application API (loopback by default) and the service API (for the
//! node's containers). Thin: they parse and validate requests, call the engine, and turn
//! engine errors into JSON errors with a stable code.

pub mod app;
pub mod guard;
pub mod serve;
pub mod service;
pub mod sources;
pub mod ui;

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

impl ApiErr {
    /// The body with its message and details cut to the bounds below.
    pub fn bounded_body(self) -> ApiError {
        let mut body = self.body;
        body.message = bounded_message(&body.message);
        body.details = bounded_details(body.details);
        body
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, axum::Json(self.bounded_body())).into_response()
    }
}

/// Most validation errors listed in an answer: enough to fix a request, while a hostile
/// 2 MB request cannot make the node build (and send) a 25 MB error.
pub const MAX_ERROR_DETAILS: usize = 20;
/// Longest error detail (bytes) before it is cut.
pub const MAX_ERROR_DETAIL_BYTES: usize = 512;
/// Longest error message (bytes) before it is cut; `details` lists the errors one by one.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes (on a character boundary), saying how much was left out.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}

/// An error message of at most [`MAX_ERROR_MESSAGE_BYTES`].
pub fn bounded_message(message: &str) -> String {
    cut(message, MAX_ERROR_MESSAGE_BYTES)
}

/// At most [`MAX_ERROR_DETAILS`] details of at most [`MAX_ERROR_DETAIL_BYTES`] each; a
/// last line says how many more there were.
pub fn bounded_details(details: Vec<String>) -> Vec<String> {
    let total = details.len();
    let mut out: Vec<String> = details
        .into_iter()
        .take(MAX_ERROR_DETAILS)
        .map(|d| cut(&d, MAX_ERROR_DETAIL_BYTES))
        .collect();
    if total > MAX_ERROR_DETAILS {
        out.push(format!(
            "… and {} more errors (fix these first)",
            total - MAX_ERROR_DETAILS
        ));
    }
    out
}

pub fn status_of(e: &EngineError) -> StatusCode {
    match e.code() {
        "not_found" => StatusCode::NOT_FOUND,
        "conflict" | "replayed" | "ambiguous_sid" | "sid_pinned_elsewhere" => StatusCode::CONFLICT,
        "not_owner" => StatusCode::FORBIDDEN,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "busy" | "docker_unavailable" | "no_provider" => StatusCode::SERVICE_UNAVAILABLE,
        "build_failed" | "idempotency_key_reused" => StatusCode::UNPROCESSABLE_ENTITY,
        "runtime_error" | "network_error" => StatusCode::BAD_GATEWAY,
        "store_error" | "ledger_error" => StatusCode::INTERNAL_SERVER_ERROR,
        "nothing_owed" => StatusCode::CONFLICT,
        "settlement_refused" => StatusCode::BAD_GATEWAY,
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
    match &r {
        JsonRejection::MissingJsonContentType(_) => ApiErr::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            r.body_text(),
        ),
        JsonRejection::BytesRejection(_) => ApiErr::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "{}: a body may hold at most {} bytes (a work message's {} plus 64 KiB)",
                r.body_text(),
                mesg_protocol::wire::MAX_WORK_MESSAGE + 64 * 1024,
                mesg_protocol::wire::MAX_WORK_MESSAGE
            ),
        ),
        _ => ApiErr::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lists_and_messages_are_bounded() {
        let details: Vec<String> = (0..10_000).map(|i| format!("inputs.f{i}: bad")).collect();
        let message = details.join("\n");
        let e = ApiErr {
            status: StatusCode::BAD_REQUEST,
            body: ApiError {
                code: "invalid_inputs".into(),
                message,
                details,
            },
        };
        let resp = e.into_response();
        let body = futures::executor::block_on(axum::body::to_bytes(resp.into_body(), usize::MAX))
            .unwrap();
        let v: ApiError = serde_json::from_slice(&body).unwrap();
        assert_eq!(v.details.len(), MAX_ERROR_DETAILS + 1);
        assert!(
            v.details.last().unwrap().contains("9980 more errors"),
            "{v:?}"
        );
        assert!(
            v.message.len() < MAX_ERROR_MESSAGE_BYTES + 64,
            "{}",
            v.message.len()
        );
        assert!(v.message.ends_with("more bytes)"), "{}", v.message);
        assert!(body.len() < 16 * 1024, "{} bytes", body.len());
    }

    #[test]
    fn cutting_respects_character_boundaries() {
        let s = "é".repeat(100);
        let c = cut(&s, 51);
        assert_eq!(c, format!("{}… (150 more bytes)", "é".repeat(25)));
        assert_eq!(cut("short", 10), "short");
    }
}
