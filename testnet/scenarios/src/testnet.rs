//! The running compose testnet: its nodes (API, identity, container), the Docker commands
//! that perturb them, and what the nodes say about each other.

use crate::api::Api;
use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Config {
    /// The repository root, where docker-compose.yml is (compose runs there).
    pub root: PathBuf,
    pub token: String,
    /// (compose service name, API base URL)
    pub nodes: Vec<(String, String)>,
    /// The `mesg` CLI used to deploy services.
    pub cli: PathBuf,
    /// The example service directory (target/mesg-services/echo).
    pub echo_dir: PathBuf,
    /// `docker compose` or `docker-compose`.
    pub compose: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub api: Api,
    pub public_key: String,
    pub peer_id: String,
    pub container: String,
}

#[derive(Debug)]
pub struct Testnet {
    pub cfg: Config,
    pub nodes: Vec<Node>,
    /// The compose network every node is on (the one node1 is on).
    pub network: String,
    pub echo_hash: String,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Run a command, return its stdout; fail with its stderr.
pub async fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    run_in(None, program, args).await
}

pub async fn run_in(
    dir: Option<&std::path::Path>,
    program: &str,
    args: &[&str],
) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(program);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    run("docker", args).await
}

impl Testnet {
    /// Find the nodes (waiting up to `bound` for their APIs), their containers and network.
    pub async fn connect(cfg: Config, bound: Duration) -> anyhow::Result<Testnet> {
        let deadline = Instant::now() + bound;
        let mut nodes = Vec::new();
        for (name, url) in &cfg.nodes {
            let api = Api::new(url, &cfg.token, Duration::from_secs(5))?;
            let info = loop {
                match api.get_ok("/v1/node").await {
                    Ok(v) => break v,
                    Err(e) if Instant::now() > deadline => {
                        return Err(e.context(format!("{name} does not answer at {url}")));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            };
            let mut args: Vec<&str> = cfg.compose[1..].iter().map(String::as_str).collect();
            args.extend(["ps", "-q", name.as_str()]);
            let container = run_in(Some(&cfg.root), &cfg.compose[0], &args)
                .await?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            if container.is_empty() {
                bail!("no container for compose service {name} (is the testnet up?)");
            }
            nodes.push(Node {
                name: name.clone(),
                api,
                public_key: str_of(&info, "public_key")?,
                peer_id: str_of(&info, "peer_id")?,
                container,
            });
        }
        let first = nodes.first().ok_or_else(|| anyhow!("no nodes"))?;
        let nets = docker(&[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}\n{{end}}",
            &first.container,
        ])
        .await?;
        let mut nets = nets.lines().filter(|l| !l.is_empty());
        let network = nets
            .next()
            .ok_or_else(|| anyhow!("{} is on no network", first.name))?
            .to_string();
        if nets.next().is_some() {
            bail!(
                "{} is on several networks: keep node1 free of services",
                first.name
            );
        }
        Ok(Testnet {
            cfg,
            nodes,
            network,
            echo_hash: String::new(),
        })
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Deploy and start `echo` on these nodes (idempotent: same package, same hash).
    pub async fn deploy_echo(&mut self, on: &[&str]) -> anyhow::Result<()> {
        for name in on {
            let node = self.node(name).clone();
            let cli = self.cfg.cli.display().to_string();
            let dir = self.cfg.echo_dir.display().to_string();
            let out = run(
                &cli,
                &[
                    "--node",
                    node.api.base(),
                    "--token",
                    &self.cfg.token,
                    "--json",
                    "service",
                    "deploy",
                    &dir,
                    "--start",
                ],
            )
            .await?;
            // One JSON document (possibly pretty-printed): the deployed service and instance.
            let v: Value = serde_json::from_str(&out)
                .or_else(|_| {
                    serde_json::Deserializer::from_str(&out)
                        .into_iter::<Value>()
                        .filter_map(Result::ok)
                        .last()
                        .ok_or_else(|| anyhow!("no JSON"))
                })
                .with_context(|| format!("deploy output on {name}: {out}"))?;
            let hash = v
                .pointer("/service/hash")
                .or_else(|| v.get("hash"))
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("no service hash in the deploy output: {v}"))?;
            if !self.echo_hash.is_empty() && self.echo_hash != hash {
                bail!(
                    "echo has hash {hash} on {name}, {} elsewhere",
                    self.echo_hash
                );
            }
            self.echo_hash = hash.to_string();
        }
        Ok(())
    }

    /// Public keys of the providers of echo that `who` knows from the network.
    pub async fn echo_providers(&self, who: &Node) -> anyhow::Result<HashSet<String>> {
        let v = who.api.get_ok("/v1/network/services").await?;
        Ok(v["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["service_hash"].as_str() == Some(&self.echo_hash))
            .flat_map(|s| s["providers"].as_array().into_iter().flatten())
            .filter_map(|p| p["node"].as_str().map(str::to_string))
            .collect())
    }

    /// Peer ids `who` has a live connection to.
    pub async fn connected(&self, who: &Node) -> anyhow::Result<HashSet<String>> {
        let v = who.api.get_ok("/v1/peers").await?;
        Ok(v["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["connected"].as_bool() == Some(true))
            .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
            .collect())
    }

    /// Every node connected to every other, and `requester` knowing all `providers` of
    /// echo: the state each scenario starts from.
    pub async fn wait_settled(
        &self,
        requester: &str,
        providers: &[&str],
        bound: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let want: HashSet<String> = providers
            .iter()
            .map(|p| self.node(p).public_key.clone())
            .collect();
        loop {
            let mut missing = Vec::new();
            for n in &self.nodes {
                match self.connected(n).await {
                    Ok(c) => {
                        for o in self.nodes.iter().filter(|o| o.name != n.name) {
                            if !c.contains(&o.peer_id) {
                                missing.push(format!("{}-/-{}", n.name, o.name));
                            }
                        }
                    }
                    Err(e) => missing.push(format!("{}: {e:#}", n.name)),
                }
            }
            match self.echo_providers(self.node(requester)).await {
                Ok(known) => {
                    for p in providers {
                        if !known.contains(&self.node(p).public_key) {
                            missing.push(format!("{requester} does not list {p} for echo"));
                        }
                    }
                }
                Err(e) => missing.push(format!("{requester}: {e:#}")),
            }
            if missing.is_empty() && !want.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > bound {
                bail!(
                    "the testnet did not settle within {}s: {}",
                    bound.as_secs(),
                    missing.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The last lines of a node's log (for failure reports).
    pub async fn logs(&self, node: &Node, since_unix_s: u64) -> String {
        docker(&[
            "logs",
            "--since",
            &since_unix_s.to_string(),
            &node.container,
        ])
        .await
        .unwrap_or_else(|e| format!("(no logs: {e:#})"))
    }
}

fn str_of(v: &Value, key: &str) -> anyhow::Result<String> {
    v[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no `{key}` in {v}"))
}
