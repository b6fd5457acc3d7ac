//! Container hardening rules that need no node: the container paths a volume may not
//! cover, and the names of the Linux capabilities an operator may grant.
//!
//! A definition can come from any peer (nodes fetch and run packages published by
//! others), so its volumes are checked here, when it is parsed, before a node builds or
//! runs it. Capabilities are the node operator's decision (`--allow-capability`); this
//! module only says which names exist.

/// Every Linux capability, without the `CAP_` prefix, as Docker's `CapAdd` takes them.
/// Containers start with none of them (the node drops `ALL`); the operator names the few
/// the node adds back.
pub const LINUX_CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// Container directories a volume may not be mounted at or under: the kernel's and
/// Docker's own (a volume there would hide or replace what the runtime sets up, or keep
/// a writable copy of it across redeploys).
pub const FORBIDDEN_VOLUME_TREES: &[&str] = &["/proc", "/sys", "/dev"];

/// Files Docker writes into every container; a volume over one would let a service keep
/// and serve its own name resolution to later versions.
pub const FORBIDDEN_VOLUME_FILES: &[&str] = &["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// Whether `name` is a Linux capability (exact, upper case, no `CAP_`).
pub fn is_known_capability(name: &str) -> bool {
    LINUX_CAPABILITIES.contains(&name)
}

/// What is wrong with `name` as a capability to grant, if anything, in words that say
/// what to write instead.
pub fn capability_problem(name: &str) -> Option<String> {
    if is_known_capability(name) {
        return None;
    }
    if name.eq_ignore_ascii_case("ALL") {
        return Some(
            "`ALL` cannot be asked for: name each capability the service needs (e.g. NET_BIND_SERVICE)"
                .into(),
        );
    }
    let bare = name.trim();
    let bare = bare
        .strip_prefix("CAP_")
        .or_else(|| bare.strip_prefix("cap_"))
        .unwrap_or(bare)
        .to_ascii_uppercase();
    if is_known_capability(&bare) {
        Some(format!("write `{bare}` (upper case, without `CAP_`)"))
    } else {
        Some(format!(
            "`{}` is not a Linux capability (e.g. NET_BIND_SERVICE, CHOWN; see capabilities(7))",
            name.escape_debug()
        ))
    }
}

/// Why a volume may not be mounted at container path `path`, if it may not. `path` is
/// already known to be absolute.
pub fn volume_target_problem(path: &str) -> Option<String> {
    if path == "/" {
        return Some(
            "a volume at `/` would replace the container's whole file system; mount it at a directory such as `/data`".into(),
        );
    }
    if path.ends_with('/') {
        return Some(format!(
            "`{path}` ends with `/`: write `{}`",
            path.trim_end_matches('/')
        ));
    }
    if path[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Some(format!(
            "`{path}` is not a plain path: no empty, `.` or `..` parts"
        ));
    }
    for tree in FORBIDDEN_VOLUME_TREES {
        if path == *tree || path.strip_prefix(tree).is_some_and(|r| r.starts_with('/')) {
            return Some(format!(
                "`{path}` is under `{tree}`, which belongs to the kernel and Docker; mount the volume elsewhere (e.g. `/data`)"
            ));
        }
    }
    if FORBIDDEN_VOLUME_FILES.contains(&path) {
        return Some(format!(
            "`{path}` is written by Docker into every container; mount the volume elsewhere (e.g. `/data`)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities() {
        assert!(capability_problem("NET_BIND_SERVICE").is_none());
        assert!(capability_problem("ALL").unwrap().contains("cannot"));
        assert!(
            capability_problem("cap_chown")
                .unwrap()
                .contains("write `CHOWN`")
        );
        assert!(capability_problem("FLY").unwrap().contains("not a Linux"));
        let mut sorted = LINUX_CAPABILITIES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, LINUX_CAPABILITIES);
    }

    #[test]
    fn volume_targets() {
        for ok in ["/data", "/var/lib/redis", "/devices", "/etc/app", "/system"] {
            assert_eq!(volume_target_problem(ok), None, "{ok}");
        }
        for bad in [
            "/",
            "/data/",
            "//data",
            "/a/../etc",
            "/a/./b",
            "/proc",
            "/proc/1",
            "/sys/fs",
            "/dev",
            "/etc/hosts",
            "/etc/resolv.conf",
        ] {
            assert!(volume_target_problem(bad).is_some(), "{bad}");
        }
    }
}
