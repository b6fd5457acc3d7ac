//! The catalogue (`GET /v1/catalogue`) on three real nodes and real Docker: A runs a
//! priced echo (its `echo` task costs {call 1000, per_ms 2, per_kib 5}, publisher share
//! 10%), B the free echo; C, which runs nothing and has neither definition, finds both
//! by sid, task, price and publisher, with their providers, and refuses bad filters.

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::Duration;

/// `GET /v1/catalogue?QUERY`, expecting 200.
async fn search(api: &Api, query: &str) -> Value {
    let (status, v) = api.get(&format!("/v1/catalogue?{query}")).await;
    assert_eq!(status, 200, "{query}: {v}");
    v
}

/// The service hashes listed, in order.
fn hashes(v: &Value) -> Vec<String> {
    v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_hash"].as_str().unwrap().to_string())
        .collect()
}

/// The task keys listed for `hash`.
fn tasks_of(v: &Value, hash: &str) -> Vec<String> {
    let s = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_hash"] == hash)
        .unwrap_or_else(|| panic!("{hash} not listed: {v}"));
    s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_runs_nothing_finds_priced_and_free_services_by_sid_task_price_and_publisher() {
    let a = NodeProcess::start(&[]);
    let b = NodeProcess::start(&["--bootstrap", &a.p2p_addr()]);
    let c = NodeProcess::start(&["--bootstrap", &a.p2p_addr()]);
    let (api_a, api_b, api_c) = (Api::new(&a), Api::new(&b), Api::new(&c));
    let dir = mesg_testkit::priced_echo("{call: 1000, per_ms: 2, per_kib: 5}", Some(1000));
    let (priced, _) = api_a.deploy_and_start(dir.path(), json!({})).await;
    let (free, _) = api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    assert_ne!(priced, free);

    // C hears both announcements and fetches both records (it has neither definition).
    let mut all = Value::Null;
    for _ in 0..300 {
        all = search(&api_c, "sid=echo").await;
        let known = all["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["definition_known"] == true)
            .count();
        if known == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sorted(hashes(&all)),
        sorted(vec![priced.clone(), free.clone()]),
        "{all}"
    );
    assert_eq!(all["matched"], 2);
    let entry = |hash: &str| {
        all["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service_hash"] == hash)
            .unwrap()
            .clone()
    };
    let (p, f) = (entry(&priced), entry(&free));
    assert_eq!(p["sid"], "echo");
    assert_eq!(p["publishers"], json!([a.public_key]), "{p}");
    assert_eq!(p["publisher_share_bps"], 1000);
    let echo_task = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "echo")
        .unwrap();
    assert_eq!(
        (&echo_task["price"], &echo_task["free"]),
        (
            &json!({"call": 1000, "per_ms": 2, "per_kib": 5}),
            &json!(false)
        ),
        "{p}"
    );
    let providers = p["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 1, "{p}");
    assert_eq!(providers[0]["node"], a.public_key.as_str());
    assert_eq!(providers[0]["local"], false);
    assert_eq!(providers[0]["in_flight"], 0);
    assert!(
        providers[0]["last_seen_ms_ago"].as_u64().unwrap() < 30_000,
        "{p}"
    );
    assert!(!providers[0]["peer_id"].as_str().unwrap().is_empty());
    assert_eq!(f["publishers"], json!([b.public_key]), "{f}");
    assert_eq!(f["publisher_share_bps"], 0);
    assert!(
        f["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["free"] == true && t["price"].is_null()),
        "{f}"
    );
    assert_eq!(f["providers"][0]["node"], b.public_key.as_str());

    // By sid: a prefix finds both; another sid nothing.
    assert_eq!(hashes(&search(&api_c, "sid=ech").await).len(), 2);
    assert!(hashes(&search(&api_c, "sid=echo-2").await).is_empty());
    // By task: only that task is listed; a task no service has finds nothing.
    let v = search(&api_c, "task=sleep").await;
    assert_eq!(hashes(&v).len(), 2, "{v}");
    assert_eq!(tasks_of(&v, &priced), vec!["sleep"]);
    assert!(hashes(&search(&api_c, "task=nope").await).is_empty());
    // By price (the `call` part): under 1000 µc the priced echo keeps its free tasks only,
    // and for the `echo` task only the free service is left.
    let v = search(&api_c, "max_price=999").await;
    assert_eq!(sorted(tasks_of(&v, &priced)), vec!["sleep", "tick"], "{v}");
    assert_eq!(tasks_of(&v, &free).len(), 3, "{v}");
    assert_eq!(
        hashes(&search(&api_c, "task=echo&max_price=999").await),
        vec![free.clone()]
    );
    assert_eq!(
        hashes(&search(&api_c, "task=echo&max_price=1000").await).len(),
        2
    );
    // By publisher: a whole key, or its start.
    let v = search(&api_c, &format!("publisher={}", a.public_key)).await;
    assert_eq!(hashes(&v), vec![priced.clone()], "{v}");
    let v = search(&api_c, &format!("publisher={}", &b.public_key[..8])).await;
    assert_eq!(hashes(&v), vec![free.clone()], "{v}");
    // A limit keeps the first ones and says how many matched.
    let v = search(&api_c, "sid=echo&limit=1").await;
    assert_eq!((hashes(&v).len(), &v["matched"]), (1, &json!(2)), "{v}");

    // On A its own instance is listed as local.
    let v = search(&api_a, &format!("publisher={}", a.public_key)).await;
    assert_eq!(v["services"][0]["providers"][0]["local"], true, "{v}");

    // Bad filters: 400 naming the filter.
    for (query, code, says) in [
        ("sid=Echo", "bad_filter", "sid `Echo`"),
        ("sid=", "bad_filter", "sid ``"),
        ("task=9lives", "bad_filter", "task `9lives`"),
        ("publisher=0OIl0OIl", "bad_filter", "publisher `0OIl0OIl`"),
        ("publisher=abc", "bad_filter", "publisher `abc`"),
        ("limit=0", "bad_filter", "limit 0"),
        ("limit=1001", "bad_filter", "limit 1001"),
        ("max_price=-1", "bad_request", "max_price"),
        ("max_price=cheap", "bad_request", "max_price"),
    ] {
        let (status, e) = api_c.get(&format!("/v1/catalogue?{query}")).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some(code)),
            "{query}: {e}"
        );
        let message = e["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
}
