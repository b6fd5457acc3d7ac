//! Issue 12, item 8 and the low items on containers: a running instance's container has
//! every capability dropped and its ports bound to 127.0.0.1 only, runs the image tagged
//! for this node, and the node keeps its data dir 0700 with store files 0600. The service
//! still works with all that.

use mesg_attacks::Api;
use mesg_attacks::containers::{Variant, deploy, inspect_json};
use mesg_testkit::NodeProcess;
use std::os::unix::fs::PermissionsExt;

#[tokio::test(flavor = "multi_thread")]
async fn a_running_container_has_no_capability_and_loopback_ports() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    // The echo also serves raw TCP on 7000: publish it.
    let echo = Variant::new("echo", "  ports: [\"7000\"]\n", "");
    let done = deploy(&api, &echo.dir).await;
    assert_eq!(done.body["type"], "done", "{}", done.body);
    let service = done.body["service"]["hash"]
        .as_str()
        .expect("service hash")
        .to_string();
    let started = api
        .post("/v1/instances", &serde_json::json!({"service": service}))
        .await;
    assert!(started.status < 300, "{} {}", started.status, started.body);
    let instance = started.body["hash"].as_str().expect("instance hash");

    // Honest work completes with every capability dropped.
    let e = api
        .exec_wait(&service, "echo", serde_json::json!({"message": "hi"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["outputs"]["message"], "hi");

    let id = node
        .container_of(instance, "service")
        .expect("this node's container of the instance");
    let host = inspect_json(&id, ".HostConfig");
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]), "{host}");
    assert!(host["CapAdd"].is_null(), "{}", host["CapAdd"]);
    assert_eq!(host["Privileged"], false);
    let ports = inspect_json(&id, ".NetworkSettings.Ports");
    let bound = ports["7000/tcp"].as_array().expect("7000 is published");
    assert!(!bound.is_empty(), "{ports}");
    for b in bound {
        assert_eq!(
            b["HostIp"], "127.0.0.1",
            "published beyond loopback: {ports}"
        );
    }
    // The image tag names this node: another node on the engine never moves it.
    let image = inspect_json(&id, ".Config.Image");
    let node8: String = node.public_key.chars().take(8).collect();
    assert_eq!(
        image,
        serde_json::json!(format!("mesg-service:{node8}-{service}"))
    );

    // The data dir and the store (instance tokens) are the node user's only.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&node.data_dir), 0o700);
    let store = node.data_dir.join("store");
    assert_eq!(mode(&store), 0o700);
    let files: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}
