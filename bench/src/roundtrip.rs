//! Task round trip on a warm `echo` service, side by side with the baselines, in one run:
//! local (app -> B -> container -> app), routed (app -> A -> B -> container -> B -> A ->
//! app), a raw TCP echo straight to the same container (the floor), `docker exec` per task
//! and `docker run --rm` per task (the container-per-job model).

use crate::Ctx;
use crate::cluster::{self, Pair};
use crate::report::{Goal, Section, Summary, Table, ms};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::fmt::Write as _;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Port of echo's raw TCP echo inside its container (length-prefixed frames).
const FLOOR_PORT: u16 = 7000;

struct Payload {
    label: &'static str,
    /// Its name for `--payloads`.
    key: &'static str,
    bytes: usize,
    /// Samples for (node paths, floor, docker exec, docker run) in a full run.
    full: [usize; 4],
    /// Warm-up round trips (each path) in a full run, not counted.
    warm: usize,
}

const PAYLOADS: &[Payload] = &[
    Payload {
        label: "100 B",
        key: "100B",
        bytes: 100,
        full: [400, 2000, 40, 20],
        warm: 20,
    },
    Payload {
        label: "10 KiB",
        key: "10KiB",
        bytes: 10 * 1024,
        full: [300, 1000, 30, 15],
        warm: 20,
    },
    Payload {
        label: "1 MiB",
        key: "1MiB",
        bytes: 1024 * 1024,
        full: [40, 100, 15, 10],
        warm: 20,
    },
    Payload {
        label: "10 MiB",
        key: "10MiB",
        bytes: 10 * 1024 * 1024,
        full: [15, 30, 8, 5],
        warm: 5,
    },
];

/// The names `--payloads` takes: each payload, and the fan-out.
pub fn row_keys() -> Vec<&'static str> {
    PAYLOADS
        .iter()
        .map(|p| p.key)
        .chain(std::iter::once(crate::fanout::KEY))
        .collect()
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let pair = Pair::start(&ctx.echo_dir).await?;
    let container = pair.container()?;
    let ip = cluster::run(
        "docker",
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &container,
        ],
    )?;
    let ip = ip
        .split_whitespace()
        .next()
        .context("echo's container has no IP address")?
        .to_string();
    let image = cluster::run(
        "docker",
        &["inspect", "-f", "{{.Config.Image}}", &container],
    )?;

    let mut section = Section::new(
        "Task round trip (warm echo)",
        "Two nodes on loopback; B runs `echo`, A knows B provides it. One execution in \
         flight at a time, through the HTTP API with `wait=true`, timed by the client. \
         Floor: the same container's raw TCP echo (length-prefixed frames, one connection \
         kept open), no node in between. `docker exec`: `docker exec -i <container> /echo \
         once` per task, payload on stdin. `docker run --rm`: a new container of the same \
         image per task (`/echo once`). Ratios are p50 ÷ floor p50.",
    );
    let mut headline = None;
    let mut cpu_rows = Vec::new();
    let mut routed_p50 = Vec::new();
    for p in PAYLOADS.iter().filter(|p| ctx.wants(p.key)) {
        let n = |i: usize| ctx.n(p.full[i], [5, 20, 2, 2][i]);
        let message = "x".repeat(p.bytes);
        let inputs = json!({ "message": message });
        let raw = vec![b'x'; p.bytes];
        eprintln!("  {}: local and routed", p.label);
        let (local, routed) = match node_paths(&pair, &inputs, &message, ctx.n(p.warm, 2), n(0))
            .await
        {
            Ok((local, routed, cpu)) => {
                cpu_rows.push((p.key, p.label, cpu));
                (local, routed)
            }
            // A payload the node refuses: the rows say so, with the node's answer.
            Err(e) => {
                section.notes.push(format!(
                    "{}: the node refused the payload, so its local and routed rows are empty: {e:#}",
                    p.label
                ));
                (Vec::new(), Vec::new())
            }
        };
        eprintln!("  {}: floor", p.label);
        let floor = floor(&ip, &raw, n(1)).await?;
        eprintln!("  {}: docker exec", p.label);
        let exec = per_task_command(&["exec", "-i", &container, "/echo", "once"], &raw, n(2))?;
        eprintln!("  {}: docker run --rm", p.label);
        let run_rm = per_task_command(
            &[
                "run",
                "--rm",
                "-i",
                "--network",
                "none",
                "--entrypoint",
                "/echo",
                &image,
                "once",
            ],
            &raw,
            n(3),
        )?;

        let rows = [
            ("floor: raw TCP echo to the container", Summary::of(&floor)),
            ("local: app → B → container", Summary::of(&local)),
            ("routed: app → A → B → container → A", Summary::of(&routed)),
            ("docker exec per task", Summary::of(&exec)),
            ("docker run --rm per task", Summary::of(&run_rm)),
        ];
        let floor_p50 = rows[0].1.p50;
        let mut t = Table::new(&["path", "n", "min ms", "p50 ms", "p99 ms", "× floor"]);
        for (name, s) in &rows {
            t.row(vec![
                name.to_string(),
                s.n.to_string(),
                ms(s.min),
                ms(s.p50),
                ms(s.p99),
                format!("{:.1}", s.p50 / floor_p50),
            ]);
        }
        section.tables.push((format!("Payload {}:", p.label), t));
        if p.bytes == 100 {
            headline = Some((rows[0].1, rows[2].1, rows[3].1, rows[4].1));
        }
        routed_p50.push((p.key, rows[2].1.p50));
    }
    if !cpu_rows.is_empty() {
        let mut t = Table::new(&[
            "payload",
            "local: B ms",
            "routed: A ms",
            "routed: B ms",
            "local: B wrote KiB",
            "routed: A + B wrote KiB",
        ]);
        for (_, label, c) in &cpu_rows {
            t.row(vec![
                label.to_string(),
                ms(c.local_b),
                ms(c.routed_a),
                ms(c.routed_b),
                format!("{:.0}", c.local_written / 1024.0),
                format!("{:.0}", c.routed_written / 1024.0),
            ]);
        }
        section.tables.push((
            "CPU time of each node per execution (user + system from /proc, read around \
             each call of the local and routed rows above, mean; ticks of 10 ms, so only \
             the means over many calls mean anything; the echo container and the client \
             not counted), and the bytes each node wrote to disk per execution \
             (`write_bytes` of /proc/<pid>/io around the same calls)"
                .into(),
            t,
        ));
    }
    if ctx.wants(crate::fanout::KEY) {
        crate::fanout::run(ctx, &pair, &mut section).await?;
    }
    section.notes.push(format!(
        "The floor connects to the container's address on its instance network ({ip}:{FLOOR_PORT}) from the host."
    ));
    let p50_of = |key: &str| routed_p50.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let cpu_of = |key: &str| cpu_rows.iter().find(|(k, ..)| *k == key).map(|(.., c)| c);
    if let Some(p50) = p50_of("100B") {
        section
            .goals
            .push(disk_goal(ctx, "100 B", 1.5, p50, cpu_of("100B")));
    }
    if let Some(p50) = p50_of("1MiB") {
        section
            .goals
            .push(disk_goal(ctx, "1 MiB", 5.0, p50, cpu_of("1MiB")));
    }
    // The other goals are about 100 B: a run without that row has none.
    let Some((floor, routed, exec, run_rm)) = headline else {
        return Ok(section);
    };
    section.goals.push(Goal::new(
        "routed round trip p50, 100 B",
        "≤ 2 ms",
        format!("{} ms", ms(routed.p50)),
        routed.p50 <= 2.0,
    ));
    section.goals.push(Goal::new(
        "routed round trip p99, 100 B",
        "≤ 10 ms",
        format!("{} ms", ms(routed.p99)),
        routed.p99 <= 10.0,
    ));
    let x_floor = routed.p50 / floor.p50;
    section.goals.push(Goal::new(
        "routed ÷ floor, 100 B p50",
        "≤ 3×",
        format!("{x_floor:.0}×"),
        x_floor <= 3.0,
    ));
    let x_exec = exec.p50 / routed.p50;
    section.goals.push(Goal::new(
        "docker exec ÷ routed, 100 B p50",
        "≥ 30×",
        format!("{x_exec:.1}×"),
        x_exec >= 30.0,
    ));
    let x_run = run_rm.p50 / routed.p50;
    section.goals.push(Goal::new(
        "docker run --rm ÷ routed, 100 B p50",
        "≥ 100×",
        format!("{x_run:.1}×"),
        x_run >= 100.0,
    ));
    Ok(section)
}

/// The flushes on a routed execution's path before the application has its answer: A
/// records the request (with its first route) before it offers it, B records it before
/// it accepts it, A records the result before it answers (docs/executions.md). B's own
/// end is flushed while its result travels.
const FLUSHES_ON_ROUTED_PATH: f64 = 3.0;

/// Issue 17's goal for the routed round trip of a payload, with what bounds it: the
/// floor the disk sets on its path when the `disk` section measured it (the flushes on
/// the path, and the bytes the two nodes wrote per round trip, written and synced at the
/// disk's rate), and the CPU the two nodes spent per execution.
fn disk_goal(ctx: &Ctx, payload: &str, target_ms: f64, p50: f64, cpu: Option<&CpuPerExec>) -> Goal {
    let mut measured = format!("{} ms", ms(p50));
    if let Some(d) = ctx.disk.get() {
        let flushes = FLUSHES_ON_ROUTED_PATH * d.sled_flush_ms;
        let written = cpu.map_or(0.0, |c| c.routed_written);
        let floor = flushes + d.sync_ms(written);
        let _ = write!(
            measured,
            "; disk floor {} ms ({FLUSHES_ON_ROUTED_PATH} flushes of {} ms on the path",
            ms(floor),
            ms(d.sled_flush_ms),
        );
        if written >= 1024.0 * 1024.0 {
            let _ = write!(
                measured,
                ", {:.1} MiB written by A and B per round trip, synced at {:.0} MB/s",
                written / (1024.0 * 1024.0),
                d.synced_mb_per_s
            );
        }
        let _ = write!(measured, "): p50 = {:.1}× the floor", p50 / floor);
    }
    if let Some(c) = cpu {
        let _ = write!(
            measured,
            "; CPU per execution A + B = {} ms",
            ms(c.routed_a + c.routed_b)
        );
    }
    Goal::new(
        &format!("routed round trip p50, {payload} (issue 17)"),
        &format!("≤ {target_ms} ms"),
        measured,
        p50 <= target_ms,
    )
}

/// Mean CPU time per execution (ms): B for the local path, A and B for the routed one;
/// and the bytes the nodes wrote to disk per execution (B; A and B together).
struct CpuPerExec {
    local_b: f64,
    routed_a: f64,
    routed_b: f64,
    local_written: f64,
    routed_written: f64,
}

/// Warm-up, then `n` local and `n` routed round trips of `inputs`, interleaved so both
/// see the same machine state; with the nodes' CPU time around each call.
async fn node_paths(
    pair: &Pair,
    inputs: &serde_json::Value,
    message: &str,
    warm: usize,
    n: usize,
) -> Result<(Vec<Duration>, Vec<Duration>, CpuPerExec)> {
    let pid_a = pair.a.pid().context("A is not running")?;
    let pid_b = pair.b.pid().context("B is not running")?;
    let cpu = cluster::cpu_time;
    let written = |pid| cluster::written_bytes(pid).unwrap_or(0);
    let (mut local_b, mut routed_a, mut routed_b) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut local_written, mut routed_written) = (0u64, 0u64);
    for _ in 0..warm {
        pair.api_b.exec(&pair.service, "echo", inputs).await?;
        pair.api_a.exec(&pair.service, "echo", inputs).await?;
    }
    let (mut local, mut routed) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let (b0, w0) = (cpu(pid_b)?, written(pid_b));
        let t = Instant::now();
        let e = pair.api_b.exec(&pair.service, "echo", inputs).await?;
        local.push(t.elapsed());
        local_b += cpu(pid_b)?.saturating_sub(b0);
        local_written += written(pid_b).saturating_sub(w0);
        check_echoed(&e, message)?;
        let (a0, b0) = (cpu(pid_a)?, cpu(pid_b)?);
        let w0 = written(pid_a) + written(pid_b);
        let t = Instant::now();
        let e = pair.api_a.exec(&pair.service, "echo", inputs).await?;
        routed.push(t.elapsed());
        routed_a += cpu(pid_a)?.saturating_sub(a0);
        routed_b += cpu(pid_b)?.saturating_sub(b0);
        routed_written += (written(pid_a) + written(pid_b)).saturating_sub(w0);
        check_echoed(&e, message)?;
    }
    let mean = |d: Duration| d.as_secs_f64() * 1e3 / n.max(1) as f64;
    let per_exec = |bytes: u64| bytes as f64 / n.max(1) as f64;
    let cpu = CpuPerExec {
        local_b: mean(local_b),
        routed_a: mean(routed_a),
        routed_b: mean(routed_b),
        local_written: per_exec(local_written),
        routed_written: per_exec(routed_written),
    };
    Ok((local, routed, cpu))
}

fn check_echoed(e: &serde_json::Value, message: &str) -> Result<()> {
    if e["outputs"]["message"].as_str() != Some(message) {
        bail!("echo returned other outputs than its inputs");
    }
    Ok(())
}

/// Round trips of `payload` over one kept-open TCP connection to echo's raw listener.
async fn floor(ip: &str, payload: &[u8], n: usize) -> Result<Vec<Duration>> {
    let mut s = TcpStream::connect((ip, FLOOR_PORT))
        .await
        .with_context(|| format!("connecting to echo's raw TCP echo at {ip}:{FLOOR_PORT}"))?;
    s.set_nodelay(true)?;
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    let mut back = vec![0u8; frame.len()];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let t = Instant::now();
        s.write_all(&frame).await?;
        s.read_exact(&mut back).await?;
        if i >= 10 {
            out.push(t.elapsed());
        }
        if back != frame {
            bail!("the raw echo returned other bytes");
        }
    }
    Ok(out)
}

/// Time a `docker` command per task, the payload on its stdin, checking it echoes it.
fn per_task_command(args: &[&str], payload: &[u8], n: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut child = Command::new("docker")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("docker CLI")?;
        let mut stdin = child.stdin.take().context("stdin")?;
        let data = payload.to_vec();
        // Write from another thread so a full stdout pipe cannot deadlock us.
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let output = child.wait_with_output()?;
        let elapsed = t.elapsed();
        let _ = writer.join();
        if !output.status.success() {
            bail!(
                "docker {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        if output.stdout != payload {
            bail!("docker {} did not echo its input", args[0]);
        }
        out.push(elapsed);
    }
    Ok(out)
}
