//! The network as this node sees it: connections, announced nodes, announced services.

use super::{AppState, optional_json};
use crate::api::{ApiResult, Json, Path};
use crate::engine::EngineError;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use mesg_api_types::{ApiError, BanPeer, NetworkServiceList, PeerList, PeerReputationView};

/// Peers: current connections, the nodes known from their signed announcements, and what this node keeps of the peers it used (reputation, bans)
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
    let reputation = s.engine.peer_reputations();
    Ok(Json(PeerList {
        nodes,
        peers,
        reputation,
    })
    .into_response())
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

/// Ban a peer: never chosen as a provider, its submits refused (reject code `Banned`); kept across restarts
#[utoipa::path(
    put,
    path = "/v1/peers/{key}/ban",
    operation_id = "banPeer",
    tag = "network",
    params(("key" = String, Path, description = "the peer's public key (base58)", pattern = r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")),
    // A reference (not `Option<BanPeer>`): the body is optional, but `null` is not one.
    request_body(
        content = ref("#/components/schemas/BanPeer"),
        description = "optional: no body bans without a reason",
    ),
    responses(
        (status = 200, description = "The peer's reputation, banned", body = PeerReputationView),
        (status = 400, description = "Invalid body, or a reason over 256 bytes", body = ApiError),
        (status = 404, description = "No peer can have this key: it is not an ed25519 public key", body = ApiError),
        (status = 409, description = "The node keeps 4096 peers and all are banned", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
    ),
)]
pub(super) async fn ban_peer(
    State(s): State<AppState>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let peer = super::ledger::parse_peer(&key)?;
    let reason = optional_json::<BanPeer>(&body)?.and_then(|b| b.reason);
    Ok(Json(s.engine.ban_peer(&peer, reason).await?).into_response())
}

/// Lift a peer's ban
#[utoipa::path(
    delete,
    path = "/v1/peers/{key}/ban",
    operation_id = "unbanPeer",
    tag = "network",
    params(("key" = String, Path, description = "the peer's public key (base58)", pattern = r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")),
    responses(
        (status = 200, description = "The peer's reputation, not banned", body = PeerReputationView),
        (status = 404, description = "No peer can have this key: it is not an ed25519 public key", body = ApiError),
    ),
)]
pub(super) async fn unban_peer(
    State(s): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    let peer = super::ledger::parse_peer(&key)?;
    Ok(Json(s.engine.unban_peer(&peer).await?).into_response())
}
