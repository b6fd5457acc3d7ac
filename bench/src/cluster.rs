//! Nodes the suite starts (real `mesg-node` processes from the static release build),
//! a small HTTP client for their Application API, and process CPU/RSS readings.

use anyhow::{Context, Result, bail};
use mesg_testkit::NodeProcess;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// The Application API of one node.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    /// The node's API token (every call sends it).
    pub token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(node: &NodeProcess) -> Api {
        Api::at(node.api_url(), node.token())
    }

    pub fn at(base: String, token: Option<String>) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(auth) = token
            .as_ref()
            .and_then(|t| format!("Bearer {t}").parse().ok())
        {
            headers.insert(reqwest::header::AUTHORIZATION, auth);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            // Nothing the suite asks takes this long; a node that hangs fails the section.
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client");
        Api { base, token, http }
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        let r = req
            .send()
            .await
            .with_context(|| format!("{what}: no answer"))?;
        let status = r.status();
        let body = r.bytes().await.with_context(|| format!("{what}: body"))?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{what}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(v)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(
            self.http.get(format!("{}{path}", self.base)),
            &format!("GET {path}"),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            &format!("POST {path}"),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.send(
            self.http.delete(format!("{}{path}", self.base)),
            &format!("DELETE {path}"),
        )
        .await
    }

    /// The raw text of a GET (for /metrics).
    pub async fn text(&self, path: &str) -> Result<String> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        Ok(r.text().await?)
    }

    /// Deploy a service directory; returns its hash.
    pub async fn deploy(&self, dir: &Path) -> Result<String> {
        let pkg = mesg_package::Package::from_dir(dir, mesg_package::DEFAULT_MAX_PACKAGE_BYTES)
            .with_context(|| format!("packing {}", dir.display()))?;
        let r = self
            .http
            .post(format!("{}/v1/services", self.base))
            .header("content-type", "application/x-tar")
            .body(pkg.to_tar_bytes()?)
            .send()
            .await
            .context("deploy: no answer")?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("deploy: {status}: {text}");
        }
        let last: Value = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["type"] != "progress")
            .unwrap_or(Value::Null);
        match last["service"]["hash"].as_str() {
            Some(h) if last["type"] == "done" => Ok(h.to_string()),
            _ => bail!("deploy did not finish: {last}"),
        }
    }

    /// Start an instance of `service` and wait until its container listens for tasks.
    pub async fn start(&self, service: &str) -> Result<String> {
        let inst = self
            .post("/v1/instances", &json!({"service": service, "env": {}}))
            .await?;
        let id = inst["hash"]
            .as_str()
            .context("instance without a hash")?
            .to_string();
        self.wait_connected(&id, Duration::from_secs(60)).await?;
        Ok(id)
    }

    pub async fn wait_connected(&self, instance: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.get(&format!("/v1/instances/{instance}")).await?;
            if v["connected"] == true {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("instance {instance} did not connect within {limit:?}: {v}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Deploy and start; returns (service hash, instance hash).
    pub async fn deploy_and_start(&self, dir: &Path) -> Result<(String, String)> {
        let hash = self.deploy(dir).await?;
        let instance = self.start(&hash).await?;
        Ok((hash, instance))
    }

    /// Run a task and wait for its end; an execution that does not complete is an error.
    pub async fn exec(&self, service: &str, task: &str, inputs: &Value) -> Result<Value> {
        self.exec_capped(service, task, inputs, None).await
    }

    /// [`Api::exec`] with a spending cap (`max_price`, µc), which a priced task requires.
    pub async fn exec_capped(
        &self,
        service: &str,
        task: &str,
        inputs: &Value,
        max_price: Option<u64>,
    ) -> Result<Value> {
        let mut body = json!({"service": service, "task": task, "inputs": inputs});
        if let Some(cap) = max_price {
            body["max_price"] = json!(cap);
        }
        let e = self.post("/v1/executions?wait=true", &body).await?;
        if e["status"] != "Completed" {
            bail!(
                "execution of {task} ended {}: {}",
                e["status"],
                e["error"].as_str().unwrap_or_default()
            );
        }
        Ok(e)
    }

    /// Whether this node lists `providers` providers of `sid` in its network view.
    pub async fn knows_providers(&self, sid: &str, providers: usize) -> Result<bool> {
        let v = self.get("/v1/network/services").await?;
        Ok(v["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["sid"] == sid))
            .and_then(|s| s["providers"].as_array())
            .is_some_and(|p| p.len() >= providers))
    }

    pub async fn wait_providers(&self, sid: &str, providers: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !self.knows_providers(sid, providers).await? {
            if Instant::now() > deadline {
                bail!(
                    "{}: no {providers} provider(s) of {sid} within {limit:?}",
                    self.base
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Start a node and wait until its API answers. The start blocks (testkit), so it runs
/// on the blocking pool; a node that does not start (testkit panics, with its log)
/// becomes an error that ends with the tail of that log.
pub async fn start_node(args: &[&str]) -> Result<NodeProcess> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        NodeProcess::start(&args)
    })
    .await
    .map_err(|e| {
        let msg = if e.is_panic() {
            let p = e.into_panic();
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into())
        } else {
            e.to_string()
        };
        let tail: String = {
            let chars: Vec<char> = msg.chars().collect();
            chars[chars.len().saturating_sub(1500)..].iter().collect()
        };
        anyhow::anyhow!("mesg-node did not start: {tail}")
    })
}

/// Start a node that bootstraps from `bootstrap`.
pub async fn join(bootstrap: &NodeProcess) -> Result<NodeProcess> {
    start_node(&["--bootstrap", &bootstrap.p2p_addr()]).await
}

/// Stop nodes and remove their Docker objects (each drop runs the docker CLI), several
/// at a time, off the async threads.
pub async fn drop_nodes(nodes: Vec<NodeProcess>) {
    use futures::StreamExt;
    futures::stream::iter(nodes)
        .map(|node| tokio::task::spawn_blocking(move || drop(node)))
        .buffer_unordered(8)
        .for_each(|_| async {})
        .await;
}

/// CPU time (user + system) a process used so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    cpu_time_of(&format!("/proc/{pid}/stat"))
}

fn cpu_time_of(stat_path: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(stat_path)?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 1000 / clock_ticks()))
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Bytes a process caused to be written to storage so far (`write_bytes` of
/// /proc/<pid>/io: its file writes as they reach the disk, not the page cache).
pub fn written_bytes(pid: u32) -> Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    let bytes = io
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .context("no write_bytes in /proc/<pid>/io")?
        .trim()
        .parse()?;
    Ok(bytes)
}

/// Resident set size of a process, in bytes.
pub fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

/// Size of a directory tree on disk, in bytes.
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Output of a command that must succeed.
pub fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Two nodes on loopback: B runs `echo`, A bootstrapped from B and knows B provides it.
/// The setup of the round-trip and throughput sections.
#[derive(Debug)]
pub struct Pair {
    pub a: NodeProcess,
    pub b: NodeProcess,
    pub api_a: Api,
    pub api_b: Api,
    /// Hash of the echo service.
    pub service: String,
    /// Instance of echo on B.
    pub instance: String,
}

impl Pair {
    pub async fn start(echo_dir: &Path) -> Result<Pair> {
        let b = start_node(&[]).await?;
        let a = join(&b).await?;
        let (api_a, api_b) = (Api::new(&a), Api::new(&b));
        let (service, instance) = api_b.deploy_and_start(echo_dir).await?;
        api_a
            .wait_providers("echo", 1, Duration::from_secs(30))
            .await?;
        Ok(Pair {
            a,
            b,
            api_a,
            api_b,
            service,
            instance,
        })
    }

    /// Id of the main container of echo's instance on B.
    pub fn container(&self) -> Result<String> {
        let id = run(
            "docker",
            &[
                "ps",
                "-q",
                // Instance hashes are the same on every node: B's container only.
                "--filter",
                &format!("label=mesg.node={}", self.b.public_key),
                "--filter",
                &format!("label=mesg.instance={}", self.instance),
                "--filter",
                "label=mesg.key=service",
            ],
        )?;
        match id.lines().next() {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => bail!("no running container for instance {}", self.instance),
        }
    }
}

/// CPU time used so far by each group of a process's threads, grouped by thread name
/// with digits and trailing separators dropped (`tokio-runtime-w`, `sled-io`, …).
pub fn thread_cpu(pid: u32) -> Result<std::collections::BTreeMap<String, Duration>> {
    let mut out = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(task) = task else { continue };
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // Threads come and go; one that ended meanwhile is skipped.
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        let name: String = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_' || c == '#')
            .to_string();
        let Ok(used) = cpu_time_of(&format!("/proc/{pid}/task/{tid}/stat")) else {
            continue;
        };
        *out.entry(name).or_insert(Duration::ZERO) += used;
    }
    Ok(out)
}
