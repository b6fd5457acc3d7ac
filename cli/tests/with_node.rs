//! `mesg` against a real `mesg-node` (no Docker needed: nothing here deploys or starts a
//! service).

mod common;

use common::mesg;
use mesg_testkit::NodeProcess;

#[test]
fn node_info_prints_the_node_identity() {
    let node = NodeProcess::start(&[]);
    let url = node.api_url();
    let run = mesg(&["--node", &url, "node", "info"]);
    run.ok();
    assert!(!node.public_key.is_empty());
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("public key:") && l.ends_with(&node.public_key)),
        "{run:#?}"
    );
    assert!(run.stdout.contains("docker:"), "{run:#?}");

    let json = mesg(&["--node", &url, "--json", "node", "info"]);
    json.ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v["public_key"], node.public_key.as_str());
}

#[test]
fn exec_of_an_unknown_service_prints_the_api_message() {
    let node = NodeProcess::start(&[]);
    let run = mesg(&["--node", &node.api_url(), "exec", "nosuch", "task"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr
            .lines()
            .next()
            .is_some_and(|l| l == "error: service `nosuch` not found"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("hint: list the services"), "{run:#?}");
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn empty_lists_read_well_and_json_is_the_api_answer() {
    let node = NodeProcess::start(&[]);
    let url = node.api_url();
    let run = mesg(&["--node", &url, "service", "list"]);
    run.ok();
    assert!(run.stdout.contains("no services on this node"), "{run:#?}");
    let run = mesg(&["--node", &url, "executions", "list", "--status", "failed"]);
    run.ok();
    assert!(run.stdout.contains("no executions match"), "{run:#?}");
    let run = mesg(&["--node", &url, "--json", "executions", "list", "--all"]);
    run.ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(v["executions"], serde_json::json!([]));
    let run = mesg(&["--node", &url, "--json", "service", "list"]);
    run.ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(v["services"], serde_json::json!([]));
    // Not an id at all: refused before asking the node.
    let run = mesg(&["--node", &url, "executions", "show", "xyz"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("not an execution id"), "{run:#?}");
    let run = mesg(&["--node", &url, "executions", "show", &"ab".repeat(16)]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("not found") && run.stderr.contains("mesg executions list"),
        "{run:#?}"
    );
}

/// A node that requires a token. Started by hand: the testkit's `NodeProcess` reads the
/// node's identity without a token.
struct TokenNode {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl TokenNode {
    fn start(token: &str) -> TokenNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let api = mesg_testkit::free_port();
        let child = std::process::Command::new(mesg_testkit::binary("mesg-node"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--api", &format!("127.0.0.1:{api}")])
            .args(["--api-token", token])
            .args([
                "--service-api",
                &format!("127.0.0.1:{}", mesg_testkit::free_port()),
            ])
            .args([
                "--listen",
                &format!("/ip4/127.0.0.1/tcp/{}", mesg_testkit::free_port()),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn mesg-node");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", api)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the node did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        TokenNode {
            child,
            url: format!("http://127.0.0.1:{api}"),
            _dir: dir,
        }
    }
}

impl Drop for TokenNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_token_is_sent_and_its_absence_explained() {
    let node = TokenNode::start("s3cret");
    let url = node.url.clone();
    let run = mesg(&["--node", &url, "node", "info"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("Authorization: Bearer"), "{run:#?}");
    assert!(run.stderr.contains("--token"), "{run:#?}");
    mesg(&["--node", &url, "--token", "s3cret", "node", "info"]).ok();
    let run = mesg(&["--node", &url, "--token", "wrong", "service", "list"]);
    assert_eq!(run.code, 1, "{run:#?}");
}

#[test]
fn a_local_nodes_token_is_read_from_its_data_dir() {
    let node = NodeProcess::start(&[]);
    let url = node.api_url();
    let home = tempfile::tempdir().unwrap();
    let run_with = |extra: &[&str]| {
        let mut args = vec!["--node", url.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["node", "info"]);
        let out = common::mesg_command(&args, &[])
            .env_remove("MESG_DATA_DIR")
            .env("HOME", home.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Not in ~/.mesg: the node refuses, and the hint says where mesg looks.
    let (code, stderr) = run_with(&[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("api.token"), "{stderr}");
    assert!(stderr.contains("--node-data-dir"), "{stderr}");
    // Told where the node keeps its data: found.
    let dir = node.data_dir.to_str().unwrap();
    let (code, stderr) = run_with(&["--node-data-dir", dir]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_context_names_a_real_node_with_its_token() {
    let node = TokenNode::start("ctx-s3cret");
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    common::mesg_in(
        h,
        &[
            "context",
            "add",
            "remote",
            "--node",
            &node.url,
            "--token",
            "ctx-s3cret",
        ],
    )
    .ok();
    // Named with --context: its node and token are used.
    common::mesg_in(h, &["--context", "remote", "node", "info"]).ok();
    // Not current yet: the local default is asked, and fails.
    let run = common::mesg_in(h, &["node", "info"]);
    assert_eq!(run.code, 1, "{run:#?}");
    common::mesg_in(h, &["context", "use", "remote"]).ok();
    common::mesg_in(h, &["node", "info"]).ok();
    // A flag overrides the context's token.
    let run = common::mesg_in(h, &["--token", "wrong", "node", "info"]);
    assert_eq!(run.code, 1, "{run:#?}");
}
