//! Helpers shared by the integration tests, benchmarks and scenario runners.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Root of the workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testkit lives two levels below the workspace root")
        .to_path_buf()
}

/// The directory of an example service (`echo`, `kv`, `faulty`), ready to deploy: its
/// mesg.yml, Dockerfile and static binary. Builds them on first use in this process
/// (`testnet/build.sh services`; a no-op when nothing changed).
pub fn service_dir(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| run_build("services"));
    if let Err(e) = built {
        panic!("building the example services failed: {e}");
    }
    let dir = workspace_root().join("target/mesg-services").join(name);
    assert!(
        dir.join("mesg.yml").is_file(),
        "no service `{name}` in {}",
        dir.display()
    );
    dir
}

fn run_build(what: &str) -> Result<(), String> {
    let script = workspace_root().join("testnet/build.sh");
    let out = Command::new(&script)
        .arg(what)
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {what} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A unique short name for test resources (node ids, data dirs).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Remove every Docker container, network and volume labelled `mesg.node=<node_id>`.
/// Tests call it before and after they run so that a failed run leaves nothing behind.
pub fn docker_cleanup(node_id: &str) {
    let filter = format!("label=mesg.node={node_id}");
    let ids = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = ids(&["ps", "-aq", "--filter", &filter]);
    if !containers.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(&containers)
            .output();
    }
    let networks = ids(&["network", "ls", "-q", "--filter", &filter]);
    if !networks.is_empty() {
        let _ = Command::new("docker")
            .args(["network", "rm"])
            .args(&networks)
            .output();
    }
    let volumes = ids(&["volume", "ls", "-q", "--filter", &filter]);
    if !volumes.is_empty() {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f"])
            .args(&volumes)
            .output();
    }
}
