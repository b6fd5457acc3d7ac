//! Tools for the name-hijack cases: an impostor service (a copy of an example service
//! under a sid of the attacker's choice, with a different hash), deploying and starting
//! it on a node, and waiting until a node sees several services under one sid.

use crate::Api;
use mesg_testkit::{TempDirGuard, service_dir, unique};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// A copy of the example service `of` whose mesg.yml says `sid: <sid>` and whose
/// description carries `mark` (so its hash differs from the original's). Removed when the
/// guard drops.
pub fn impostor(of: &str, sid: &str, mark: &str) -> (PathBuf, TempDirGuard) {
    let src = service_dir(of);
    let dir = std::env::temp_dir().join(unique("mesg-impostor"));
    std::fs::create_dir_all(&dir).expect("impostor dir");
    for entry in std::fs::read_dir(&src).expect("service dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
        }
    }
    let yml = std::fs::read_to_string(dir.join("mesg.yml")).expect("mesg.yml");
    let mut out = String::new();
    let mut has_sid = false;
    for line in yml.lines() {
        if line.starts_with("sid:") {
            out.push_str(&format!("sid: {sid}\n"));
            has_sid = true;
        } else if line.starts_with("description:") {
            out.push_str(&format!("description: {mark}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !has_sid {
        out = format!("sid: {sid}\n{out}");
    }
    std::fs::write(dir.join("mesg.yml"), out).expect("write mesg.yml");
    (dir.clone(), TempDirGuard(dir))
}

/// Deploy `dir` on the node (optionally with a publisher claim header) and start one
/// instance; returns the service hash once the instance's task stream is connected.
pub async fn deploy_and_start(api: &Api, dir: &std::path::Path, claim: Option<String>) -> String {
    let done = deploy_with_claim(api, dir, claim).await;
    assert_eq!(done["type"], "done", "deploy: {done}");
    let hash = done["service"]["hash"]
        .as_str()
        .expect("service hash")
        .to_string();
    let started = api
        .post("/v1/instances", &json!({"service": hash, "env": {}}))
        .await;
    assert_eq!(started.status, 201, "start: {}", started.body);
    let instance = started.body["hash"].as_str().expect("instance").to_string();
    for _ in 0..300 {
        if api.get(&format!("/v1/instances/{instance}")).await.body["connected"] == true {
            return hash;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("instance {instance} never connected");
}

/// Deploy with an optional `x-mesg-publisher-claim` header; returns the last NDJSON line
/// (or the error body when the node refused before streaming).
pub async fn deploy_with_claim(api: &Api, dir: &std::path::Path, claim: Option<String>) -> Value {
    let pkg = mesg_package::Package::from_dir(dir, mesg_package::DEFAULT_MAX_PACKAGE_BYTES)
        .expect("package");
    let mut req = api
        .request(reqwest::Method::POST, "/v1/services")
        .header("content-type", "application/x-tar")
        .body(pkg.to_tar_bytes().expect("tar"));
    if let Some(c) = claim {
        req = req.header("x-mesg-publisher-claim", c);
    }
    let resp = req.send().await.expect("deploy");
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .next_back()
        .unwrap_or(Value::String(text))
}

/// Wait until the node sees `count` different services announced under `sid`; returns
/// the network services view entries of that sid.
pub async fn wait_sid_services(api: &Api, sid: &str, count: usize) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..300 {
        let v = api.get("/v1/network/services").await.body;
        last = v["services"]
            .as_array()
            .map(|a| a.iter().filter(|s| s["sid"] == sid).cloned().collect())
            .unwrap_or_default();
        if last.len() >= count {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{count} service(s) under sid {sid} not announced in time; seen: {last:?}");
}
