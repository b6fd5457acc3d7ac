//! `mesg` against a real `mesg-node` and the real Docker engine: deploying the example
//! `echo` service, executing its tasks, streaming its events, verifying results, and
//! `service dev` cleaning up after Ctrl-C. The node is driven through the `mesg` binary
//! only.

mod common;

use common::{Background, Stream, eventually, instance_rows, json_of, mesg, wait_connected};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};

#[test]
fn deploy_exec_events_type_errors_list_and_verify_the_echo_service() {
    let node = NodeProcess::start(&[]);
    let url = node.api_url();
    let dir = service_dir("echo");
    let m = |args: &[&str]| {
        let mut full = vec!["--node", url.as_str()];
        full.extend_from_slice(args);
        mesg(&full)
    };

    // Deploy from the directory and start an instance.
    let deploy = m(&["service", "deploy", dir.to_str().unwrap(), "--start"]);
    deploy.ok();
    assert!(
        deploy.stdout.contains("deployed Echo (sid echo)"),
        "{deploy:#?}"
    );
    assert!(deploy.stdout.contains("service hash: "), "{deploy:#?}");
    assert!(
        deploy.stdout.contains("started instance ") && deploy.stdout.contains(" of echo"),
        "{deploy:#?}"
    );

    // Execute `echo`: the same inputs come back.
    let exec = m(&[
        "--json",
        "exec",
        "echo",
        "echo",
        "-d",
        "message=hi",
        "-d",
        "count=3",
        "--wait",
    ]);
    exec.ok();
    let e = json_of(&exec);
    assert_eq!(e["status"], "Completed", "{e:#}");
    assert_eq!(e["inputs"], json!({"message": "hi", "count": 3}));
    assert_eq!(e["outputs"], json!({"message": "hi", "count": 3}), "{e:#}");
    let echo_id = e["id"].as_str().expect("an id").to_string();

    // A `tick` event reaches a stream of the service's events.
    let mut events = Background::spawn(&["--node", &url, "--json", "events", "--service", "echo"]);
    let mut ticks = Vec::new();
    let event = eventually(30, || {
        // The stream may subscribe after the first tick: tick again until one arrives.
        let tick = m(&["exec", "echo", "tick", "-d", "value=x", "--wait"]);
        tick.ok();
        ticks.push(
            tick.stdout
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
        );
        events.wait_line(Stream::Out, 3, |l| l.contains("\"tick\""))
    });
    let event = event.unwrap_or_else(|| panic!("no tick event: {:#?}", events.seen));
    let event: Value = serde_json::from_str(&event).expect("an Event per line");
    assert_eq!(event["key"], "tick");
    assert_eq!(event["data"]["value"], "x", "{event:#}");
    assert!(event["data"]["count"].is_number(), "{event:#}");
    drop(events);

    // A wrong input type is refused with its JSON path; nothing is executed.
    let wrong = m(&["exec", "echo", "echo", "-d", "count=\"x\""]);
    assert_eq!(wrong.code, 1, "{wrong:#?}");
    assert!(
        wrong
            .stderr
            .contains("inputs.count: expected Number, got String"),
        "{wrong:#?}"
    );
    assert!(wrong.stderr.contains("hint: "), "{wrong:#?}");

    // The executions are listed.
    let list = m(&["--json", "executions", "list"]);
    list.ok();
    let list = json_of(&list);
    let executions = list["executions"].as_array().expect("executions");
    let ids: Vec<&str> = executions.iter().filter_map(|e| e["id"].as_str()).collect();
    assert!(ids.contains(&echo_id.as_str()), "{list:#}");
    for t in ticks.iter().filter(|t| !t.is_empty()) {
        assert!(ids.contains(&t.as_str()), "tick {t} listed: {list:#}");
    }
    assert!(
        executions.iter().all(|e| e["status"] == "Completed"),
        "{list:#}"
    );
    assert_eq!(
        executions.len(),
        1 + ticks.len(),
        "the refused execution was never created: {list:#}"
    );
    let table = m(&["executions", "list", "--task", "echo"]);
    table.ok();
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with(&echo_id[..8]) && l.contains("echo") && l.contains("Completed")),
        "{table:#?}"
    );

    // Its signed result verifies, by a prefix of its id.
    let verify = m(&["executions", "verify", &echo_id[..8]]);
    verify.ok();
    assert!(verify.stdout.contains("signature valid"), "{verify:#?}");
    assert!(
        verify
            .stdout
            .contains(&format!("executor:   {}", node.public_key)),
        "{verify:#?}"
    );
}

#[test]
fn service_dev_stops_and_removes_its_instance_on_ctrl_c() {
    let node = NodeProcess::start(&[]);
    let url = node.api_url();
    let dir = service_dir("echo");
    let mut dev = Background::spawn(&["--node", &url, "service", "dev", dir.to_str().unwrap()]);
    let started = dev.wait_line(Stream::Err, 180, |l| l.starts_with("started instance "));
    let started = started.unwrap_or_else(|| panic!("dev did not start: {:#?}", dev.seen));
    let hash = started
        .split_whitespace()
        .nth(2)
        .expect("an instance hash")
        .to_string();
    assert!(
        dev.wait_line(Stream::Err, 10, |l| l.contains("Ctrl-C stops and removes"))
            .is_some(),
        "{:#?}",
        dev.seen
    );
    wait_connected(&url, "echo");
    // It follows the service: an execution shows up in its output.
    let exec = mesg(&[
        "--node",
        &url,
        "exec",
        "echo",
        "echo",
        "-d",
        "message=dev",
        "--wait",
    ]);
    exec.ok();
    assert!(
        dev.wait_line(Stream::Out, 20, |l| l.contains("exec")
            && l.contains("Completed"))
            .is_some(),
        "{:#?}",
        dev.seen
    );
    let rows = instance_rows(&url, "echo");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(
        rows[0].contains(&hash[..8]) && rows[0].contains("running"),
        "{rows:#?}"
    );

    dev.signal("INT");
    let code = dev.wait_exit(60);
    assert_eq!(
        code,
        Some(0),
        "dev exits cleanly after Ctrl-C: {:#?}",
        dev.seen
    );
    assert!(
        dev.seen
            .iter()
            .any(|(s, l)| *s == Stream::Err && l.contains("stopped and removed")),
        "{:#?}",
        dev.seen
    );
    assert_eq!(instance_rows(&url, "echo"), Vec::<String>::new());
    let list = mesg(&["--node", &url, "service", "list"]);
    list.ok();
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("echo "))
        .unwrap_or_else(|| panic!("the service stays deployed: {list:#?}"));
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let header = cells(list.stdout.lines().next().unwrap_or_default());
    let instances = header
        .iter()
        .position(|h| h == "INSTANCES")
        .unwrap_or_else(|| panic!("an INSTANCES column: {list:#?}"));
    assert_eq!(cells(row)[instances], "-", "no instance left: {list:#?}");
    let logs = mesg(&["--node", &url, "service", "logs", &hash]);
    assert_eq!(logs.code, 1, "the instance is gone: {logs:#?}");
}

#[test]
fn exec_of_a_service_nobody_provides_warns_at_once_and_why_says_why() {
    let node = NodeProcess::start(&[]);
    let url = node.api_url();
    let m = |args: &[&str]| {
        let mut full = vec!["--node", url.as_str()];
        full.extend_from_slice(args);
        mesg(&full)
    };
    // Deployed here, started nowhere.
    m(&["service", "deploy", service_dir("kv").to_str().unwrap()]).ok();

    // Without --wait: the id, and the warning on stderr.
    let exec = m(&["exec", "kv", "get", "-d", "key=k", "--timeout", "20s"]);
    exec.ok();
    assert!(
        exec.stderr.starts_with(
            "warning: no node in the network is known to provide service kv; the execution will wait up to "
        ),
        "{exec:#?}"
    );
    // Half the 20 s timeout at most (10 s), as the node says.
    assert!(exec.stderr.contains(" s for one"), "{exec:#?}");
    let id = exec.stdout.trim().to_string();
    let why = m(&["executions", "why", &id[..12]]);
    why.ok();
    let line = |label: &str| {
        why.stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line: {why:#?}"))
            .to_string()
    };
    assert!(line("status:").ends_with("Created (routing)"), "{why:#?}");
    assert!(line("service:").starts_with("service:    kv ("), "{why:#?}");
    assert!(
        line("why:").contains("no node provides service ")
            && line("why:").contains(" (sid kv): 0 known providers among 0 peers; attempt "),
        "{why:#?}"
    );
    assert!(line("attempts:").contains("gives up in"), "{why:#?}");
    let json = json_of(&m(&["--json", "executions", "why", &id]));
    assert_eq!(json["state"], "routing", "{json:#}");
    // `show` says why it waits too.
    let show = m(&["executions", "show", &id]);
    show.ok();
    assert!(
        show.stdout
            .lines()
            .any(|l| l.starts_with("waiting:") && l.contains("no node provides service")),
        "{show:#?}"
    );

    // With --wait: warned at once, long before the execution fails.
    let mut waiting = Background::spawn(&[
        "--node",
        &url,
        "exec",
        "kv",
        "get",
        "-d",
        "key=k",
        "--timeout",
        "20s",
        "--wait",
    ]);
    let warned = waiting.wait_line(Stream::Err, 5, |l| l.starts_with("warning: no node"));
    assert!(
        warned.is_some(),
        "no warning within 5 s: {:#?}",
        waiting.seen
    );
    assert_eq!(
        waiting.child.try_wait().ok().flatten(),
        None,
        "still waiting"
    );
    assert_eq!(waiting.wait_exit(30), Some(1), "{:#?}", waiting.seen);
    assert!(
        waiting
            .seen
            .iter()
            .any(|(_, l)| l.contains("failed: no node in the network runs service")),
        "{:#?}",
        waiting.seen
    );
    // Ended: `why` says so.
    let why = m(&["executions", "why", &id]);
    why.ok();
    assert!(why.stdout.contains("Failed (finished)"), "{why:#?}");
}
