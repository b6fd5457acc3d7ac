//! The OpenAPI document served by the node and checked in under docs/ stays in step with
//! the routes the node really serves.

mod common;

use mesg_node::api::app::{OPENAPI, ROUTES};
use mesg_testkit::NodeProcess;
use std::collections::BTreeSet;

fn documented() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
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
        "served but not in docs/openapi.json: {undocumented:?}"
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
    // And the served document is the checked-in one.
    let served = http
        .get(format!("{}/v1/openapi.json", node.api_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, OPENAPI);
}
