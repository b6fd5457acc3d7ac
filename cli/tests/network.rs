//! `mesg` against two real nodes (A bootstraps from B): peers, the services of the
//! network, and a process on A triggered by events of a service on B. The nodes are driven
//! through the `mesg` binary only; B runs `echo` on the real Docker engine.

mod common;

use common::{Background, Stream, eventually, json_of, mesg_env, on, wait_connected};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::Value;

fn peer_id(url: &str) -> String {
    let info = on(url, &["--json", "node", "info"]);
    info.ok();
    json_of(&info)["peer_id"]
        .as_str()
        .expect("a peer id")
        .to_string()
}

#[test]
fn peers_lists_the_bootstrap_node_as_connected() {
    let b = NodeProcess::start(&[]);
    let a = NodeProcess::start(&["--bootstrap", &b.p2p_addr()]);
    let (ua, ub) = (a.api_url(), b.api_url());
    let b_peer = peer_id(&ub);
    let v = eventually(20, || {
        let run = on(&ua, &["--json", "peers"]);
        run.ok();
        let v = json_of(&run);
        let connected = v["peers"].as_array().is_some_and(|peers| {
            peers
                .iter()
                .any(|p| p["peer_id"] == b_peer.as_str() && p["connected"] == true)
        });
        let announced = v["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["node"] == b.public_key.as_str() && n["peer_id"] == b_peer.as_str())
        });
        (connected && announced).then_some(v)
    });
    assert!(v.is_some(), "A never listed B as connected and announced");
    let human = on(&ua, &["peers"]);
    human.ok();
    let row = human
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&b_peer))
        .unwrap_or_else(|| panic!("B's peer id: {human:#?}"));
    assert!(row.contains(&b.public_key[..8]), "{human:#?}");
    assert!(row.contains(" yes "), "{human:#?}");
    assert!(human.stdout.contains("peers (1 connected"), "{human:#?}");
    // B alone in the other direction is fine too; a lone node says how to join.
    let lone = NodeProcess::start(&[]);
    let run = on(&lone.api_url(), &["peers"]);
    run.ok();
    assert!(run.stdout.contains("--bootstrap"), "{run:#?}");
}

const PIPELINE: &str = "\
name: tick-to-echo
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: say
    task:
      service: echo
      task: echo
      inputs: {count: {step: tick, path: count}, message: \"$(env:GREETING)\"}
      retries: 1
      timeout: 10s
";

const BROKEN: &str = "\
name: broken
steps:
  - key: tick
    trigger: {service: echo, event: tock}
  - key: say
    task: {service: echo, task: echo, inputs: {count: \"x\"}}
";

#[test]
fn a_process_on_a_runs_the_ticks_of_echo_on_b() {
    let b = NodeProcess::start(&[]);
    let a = NodeProcess::start(&["--bootstrap", &b.p2p_addr()]);
    let (ua, ub) = (a.api_url(), b.api_url());
    let b_peer = peer_id(&ub);
    on(
        &ub,
        &[
            "service",
            "deploy",
            service_dir("echo").to_str().unwrap(),
            "--start",
        ],
    )
    .ok();
    wait_connected(&ub, "echo");

    // A learns that B runs echo.
    let network = eventually(30, || {
        let run = on(&ua, &["--json", "service", "list", "--network"]);
        run.ok();
        let v = json_of(&run);
        let found = v["services"].as_array().is_some_and(|s| {
            s.iter().any(|s| {
                s["sid"] == "echo"
                    && s["providers"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["peer_id"] == b_peer.as_str()))
            })
        });
        found.then_some(v)
    });
    assert!(network.is_some(), "A never saw echo in the network");
    let table = on(&ua, &["service", "list", "--network"]);
    table.ok();
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("echo "))
        .unwrap_or_else(|| panic!("{table:#?}"));
    assert!(
        row.contains(&b_peer) && row.contains(&b.public_key[..8]),
        "{table:#?}"
    );
    // Without --network: what A itself runs (nothing).
    let local = on(&ua, &["service", "list"]);
    local.ok();
    assert!(
        local.stdout.contains("no services on this node"),
        "{local:#?}"
    );

    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("pipeline.yml");
    let broken = files.path().join("broken.yml");
    std::fs::write(&file, PIPELINE).unwrap();
    std::fs::write(&broken, BROKEN).unwrap();
    let (f, bf) = (file.to_str().unwrap(), broken.to_str().unwrap());

    // A `$(env:...)` in neither --env nor the environment: refused here, named.
    let missing = on(&ua, &["process", "create", f]);
    assert_eq!(missing.code, 1, "{missing:#?}");
    assert!(
        missing.stderr.contains("$(env:GREETING)") && missing.stderr.contains("--env GREETING="),
        "{missing:#?}"
    );

    // A broken file: every error with its step and path, exit code 1.
    let invalid = on(&ua, &["process", "validate", bf]);
    assert_eq!(invalid.code, 1, "{invalid:#?}");
    assert!(
        invalid.stderr.contains(&format!(
            "{bf}: steps[0] (tick).trigger.event: service `echo` has no event `tock`"
        )),
        "{invalid:#?}"
    );
    assert!(
        invalid.stderr.contains(&format!(
            "{bf}: steps[1] (say).task.inputs.count: expected Number, got String"
        )),
        "{invalid:#?}"
    );
    assert!(invalid.stderr.contains("2 error(s) in"), "{invalid:#?}");
    let invalid = on(&ua, &["--json", "process", "validate", bf]);
    assert_eq!(invalid.code, 1, "{invalid:#?}");
    let v = json_of(&invalid);
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(2), "{v:#}");
    // Creating it fails the same way.
    let refused = on(&ua, &["process", "create", bf]);
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert!(
        refused.stderr.contains("expected Number, got String"),
        "{refused:#?}"
    );

    // The good file, with its env from the environment.
    let valid = mesg_env(
        &[("GREETING", "from-env")],
        &["--node", &ua, "process", "validate", f],
    );
    valid.ok();
    assert!(valid.stdout.contains("is valid"), "{valid:#?}");
    assert!(
        valid
            .stdout
            .lines()
            .any(|l| l.contains("└─ say") && l.contains("echo.echo") && l.contains("\"from-env\"")),
        "{valid:#?}"
    );

    // Created with --env, which wins over the environment.
    let created = mesg_env(
        &[("GREETING", "from-env")],
        &[
            "--node",
            &ua,
            "process",
            "create",
            f,
            "--env",
            "GREETING=hello",
        ],
    );
    created.ok();
    let id = created.stdout.trim().to_string();
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "{created:#?}"
    );
    let list = on(&ua, &["--json", "process", "list"]);
    list.ok();
    assert_eq!(json_of(&list)["processes"][0]["id"], id.as_str());
    let show = on(&ua, &["process", "show", &id[..8]]);
    show.ok();
    assert!(show.stdout.contains("event echo.tick"), "{show:#?}");
    assert!(
        show.stdout.lines().any(|l| l.starts_with("└─ say")
            && l.contains("retries 1")
            && l.contains("timeout 10 s")),
        "{show:#?}"
    );

    // Follow its runs while B emits ticks.
    let mut logs = Background::spawn(&["--node", &ua, "process", "logs", "tick-to-echo"]);
    assert!(
        logs.wait_line(Stream::Err, 20, |l| l
            .starts_with("following runs of tick-to-echo"))
            .is_some(),
        "{:#?}",
        logs.seen
    );
    // Gossip subscriptions take a moment to reach B: tick until a run appears on A.
    let first = eventually(30, || {
        on(&ub, &["exec", "echo", "tick", "-d", "value=x", "--wait"]).ok();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let runs = on(&ua, &["--json", "process", "runs", "tick-to-echo"]);
        runs.ok();
        json_of(&runs)["runs"]
            .as_array()
            .and_then(|r| r.last())
            .cloned()
    })
    .expect("a run of the process on A");
    let run_id = first["id"].as_str().expect("a run id").to_string();
    let run = eventually(30, || {
        let r = on(&ua, &["--json", "process", "run", &run_id]);
        r.ok();
        let v = json_of(&r);
        (v["status"] != "running").then_some(v)
    })
    .expect("the run ended");
    assert_eq!(run["status"], "completed", "{run:#}");
    let steps = &run["steps"];
    assert_eq!(steps["say"]["status"], "done", "{run:#}");
    assert_eq!(steps["say"]["output"]["message"], "hello", "{run:#}");
    assert_eq!(
        steps["say"]["output"]["count"], steps["tick"]["output"]["count"],
        "{run:#}"
    );
    let attempt = steps["say"]["attempts"][0]["execution_id"]
        .as_str()
        .expect("an attempt")
        .to_string();

    // The runs table, the run by a prefix of its id, the logs.
    let runs = on(&ua, &["process", "runs", "tick-to-echo", "--limit", "100"]);
    runs.ok();
    assert!(
        runs.stdout
            .lines()
            .any(|l| l.starts_with(&run_id[..8]) && l.contains("completed")),
        "{runs:#?}"
    );
    let detail = on(&ua, &["process", "run", &run_id[..8]]);
    detail.ok();
    assert!(detail.stdout.contains("status:   completed"), "{detail:#?}");
    assert!(
        detail.stdout.contains(&format!("execution {attempt}")),
        "{detail:#?}"
    );
    let completed = logs.wait_line(Stream::Out, 20, |l| {
        l.contains(&run_id[..8]) && l.contains("completed")
    });
    assert!(completed.is_some(), "{:#?}", logs.seen);
    drop(logs);
    // The step's execution is an execution like any other, on B.
    let exec = on(&ua, &["--json", "executions", "show", &attempt]);
    exec.ok();
    let exec: Value = json_of(&exec);
    assert_eq!(exec["executor"], b.public_key.as_str(), "{exec:#}");
    assert_eq!(exec["process"]["run"], run_id.as_str(), "{exec:#}");

    // Deleted: no more processes.
    on(&ua, &["process", "delete", "tick-to-echo"]).ok();
    let list = on(&ua, &["process", "list"]);
    list.ok();
    assert!(list.stdout.contains("no processes"), "{list:#?}");
    let gone = on(&ua, &["process", "runs", &id]);
    assert_eq!(gone.code, 1, "{gone:#?}");
    assert!(gone.stderr.contains("mesg process list"), "{gone:#?}");
}
