//! The OpenAPI document of the Application API, generated (utoipa) from the handlers'
//! `#[utoipa::path]` annotations and the schemas of the bodies in `mesg-api-types`, served
//! at `GET /v1/openapi.json` and checked in as docs/openapi.json (a test fails when the two
//! differ, and says how to rewrite the file).
//!
//! Two things hold for every route and are added here rather than on each handler: the
//! bearer token (every route but the [`PUBLIC_PATHS`]), and the 401 its absence answers.

use super::{catalogue, events, executions, instances, ledger, network, node, processes, services};
use crate::api::guard::PUBLIC_PATHS;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use mesg_api_types::{
    ApiError, CancelExecution, DeployLine, LogLine, PUBLISHER_CLAIM_HEADER, StartLine,
    StopInstance, StreamError,
};
use std::borrow::Cow;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

/// Name of the security scheme of the API token in the document.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mesg node Application API",
        version = "1.0.0",
        description = "HTTP/JSON API of a mesg node for Applications: deploy and run services, execute tasks anywhere in the network, watch executions and events. Errors are JSON {code, message, details} with a stable code. Every call needs `Authorization: Bearer <token>` (but GET /v1/openapi.json): the node generates its token into <data dir>/api.token at first start unless given --api-token. `Host` must be an IP address, `localhost` or a name given with --api-host (421 `bad_host` otherwise); a browser `Origin` must be the node's own (403 `forbidden_origin`); request bodies must be `application/json` (`application/x-tar` for a deploy; 415 otherwise). Each server holds at most 512 connections (256 per client address), closes a connection that sends no complete request head within 10 s or stays idle 60 s, and, when every slot has a request in progress, answers 503 `too_many_connections`.\n\nThis document is generated from the node's code (mesg-api-types and the handlers of node/src/api/app).",
    ),
    servers((url = "http://127.0.0.1:50052")),
    paths(
        node::node_info,
        serve,
        services::list_services,
        services::deploy,
        services::get_service,
        services::delete_service,
        instances::list_instances,
        instances::start_instance,
        instances::get_instance,
        instances::delete_instance,
        instances::stop_instance,
        instances::logs,
        executions::list_executions,
        executions::create_execution,
        executions::create_signed_execution,
        executions::stream_executions,
        executions::get_execution,
        executions::why_execution,
        executions::wait_execution,
        executions::cancel_execution,
        executions::execution_result,
        executions::verify_result,
        executions::execution_receipt,
        executions::execution_attempts,
        events::recent_events,
        events::stream_events,
        network::peers,
        network::ban_peer,
        network::unban_peer,
        network::network_services,
        catalogue::catalogue,
        node::metrics,
        processes::list_processes,
        processes::create_process,
        processes::validate_process,
        processes::get_process,
        processes::delete_process,
        processes::process_runs,
        processes::process_logs,
        processes::get_run,
        ledger::accounts,
        ledger::log,
        ledger::set_limit,
        ledger::settle,
    ),
    components(schemas(
        // The optional bodies, which their operations reference by name.
        StopInstance,
        CancelExecution,
        mesg_api_types::BanPeer,
        // The lines of the streams, which the responses can only name (their bodies are text).
        DeployLine,
        StartLine,
        LogLine,
        StreamError,
        mesg_protocol::Event,
        mesg_api_types::Run,
    )),
    security(("bearer" = [])),
    modifiers(&TokenRequired),
)]
struct AppApi;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    AppApi::openapi()
}

/// The document as served and checked in: pretty JSON, ending with a newline.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = document()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        text.push('\n');
        text
    })
}

/// This document
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "node",
    responses((status = 200, description = "OpenAPI document", body = serde_json::Value)),
)]
pub(super) async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// The body of a deploy: the service's directory as a tar.
pub(super) struct PackageTar;

impl PartialSchema for PackageTar {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .description(Some(
                "the service's directory (mesg.yml, Dockerfile, sources) as a tar, at most 256 MiB",
            ))
            .into()
    }
}

impl ToSchema for PackageTar {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PackageTar")
    }
}

/// The optional header of a deploy that carries the publisher's claim.
pub(super) struct PublisherClaimHeader;

impl IntoParams for PublisherClaimHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name(PUBLISHER_CLAIM_HEADER)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "the publisher's signed claim on the service's sid (hex of the encoded SignedClaim; `mesg --account NAME service deploy` sends it). Without it the node's key publishes the sid. A claim for another package or sid: 400 bad_publisher_claim",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ]
    }
}

/// The API token: its security scheme, required by every operation but those of the
/// [`PUBLIC_PATHS`], each of which may then answer 401.
struct TokenRequired;

impl Modify for TokenRequired {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The node's API token (DATA_DIR/api.token, or mesg-node --api-token).",
                    ))
                    .build(),
            ),
        );
        let unauthorized = ResponseBuilder::new()
            .description(
                "Missing or wrong API token (`Authorization: Bearer <token>`; the node's token is in <data dir>/api.token)",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ApiError::name())))
                    .build(),
            )
            .build();
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = PUBLIC_PATHS.contains(&path.as_str());
            for op in operations(item) {
                if public {
                    op.security = Some(Vec::new());
                } else {
                    op.responses
                        .responses
                        .insert("401".into(), unauthorized.clone().into());
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

#[cfg(test)]
mod tests {
    use super::{BEARER, PUBLIC_PATHS, document_json};
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::from_str(document_json()).unwrap()
    }

    #[test]
    fn every_operation_but_the_public_ones_needs_the_token_and_may_answer_401() {
        let doc = doc();
        assert_eq!(doc["security"], serde_json::json!([{ BEARER: [] }]));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let public = PUBLIC_PATHS.contains(&path.as_str());
                assert_eq!(
                    op["responses"].get("401").is_some(),
                    !public,
                    "{method} {path}"
                );
                assert_eq!(op.get("security").is_some(), public, "{method} {path}");
            }
        }
    }

    #[test]
    fn the_limits_floors_are_the_runtimes() {
        use crate::runtime::limits::{MIN_MEMORY, MIN_NANO_CPUS, MIN_PIDS};
        let limits = &doc()["components"]["schemas"]["ResourceLimits"]["properties"];
        assert_eq!(limits["memory"]["minimum"], MIN_MEMORY);
        assert_eq!(limits["nano_cpus"]["minimum"], MIN_NANO_CPUS);
        assert_eq!(limits["pids"]["minimum"], MIN_PIDS);
    }

    #[test]
    fn the_error_details_bound_is_the_apis() {
        let details = &doc()["components"]["schemas"]["ApiError"]["properties"]["details"];
        assert_eq!(details["maxItems"], crate::api::MAX_ERROR_DETAILS + 1);
    }

    #[test]
    fn the_timeout_bound_is_the_engines() {
        let timeout =
            &doc()["components"]["schemas"]["CreateExecution"]["properties"]["timeout_ms"];
        assert_eq!(timeout["maximum"], crate::engine::MAX_TIMEOUT_MS);
    }
}
