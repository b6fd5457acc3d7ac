//! Item 13: a deploy published the whole build context to any peer that asked. A private
//! deploy keeps the package on its node: a peer asking for it gets a refusal that says
//! why, and a second node cannot start the service, while executions routed to the
//! publisher still complete. A public deploy says it is public.

use mesg_attacks::Api;
use mesg_attacks::wire::{Rogue, deploy_and_start, post_package};
use mesg_protocol::PackageHash;
use mesg_protocol::messages::PackageResponse;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_private_package_is_not_served_to_peers() {
    let a = NodeProcess::start(&[]);
    let api_a = Api::new(&a);
    let (hash, lines) = deploy_and_start(&api_a, &service_dir("echo"), true).await;
    assert!(
        lines.to_string().contains("private: the package"),
        "the deploy says it is private: {lines}"
    );
    let service = api_a.get(&format!("/v1/services/{hash}")).await;
    let package: PackageHash = service.body["package_hash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Asked directly over the package protocol.
    let rogue = Rogue::join(&a).await;
    match rogue.package_chunk(package).await.unwrap() {
        PackageResponse::NotFound(reason) => {
            assert!(reason.contains("private"), "{reason}")
        }
        other => panic!("a private package was served: {other:?}"),
    }

    // A second node knows the service but cannot run it itself.
    let b = NodeProcess::start(&["--bootstrap", &a.p2p_addr()]);
    let api_b = Api::new(&b);
    let mut refused = None;
    for _ in 0..100 {
        let r = api_b.post("/v1/instances", &json!({"service": hash})).await;
        assert_ne!(r.status, 201, "B started a private service: {}", r.body);
        if r.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("private")
        {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = refused.expect("B is told the package is private");
    assert!(
        refused.status >= 400 && refused.status < 600,
        "{}",
        refused.body
    );

    // Executions routed to the publisher still complete.
    let mut done = serde_json::Value::Null;
    for _ in 0..100 {
        let created = api_b
            .post(
                "/v1/executions",
                &json!({"service": hash, "task": "echo", "inputs": {"message": "via A"}}),
            )
            .await;
        if created.status == 201 {
            let id = created.body["id"].as_str().unwrap().to_string();
            done = api_b
                .get(&format!("/v1/executions/{id}/wait?timeout_ms=20000"))
                .await
                .body;
            if done["status"] == "Completed" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(done["status"], "Completed", "{done}");

    // Deployed again publicly, the same package is served.
    let pkg = mesg_package::Package::from_dir(
        &service_dir("echo"),
        mesg_package::DEFAULT_MAX_PACKAGE_BYTES,
    )
    .unwrap();
    let again = post_package(&api_a, pkg.to_tar_bytes().unwrap(), false).await;
    assert_eq!(
        again.body["last"]["service"]["hash"],
        hash.as_str(),
        "{}",
        again.body
    );
    assert!(
        again.body.to_string().contains("public: any peer"),
        "{}",
        again.body
    );
    match rogue.package_chunk(package).await.unwrap() {
        PackageResponse::Chunk { data, .. } => assert!(!data.0.is_empty()),
        other => panic!("a public package was not served: {other:?}"),
    }
}
