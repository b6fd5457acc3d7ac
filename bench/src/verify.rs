//! What verification costs (issue 15): the routed round trip of a deterministic copy of
//! echo's `echo` task unverified, verified 2-of-2 and verified 2-of-3, interleaved in the
//! same run on the same four nodes (one requester, three providers), so the cost of
//! asking several executors, committing and revealing is measured on its own.
//!
//! Runs alone with `--only verify`; the other sections do not depend on it.

use crate::Ctx;
use crate::cluster::{Api, drop_nodes, join, start_node};
use crate::report::{Section, Summary, Table, ms};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Sid of the deterministic copy.
const DET_SID: &str = "echo-det";

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let b = start_node(&[]).await?;
    let d = join(&b).await?;
    let e = join(&b).await?;
    let a = join(&b).await?;
    let dir = DeterministicCopy::of(&ctx.echo_dir)?;
    let mut service = String::new();
    for n in [&b, &d, &e] {
        service = Api::new(n).deploy_and_start(&dir.0).await?.0;
    }
    let api = Api::new(&a);
    api.wait_providers(DET_SID, 3, Duration::from_secs(30))
        .await?;
    let inputs = json!({ "message": "x".repeat(100) });
    let kinds: [(&str, Option<&str>); 3] = [
        ("unverified", None),
        ("verified 2-of-2", Some("2/2/2")),
        ("verified 2-of-3", Some("2/3")),
    ];
    eprintln!("  warm-up");
    for _ in 0..ctx.n(20, 2) {
        for (_, verify) in kinds {
            exec(&api, &service, &inputs, verify).await?;
        }
    }
    eprintln!("  round trips, interleaved");
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    for _ in 0..ctx.n(200, 5) {
        for (i, (_, verify)) in kinds.iter().enumerate() {
            let t = Instant::now();
            exec(&api, &service, &inputs, *verify).await?;
            samples[i].push(t.elapsed());
        }
    }
    let mut section = Section::new(
        "Verified against unverified (routed A → B, D, E)",
        format!(
            "Four nodes on loopback; B, D and E run a copy of `echo` whose `echo` task is \
             declared `deterministic: true` (sid `{DET_SID}`, same binary); A runs nothing and \
             routes. One execution of `echo` (100 B) in flight at a time on A's API \
             (`wait=true`), timed by the client, the three kinds interleaved: unverified (one \
             provider), verified 2-of-2 (two providers must agree) and verified 2-of-3 (three \
             asked, done when two agree)."
        ),
    );
    let base = Summary::of(&samples[0]);
    let mut t = Table::new(&[
        "kind",
        "n",
        "min ms",
        "p50 ms",
        "p99 ms",
        "p50 ÷ unverified",
    ]);
    for (i, (name, _)) in kinds.iter().enumerate() {
        let s = Summary::of(&samples[i]);
        t.row(vec![
            (*name).into(),
            s.n.to_string(),
            ms(s.min),
            ms(s.p50),
            ms(s.p99),
            format!("{:.2}×", s.p50 / base.p50),
        ]);
    }
    section.tables.push((String::new(), t));
    section.notes.push(
        "A verified execution sends the same signed request to each provider; each executor \
         runs the task, then sends a signed commit, which the requester writes and flushes \
         before it answers, then a signed reveal, written and flushed likewise: two more \
         round trips and flushes per executor than an unverified result, and the execution \
         ends when the quorum's last reveal is in. The requester never executes its own \
         verified requests."
            .into(),
    );
    drop_nodes(vec![a, b, d, e]).await;
    Ok(section)
}

async fn exec(api: &Api, service: &str, inputs: &Value, verify: Option<&str>) -> Result<Value> {
    let mut body = json!({"service": service, "task": "echo", "inputs": inputs});
    if let Some(v) = verify {
        body["verify"] = json!(v);
    }
    let e = api.post("/v1/executions?wait=true", &body).await?;
    if e["status"] != "Completed" {
        bail!(
            "a {} execution ended {}: {}",
            verify.unwrap_or("plain"),
            e["status"],
            e["error"].as_str().unwrap_or_default()
        );
    }
    Ok(e)
}

/// A copy of the echo service directory whose `echo` task is deterministic, removed on
/// drop.
struct DeterministicCopy(PathBuf);

impl DeterministicCopy {
    fn of(echo_dir: &Path) -> Result<DeterministicCopy> {
        let dir = std::env::temp_dir().join(format!("mesg-bench-det-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let copy = DeterministicCopy(dir);
        for f in ["Dockerfile", "echo"] {
            std::fs::copy(echo_dir.join(f), copy.0.join(f))
                .with_context(|| format!("copying {f} of {}", echo_dir.display()))?;
        }
        let yml = std::fs::read_to_string(echo_dir.join("mesg.yml"))?;
        let (sid, task) = ("\nsid: echo\n", "\n  echo:\n");
        if !yml.contains(sid) || !yml.contains(task) {
            bail!("echo's mesg.yml has no `sid: echo` or no `echo` task at the expected place");
        }
        let det = yml
            .replacen(sid, &format!("\nsid: {DET_SID}\n"), 1)
            .replacen(task, &format!("{task}    deterministic: true\n"), 1);
        std::fs::write(copy.0.join("mesg.yml"), det)?;
        Ok(copy)
    }
}

impl Drop for DeterministicCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
