//! Helpers shared by the integration tests, benchmarks and scenario runners.

mod priced;

pub use priced::{ServiceCopy, priced_echo};

use std::collections::BTreeMap;
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

/// The directory of an example service (`echo`, `kv`, `faulty`, `py-echo`, `js-echo`),
/// ready to deploy: its mesg.yml, Dockerfile and static binary (or script and SDK). Builds them on first use in this process
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

/// A copy of the example service `name` in a fresh temporary directory (`tag` names it),
/// with each `(from, to)` replacement made once in its mesg.yml: a variant of the example
/// (another sid, a task declared deterministic, another env key). Panics when a `from` is
/// not in the file, so a test notices when the example changes under it.
pub fn service_variant(name: &str, tag: &str, edits: &[(&str, &str)]) -> PathBuf {
    let source = service_dir(name);
    let dir = std::env::temp_dir().join(format!(
        "mesg-{name}-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    for entry in std::fs::read_dir(&source).expect("the example's directory") {
        let entry = entry.expect("a directory entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copying the example");
    }
    let yml = dir.join("mesg.yml");
    let mut text = std::fs::read_to_string(&yml).expect("the example's mesg.yml");
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "{name}'s mesg.yml has no `{from}`: update the test's variant"
        );
        text = text.replacen(from, to, 1);
    }
    std::fs::write(&yml, text).expect("writing the variant's mesg.yml");
    dir
}

/// The base images of the Python and JavaScript example services (`mesg-runtime-python`,
/// `mesg-runtime-node`; not `mesg-runtime-busybox`, which needs apt), assembled from this machine's interpreters on first use in this
/// process (`testnet/images/runtime-bases.sh`; a no-op when they are up to date). Nodes
/// that run those services need [`RUNTIME_ALLOW_ARGS`].
pub fn runtime_bases() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let script = workspace_root().join("testnet/images/runtime-bases.sh");
        for which in ["python", "node"] {
            let out = Command::new(&script)
                .arg(which)
                .output()
                .map_err(|e| format!("{}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} {which} failed:\n{}{}",
                    script.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    });
    if let Err(e) = built {
        panic!("building the runtime base images failed: {e}");
    }
}

/// `mesg-node` arguments that allow the runtime base images (built here, but not by the
/// node, so its image policy refuses them otherwise).
pub const RUNTIME_ALLOW_ARGS: [&str; 6] = [
    "--allow-image",
    "mesg-runtime-python",
    "--allow-image",
    "mesg-runtime-node",
    "--allow-image",
    "mesg-runtime-busybox",
];

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

static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();
static NODE_LOG: OnceLock<String> = OnceLock::new();

/// Take `mesg-node` and `mesg` from `dir` from now on (the benchmarks run the static
/// release build whatever profile they were built with). First call wins.
pub fn use_binaries_from(dir: PathBuf) {
    let _ = BIN_DIR.set(dir);
}

/// The log filter of the nodes started from now on (default: `MESG_TEST_LOG`, else
/// `info`). First call wins.
pub fn set_node_log(filter: &str) {
    let _ = NODE_LOG.set(filter.to_string());
}

/// Path of a binary of this workspace (`mesg-node`, `mesg`): from the directory given to
/// [`use_binaries_from`] or `MESG_BIN_DIR`; otherwise beside the running test binary,
/// built with the same profile when missing.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = BIN_DIR
        .get()
        .map(|d| d.as_os_str().to_owned())
        .or_else(|| std::env::var_os("MESG_BIN_DIR"))
    {
        let path = PathBuf::from(dir).join(name);
        assert!(
            path.is_file(),
            "MESG_BIN_DIR has no {name}: {} is missing",
            path.display()
        );
        return path;
    }
    let profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            // target/<profile>/deps/<test-binary>, or target/<profile>/<binary>
            let dir = exe.parent()?;
            if dir.file_name().is_some_and(|n| n == "deps") {
                dir.parent().map(Path::to_path_buf)
            } else {
                Some(dir.to_path_buf())
            }
        })
        .unwrap_or_else(|| workspace_root().join("target/debug"));
    let path = profile_dir.join(name);
    // Built once per test process, also when it exists: a test of another package (the
    // attack suite) must never run a stale node. A no-op when nothing changed.
    static BUILT: OnceLock<std::sync::Mutex<std::collections::BTreeSet<String>>> = OnceLock::new();
    let first = BUILT
        .get_or_init(Default::default)
        .lock()
        .map(|mut b| b.insert(name.to_string()))
        .unwrap_or(true);
    if first || !path.exists() {
        let package = match name {
            "mesg-node" => "mesg-node",
            "mesg" => "mesg-cli",
            other => panic!("unknown binary {other}"),
        };
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", package, "--bin", name]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build
            .current_dir(workspace_root())
            .status()
            .expect("cargo build");
        assert!(status.success(), "building {name} failed");
    }
    path
}

/// A free TCP port on loopback (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `mesg-node` child process with its own data dir and ports. Killed on drop; its
/// Docker objects are removed on drop too.
#[derive(Debug)]
pub struct NodeProcess {
    pub data_dir: PathBuf,
    pub api_port: u16,
    pub service_port: u16,
    /// TCP port of the peer-to-peer listener (loopback), stable across restarts.
    pub p2p_port: u16,
    pub extra_args: Vec<String>,
    pub public_key: String,
    child: Option<std::process::Child>,
    log_path: PathBuf,
    _tmp: Option<TempDirGuard>,
}

/// Data dirs of the nodes this process started, by API URL: CLI tests point `mesg` at a
/// node's data dir (MESG_DATA_DIR) so that it finds the node's API token as a user's would.
static STARTED_NODES: std::sync::Mutex<BTreeMap<String, PathBuf>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The data dir of the node this process started with API URL `api_url`.
pub fn data_dir_of(api_url: &str) -> Option<PathBuf> {
    STARTED_NODES
        .lock()
        .ok()?
        .get(api_url.trim_end_matches('/'))
        .cloned()
}

/// Removes a directory on drop.
#[derive(Debug)]
pub struct TempDirGuard(pub PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl NodeProcess {
    /// Start a node in a fresh data dir and wait until its API answers.
    pub fn start(extra_args: &[&str]) -> NodeProcess {
        let data_dir = std::env::temp_dir().join(unique("mesg-node"));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let mut node = NodeProcess {
            data_dir: data_dir.clone(),
            api_port: free_port(),
            service_port: free_port(),
            p2p_port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            public_key: String::new(),
            child: None,
            log_path: data_dir.join("node.log"),
            _tmp: Some(TempDirGuard(data_dir)),
        };
        // A port picked free can be taken before the node binds it (an outgoing
        // connection of another node gets it as its ephemeral port): pick others then.
        for attempt in 0.. {
            match node.try_spawn() {
                Ok(()) => break,
                Err(log) if attempt < 4 && log.contains("cannot listen on") => {
                    eprintln!("mesg-node could not bind a port picked free; other ports");
                    node.api_port = free_port();
                    node.service_port = free_port();
                    node.p2p_port = free_port();
                    let _ = std::fs::remove_file(&node.log_path);
                }
                Err(log) => panic!("{log}"),
            }
        }
        node
    }

    /// Process id of the running node, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The Application API token: `--api-token` when the test gave one, else the one the
    /// node generated into its data dir on first start (`api.token`).
    pub fn token(&self) -> Option<String> {
        if let Some(i) = self.extra_args.iter().position(|a| a == "--api-token") {
            return self.extra_args.get(i + 1).cloned();
        }
        std::fs::read_to_string(self.data_dir.join(API_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// `Authorization` header value for this node's API (`Bearer <token>`), if it has one.
    pub fn auth_header(&self) -> Option<String> {
        self.token().map(|t| format!("Bearer {t}"))
    }

    /// Id of the running container `key` (`service` or a dependency key) of `instance` on
    /// this node. Filtered by this node's label too: instance hashes are the same on every
    /// node, so nodes sharing one Docker Engine each have a container with that instance
    /// label.
    pub fn container_of(&self, instance: &str, key: &str) -> Option<String> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=mesg.node={}", self.public_key),
                "--filter",
                &format!("label=mesg.instance={instance}"),
                "--filter",
                &format!("label=mesg.key={key}"),
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    }

    /// The multiaddr other nodes bootstrap from.
    pub fn p2p_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port)
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("{log}");
        }
    }

    /// Start the node process and wait until its API answers; the error is the reason
    /// with the node's log when it exited first.
    fn try_spawn(&mut self) -> Result<(), String> {
        if let Ok(mut nodes) = STARTED_NODES.lock() {
            nodes.insert(self.api_url(), self.data_dir.clone());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("node log");
        let child = Command::new(binary("mesg-node"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--api")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .arg("--service-api")
            .arg(format!("0.0.0.0:{}", self.service_port))
            .args(if self.extra_args.iter().any(|a| a == "--listen") {
                Vec::new()
            } else {
                vec!["--listen".to_string(), self.p2p_addr()]
            })
            .args(&self.extra_args)
            .env(
                "MESG_LOG",
                NODE_LOG.get().cloned().unwrap_or_else(|| {
                    std::env::var("MESG_TEST_LOG").unwrap_or_else(|_| "info".into())
                }),
            )
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn mesg-node");
        self.child = Some(child);
        self.wait_ready()?;
        if self.public_key.is_empty() {
            self.public_key = self.node_info()["public_key"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            docker_cleanup(&self.public_key);
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            // Ready when the API answers, not when a TCP connect succeeds: a connect to a
            // port nobody listens on yet can succeed on its own (Linux connects a socket
            // to itself when the kernel picks the target port as its ephemeral port), and
            // the first read then fails ("connection reset"; seen in economy_e2e).
            let answer = try_http_get_auth(self.api_port, "/v1/node", self.token().as_deref());
            if answer.is_ok_and(|body| body.contains("public_key")) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("mesg-node exited with {status}:\n{}", self.log()));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mesg-node did not open its API within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `GET /v1/node` as JSON (blocking, through curl-free std TCP).
    pub fn node_info(&self) -> serde_json::Value {
        let body = http_get_auth(self.api_port, "/v1/node", self.token().as_deref());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad node info {body:?}: {e}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process is frozen (its connections stay open, nothing answers), as
    /// a paused provider; [`NodeProcess::resume`] lets it go on.
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            let ok = Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot SIGSTOP mesg-node {pid}");
        }
    }

    /// SIGCONT after [`NodeProcess::pause`].
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait at most `within` for the node to exit: its exit status, or
    /// `None` when it still ran at the end (it is killed then).
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Start again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "node is still running");
        self.spawn();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
        if !self.public_key.is_empty() {
            docker_cleanup(&self.public_key);
        }
        if std::thread::panicking() {
            eprintln!(
                "---- mesg-node log ({}) ----\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Name of the file in a node's data dir that holds its Application API token.
pub const API_TOKEN_FILE: &str = "api.token";

/// A minimal blocking HTTP/1.0 GET on loopback, returning the body.
pub fn http_get(port: u16, path: &str) -> String {
    http_get_auth(port, path, None)
}

/// [`http_get`] with a bearer token.
pub fn http_get_auth(port: u16, path: &str, token: Option<&str>) -> String {
    try_http_get_auth(port, path, token).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// [`http_get_auth`], the I/O error returned rather than a panic.
pub fn try_http_get_auth(port: u16, path: &str, token: Option<&str>) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
