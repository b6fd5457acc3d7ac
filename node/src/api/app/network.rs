//! The network as this node sees it: connections, announced nodes, announced services.

use super::AppState;
use crate::api::{ApiResult, Json};
use crate::engine::EngineError;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use mesg_api_types::{NetworkServiceList, PeerList};

/// Peers: current connections, and the nodes known from their signed announcements
#[utoipa::path(
    get,
    path = "/v1/peers",
    operation_id = "peers",
    tag = "network",
    responses((status = 200, description = "Peers", body = PeerList)),
)]
pub(super) async fn peers(State(s): State<AppState>) -> ApiResult<Response> {
    let peers = match s.engine.network() {
        Some(net) => net
            .peers()
            .await
            .map_err(|e| EngineError::Network(e.to_string()))?,
        None => Vec::new(),
    };
    let nodes = s.engine.network_nodes();
    Ok(Json(PeerList { nodes, peers }).into_response())
}

/// Services the network runs, with their providers (from announcements)
#[utoipa::path(
    get,
    path = "/v1/network/services",
    operation_id = "networkServices",
    tag = "network",
    responses((status = 200, description = "Services", body = NetworkServiceList)),
)]
pub(super) async fn network_services(State(s): State<AppState>) -> ApiResult<Response> {
    let services = s.engine.network_services();
    Ok(Json(NetworkServiceList { services }).into_response())
}
