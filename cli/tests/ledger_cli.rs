//! `mesg ledger` against a real `mesg-node` (no Docker needed): the empty books, a
//! peer's credit limit set and shown, the log, and the refusals a person can act on.

mod common;

use common::mesg;
use mesg_protocol::Keypair;
use mesg_testkit::NodeProcess;

#[test]
fn the_books_limits_log_and_refusals_read_well() {
    let node = NodeProcess::start(&[]);
    let url = node.api_url();
    let run = mesg(&["--node", &url, "ledger"]);
    run.ok();
    assert!(run.stdout.contains("no accounts yet"), "{run:#?}");
    assert!(run.stdout.contains("1000000000 µc"), "{run:#?}");

    let peer = Keypair::generate().unwrap().public().to_string();
    let run = mesg(&["--node", &url, "ledger", "limit", &peer, "5000"]);
    run.ok();
    assert!(
        run.stdout
            .contains(&format!("credit limit of {peer}: 5000 µc")),
        "{run:#?}"
    );
    let run = mesg(&["--node", &url, "ledger"]);
    run.ok();
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&peer[..8]))
        .unwrap_or_else(|| panic!("no row for the peer: {run:#?}"));
    assert!(row.contains("5000"), "{row}");
    let json = mesg(&["--node", &url, "--json", "ledger"]);
    json.ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v["accounts"][0]["limit"], 5000);
    assert_eq!(v["accounts"][0]["own_limit"], true);
    let run = mesg(&["--node", &url, "ledger", "limit", &peer, "default"]);
    run.ok();
    assert!(run.stdout.contains(": 1000000000 µc"), "{run:#?}");

    let run = mesg(&["--node", &url, "ledger", "log"]);
    run.ok();
    assert!(run.stdout.contains("KIND"), "{run:#?}");

    // Refusals: a limit that is not a number, a key that is not one, nothing to settle.
    let run = mesg(&["--node", &url, "ledger", "limit", &peer, "lots"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("`lots` is not a number"), "{run:#?}");
    let run = mesg(&["--node", &url, "ledger", "limit", "nobody", "5"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("is not a public key"), "{run:#?}");
    let run = mesg(&["--node", &url, "ledger", "settle", &peer]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("nothing to settle"), "{run:#?}");
    assert!(!run.stderr.contains("panicked"));
}
