//! The durability floor (issue 17): what this machine's disk charges for what the node
//! promises. Every acknowledged transition is flushed before the node answers, and a
//! large payload is written to its own file and synced; so a round trip cannot be faster
//! than the flushes on its path, whatever the node's code does. This section times those
//! operations alone, in a tiny program (this one), in the directory where the suite's
//! nodes keep their data, before any node runs: a sled database opened as the node opens
//! it (one small insert and a flush), a file append with `fdatasync`, and files of 1 MiB
//! and 10 MiB written and synced as the node writes its spilled payloads. The round-trip
//! section then prints each goal's floor beside it.

use crate::Ctx;
use crate::report::{Section, Summary, Table, ms};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the disk charges, p50 of each operation.
#[derive(Debug, Clone, Copy)]
pub struct DiskFloor {
    /// One small sled insert and `flush`: what each of the node's group flushes costs at
    /// least.
    pub sled_flush_ms: f64,
    /// Writing and syncing a new file, in MB (10⁶ B) per second, from the 1 MiB files.
    pub synced_mb_per_s: f64,
}

impl DiskFloor {
    /// Milliseconds to write and sync `bytes` at the measured rate.
    pub fn sync_ms(&self, bytes: f64) -> f64 {
        bytes / (self.synced_mb_per_s * 1e6) * 1e3
    }
}

/// Sled's cache as the node sets it (node/src/store/sled): the same config, so the same
/// flush.
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let dir = tempfile::Builder::new()
        .prefix("mesg-bench-disk")
        .tempdir_in(std::env::temp_dir())
        .context("a scratch directory beside the nodes' data dirs")?;
    let path = dir.path().to_path_buf();
    let (small, big) = (ctx.n(300, 20), ctx.n(40, 3));
    let rows = tokio::task::spawn_blocking(
        move || -> Result<Vec<(&'static str, usize, Vec<Duration>)>> {
            Ok(vec![
                (
                    "sled: insert 100 B, then `flush` (the node's store, its config)",
                    100,
                    sled_flushes(&path, small)?,
                ),
                (
                    "file: append 100 B, then `fdatasync`",
                    100,
                    appends(&path, small)?,
                ),
                (
                    "file: create, write 1 MiB, `fdatasync` (a spilled payload)",
                    1 << 20,
                    new_files(&path, 1 << 20, big)?,
                ),
                (
                    "file: create, write 10 MiB, `fdatasync`",
                    10 << 20,
                    new_files(&path, 10 << 20, big.div_ceil(4))?,
                ),
            ])
        },
    )
    .await??;

    let mut t = Table::new(&[
        "operation",
        "n",
        "min ms",
        "p50 ms",
        "p99 ms",
        "MB/s at p50",
    ]);
    for (what, bytes, samples) in &rows {
        let s = Summary::of(samples);
        t.row(vec![
            what.to_string(),
            s.n.to_string(),
            ms(s.min),
            ms(s.p50),
            ms(s.p99),
            // A rate means something only for the payload files.
            if *bytes >= 1 << 20 {
                format!("{:.0}", *bytes as f64 / 1e6 / (s.p50 / 1e3))
            } else {
                "-".into()
            },
        ]);
    }
    let floor = DiskFloor {
        sled_flush_ms: Summary::of(&rows[0].2).p50,
        synced_mb_per_s: (1 << 20) as f64 / 1e6 / (Summary::of(&rows[2].2).p50 / 1e3),
    };
    let _ = ctx.disk.set(floor);
    let mut section = Section::new(
        "Disk: the durability floor",
        format!(
            "A tiny program (this suite, before any node starts) times, in {} (where the \
             nodes' data dirs are), what the node's durability costs on this disk: sled \
             opened as the node opens it (an insert of 100 B, then `flush`: one group \
             flush), a file append with `fdatasync`, and new files written and synced as \
             the node writes a payload of 64 KiB or more (its own file, synced before its \
             marker goes into sled). The round-trip goals below are printed with the floor \
             these set: the flushes and synced bytes on a round trip's path, at these \
             speeds, with no other work at all.",
            std::env::temp_dir().display()
        ),
    );
    section.tables.push((String::new(), t));
    Ok(section)
}

fn sled_flushes(dir: &Path, n: usize) -> Result<Vec<Duration>> {
    let db = sled::Config::new()
        .path(dir.join("sled"))
        .flush_every_ms(Some(500))
        .cache_capacity(SLED_CACHE_BYTES)
        .open()
        .context("opening a sled database")?;
    let value = [7u8; 100];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let t = Instant::now();
        db.insert((i as u64).to_be_bytes(), &value[..])?;
        db.flush()?;
        if i >= 10 {
            out.push(t.elapsed());
        }
    }
    Ok(out)
}

fn appends(dir: &Path, n: usize) -> Result<Vec<Duration>> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))?;
    let line = [b'x'; 100];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let t = Instant::now();
        f.write_all(&line)?;
        f.sync_data()?;
        if i >= 10 {
            out.push(t.elapsed());
        }
    }
    Ok(out)
}

fn new_files(dir: &Path, bytes: usize, n: usize) -> Result<Vec<Duration>> {
    let data = vec![b'x'; bytes];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let path = dir.join(format!("payload-{i}"));
        let t = Instant::now();
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&data)?;
        f.sync_data()?;
        drop(f);
        if i >= 2 {
            out.push(t.elapsed());
        }
        std::fs::remove_file(&path)?;
    }
    Ok(out)
}
