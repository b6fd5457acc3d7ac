//! `GET /v1/catalogue`: the services of the network with their publisher, prices and
//! providers, filtered (the engine's `catalogue` module builds it). Its own file because
//! its filters are checked here and refused with a 400 naming the filter.

use super::AppState;
use crate::api::{ApiErr, ApiResult, Json, Query};
use crate::engine::catalogue::CatalogueFilter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mesg_api_types::{ApiError, Catalogue, CatalogueQuery};

/// The catalogue: services of the network (this node's and its peers'), with their publisher, tasks, prices and providers
///
/// From the signed announcements of the nodes this node hears, and the services' records
/// (fetched from the network, checked against their hash, when not known here: a few per
/// call within 3 s; a service whose record has not arrived is listed with
/// `definition_known: false` and no tasks, and a task or price filter leaves it out).
#[utoipa::path(
    get,
    path = "/v1/catalogue",
    operation_id = "catalogue",
    tag = "network",
    params(CatalogueQuery),
    responses(
        (status = 200, description = "The matching services", body = Catalogue),
        (status = 400, description = "A malformed filter (`bad_filter`, naming it) or query", body = ApiError),
    ),
)]
pub(super) async fn catalogue(
    State(s): State<AppState>,
    Query(q): Query<CatalogueQuery>,
) -> ApiResult<Response> {
    let filter = CatalogueFilter::parse(&q)
        .map_err(|e| ApiErr::new(StatusCode::BAD_REQUEST, "bad_filter", e.to_string()))?;
    Ok(Json(s.engine.catalogue(&filter).await).into_response())
}
