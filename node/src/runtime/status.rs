//! The rules that turn the states of an instance's containers into the instance's
//! [`InstanceStatus`] and a reason in words: pure, so every runtime (Docker, the test
//! fake) reports the same status for the same containers.

use super::{ContainerState, InstanceState, InstanceStatus};

enum Verdict {
    Running,
    Starting(String),
    Stopped(String),
    Crashed(String),
}

fn restarts(n: i64) -> String {
    if n == 1 {
        "1 restart".to_string()
    } else {
        format!("{n} restarts")
    }
}

fn verdict(c: &ContainerState, oom_killed: bool, max_restarts: u32) -> Verdict {
    let key = &c.key;
    let code = c.exit_code.unwrap_or(0);
    if c.restarting {
        return Verdict::Starting(format!(
            "container `{key}` exited with code {code} and is being restarted ({} of at most {max_restarts})",
            c.restart_count + 1
        ));
    }
    if c.running {
        return Verdict::Running;
    }
    match c.state.as_str() {
        "created" => Verdict::Starting(format!("container `{key}` is created, not yet started")),
        "dead" => Verdict::Crashed(format!(
            "container `{key}` is dead (Docker failed to stop or remove it)"
        )),
        "paused" => Verdict::Stopped(format!("container `{key}` is paused")),
        _ => {
            // Docker's own restarts stopped: the cap was reached. A stop by signal
            // (143 SIGTERM, 137 SIGKILL without OOM) or a clean exit is deliberate.
            let by_signal = code == 143 || (code == 137 && !oom_killed);
            let capped = c.restart_count >= i64::from(max_restarts);
            if code != 0 && !by_signal && capped {
                let what = if oom_killed {
                    format!("container `{key}` was killed for lack of memory (exit code {code})")
                } else {
                    format!("container `{key}` exited with code {code}")
                };
                Verdict::Crashed(format!("{what} after {}", restarts(c.restart_count)))
            } else {
                Verdict::Stopped(format!("container `{key}` exited with code {code}"))
            }
        }
    }
}

/// The instance made of `containers` (`oom[i]`: whether container `i` was killed for lack
/// of memory), where a container is restarted at most `max_restarts` times.
pub(super) fn aggregate(
    containers: Vec<ContainerState>,
    oom: &[bool],
    max_restarts: u32,
) -> InstanceState {
    if containers.is_empty() {
        return InstanceState {
            status: InstanceStatus::Missing,
            reason: Some("no container of this instance exists on this node".into()),
            containers,
        };
    }
    let mut running = 0;
    let mut starting = Vec::new();
    let mut stopped = Vec::new();
    let mut crashed = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        match verdict(c, oom.get(i).copied().unwrap_or(false), max_restarts) {
            Verdict::Running => running += 1,
            Verdict::Starting(r) => starting.push(r),
            Verdict::Stopped(r) => stopped.push(r),
            Verdict::Crashed(r) => crashed.push(r),
        }
    }
    let (status, reason) = if !crashed.is_empty() {
        (InstanceStatus::Crashed, Some(crashed.join("; ")))
    } else if !starting.is_empty() {
        (InstanceStatus::Starting, Some(starting.join("; ")))
    } else if running == containers.len() {
        (InstanceStatus::Running, None)
    } else if running == 0 {
        (InstanceStatus::Stopped, Some(stopped.join("; ")))
    } else {
        (InstanceStatus::Partial, Some(stopped.join("; ")))
    };
    InstanceState {
        status,
        reason,
        containers,
    }
}

#[cfg(test)]
mod tests {
    use super::aggregate;
    use crate::runtime::{ContainerState, InstanceStatus};

    fn cs(
        state: &str,
        running: bool,
        restarting: bool,
        code: i64,
        restarts: i64,
    ) -> ContainerState {
        ContainerState {
            key: "service".into(),
            name: "n".into(),
            running,
            restarting,
            exit_code: Some(code),
            restart_count: restarts,
            state: state.into(),
        }
    }

    #[test]
    fn status_rules() {
        let s = aggregate(vec![cs("exited", false, false, 3, 5)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Crashed);
        assert_eq!(
            s.reason.as_deref(),
            Some("container `service` exited with code 3 after 5 restarts")
        );
        // Stopped by `docker stop` after restarts: not a crash.
        let s = aggregate(vec![cs("exited", false, false, 143, 5)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Stopped);
        // Killed for memory: a crash even though 137.
        let s = aggregate(vec![cs("exited", false, false, 137, 2)], &[true], 2);
        assert_eq!(s.status, InstanceStatus::Crashed);
        let s = aggregate(vec![cs("restarting", false, true, 3, 1)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Starting);
        let s = aggregate(vec![cs("created", false, false, 0, 0)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Starting);
        let mut dep = cs("exited", false, false, 0, 0);
        dep.key = "db".into();
        let s = aggregate(
            vec![cs("running", true, false, 0, 0), dep],
            &[false, false],
            5,
        );
        assert_eq!(s.status, InstanceStatus::Partial);
        let s = aggregate(vec![cs("running", true, false, 0, 0)], &[false], 5);
        assert_eq!(s.status, InstanceStatus::Running);
        assert!(s.reason.is_none());
        let s = aggregate(vec![], &[], 5);
        assert_eq!(s.status, InstanceStatus::Missing);
    }
}
