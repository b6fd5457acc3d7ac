//! The OpenAPI document is generated from the node's code; these tests keep it honest:
//! docs/openapi.json is that document, it lists exactly the routes the node serves, and
//! what a running node really answers validates against its schemas.

mod common;

use mesg_node::api::app::ROUTES;
use mesg_node::api::app::openapi::document_json;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// The command that rewrites docs/openapi.json from the code.
const REWRITE: &str = "MESG_WRITE_OPENAPI=1 cargo test -p mesg-node --test openapi";

fn doc() -> Value {
    serde_json::from_str(document_json()).expect("the generated document is JSON")
}

fn documented() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc()["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn docs_openapi_json_is_the_generated_document() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("MESG_WRITE_OPENAPI").is_some() {
        std::fs::write(&file, document_json()).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == document_json(),
        "docs/openapi.json is not the document the node generates from its code; rewrite it with\n\n    {REWRITE}\n"
    );
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists_in_the_table() {
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(phantom.is_empty(), "documented but not served: {phantom:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_is_answered_by_a_live_node() {
    let node = NodeProcess::start(&[]);
    let http = common::Api::new(&node).http;
    for (method, path) in documented() {
        // Routes that stream forever are only opened, not read.
        let url = format!(
            "{}{}",
            node.api_url(),
            path.replace("{id}", "0000000000000000000000000000000a")
        );
        let req = match method.as_str() {
            "get" => http.get(&url),
            "post" => http
                .post(&url)
                .header("content-type", "application/json")
                .body("{}"),
            "put" => http
                .put(&url)
                .header("content-type", "application/json")
                .body("{}"),
            "delete" => http.delete(&url),
            other => panic!("unexpected method {other}"),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let body = if path.ends_with("/stream") || path.ends_with("/logs") {
            String::new()
        } else {
            resp.text().await.unwrap_or_default()
        };
        assert!(
            !body.contains("route_not_found") && !body.contains("method_not_allowed"),
            "{method} {path} is documented but the node does not route it: {status} {body}"
        );
        assert!(
            !status.is_server_error(),
            "{method} {path}: {status} {body}"
        );
    }
    // And the served document is the generated one, to anyone (no token).
    let served = reqwest::get(format!("{}/v1/openapi.json", node.api_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, document_json());
}

/// Validates bodies against the document's schemas.
struct Schemas {
    doc: Value,
}

impl Schemas {
    /// `body` is what the document says `method path` answers with `status`.
    fn check_response(&self, method: &str, path: &str, status: u16, body: &Value) {
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} answered {status}, which the document does not list: {body}"
        );
        self.check(schema, body, &format!("{method} {path} {status}"));
    }

    /// `body` validates against the component schema `name`.
    fn check_component(&self, name: &str, body: &Value) {
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        self.check(&schema, body, name);
    }

    fn check(&self, schema: &Value, body: &Value, what: &str) {
        // The schema is checked as part of a document that carries the components, so
        // its `#/components/schemas/...` references resolve.
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the node's answer does not match the document:\n{}\nanswer: {body:#}",
            errors.join("\n")
        );
    }
}

/// Newline-delimited JSON lines of an answer that ends.
async fn ndjson_lines(resp: reqwest::Response) -> Vec<Value> {
    let text = resp.text().await.unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_live_node_answers_matches_the_document() {
    let node = NodeProcess::start(&[]);
    let api = common::Api::new(&node);
    let schemas = Schemas { doc: doc() };
    let get = |path: &str, template: &'static str, status: u16| {
        let (api, schemas, path) = (&api, &schemas, path.to_string());
        async move {
            let (got, body) = api.get(&path).await;
            assert_eq!(got, status, "GET {path}: {body}");
            schemas.check_response("get", template, got, &body);
            body
        }
    };

    // Deploy: every NDJSON line is a DeployLine.
    let pkg = mesg_package::Package::from_dir(
        &service_dir("echo"),
        mesg_package::DEFAULT_MAX_PACKAGE_BYTES,
    )
    .unwrap();
    let resp = api
        .http
        .post(format!("{}/v1/services", api.base))
        .header("content-type", "application/x-tar")
        .body(pkg.to_tar_bytes().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let lines = ndjson_lines(resp).await;
    for line in &lines {
        schemas.check_component("DeployLine", line);
    }
    let done = lines.last().unwrap();
    assert_eq!(done["type"], "done", "{done}");
    let service = done["service"]["hash"].as_str().unwrap().to_string();

    // A process, so that a tick event starts a run.
    let process_file = "name: ticks\nsteps:\n  - key: tick\n    trigger: {service: echo, event: tick}\n  - key: say\n    task: {service: echo, task: echo, inputs: {count: {step: tick, path: count}}}\n";
    let (status, check) = api
        .post(
            "/v1/processes/validate",
            json!({"definition": process_file}),
        )
        .await;
    schemas.check_response("post", "/v1/processes/validate", status, &check);
    assert_eq!(check["valid"], true, "{check}");
    let (status, invalid) = api
        .post("/v1/processes/validate", json!({"definition": "name: x\n"}))
        .await;
    schemas.check_response("post", "/v1/processes/validate", status, &invalid);
    assert_eq!(invalid["valid"], false, "{invalid}");
    let (status, process) = api
        .post("/v1/processes", json!({"definition": process_file}))
        .await;
    schemas.check_response("post", "/v1/processes", status, &process);
    let process_id = process["id"].as_str().unwrap().to_string();

    // An instance, and executions of its tasks.
    let (status, instance) = api
        .post("/v1/instances", json!({"service": service, "env": {}}))
        .await;
    schemas.check_response("post", "/v1/instances", status, &instance);
    let instance_hash = instance["hash"].as_str().unwrap().to_string();
    api.wait_connected(&instance_hash).await;
    let (status, echoed) = api.exec("echo", "echo", json!({"message": "hi"})).await;
    schemas.check_response("post", "/v1/executions", status, &echoed);
    let execution = echoed["id"].as_str().unwrap().to_string();
    let (status, ticked) = api.exec("echo", "tick", json!({"value": 1})).await;
    schemas.check_response("post", "/v1/executions", status, &ticked);
    let sleeping = api.exec_async("echo", "sleep", json!({"ms": 60_000})).await;
    let (status, cancelled) = api
        .post(&format!("/v1/executions/{sleeping}/cancel"), json!({}))
        .await;
    schemas.check_response("post", "/v1/executions/{id}/cancel", status, &cancelled);

    // Every GET that answers JSON.
    get("/v1/node", "/v1/node", 200).await;
    get("/v1/services", "/v1/services", 200).await;
    get(&format!("/v1/services/{service}"), "/v1/services/{id}", 200).await;
    get("/v1/services/nothing", "/v1/services/{id}", 404).await;
    get("/v1/instances", "/v1/instances", 200).await;
    get(
        &format!("/v1/instances/{instance_hash}"),
        "/v1/instances/{id}",
        200,
    )
    .await;
    get("/v1/executions?limit=2", "/v1/executions", 200).await;
    get("/v1/executions?status=nope", "/v1/executions", 400).await;
    get(
        &format!("/v1/executions/{execution}"),
        "/v1/executions/{id}",
        200,
    )
    .await;
    get("/v1/executions/not-an-id", "/v1/executions/{id}", 400).await;
    get(
        &format!("/v1/executions/{execution}/why"),
        "/v1/executions/{id}/why",
        200,
    )
    .await;
    get(
        "/v1/executions/0000000000000000000000000000000a/why",
        "/v1/executions/{id}/why",
        404,
    )
    .await;
    get(
        &format!("/v1/executions/{execution}/wait?timeout_ms=1000"),
        "/v1/executions/{id}/wait",
        200,
    )
    .await;
    get(
        &format!("/v1/executions/{execution}/result"),
        "/v1/executions/{id}/result",
        200,
    )
    .await;
    get(
        &format!("/v1/executions/{execution}/verification"),
        "/v1/executions/{id}/verification",
        200,
    )
    .await;
    get("/v1/events?service=echo", "/v1/events", 200).await;
    get("/v1/peers", "/v1/peers", 200).await;
    get("/v1/network/services", "/v1/network/services", 200).await;
    get("/v1/processes", "/v1/processes", 200).await;
    get(
        &format!("/v1/processes/{process_id}"),
        "/v1/processes/{id}",
        200,
    )
    .await;
    let mut runs = Value::Null;
    for _ in 0..100 {
        runs = get(
            &format!("/v1/processes/{process_id}/runs"),
            "/v1/processes/{id}/runs",
            200,
        )
        .await;
        if runs["runs"][0]["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = runs["runs"][0]["id"].as_str().expect("a tick starts a run");
    get(&format!("/v1/runs/{run}"), "/v1/runs/{id}", 200).await;

    // Streams: container output (NDJSON), executions and events (server-sent events).
    let resp = api
        .http
        .get(format!(
            "{}/v1/instances/{instance_hash}/logs?tail=20",
            api.base
        ))
        .send()
        .await
        .unwrap();
    for line in ndjson_lines(resp).await {
        schemas.check_component("LogLine", &line);
    }
    let streamed = {
        let api = &api;
        let executions = api.sse_until(
            "/v1/executions/stream?service=echo",
            "execution",
            Duration::from_secs(20),
            |e| e["status"] == "Completed",
        );
        let events = api.sse_until(
            "/v1/events/stream?service=echo",
            "event",
            Duration::from_secs(20),
            |_| true,
        );
        let trigger = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            api.exec("echo", "tick", json!({"value": 2})).await
        };
        tokio::join!(executions, events, trigger)
    };
    assert!(!streamed.0.is_empty() && !streamed.1.is_empty());
    for e in &streamed.0 {
        schemas.check_component("Execution", e);
    }
    for e in &streamed.1 {
        schemas.check_component("Event", e);
    }

    // Stopping and removing.
    let (status, stopped) = api
        .post(&format!("/v1/instances/{instance_hash}/stop"), json!({}))
        .await;
    schemas.check_response("post", "/v1/instances/{id}/stop", status, &stopped);
    // With no instance left, an execution waits for a provider: its diagnosis, alone and
    // in the execution's record.
    let waiting = api
        .exec_async("echo", "echo", json!({"message": "anyone?"}))
        .await;
    let why = get(
        &format!("/v1/executions/{waiting}/why"),
        "/v1/executions/{id}/why",
        200,
    )
    .await;
    assert_eq!(why["state"], "routing", "{why:#}");
    let shown = get(
        &format!("/v1/executions/{waiting}"),
        "/v1/executions/{id}",
        200,
    )
    .await;
    assert!(shown["diagnosis"]["summary"].is_string(), "{shown:#}");
    api.post(&format!("/v1/executions/{waiting}/cancel"), json!({}))
        .await;
    let (status, deleted) = api.delete(&format!("/v1/instances/{instance_hash}")).await;
    schemas.check_response("delete", "/v1/instances/{id}", status, &deleted);
    let (status, deleted) = api.delete(&format!("/v1/processes/{process_id}")).await;
    schemas.check_response("delete", "/v1/processes/{id}", status, &deleted);
    let (status, deleted) = api.delete(&format!("/v1/services/{service}")).await;
    schemas.check_response("delete", "/v1/services/{id}", status, &deleted);
}
