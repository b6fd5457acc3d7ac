//! Events: the filters of the recent events and of their stream, and the list.
//! An event itself is [`mesg_protocol::Event`].

use mesg_protocol::Event;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The query of `GET /v1/events` and `GET /v1/events/stream`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Service hash or sid.
    pub service: Option<String>,
    /// Event key.
    pub event: Option<String>,
    /// At most (default 100; clamped to 1-10000). The stream ignores it.
    #[param(maximum = 18446744073709551615u64)]
    pub limit: Option<usize>,
}

/// Recent events, newest first (`GET /v1/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub events: Vec<Event>,
}
