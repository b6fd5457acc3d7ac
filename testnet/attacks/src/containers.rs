//! Tools of the container cases (`tests/container_*.rs`): hostile variants of the example
//! services, deploys whose refusal comes before any build, images this node did not build,
//! and a look at what Docker actually made (`docker inspect`).

use crate::{Api, Reply};
use mesg_testkit::{TempDirGuard, unique};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of example service `name` with `main` added under its `configuration:` and
/// `extra` appended to its mesg.yml. Removed when dropped.
#[derive(Debug)]
pub struct Variant {
    pub dir: PathBuf,
    _guard: TempDirGuard,
}

impl Variant {
    pub fn new(name: &str, main: &str, extra: &str) -> Variant {
        let src = mesg_testkit::service_dir(name);
        let dir = std::env::temp_dir().join(unique("mesg-attack-variant"));
        std::fs::create_dir_all(&dir).expect("variant dir");
        for entry in std::fs::read_dir(&src).expect("service dir") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
        }
        let yml = dir.join("mesg.yml");
        let text = std::fs::read_to_string(&yml).expect("mesg.yml");
        assert!(
            text.contains("\nconfiguration:\n"),
            "{name} has a configuration"
        );
        let mut text = text.replace("\nconfiguration:\n", &format!("\nconfiguration:\n{main}"));
        text.push_str(extra);
        std::fs::write(&yml, text).expect("write mesg.yml");
        Variant {
            _guard: TempDirGuard(dir.clone()),
            dir,
        }
    }
}

/// Deploy `dir`: the status with the last JSON line of the answer ([`Api::deploy_reply`]).
pub async fn deploy(api: &Api, dir: &Path) -> Reply {
    api.deploy_reply(dir).await
}

/// An image on the engine that no node built (`mesg.node` names nobody): `FROM scratch`
/// with one file. Removed when dropped.
#[derive(Debug)]
pub struct ForeignImage {
    pub tag: String,
    _ctx: TempDirGuard,
}

impl ForeignImage {
    pub fn build() -> ForeignImage {
        let tag = format!("mesg-attack-foreign:{}", unique("t").to_lowercase());
        let ctx = std::env::temp_dir().join(unique("mesg-attack-foreign"));
        std::fs::create_dir_all(&ctx).expect("context");
        std::fs::write(ctx.join("x"), b"not built by a node").expect("file");
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY x /x\n").expect("Dockerfile");
        let out = Command::new("docker")
            .args(["build", "-q", "-t", &tag, "--label", "mesg.node=nobody"])
            .arg(&ctx)
            .output()
            .expect("docker build");
        assert!(out.status.success(), "docker build: {out:?}");
        ForeignImage {
            tag,
            _ctx: TempDirGuard(ctx),
        }
    }
}

impl Drop for ForeignImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

/// `docker inspect -f '{{json FORMAT}}' OBJECT`, parsed.
pub fn inspect_json(object: &str, format: &str) -> Value {
    let out = Command::new("docker")
        .args(["inspect", "-f", &format!("{{{{json {format}}}}}"), object])
        .output()
        .expect("docker inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{object} {format}: {e}: {text}"))
}

/// Deploy the plain echo, run its task, and check the answer: honest work still completes.
pub async fn honest_echo_completes(api: &Api) {
    let done = api.deploy(&mesg_testkit::service_dir("echo")).await;
    assert_eq!(done["type"], "done", "{done}");
    let started = api
        .post("/v1/instances", &serde_json::json!({"service": "echo"}))
        .await;
    assert!(started.status < 300, "{} {}", started.status, started.body);
    let e = api
        .exec_wait("echo", "echo", serde_json::json!({"message": "still fine"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["outputs"]["message"], "still fine", "{e}");
}
