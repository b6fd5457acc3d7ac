//! The economy's ledger: accounts per peer, the signed log, credit limits, settlement.

use super::AppState;
use crate::api::{ApiResult, Json, Query};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use mesg_api_types::{
    ApiError, LedgerAccount, LedgerAccounts, LedgerLog, LedgerLogQuery, SetCreditLimit,
    SettleRequest, Settled,
};
use mesg_protocol::PublicKey;

/// Accounts per peer: balance (positive: the peer owes this node), reserved, credit limit, receipts issued, acknowledged and accepted, publisher shares, settlements, rejections
#[utoipa::path(
    get,
    path = "/v1/ledger",
    operation_id = "ledgerAccounts",
    tag = "ledger",
    responses((status = 200, description = "Accounts", body = LedgerAccounts)),
)]
pub(super) async fn accounts(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(s.engine.ledger_accounts()?).into_response())
}

/// The ledger's signed, hash-chained log, newest first
#[utoipa::path(
    get,
    path = "/v1/ledger/log",
    operation_id = "ledgerLog",
    tag = "ledger",
    params(LedgerLogQuery),
    responses(
        (status = 200, description = "Entries", body = LedgerLog),
        (status = 400, description = "Invalid query", body = ApiError),
    ),
)]
pub(super) async fn log(
    State(s): State<AppState>,
    Query(q): Query<LedgerLogQuery>,
) -> ApiResult<Response> {
    Ok(Json(s.engine.ledger_log(q.limit)?).into_response())
}

/// Set a peer's own credit limit (µc), or with `null` use the node's default again
#[utoipa::path(
    put,
    path = "/v1/ledger/limits/{peer}",
    operation_id = "setCreditLimit",
    tag = "ledger",
    params(("peer" = String, Path, description = "the peer's public key (base58)", pattern = r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")),
    request_body = SetCreditLimit,
    responses(
        (status = 200, description = "The peer's account", body = LedgerAccount),
        (status = 400, description = "Invalid body", body = ApiError),
        (status = 404, description = "No peer can have this key: it is not an ed25519 public key", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
    ),
)]
pub(super) async fn set_limit(
    State(s): State<AppState>,
    Path(peer): Path<String>,
    Json(body): Json<SetCreditLimit>,
) -> ApiResult<Response> {
    let peer = parse_peer(&peer)?;
    Ok(Json(s.engine.set_credit_limit(&peer, body.limit).await?).into_response())
}

/// Settle with a peer what this node accepted owing it (method `credits`: a signed cumulative total the peer verifies and books)
#[utoipa::path(
    post,
    path = "/v1/ledger/settle",
    operation_id = "settle",
    tag = "ledger",
    request_body = SettleRequest,
    responses(
        (status = 200, description = "Settled: the total the peer accepted", body = Settled),
        (status = 400, description = "Invalid body", body = ApiError),
        (status = 409, description = "Nothing to settle", body = ApiError),
        (status = 415, description = "Body without `content-type: application/json`", body = ApiError),
        (status = 502, description = "The peer refused the settlement or could not be reached", body = ApiError),
    ),
)]
pub(super) async fn settle(
    State(s): State<AppState>,
    Json(body): Json<SettleRequest>,
) -> ApiResult<Response> {
    let total = s.engine.settle(&body.peer).await?;
    Ok(Json(Settled {
        peer: body.peer,
        total,
        method: "credits".into(),
    })
    .into_response())
}

/// A peer named in the path: a string that is no ed25519 key names no peer that could
/// exist (404, as an unknown id would), rather than a malformed request.
pub(super) fn parse_peer(s: &str) -> Result<PublicKey, crate::api::ApiErr> {
    PublicKey::from_base58(s).map_err(|e| {
        crate::api::ApiErr::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("`{s}` is not a public key, so no peer has it: {e}"),
        )
    })
}
