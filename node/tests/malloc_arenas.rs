//! The node caps glibc's malloc arenas of its own process (see `mesg_node::malloc_arenas`):
//! a real node binary, started as an operator would, runs with `MALLOC_ARENA_MAX` in its
//! environment after re-executing itself, keeps its process id and serves its API.

use mesg_testkit::NodeProcess;

fn environ(pid: u32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("reading the node's environ");
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn the_node_runs_with_capped_malloc_arenas() {
    let node = NodeProcess::start(&[]);
    let pid = node.pid().expect("the node runs");
    // It answers: the re-executed process is the one serving.
    let info = node.node_info();
    assert!(info.get("public_key").is_some(), "GET /v1/node: {info}");
    let env = environ(pid);
    let value = env
        .iter()
        .find(|(k, _)| k == "MALLOC_ARENA_MAX")
        .map(|(_, v)| v.clone());
    // An operator's own setting (inherited from this test's environment) is kept.
    let expected = std::env::var("MALLOC_ARENA_MAX")
        .unwrap_or_else(|_| mesg_node::malloc_arenas::NODE_ARENAS.to_string());
    if std::env::var("GLIBC_TUNABLES").is_err() {
        assert_eq!(value.as_deref(), Some(expected.as_str()), "{env:?}");
    }
    // exec keeps the process: the child the test spawned is the node.
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.contains("--data-dir"), "{cmdline:?}");
}
