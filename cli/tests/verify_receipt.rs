//! `mesg executions verify` checks a priced execution's usage receipt as well as its
//! signed result, on both nodes of the pair: B runs a priced echo on the real Docker
//! engine, A asks it for a call with a cap, and each node's copy of the receipt is signed
//! by B, for the result A holds, for exactly the price applied to the usage. A free call
//! has no receipt, and says so.

mod common;

use common::{eventually, json_of, on, wait_connected};
use mesg_testkit::NodeProcess;

#[test]
fn verify_checks_the_receipt_of_a_priced_call_on_both_nodes() {
    let b = NodeProcess::start(&[]);
    let a = NodeProcess::start(&["--bootstrap", &b.p2p_addr()]);
    let (ua, ub) = (a.api_url(), b.api_url());
    let dir = mesg_testkit::priced_echo("{call: 1000, per_ms: 2}", None);
    on(
        &ub,
        &["service", "deploy", dir.path().to_str().unwrap(), "--start"],
    )
    .ok();
    wait_connected(&ub, "echo");

    // A asks B (the only provider) once A has heard of it.
    let exec = eventually(30, || {
        let run = on(
            &ua,
            &[
                "--json",
                "exec",
                "echo",
                "echo",
                "-d",
                "message=pay",
                "--max-price",
                "50000",
                "--wait",
            ],
        );
        (run.code == 0).then(|| json_of(&run))
    })
    .expect("A never ran the priced echo on B");
    let id = exec["id"].as_str().unwrap().to_string();
    assert_eq!(exec["executor"], b.public_key.as_str(), "{exec:#}");

    for (node, url) in [("requester A", &ua), ("executor B", &ub)] {
        let checked = eventually(15, || {
            let run = on(url, &["--json", "executions", "verify", &id]);
            let v = json_of(&run);
            (run.code == 0 && v["receipt"]["valid"] == true).then_some(v)
        })
        .unwrap_or_else(|| panic!("{node}: no valid receipt for {id}"));
        let receipt = &checked["receipt"];
        assert_eq!(
            receipt["executor"],
            b.public_key.as_str(),
            "{node}: {checked:#}"
        );
        assert_eq!(
            receipt["requester"],
            a.public_key.as_str(),
            "{node}: {checked:#}"
        );
        assert!(
            receipt["amount"].as_u64().unwrap() >= 1000,
            "{node}: at least the call price: {checked:#}"
        );
        let text = on(url, &["executions", "verify", &id]);
        text.ok();
        assert!(
            text.stdout.contains("receipt signature valid") && text.stdout.contains("µc"),
            "{node}: {text:#?}"
        );
    }

    // A free task of the same service: verified, without a receipt.
    let free = on(
        &ua,
        &["--json", "exec", "echo", "tick", "-d", "value=x", "--wait"],
    );
    free.ok();
    let free_id = json_of(&free)["id"].as_str().unwrap().to_string();
    let run = on(&ua, &["executions", "verify", &free_id]);
    run.ok();
    assert!(run.stdout.contains("receipt:    none"), "{run:#?}");
}
