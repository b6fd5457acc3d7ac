//! The mesg benchmark suite. One command runs every section against real nodes, real
//! Docker and real libp2p on loopback, side by side with the Docker baselines, and writes
//! the tables to BENCHMARKS.md:
//!
//! ```sh
//! cargo run --release -p mesg-bench -- --out BENCHMARKS.md   # the full suite (~15 min)
//! cargo run -p mesg-bench -- --quick                          # CI: every section still runs
//! cargo run --release -p mesg-bench -- --only prices --out target/benchmarks-prices.md
//! ```

mod cluster;
mod deploy;
mod disk;
mod fanout;
mod footprint;
mod prices;
mod process;
mod report;
mod roundtrip;
mod scale;
mod throughput;
mod verify;

use anyhow::{Context, Result, bail};
use clap::Parser;
use report::Section;
use std::path::PathBuf;
use std::time::Instant;

const SECTIONS: &[&str] = &[
    "disk",
    "footprint",
    "deploy",
    "scale",
    "process",
    "throughput",
    "roundtrip",
    "prices",
    "verify",
];

/// Run the mesg benchmark suite and write the results table (BENCHMARKS.md).
///
/// Builds the static release binaries and the example service images first
/// (testnet/build.sh, a no-op when nothing changed), then starts real nodes on loopback.
#[derive(Debug, Parser)]
#[command(name = "mesg-bench")]
struct Args {
    /// Few samples and short runs: checks that every section still works (CI). The
    /// figures of a quick run are not meaningful.
    #[arg(long)]
    quick: bool,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Run only these sections (comma-separated): disk, footprint, deploy, scale, process,
    /// throughput, roundtrip, prices, verify. The round trip prints its goals' disk floor
    /// only when `disk` ran before it.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Do not run testnet/build.sh; use the binaries and images already built.
    #[arg(long)]
    no_build: bool,
    /// Round trip: only these payloads (comma-separated: 100B, 10KiB, 1MiB, 10MiB) and,
    /// with `fanout`, the 16-way fan-out; all of them when not given.
    #[arg(long, value_delimiter = ',')]
    payloads: Vec<String>,
    /// Scale: the network sizes to run (comma-separated node counts, e.g. 10,25,50,100);
    /// 10,25,50 when not given (5 in a quick run). Every node is a real `mesg-node`
    /// process on loopback: about 25 MiB of memory each.
    #[arg(long, value_delimiter = ',')]
    scale_sizes: Vec<usize>,
}

/// What every section gets.
#[derive(Debug)]
pub struct Ctx {
    pub quick: bool,
    /// The `echo` service directory (mesg.yml, Dockerfile, static binary).
    pub echo_dir: PathBuf,
    /// `--payloads`: the round trip's rows to run (empty: all).
    pub payloads: Vec<String>,
    /// `--scale-sizes`: the scale section's network sizes (empty: its defaults).
    pub scale_sizes: Vec<usize>,
    /// What the disk charges, once the `disk` section has measured it.
    pub disk: std::sync::OnceLock<disk::DiskFloor>,
}

impl Ctx {
    /// `full` samples normally, `quick` in a quick run.
    pub fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }

    /// Whether the round trip runs the row `key` (`1MiB`, `fanout`, …).
    pub fn wants(&self, key: &str) -> bool {
        self.payloads.is_empty() || self.payloads.iter().any(|p| p.eq_ignore_ascii_case(key))
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("mesg-bench: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    for s in &args.only {
        if !SECTIONS.contains(&s.as_str()) {
            bail!("unknown section `{s}`; sections: {}", SECTIONS.join(", "));
        }
    }
    let keys = roundtrip::row_keys();
    for p in &args.payloads {
        if !keys.iter().any(|k| k.eq_ignore_ascii_case(p)) {
            bail!("unknown payload `{p}`; payloads: {}", keys.join(", "));
        }
    }
    let root = mesg_testkit::workspace_root();
    if !args.no_build {
        eprintln!("building static release binaries and images (testnet/build.sh all)…");
        let status = std::process::Command::new(root.join("testnet/build.sh"))
            .arg("all")
            .status()
            .context("running testnet/build.sh")?;
        if !status.success() {
            bail!("testnet/build.sh all failed");
        }
    }
    // MESG_BIN_DIR runs other binaries, e.g. a release build with symbols for perf.
    let bin_dir = std::env::var_os("MESG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/x86_64-unknown-linux-gnu/release"));
    if !bin_dir.join("mesg-node").is_file() {
        bail!(
            "{} has no mesg-node: run testnet/build.sh all (or drop --no-build)",
            bin_dir.display()
        );
    }
    // Every node the suite starts runs the static release build, whatever profile this
    // binary was built with; and logs only warnings, as an operator's node would.
    mesg_testkit::use_binaries_from(bin_dir);
    mesg_testkit::set_node_log(&std::env::var("MESG_TEST_LOG").unwrap_or_else(|_| "warn".into()));
    let echo_dir = root.join("target/mesg-services/echo");
    if !echo_dir.join("mesg.yml").is_file() {
        bail!(
            "{} is missing: run testnet/build.sh services",
            echo_dir.display()
        );
    }
    let ctx = Ctx {
        quick: args.quick,
        echo_dir,
        payloads: args.payloads.clone(),
        scale_sizes: args.scale_sizes.clone(),
        disk: std::sync::OnceLock::new(),
    };

    let started = Instant::now();
    let mut sections: Vec<Section> = Vec::new();
    let mut failed = Vec::new();
    for &name in SECTIONS {
        if !args.only.is_empty() && !args.only.iter().any(|s| s == name) {
            continue;
        }
        eprintln!("== {name}");
        let t = Instant::now();
        let result = match name {
            "disk" => disk::run(&ctx).await,
            "footprint" => footprint::run(&ctx).await,
            "deploy" => deploy::run(&ctx).await,
            "scale" => scale::run(&ctx).await,
            "process" => process::run(&ctx).await,
            "throughput" => throughput::run(&ctx).await,
            "roundtrip" => roundtrip::run(&ctx).await,
            "prices" => prices::run(&ctx).await,
            "verify" => verify::run(&ctx).await,
            _ => unreachable!("checked above"),
        };
        match result {
            Ok(section) => {
                eprint!("{}", section.markdown());
                sections.push(section);
            }
            Err(e) => {
                eprintln!("section {name} failed: {e:#}");
                let mut s = Section::new(name, format!("**This section failed:** {e:#}"));
                s.title = format!("{name} (failed)");
                sections.push(s);
                failed.push(name);
            }
        }
        eprintln!("== {name} took {:.0} s", t.elapsed().as_secs_f64());
    }

    let report = render(&args, &sections, started.elapsed().as_secs_f64())?;
    std::fs::write(&args.out, report).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    if !failed.is_empty() {
        bail!("sections failed: {}", failed.join(", "));
    }
    Ok(())
}

fn render(args: &Args, sections: &[Section], seconds: f64) -> Result<String> {
    let sh = |cmd: &str, a: &[&str]| cluster::run(cmd, a).unwrap_or_else(|_| "?".into());
    let cores = sh("nproc", &[]);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let docker = sh("docker", &["version", "--format", "{{.Server.Version}}"]);
    let commit = sh("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = if sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut out = String::from("# mesg benchmarks\n\n");
    out.push_str(
        "Written by the benchmark suite (`bench/`, docs/benchmarks.md explains each figure and \
         where the time goes). Every figure below comes from the run described here; baselines \
         ran in the same run, on the same machine.\n\n",
    );
    out.push_str(&format!(
        "- Machine: {cores} cores ({cpu}), {mem} memory, Docker Engine {docker}\n\
         - Commit: {commit}{dirty}\n\
         - Command: `{command}`{}\n\
         - Date: {}, suite ran {seconds:.0} s\n\n",
        if args.quick {
            " — **quick mode: few samples, figures not meaningful**"
        } else {
            ""
        },
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    ));
    out.push_str("## Goals\n\n");
    out.push_str(&report::goals_table(sections).markdown());
    out.push('\n');
    for s in sections {
        out.push_str(&s.markdown());
    }
    Ok(out)
}
