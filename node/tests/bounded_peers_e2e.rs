//! Bounded connections and peer exchange, on real nodes (loopback TCP, real Docker):
//! nodes keep about their target of connections instead of a full mesh, yet every node
//! knows every other and routes work to a provider it has no standing connection to; a
//! node that joins learns who runs what from the peer it connects to, long before any
//! refresh of the announcements.

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TARGET: usize = 2;
const MAX: usize = 3;
const NODES: usize = 8;

/// A node with the test's bounds, joining through `bootstrap` (none for the first).
fn bounded(bootstrap: &[&NodeProcess]) -> NodeProcess {
    let (target, max) = (TARGET.to_string(), MAX.to_string());
    let addrs: Vec<String> = bootstrap.iter().map(|b| b.p2p_addr()).collect();
    let mut args = vec![
        "--target-peers",
        target.as_str(),
        "--max-peers",
        max.as_str(),
    ];
    for a in &addrs {
        args.extend(["--bootstrap", a.as_str()]);
    }
    NodeProcess::start(&args)
}

/// (connected peers, nodes known from announcements) as `api` lists them.
async fn peers(api: &Api) -> (usize, usize) {
    let (_, v) = api.get("/v1/peers").await;
    let connected = v["peers"]
        .as_array()
        .map_or(0, |p| p.iter().filter(|p| p["connected"] == true).count());
    let known = v["nodes"].as_array().map_or(0, Vec::len);
    (connected, known)
}

fn providers_of(services: &Value, sid: &str) -> usize {
    services["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["sid"] == sid))
        .and_then(|s| s["providers"].as_array())
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_nodes_with_a_target_of_two_stay_bounded_and_still_route_to_a_provider_they_are_not_connected_to()
 {
    // Every node bootstraps from node 0: without bounds, node 0 alone would hold 7
    // connections and the others would dial each other into a full mesh.
    let first = bounded(&[]);
    let mut nodes = vec![first];
    for _ in 1..NODES {
        let n = bounded(&[&nodes[0]]);
        nodes.push(n);
    }
    let apis: Vec<Api> = nodes.iter().map(Api::new).collect();
    let provider = &apis[NODES - 1];
    let (_, instance) = provider
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    provider.wait_connected(&instance).await;

    // Every node learns every other one and the provider (gossip across the mesh of
    // bounded connections, and peer exchange), within a bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, api) in apis.iter().enumerate() {
        loop {
            let (_, known) = peers(api).await;
            let (_, services) = api.get("/v1/network/services").await;
            let listed = i == NODES - 1 || providers_of(&services, "echo") >= 1;
            if known >= NODES - 1 && listed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} knows {known} of {} nodes, echo listed: {listed}",
                NODES - 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Connections settle within the bounds. A node takes a peer that dials in and counts
    // it toward its bound only once the connection is 5 s old (a Kademlia query's is
    // closed by its dialer before that), then trims the one too many at its next tick
    // (`network/peers.rs`, SETTLE and REDIAL_TICK): above MAX is allowed while a new
    // connection settles, and only that long. Sampled every second for 12 s once the
    // start is over: no node above MAX in more consecutive samples than a settle takes
    // (a node that never trims would be above in all 12), none alone throughout, and far
    // from a full mesh on average.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let samples = 12;
    let settle_samples = 7;
    let mut over_run = [0usize; NODES];
    let mut longest_over = [0usize; NODES];
    let mut alone = [0usize; NODES];
    let mut total = 0usize;
    // Each sample's counts, printed with a failure (and by `--nocapture`).
    let mut seen = Vec::new();
    for _ in 0..samples {
        let mut row = Vec::new();
        for (i, api) in apis.iter().enumerate() {
            let (connected, _) = peers(api).await;
            if connected == 0 {
                alone[i] += 1;
            }
            over_run[i] = if connected > MAX { over_run[i] + 1 } else { 0 };
            longest_over[i] = longest_over[i].max(over_run[i]);
            total += connected;
            row.push(connected);
        }
        eprintln!("connections per node: {row:?}");
        seen.push(row);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for i in 0..NODES {
        assert!(
            longest_over[i] <= settle_samples,
            "node {i} had more than {MAX} connections in {} samples in a row, 1 s apart \
             (connections per node, by sample: {seen:?})",
            longest_over[i]
        );
        // Known weakness (issue 18, left open): with a target of 2 a node all of whose
        // peers trimmed it can stay alone for seconds; it must not stay alone throughout.
        assert!(
            alone[i] < samples,
            "node {i} had no connection in {} of {samples} samples",
            alone[i]
        );
    }
    let mean = total as f64 / (samples * NODES) as f64;
    assert!(
        mean <= MAX as f64,
        "mean {mean:.1} connections per node, bound {MAX} (a full mesh is {}); by sample: \
         {seen:?}",
        NODES - 1
    );

    // Every other node runs echo on the provider, connected to it or not (a request
    // dials the provider at its announced addresses when there is no connection).
    for (i, api) in apis.iter().enumerate().take(NODES - 1) {
        let (status, e) = api
            .exec("echo", "echo", json!({"message": format!("from {i}")}))
            .await;
        assert_eq!(status, 201, "node {i}: {e}");
        assert_eq!(e["status"], "Completed", "node {i}: {e}");
        assert_eq!(e["executor"], nodes[NODES - 1].public_key.as_str());
        assert_eq!(e["outputs"]["message"], format!("from {i}"));
    }

    // A newcomer learns the provider from the peers it joins through (peer exchange: each
    // answers with its own announcement first, the first one also with what it holds),
    // not from a refresh of the announcements, which comes only every minute.
    let started = Instant::now();
    let newcomer = bounded(&[&nodes[0], &nodes[NODES - 1]]);
    let api = Api::new(&newcomer);
    loop {
        let (_, services) = api.get("/v1/network/services").await;
        if providers_of(&services, "echo") >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the newcomer did not learn the provider: {services}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, e) = api.exec("echo", "echo", json!({"message": "new"})).await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["status"], "Completed", "{e}");
}
