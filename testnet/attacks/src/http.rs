//! Helpers of the API attack cases (`tests/api_*.rs`): an honest echo instance to prove
//! work still completes, raw sockets that say only what an attacker wants, and metrics.

use crate::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deploy echo on `node`, start it and wait until its container is connected.
pub async fn start_echo(api: &Api) {
    let done = api.deploy(&service_dir("echo")).await;
    assert_eq!(done["type"], "done", "{done}");
    let inst = api.post("/v1/instances", &json!({"service": "echo"})).await;
    assert_eq!(inst.status, 201, "{}", inst.body);
    let hash = inst.body["hash"]
        .as_str()
        .expect("instance hash")
        .to_string();
    for _ in 0..400 {
        if api.get(&format!("/v1/instances/{hash}")).await.body["connected"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("echo never connected its task stream");
}

/// Run echo once and check its answer: the honest work of every case.
pub async fn honest_echo(api: &Api, message: &str) {
    let e = api
        .exec_wait("echo", "echo", json!({"message": message}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["outputs"]["message"], message, "{e}");
}

/// Send `head` (and nothing more) on a fresh loopback socket; return how long the first
/// answer took and its bytes (empty when none came within 5 s).
pub async fn send_head(port: u16, head: &str) -> (Duration, String) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(0);
    (
        started.elapsed(),
        String::from_utf8_lossy(&buf[..n]).to_string(),
    )
}

/// The value of the metric `name` on the node's `/metrics`.
pub async fn metric(api: &Api, name: &str) -> Option<f64> {
    let reply = api.get("/metrics").await;
    let Value::String(text) = reply.body else {
        return None;
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Start a node that joins `bootstrap`.
pub fn joined(bootstrap: &NodeProcess) -> NodeProcess {
    NodeProcess::start(&["--bootstrap", &bootstrap.p2p_addr()])
}
