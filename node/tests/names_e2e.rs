//! Sids bound to publishers, with real nodes: a deploy signed by an account publishes the
//! sid as that account, a claim that does not fit the package is refused, and a node
//! started with `--pin sid=KEY` runs that sid only on services published by KEY.

mod common;

use common::Api;
use mesg_protocol::{Hash32, Keypair, ServiceHash, SignedClaim, now_ms};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::Duration;

/// Deploy `dir` with a publisher claim header; returns (HTTP status, last line or error).
async fn deploy_claimed(api: &Api, dir: &std::path::Path, claim: &SignedClaim) -> (u16, Value) {
    let pkg =
        mesg_package::Package::from_dir(dir, mesg_package::DEFAULT_MAX_PACKAGE_BYTES).unwrap();
    let r = api
        .http
        .post(format!("{}/v1/services", api.base))
        .header("content-type", "application/x-tar")
        .header("x-mesg-publisher-claim", claim.to_hex().unwrap())
        .body(pkg.to_tar_bytes().unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let last = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .next_back()
        .unwrap_or(Value::Null);
    (status, last)
}

fn echo_hash() -> ServiceHash {
    let pkg = mesg_package::Package::from_dir(
        &service_dir("echo"),
        mesg_package::DEFAULT_MAX_PACKAGE_BYTES,
    )
    .unwrap();
    pkg.definition().unwrap().service_hash(&pkg.hash())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_publishes_echo_and_a_pinned_node_runs_only_its_echo() {
    let account = Keypair::generate().unwrap();
    let b = NodeProcess::start(&[]);
    let pin = format!("echo={}", account.public());
    let c = NodeProcess::start(&["--bootstrap", &b.p2p_addr(), "--pin", &pin]);
    let (api_b, api_c) = (Api::new(&b), Api::new(&c));

    // A claim for another package, or another sid, is refused before anything is built.
    let other = ServiceHash(Hash32::sha256(b"another package"));
    let wrong = SignedClaim::sign(&account, "echo", other, now_ms()).unwrap();
    let (status, e) = deploy_claimed(&api_b, &service_dir("echo"), &wrong).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("bad_publisher_claim")),
        "{e}"
    );
    let wrong = SignedClaim::sign(&account, "kv", echo_hash(), now_ms()).unwrap();
    let (status, e) = deploy_claimed(&api_b, &service_dir("echo"), &wrong).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("bad_publisher_claim")),
        "{e}"
    );

    // Deployed without an account: B's own key publishes it, and says so.
    let (hash, _) = api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    let (_, view) = api_b.get(&format!("/v1/services/{hash}")).await;
    assert_eq!(view["sid_publisher"], b.public_key.as_str(), "{view}");
    // C is pinned to the account: B's echo is not "echo" for C, only its hash is.
    let mut refused = Value::Null;
    for _ in 0..100 {
        let (status, e) = api_c.exec("echo", "echo", json!({})).await;
        refused = e;
        if status == 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused["code"], "sid_pinned_elsewhere", "{refused}");
    let (_, e) = api_c.exec(&hash, "echo", json!({"count": 1})).await;
    assert_eq!(e["status"], "Completed", "{e}");

    // The account publishes the same package: C now runs `echo` there.
    let claim = SignedClaim::sign(&account, "echo", echo_hash(), now_ms()).unwrap();
    let (status, done) = deploy_claimed(&api_b, &service_dir("echo"), &claim).await;
    assert_eq!((status, &done["type"]), (200, &json!("done")), "{done}");
    assert_eq!(
        done["service"]["sid_publisher"],
        account.public().to_string().as_str()
    );
    let mut last = Value::Null;
    for _ in 0..150 {
        let (status, e) = api_c.exec("echo", "echo", json!({"count": 2})).await;
        if status == 201 && e["status"] == "Completed" {
            assert_eq!(e["service_hash"], hash.as_str());
            assert_eq!(e["executor"], b.public_key.as_str());
            return;
        }
        last = e;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("C never ran the account's echo: {last}");
}
