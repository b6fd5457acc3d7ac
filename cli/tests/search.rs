//! `mesg service search` against two real nodes: B runs a priced copy of echo on the real
//! Docker engine, A (which runs nothing and has no definition of it) finds it through the
//! catalogue, shows its price per task, its publisher and its provider, filters it, and
//! refuses a malformed filter with the node's reason.

mod common;

use common::{eventually, json_of, on, wait_connected};
use mesg_testkit::NodeProcess;

#[test]
fn search_finds_a_priced_service_of_another_node_and_filters_it() {
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

    // A finds it, definition included (fetched from the network).
    let found = eventually(30, || {
        let run = on(&ua, &["--json", "service", "search", "ech"]);
        run.ok();
        let v = json_of(&run);
        (v["services"][0]["definition_known"] == true).then_some(v)
    });
    let v = found.expect("A never found echo with its definition");
    assert_eq!(v["services"][0]["sid"], "echo", "{v:#}");
    let hash = v["services"][0]["service_hash"]
        .as_str()
        .unwrap()
        .to_string();

    let table = on(&ua, &["service", "search", "ech"]);
    table.ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("SID") && lines[0].contains("PRICE") && lines[0].contains("LOAD"),
        "{table:#?}"
    );
    let echo = lines
        .iter()
        .find(|l| l.starts_with("echo "))
        .unwrap_or_else(|| panic!("{table:#?}"));
    for want in [
        &hash[..8],
        " echo ",
        "1000 µc/call + 2 µc/ms",
        &b.public_key[..8],
        "0 in flight",
    ] {
        assert!(echo.contains(want), "{want:?} in {echo:?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" sleep ") && l.contains("free")),
        "{table:#?}"
    );

    // Filters: under the echo task's call price only its free tasks are left; a task no
    // service has finds nothing, and says so; a publisher prefix finds it.
    let cheap = on(&ua, &["service", "search", "--max-price", "999"]);
    cheap.ok();
    assert!(!cheap.stdout.contains("µc/call"), "{cheap:#?}");
    assert!(cheap.stdout.contains(" tick "), "{cheap:#?}");
    let none = on(&ua, &["service", "search", "--task", "nope"]);
    none.ok();
    assert!(none.stdout.contains("no service matches"), "{none:#?}");
    let by = on(
        &ua,
        &["service", "search", "--publisher", &b.public_key[..8]],
    );
    by.ok();
    assert!(by.stdout.contains(&hash[..8]), "{by:#?}");

    // A malformed filter: the node's reason, exit code 1.
    let bad = on(&ua, &["service", "search", "Echo"]);
    assert_eq!(bad.code, 1, "{bad:#?}");
    assert!(
        bad.stderr.contains("sid `Echo`") && bad.stderr.contains("lowercase"),
        "{bad:#?}"
    );
}
