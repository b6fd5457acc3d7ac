//! Issue 12, item 11 (addresses): any announcement's addresses were remembered and
//! redialled forever, so one peer could make the whole network dial a victim. A rogue
//! announces a victim's address (a listener on loopback that counts connections), then
//! leaves. On a node with `--private-network off` the loopback address is never taken;
//! on a node in a private network (auto: it listens on loopback) only the first
//! `MAX_REMOTE_ADDRS` addresses are taken, so a victim listed after them is never dialled.
//! Honest work between the nodes still completes.

use mesg_attacks::Api;
use mesg_attacks::rogue::{OnSubmit, Rogue};
use mesg_node::network::addrs::MAX_REMOTE_ADDRS;
use mesg_testkit::{NodeProcess, free_port, service_dir};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A TCP listener on loopback that counts the connections it gets.
fn victim() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!(
        "/ip4/127.0.0.1/tcp/{}",
        listener.local_addr().unwrap().port()
    );
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            if s.is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, count)
}

async fn announce_and_leave(node: &NodeProcess, addrs: Vec<String>) {
    let rogue = Rogue::join(node, OnSubmit::Refuse).await;
    rogue.announce(vec![], addrs, 20_000).await;
    // Let the announcement be handled, then disconnect: the node would redial.
    tokio::time::sleep(Duration::from_millis(700)).await;
    rogue.shutdown().await;
}

/// `helper_args`: the honest helper's network mode. A helper that joins is handed the
/// announcements the node holds (peer exchange), the rogue's among them: a helper in a
/// private network would take its loopback address, as any private node does.
async fn honest_work_completes(node: &NodeProcess, helper_args: &[&str]) {
    let addr = node.p2p_addr();
    let mut args = vec!["--bootstrap", addr.as_str()];
    args.extend_from_slice(helper_args);
    let helper = NodeProcess::start(&args);
    let api_h = Api::new(&helper);
    let done = mesg_attacks::rogue::deploy_and_start(&api_h, &service_dir("echo")).await;
    let api = Api::new(node);
    let mut last = serde_json::Value::Null;
    for _ in 0..50 {
        last = api
            .post(
                "/v1/executions",
                &json!({"service": done.0, "task": "echo", "inputs": {"message": "hi"}}),
            )
            .await
            .body;
        if let Some(id) = last["id"].as_str() {
            let e = api
                .get(&format!("/v1/executions/{id}/wait?timeout_ms=20000"))
                .await
                .body;
            if e["status"] == "Completed" {
                return;
            }
            last = e;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("honest work did not complete: {last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_node_never_dials_loopback_or_private_addresses_from_peers() {
    let node = NodeProcess::start(&["--private-network", "off"]);
    let (target, dials) = victim();
    announce_and_leave(
        &node,
        vec![
            target,
            "/ip4/10.1.2.3/tcp/4001".into(),
            "/ip4/192.168.7.7/udp/4001/quic-v1".into(),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        dials.load(Ordering::SeqCst),
        0,
        "the node dialled the victim"
    );
    honest_work_completes(&node, &["--private-network", "off"]).await;
    assert_eq!(
        dials.load(Ordering::SeqCst),
        0,
        "the node dialled the victim"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_node_takes_at_most_a_few_addresses_per_announcement() {
    let node = NodeProcess::start(&[]);
    let (target, dials) = victim();
    let mut addrs: Vec<String> = (0..MAX_REMOTE_ADDRS)
        .map(|_| format!("/ip4/127.0.0.1/tcp/{}", free_port()))
        .collect();
    addrs.push(target);
    announce_and_leave(&node, addrs).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        dials.load(Ordering::SeqCst),
        0,
        "the node dialled the victim"
    );
    honest_work_completes(&node, &[]).await;
}
