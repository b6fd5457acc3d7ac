//! Error bodies: what every failed call answers, and the error line of a stream that
//! fails after it started.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error answer, `{code, message, details}`: shared with the service
/// API, so it lives in the protocol crate.
pub use mesg_protocol::service_api::ApiError;

/// A line of a newline-delimited JSON stream that reports an error after the stream
/// started (container logs that can no longer be read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamError {
    pub error: String,
}
