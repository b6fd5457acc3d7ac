//! Caps glibc's malloc arenas for the node process.
//!
//! Why this exists: glibc gives each thread that allocates under contention an arena of
//! its own (up to 8 per core), and memory freed in one arena is reused only by the
//! threads bound to it. The node's threads (tokio workers, the blocking pool that runs
//! every store call, sled's own threads) take turns on the same work, so each arena ends
//! up holding its own high-water mark of freed records: measured by the `footprint`
//! benchmark (docs/benchmarks.md), RSS reached 188-211 MiB after 100,000 executions with
//! glibc's default and 94 MiB, flat over the last half, with one arena. The arena limit
//! can only be set before the first allocation, and the workspace forbids `unsafe` (so no
//! `mallopt`): the node sets `MALLOC_ARENA_MAX` and executes itself again, once, before
//! doing anything else. An operator's own `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` is kept.

/// The arenas the node runs with unless its environment says otherwise.
pub const NODE_ARENAS: &str = "2";

/// Whether the process must set the limit itself, given its environment's
/// `MALLOC_ARENA_MAX` and `GLIBC_TUNABLES`: only when neither sets an arena limit.
pub fn needs_cap(arena_max: Option<&str>, tunables: Option<&str>) -> bool {
    arena_max.is_none() && !tunables.is_some_and(|t| t.contains("glibc.malloc.arena_max"))
}

/// Execute this program again with `MALLOC_ARENA_MAX` set, when it is not set yet (on
/// Linux with glibc; elsewhere it does nothing). Returns only when it does not re-execute,
/// with the reason when the attempt failed (the node then runs with glibc's default).
pub fn cap() -> Result<(), std::io::Error> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let arena_max = std::env::var("MALLOC_ARENA_MAX").ok();
        let tunables = std::env::var("GLIBC_TUNABLES").ok();
        if !needs_cap(arena_max.as_deref(), tunables.as_deref()) {
            return Ok(());
        }
        let exe = std::env::current_exe()?;
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        // `exec` returns only on failure.
        return Err(cmd.args(args).env("MALLOC_ARENA_MAX", NODE_ARENAS).exec());
    }
    #[allow(unreachable_code)]
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::needs_cap;

    #[test]
    fn an_operators_setting_is_kept() {
        assert!(needs_cap(None, None));
        assert!(needs_cap(None, Some("glibc.malloc.trim_threshold=131072")));
        assert!(!needs_cap(Some("8"), None));
        assert!(!needs_cap(None, Some("glibc.malloc.arena_max=4")));
    }
}
