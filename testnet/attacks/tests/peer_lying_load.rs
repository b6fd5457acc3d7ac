//! Issue 12, item 3 (provider claims): a node could attract all work by announcing
//! `in_flight: 0`. A rogue announces echo with no load at all, accepts every execution
//! and never answers, while the honest provider is busy (three long tasks) and says so. Its claim weighs little against what the requester measures: after
//! the first execution it lost (a timeout is a strike), the work goes to the honest
//! provider, and every other execution completes.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::ServiceHash;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_lying_about_its_load_does_not_attract_all_work() {
    let v = NodeProcess::start(&[]);
    let b = NodeProcess::start(&["--bootstrap", &v.p2p_addr()]);
    let (api_v, api_b) = (Api::new(&v), Api::new(&b));
    let (service, _) = rogue::deploy_and_start(&api_b, &service_dir("echo")).await;
    let service_hash: ServiceHash = service.parse().unwrap();
    let rogue = Rogue::join(&v, OnSubmit::AcceptAndVanish).await;
    // The rogue claims echo with nothing in flight, and keeps claiming it.
    let liar = {
        let net = rogue.net.clone();
        let key = rogue.key.clone();
        tokio::spawn(async move {
            let r = Rogue::from_parts(key, net);
            loop {
                r.announce(vec![rogue::offer(service_hash, 0)], vec![], 20_000)
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    // B is busy (and says so honestly): three long tasks in flight.
    for _ in 0..3 {
        let r = api_b
            .post(
                "/v1/executions",
                &json!({"service": service, "task": "sleep", "inputs": {"ms": 60000}, "timeout_ms": 120000}),
            )
            .await;
        assert!(r.status < 300, "{}", r.body);
    }
    // Wait until V knows both providers, B with its load.
    let mut known = false;
    for _ in 0..200 {
        let s = api_v.get("/v1/network/services").await.body;
        let providers = s["services"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["service_hash"] == service.as_str()))
            .and_then(|x| x["providers"].as_array().cloned())
            .unwrap_or_default();
        if providers.len() >= 2
            && providers
                .iter()
                .any(|p| p["node"] == b.public_key.as_str() && p["in_flight"].as_u64() >= Some(3))
        {
            known = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(known, "V never saw both providers with B's load");

    let mut on_b = 0;
    let mut lost = 0;
    for i in 0..10 {
        let created = api_v
            .post(
                "/v1/executions",
                &json!({"service": service, "task": "echo", "inputs": {"count": i}, "timeout_ms": 2000}),
            )
            .await;
        assert!(created.status < 300, "{}", created.body);
        let id = created.body["id"].as_str().unwrap().to_string();
        let e = api_v
            .get(&format!("/v1/executions/{id}/wait?timeout_ms=10000"))
            .await
            .body;
        if e["status"] == "Completed" {
            assert_eq!(e["executor"], b.public_key.as_str(), "{e}");
            on_b += 1;
        } else {
            assert_eq!(e["status"], "Failed", "{e}");
            lost += 1;
        }
    }
    let taken = rogue.submits.load(Ordering::SeqCst);
    eprintln!("the liar took {taken} of 10 executions ({lost} lost, {on_b} completed on B)");
    assert!(
        taken <= 3 && lost <= 3 && on_b >= 7,
        "the liar took {taken} of 10 executions ({lost} lost, {on_b} completed on B)"
    );
    liar.abort();
    rogue.shutdown().await;
}
