//! Issue 12, item 1: a web page must not drive a default node. The Application API on
//! loopback requires the token the node generated into its data dir; a cross-origin form
//! post, a request under a rebound DNS name and an untyped body are refused; the node's
//! own origin and honest calls with the token work.

use mesg_attacks::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_cannot_deploy_cancel_or_read_but_the_token_holder_can() {
    let node = NodeProcess::start(&[]);
    let token_file = node.data_dir.join("api.token");
    let mode = std::fs::metadata(&token_file)
        .expect("the node wrote its API token at first start")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "api.token must be private");
    let honest = Api::new(&node);
    let page = Api::with_token(&node, None);
    let package = mesg_package::Package::from_dir(
        &service_dir("echo"),
        mesg_package::DEFAULT_MAX_PACKAGE_BYTES,
    )
    .unwrap()
    .to_tar_bytes()
    .unwrap();

    // A cross-origin form post (what any web site can make a browser send): no token,
    // a form content type, a foreign Origin. Refused, and nothing is deployed.
    // The node answers before it reads the body and closes the connection, so the
    // client may see its upload cut short instead of the answer: both are refusals.
    let form = page
        .request(reqwest::Method::POST, "/v1/services")
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(package.clone())
        .send()
        .await;
    match form {
        Ok(resp) => assert!(
            resp.status() == 403 || resp.status() == 401,
            "a cross-origin form post was not refused: {}",
            resp.status()
        ),
        Err(e) => assert!(
            e.is_request() || e.is_body(),
            "neither an answer nor a refused upload: {e}"
        ),
    }
    // Even a page that somehow had the token cannot call from another origin.
    let cross = Api::send(
        honest
            .request(reqwest::Method::GET, "/v1/services")
            .header("origin", "https://evil.example"),
    )
    .await;
    assert_eq!(cross.status, 403, "{cross:?}");
    assert_eq!(cross.body["code"], "forbidden_origin", "{cross:?}");

    // No token, same origin: 401 with a message that says where the token is.
    let anon = page.get("/v1/executions").await;
    assert_eq!(anon.status, 401, "{anon:?}");
    assert!(
        anon.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("api.token"),
        "{anon:?}"
    );
    let wrong = Api::with_token(&node, Some("guess".into()))
        .get("/v1/node")
        .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");

    // DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends it as
    // Host. Refused even with a valid token.
    let rebound = Api::send(
        honest
            .request(reqwest::Method::GET, "/v1/services")
            .header("host", format!("attacker.example:{}", node.api_port)),
    )
    .await;
    assert_eq!(rebound.status, 421, "{rebound:?}");
    assert_eq!(rebound.body["code"], "bad_host", "{rebound:?}");

    // A text/plain body (a form can send one) on a JSON route: 415.
    let text = Api::send(
        honest
            .request(
                reqwest::Method::POST,
                "/v1/executions/0000000000000000000000000000000a/cancel",
            )
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(text.status, 415, "{text:?}");

    let services = honest.get("/v1/services").await;
    assert_eq!(services.status, 200, "{services:?}");
    assert_eq!(
        services.body["services"].as_array().map(Vec::len),
        Some(0),
        "something was deployed by a refused request: {services:?}"
    );

    // The node's own origin (its dashboard) and honest work with the token go through.
    let own = Api::send(
        honest
            .request(reqwest::Method::GET, "/v1/node")
            .header("origin", node.api_url()),
    )
    .await;
    assert_eq!(own.status, 200, "{own:?}");
    honest.deploy_and_start(&service_dir("echo")).await;
    let result = honest
        .exec_wait("echo", "echo", json!({"message": "hello"}))
        .await;
    assert_eq!(result["status"], "Completed", "{result}");
    assert_eq!(result["outputs"]["message"], "hello", "{result}");
}
