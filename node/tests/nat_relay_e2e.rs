//! A node behind NAT still serves work, through a relay (issue 18).
//!
//! Three node containers (the image of `testnet/build.sh node`, under a tag of this
//! worktree) on two Docker networks of their own: `public`, and `private`, an `internal`
//! network (no route out). The relay (`--relay-server`) is on both; the NATed node only
//! on `private`, with `--relay` naming the relay; the requester only on `public`, so it
//! has no route to the NATed node except through the relay. Echo is deployed on the
//! NATed node and executed from the requester: it must complete there, with the
//! requester knowing the NATed node only by its relayed address for routing purposes
//! and the relay counting the circuit it carried.
//!
//! Everything the test creates carries the label `mesg.test.nat=<id>` and is removed on
//! drop, whether the test passes or not (with the NATed node's service containers).

use mesg_testkit::{docker_cleanup, service_dir, unique, workspace_root};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "nat-test-token";
const LABEL: &str = "mesg.test.nat";

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// The node image of this worktree (built by `testnet/build.sh node` under its own tag,
/// so a concurrent build of another checkout never changes what this test runs).
fn node_image() -> String {
    let root = workspace_root();
    let tag = mesg_protocol::Hash32::sha256(root.to_string_lossy().as_bytes()).to_string();
    let image = format!("mesg-node:nat-{}", tag[..12].to_ascii_lowercase());
    let out = Command::new(root.join("testnet/build.sh"))
        .arg("node")
        .env("MESG_NODE_IMAGE", &image)
        .output()
        .expect("testnet/build.sh");
    assert!(
        out.status.success(),
        "testnet/build.sh node failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

/// Removes what the test created, in every case.
struct Cleanup {
    id: String,
    node_keys: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={LABEL}={}", self.id);
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter])
            && !ids.is_empty()
        {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.split_whitespace());
            let _ = docker(&args);
        }
        for key in &self.node_keys {
            docker_cleanup(key);
        }
        if let Ok(ids) = docker(&["network", "ls", "-q", "--filter", &filter])
            && !ids.is_empty()
        {
            let mut args = vec!["network", "rm"];
            args.extend(ids.split_whitespace());
            let _ = docker(&args);
        }
    }
}

/// `docker create` a node container named `name` on `network`, with `args` for
/// `mesg-node`; its API published on loopback when `publish`.
fn create_node(
    image: &str,
    id: &str,
    name: &str,
    network: &str,
    publish: bool,
    docker_socket: bool,
    args: &[&str],
) {
    let label = format!("{LABEL}={id}");
    let mut cmd: Vec<String> = [
        "create",
        "--name",
        name,
        "--label",
        &label,
        "--network",
        network,
        "--init",
        "-e",
        "MESG_API=0.0.0.0:50052",
        "-e",
        "MESG_SERVICE_API=0.0.0.0:50053",
        "-e",
        "MESG_NODE=http://127.0.0.1:50052",
        "-e",
        "MESG_SELF_CONTAINER=auto",
        "-e",
        "MESG_LISTEN=/ip4/0.0.0.0/tcp/4001",
        "-e",
        "MESG_PRIVATE_NETWORK=on",
        "-e",
        "MESG_DATA_DIR=/data",
        "-e",
        "MESG_LOG=info,mesg_node::network=debug",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cmd.extend([
        "-e".into(),
        format!("MESG_API_TOKEN={TOKEN}"),
        "-e".into(),
        format!("MESG_TOKEN={TOKEN}"),
    ]);
    if publish {
        cmd.extend(["-p".into(), "127.0.0.1::50052".into()]);
    }
    if docker_socket {
        cmd.extend([
            "-v".into(),
            "/var/run/docker.sock:/var/run/docker.sock".into(),
        ]);
    }
    cmd.push(image.into());
    cmd.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    must(&refs);
}

/// The API base URL of a container whose API is published.
fn api_of(name: &str) -> String {
    let port = must(&["port", name, "50052/tcp"]);
    let addr = port.lines().next().expect("a published port").to_string();
    format!("http://{addr}")
}

/// Wait until `name`'s log has a line `listening on .../p2p/<id>`; the id.
fn peer_id_of(name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let logs = Command::new("docker")
            .args(["logs", name])
            .output()
            .expect("docker logs");
        let text = String::from_utf8_lossy(&logs.stdout).to_string()
            + &String::from_utf8_lossy(&logs.stderr);
        if let Some(at) = text
            .lines()
            .filter(|l| l.contains("listening on"))
            .find_map(|l| l.find("/p2p/").map(|i| l[i + 5..].to_string()))
        {
            return at.chars().take_while(char::is_ascii_alphanumeric).collect();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{name} never printed its listen address");
}

fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    match http.get(url).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_behind_nat_serves_work_through_a_relay() {
    let started = Instant::now();
    let image = node_image();
    let echo = service_dir("echo");
    let id = unique("nat");
    let mut cleanup = Cleanup {
        id: id.clone(),
        node_keys: Vec::new(),
    };
    let label = format!("{LABEL}={id}");
    let (public, private) = (format!("{id}-public"), format!("{id}-private"));
    must(&["network", "create", "--label", &label, &public]);
    must(&[
        "network",
        "create",
        "--internal",
        "--label",
        &label,
        &private,
    ]);
    let (relay, natted, requester) = (
        format!("{id}-relay"),
        format!("{id}-natted"),
        format!("{id}-requester"),
    );

    // The relay: on both networks.
    create_node(
        &image,
        &id,
        &relay,
        &public,
        true,
        false,
        &["--relay-server"],
    );
    must(&["network", "connect", &private, &relay]);
    must(&["start", &relay]);
    let relay_id = peer_id_of(&relay);
    let relay_addr = format!("/dns4/{relay}/tcp/4001");

    // The NATed node: only on the internal network, reserving a slot on the relay.
    let relay_arg = format!("{relay_addr}/p2p/{relay_id}");
    create_node(
        &image,
        &id,
        &natted,
        &private,
        false,
        true,
        &["--bootstrap", &relay_addr, "--relay", &relay_arg],
    );
    must(&["start", &natted]);
    // The requester: only on the public network.
    create_node(
        &image,
        &id,
        &requester,
        &public,
        true,
        false,
        &["--bootstrap", &relay_addr],
    );
    must(&["start", &requester]);

    let info: Value = serde_json::from_str(&{
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match docker(&["exec", &natted, "/mesg", "--json", "node", "info"]) {
                Ok(out) if out.starts_with('{') => break out,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(300)),
                other => panic!("node info of the NATed node: {other:?}"),
            }
        }
    })
    .expect("node info JSON");
    let natted_key = info["public_key"].as_str().unwrap().to_string();
    let natted_peer = info["peer_id"].as_str().unwrap().to_string();
    cleanup.node_keys.push(natted_key.clone());

    // Echo on the NATed node (its files copied into its container).
    must(&["cp", &echo.to_string_lossy(), &format!("{natted}:/echo")]);
    let deployed = docker(&[
        "exec", &natted, "/mesg", "service", "deploy", "/echo", "--start",
    ]);
    assert!(deployed.is_ok(), "deploy on the NATed node: {deployed:?}");

    // Executed from the requester: it learns the NATed node's signed announcement
    // (relayed address first) through the relay, and routes there.
    let http = client();
    let (req_api, relay_api) = (api_of(&requester), api_of(&relay));
    let deadline = Instant::now() + Duration::from_secs(120);
    let execution = loop {
        let r = http
            .post(format!("{req_api}/v1/executions?wait=true"))
            .json(&json!({"service": "echo", "task": "echo", "inputs": {"message": "over the relay"}}))
            .send()
            .await;
        let (status, body) = match r {
            Ok(r) => (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            ),
            Err(e) => (0, json!({ "error": e.to_string() })),
        };
        let done = body["status"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("completed"));
        if (200..300).contains(&status) && done {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no execution completed through the relay: {status} {body}\nrequester log:\n{}",
            docker(&["logs", "--tail", "60", &requester]).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(execution["executor"], natted_key.as_str(), "{execution}");
    assert_eq!(
        execution["outputs"]["message"], "over the relay",
        "{execution}"
    );

    // The requester knows the NATed node by its address through the relay...
    let peers = get_json(&http, &format!("{req_api}/v1/peers")).await;
    let entry = peers["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["peer_id"] == natted_peer.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    let circuit = format!("/p2p/{relay_id}/p2p-circuit");
    assert!(
        entry["addrs"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.contains(&circuit)))),
        "the requester has no relayed address of the NATed node: {entry}"
    );
    // ...and the relay carried circuits (the requester has no other route to it: the
    // NATed node is only on an internal network the requester is not on).
    let metrics = http
        .get(format!("{relay_api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let circuits: f64 = metrics
        .lines()
        .filter(|l| l.contains("relay_events") && l.contains("CircuitReqAccepted"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(circuits >= 1.0, "the relay carried no circuit:\n{metrics}");
    let reservations: f64 = metrics
        .lines()
        .filter(|l| l.contains("relay_events") && l.contains("ReservationReqAccepted"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        reservations >= 1.0,
        "no reservation on the relay:\n{metrics}"
    );
    eprintln!(
        "executed on the NATed node through the relay ({circuits} circuit(s)) in {:?}",
        started.elapsed()
    );
    drop(cleanup);
}
