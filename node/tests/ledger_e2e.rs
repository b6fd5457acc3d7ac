//! The economy's ledger on real nodes and real Docker (issue 14): priced executions
//! routed from a requester to two executors, one executor killed and restarted during
//! the run; afterwards each pair agrees on its total to the µc, node-to-node balances sum
//! to zero, no receipt is booked twice, and the publisher's share is booked. And a
//! requester's credit limit: refused at call N+1 with the reason, working again after a
//! settlement.

mod common;

use common::Api;
use futures::StreamExt;
use mesg_testkit::NodeProcess;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

async fn accounts(api: &Api) -> HashMap<String, Value> {
    let (status, v) = api.get("/v1/ledger").await;
    assert_eq!(status, 200, "{v}");
    v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["peer"].as_str().unwrap().to_string(), a.clone()))
        .collect()
}

fn num(a: Option<&Value>, field: &str) -> i128 {
    a.and_then(|a| {
        a[field]
            .as_i64()
            .map(i128::from)
            .or(a[field].as_u64().map(i128::from))
    })
    .unwrap_or(0)
}

async fn log(api: &Api) -> Vec<Value> {
    let (status, v) = api.get("/v1/ledger/log?limit=10000").await;
    assert_eq!(status, 200, "{v}");
    v["entries"].as_array().unwrap().clone()
}

/// Start an instance of `service` (a hash this node fetches from the network).
async fn start_fetched(api: &Api, service: &str) {
    let (status, inst) = api
        .post("/v1/instances", json!({"service": service, "env": {}}))
        .await;
    assert_eq!(status, 201, "{inst}");
    api.wait_connected(inst["hash"].as_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_priced_executions_with_an_executor_restarted_keep_both_sides_books_equal() {
    let e1 = NodeProcess::start(&[]);
    let mut e2 = NodeProcess::start(&["--bootstrap", &e1.p2p_addr()]);
    let r = NodeProcess::start(&["--bootstrap", &e1.p2p_addr()]);
    let (api1, api_r) = (Api::new(&e1), Api::new(&r));
    let dir = mesg_testkit::priced_echo("{call: 1000, per_ms: 2, per_kib: 5}", Some(1000));
    let (service, _) = api1.deploy_and_start(dir.path(), json!({})).await;
    // e2 runs the service e1 published: on e2's books, e1's key earns the share.
    start_fetched(&Api::new(&e2), &service).await;
    api_r.provider_of("echo").await;
    let e2_key = e2.public_key.clone();
    for _ in 0..200 {
        let (_, v) = api_r.get("/v1/network/services").await;
        if v.to_string().contains(&e2_key) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    const TOTAL: usize = 1000;
    let started = std::time::Instant::now();
    let api_r = std::sync::Arc::new(api_r);
    let run = {
        let api_r = api_r.clone();
        let service = service.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..TOTAL)
                .map(|i| {
                    let api_r = api_r.clone();
                    let service = service.clone();
                    async move {
                        let (status, e) = api_r
                            .post(
                                "/v1/executions?wait=true",
                                json!({"service": service, "task": "echo", "max_price": 100_000,
                                       "inputs": {"message": format!("call {i}")}, "timeout_ms": 60000}),
                            )
                            .await;
                        (status, e)
                    }
                })
                .buffer_unordered(24)
                .collect::<Vec<_>>()
                .await
        })
    };
    // Kill e2 in the middle of the run (no flush), and start it again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    e2.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    e2.start_again();
    let results = run.await.unwrap();
    let completed = results
        .iter()
        .filter(|(s, e)| *s == 201 && e["status"] == "Completed")
        .count();
    let by_executor = results
        .iter()
        .fold(HashMap::<String, usize>::new(), |mut m, (_, e)| {
            *m.entry(e["executor"].as_str().unwrap_or("none").to_string())
                .or_default() += 1;
            m
        });
    eprintln!(
        "completed {completed} of {TOTAL} in {:?}; by executor {by_executor:?}",
        started.elapsed()
    );
    assert!(
        completed >= TOTAL * 9 / 10,
        "{completed} of {TOTAL} completed"
    );

    let (api1, api2) = (Api::new(&e1), Api::new(&e2));
    let (k1, k2, kr) = (
        e1.public_key.clone(),
        e2.public_key.clone(),
        r.public_key.clone(),
    );
    // The books settle once every receipt was issued (an executor issues a receipt when
    // it leaves, holding the call's reservation until then: nothing is reserved once all
    // are issued) and answered (outbox retries included).
    let mut settled = false;
    for _ in 0..300 {
        let (a1, a2, ar) = (
            accounts(&api1).await,
            accounts(&api2).await,
            accounts(&api_r).await,
        );
        let agree = [(&a1, &k1), (&a2, &k2)].iter().all(|(books, key)| {
            let on_e = books.get(&kr);
            let on_r = ar.get(*key);
            num(on_e, "issued") - num(on_e, "voided") == num(on_r, "accepted")
                && num(on_e, "acked") == num(on_r, "accepted")
                && num(on_e, "reserved") == 0
        });
        if agree {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (a1, a2, ar) = (
        accounts(&api1).await,
        accounts(&api2).await,
        accounts(&api_r).await,
    );
    eprintln!("e1 {a1:#?}\ne2 {a2:#?}\nr {ar:#?}");
    assert!(settled, "the pairs never agreed");
    eprintln!(
        "books agreed {:?} after the start of the run",
        started.elapsed()
    );

    // Each pair agrees to the µc, and node-to-node balances sum to zero (a publisher's
    // share is the executor's debt to the publisher's key, counted apart).
    let mut sum = 0i128;
    for (books, key) in [(&a1, &k1), (&a2, &k2)] {
        let on_e = books.get(&kr);
        let on_r = ar.get(key);
        assert_eq!(num(on_e, "balance"), -num(on_r, "balance"), "pair {key}");
        assert!(num(on_r, "accepted") > 0, "{key} earned nothing");
        // Only receipts of executions that ran twice (a failover while the executor was
        // down) are rejected: the requester pays for one run.
        assert_eq!(num(on_e, "voided"), num(on_r, "voided"), "pair {key}");
    }
    for books in [&a1, &a2, &ar] {
        for a in books.values() {
            sum += num(Some(a), "balance") + num(Some(a), "shares");
        }
    }
    assert_eq!(sum, 0, "node-to-node balances");

    // No receipt booked twice: one `accept` per execution on the requester, one `debit`
    // per execution on its executor; and every completed execution was booked.
    let mut accepts = HashMap::<String, usize>::new();
    for e in log(&api_r).await {
        if e["kind"] == "accept" {
            *accepts.entry(e["execution_id"].to_string()).or_default() += 1;
        }
    }
    assert!(accepts.values().all(|n| *n == 1), "a receipt booked twice");
    let mut shares = 0i128;
    let mut receipted = std::collections::HashSet::new();
    for api in [&api1, &api2] {
        let mut debits = HashMap::<String, usize>::new();
        for e in log(api).await {
            if e["kind"] == "debit" {
                *debits.entry(e["execution_id"].to_string()).or_default() += 1;
            }
            if e["kind"] == "credit" {
                shares += i128::from(e["amount"].as_u64().unwrap());
            }
        }
        assert!(debits.values().all(|n| *n == 1), "a receipt issued twice");
        receipted.extend(debits.into_keys());
    }
    assert!(
        accepts.keys().all(|id| receipted.contains(id)),
        "a receipt booked that no executor issued"
    );
    assert_eq!(
        accepts.len(),
        completed,
        "every completed execution booked once"
    );

    // The publisher's share: e2 owes e1's key 10% (rounded down) of each of its receipts.
    let owed_to_publisher = num(a2.get(&k1), "shares");
    assert!(owed_to_publisher > 0, "no publisher share booked");
    assert_eq!(shares, owed_to_publisher);
    let issued_by_e2 = num(a2.get(&kr), "issued");
    assert!(owed_to_publisher <= issued_by_e2 / 10 && owed_to_publisher > issued_by_e2 / 11);

    // One execution's view shows its receipt, and the requester's copy its cost.
    let (_, one) = &results.iter().find(|(s, _)| *s == 201).unwrap();
    let (_, view) = api_r
        .get(&format!("/v1/executions/{}", one["id"].as_str().unwrap()))
        .await;
    assert_eq!(view["receipt"]["status"], "accepted", "{view}");
    assert_eq!(view["receipt"]["role"], "requester", "{view}");
    assert!(view["cost"]["amount"].as_u64().unwrap() >= 1000, "{view}");
    drop(e1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requester_over_its_credit_limit_is_refused_with_the_reason_until_it_settles() {
    let e = NodeProcess::start(&[]);
    let r = NodeProcess::start(&["--bootstrap", &e.p2p_addr()]);
    let (api_e, api_r) = (Api::new(&e), Api::new(&r));
    let dir = mesg_testkit::priced_echo("{call: 1000}", Some(1000));
    let (service, _) = api_e.deploy_and_start(dir.path(), json!({})).await;
    api_r.provider_of("echo").await;
    // Three calls' worth (the cap of a call in progress counts too).
    let (status, account) = api_e
        .http
        .put(format!("{}/v1/ledger/limits/{}", api_e.base, r.public_key))
        .json(&json!({"limit": 3000}))
        .send()
        .await
        .map(|resp| resp.status().as_u16())
        .map(|s| (s, ()))
        .unwrap();
    assert_eq!(status, 200, "{account:?}");
    let call = || {
        api_r.post(
            "/v1/executions?wait=true",
            json!({"service": service, "task": "echo", "max_price": 1000, "inputs": {"message": "x"}}),
        )
    };
    for i in 0..3 {
        let (status, ex) = call().await;
        assert_eq!(status, 201, "{ex}");
        assert_eq!(ex["status"], "Completed", "call {i}: {ex}");
    }
    // Wait for the three receipts to be booked on both sides.
    for _ in 0..100 {
        let ar = accounts(&api_r).await;
        if num(ar.get(&e.public_key), "accepted") == 3000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, refused) = call().await;
    assert_eq!(status, 201, "{refused}");
    assert_eq!(refused["status"], "Failed", "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "credit limit: {} owes 3000 µc, 0 µc reserved, this call may cost 1000 µc, limit 3000 µc",
            r.public_key
        )),
        "{refused}"
    );
    let (_, why) = api_r
        .get(&format!(
            "/v1/executions/{}/why",
            refused["id"].as_str().unwrap()
        ))
        .await;
    assert!(why.to_string().contains("credit limit"), "{why}");

    // Settle: the requester pays what it accepted; the executor books it; calls work again.
    let (status, settled) = api_r
        .post("/v1/ledger/settle", json!({"peer": e.public_key}))
        .await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["total"], 3000, "{settled}");
    let on_e = accounts(&api_e).await;
    assert_eq!(num(on_e.get(&r.public_key), "received"), 3000);
    assert_eq!(num(on_e.get(&r.public_key), "balance"), 0);
    assert_eq!(num(accounts(&api_r).await.get(&e.public_key), "balance"), 0);
    let (status, again) = call().await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["status"], "Completed", "{again}");
    // The counters on /metrics: µc earned and spent, calls refused for credit.
    assert_eq!(
        api_e
            .metric("mesg_calls_refused_credit_total")
            .await
            .unwrap_or(0.0),
        1.0
    );
    for _ in 0..100 {
        if api_e
            .metric("mesg_micro_credits_earned_total")
            .await
            .unwrap_or(0.0)
            >= 4000.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        api_e
            .metric("mesg_micro_credits_earned_total")
            .await
            .unwrap_or(0.0),
        4000.0
    );
    assert!(
        api_r
            .metric("mesg_micro_credits_spent_total")
            .await
            .unwrap_or(0.0)
            >= 3000.0
    );
    // Settling again with nothing new owed: 409 nothing_owed or the same total again.
    let (status, _) = api_r
        .post("/v1/ledger/settle", json!({"peer": e.public_key}))
        .await;
    assert!(status == 200 || status == 409, "{status}");
}
