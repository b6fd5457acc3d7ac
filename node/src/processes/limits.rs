//! Protection from loops: a process whose task makes a service emit the event that
//! triggers it again (or a ring of processes, across nodes) would run forever. Every run
//! carries a causal depth, one more than what triggered it; a trigger whose run would go
//! beyond the depth limit (the node's `--max-trigger-depth`, lowered by the process's
//! `max_depth`) is refused, as is one beyond the process's `rate_limit`. A refusal starts
//! no run; it is counted on the process (with the last one and its chain, shown by the
//! API), in a Prometheus counter, and in a WARN line at most once per process every
//! [`WARN_EVERY`].
//!
//! The decisions are pure functions of the state kept here ([`Gates`]); the runner applies
//! them and logs.

use crate::engine::peer_limits::TokenBucket;
use mesg_api_types::{RefusalReason, TriggerRefusal};
use mesg_protocol::Cause;
use mesg_protocol::process::ProcessDefinition;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The node's depth limit unless `--max-trigger-depth` says otherwise.
pub const DEFAULT_MAX_TRIGGER_DEPTH: u32 = 16;
/// At most one WARN line per process this often (a loop refuses many triggers a second).
pub const WARN_EVERY: Duration = Duration::from_secs(5);

/// What the process runner is configured with.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Most process triggers in a causal chain before a run is refused (at least 1).
    pub max_trigger_depth: u32,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            max_trigger_depth: DEFAULT_MAX_TRIGGER_DEPTH,
        }
    }
}

/// The depth limit of a process on a node whose own limit is `node`: the process's
/// `max_depth` may lower it, never raise it (the node's limit is the operator's guard).
pub fn depth_limit(node: u32, def: &ProcessDefinition) -> u32 {
    def.max_depth.map_or(node, |p| p.min(node)).max(1)
}

/// A trigger that starts no run, and whether to log it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub refusal: TriggerRefusal,
    /// `Some(n)`: log it now, with the `n` refusals of this process not logged since the
    /// last line; `None`: a line was written less than [`WARN_EVERY`] ago.
    pub warn: Option<u64>,
}

/// What is kept per process: its trigger bucket and its refusals.
#[derive(Debug, Default)]
struct Gate {
    bucket: Option<TokenBucket>,
    refused: u64,
    last: Option<TriggerRefusal>,
    last_warned: Option<Instant>,
    not_warned: u64,
}

/// The gates of every process that was triggered since the node started.
#[derive(Debug, Default)]
pub struct Gates {
    by_process: HashMap<String, Gate>,
}

impl Gates {
    /// Whether a trigger of `process` (defined by `def`, depth limit `limit`) whose run
    /// would have `cause` starts that run: refused beyond the depth limit, then beyond the
    /// rate limit (a refused trigger takes no token). `now` drives the bucket and the
    /// warnings, `now_ms` is recorded.
    pub fn admit(
        &mut self,
        process: &str,
        def: &ProcessDefinition,
        limit: u32,
        cause: &Cause,
        now: Instant,
        now_ms: u64,
    ) -> Result<(), Refused> {
        let gate = self.by_process.entry(process.to_string()).or_default();
        let refusal = if cause.depth > limit {
            let message = format!(
                "depth {} is beyond the limit {limit}: a loop between processes and services? (the chain started at {}, the trigger was {})",
                cause.depth, cause.root, cause.parent
            );
            Some((RefusalReason::Depth, limit, message))
        } else if let Some(rate) = &def.rate_limit {
            let bucket = gate
                .bucket
                .get_or_insert_with(|| TokenBucket::per_second(rate.per_second, rate.burst, now));
            (!bucket.take(now)).then(|| {
                let message = format!(
                    "more than {} triggers per second (burst {}): the process's rate_limit",
                    rate.per_second, rate.burst
                );
                (RefusalReason::Rate, rate.burst, message)
            })
        } else {
            None
        };
        let Some((reason, limit, message)) = refusal else {
            return Ok(());
        };
        let refusal = TriggerRefusal {
            reason,
            message,
            depth: cause.depth,
            limit,
            root: cause.root,
            parent: cause.parent,
            at: now_ms,
        };
        gate.refused += 1;
        gate.last = Some(refusal.clone());
        let due = gate
            .last_warned
            .is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY);
        let warn = if due {
            gate.last_warned = Some(now);
            Some(std::mem::take(&mut gate.not_warned))
        } else {
            gate.not_warned += 1;
            None
        };
        Err(Refused { refusal, warn })
    }

    /// Triggers of `process` refused so far, and the last one.
    pub fn refusals(&self, process: &str) -> (u64, Option<TriggerRefusal>) {
        self.by_process
            .get(process)
            .map_or((0, None), |g| (g.refused, g.last.clone()))
    }

    /// A process was deleted.
    pub fn forget(&mut self, process: &str) {
        self.by_process.remove(process);
    }
}

/// The label set of the refusal counter.
pub type ReasonLabel = [(&'static str, &'static str); 1];

/// The process runner's counters, exposed on `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct ProcessMetrics {
    /// `mesg_process_triggers_refused_total{reason="depth"|"rate"}`.
    pub triggers_refused: Family<ReasonLabel, Counter>,
}

impl ProcessMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.sub_registry_with_prefix("mesg").register(
            "process_triggers_refused",
            "Process triggers that started no run: beyond the depth limit (a loop) or the process's rate limit",
            self.triggers_refused.clone(),
        );
    }

    pub fn refused(&self, reason: RefusalReason) {
        self.triggers_refused
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_protocol::process::RateLimit;
    use mesg_protocol::{CauseRef, EventId, ExecutionId};

    fn def(max_depth: Option<u32>, rate_limit: Option<RateLimit>) -> ProcessDefinition {
        ProcessDefinition {
            name: "p".into(),
            steps: Vec::new(),
            max_depth,
            rate_limit,
        }
    }

    fn cause(depth: u32) -> Cause {
        Cause {
            depth,
            root: CauseRef::Execution(ExecutionId([1; 16])),
            parent: CauseRef::Event(EventId([2; 16])),
        }
    }

    #[test]
    fn a_process_can_lower_the_nodes_depth_limit_but_not_raise_it() {
        assert_eq!(depth_limit(16, &def(None, None)), 16);
        assert_eq!(depth_limit(16, &def(Some(4), None)), 4);
        assert_eq!(depth_limit(16, &def(Some(40), None)), 16);
        assert_eq!(depth_limit(0, &def(None, None)), 1, "at least one trigger");
    }

    #[test]
    fn runs_up_to_the_limit_start_and_deeper_ones_are_refused_with_their_chain() {
        let mut gates = Gates::default();
        let d = def(None, None);
        let now = Instant::now();
        for depth in 1..=4 {
            assert!(gates.admit("p", &d, 4, &cause(depth), now, 7).is_ok());
        }
        let refused = gates.admit("p", &d, 4, &cause(5), now, 7).unwrap_err();
        let r = &refused.refusal;
        assert_eq!(
            (r.reason, r.depth, r.limit, r.at),
            (RefusalReason::Depth, 5, 4, 7)
        );
        assert_eq!((r.root, r.parent), (cause(5).root, cause(5).parent));
        assert!(
            r.message.contains("depth 5 is beyond the limit 4"),
            "{}",
            r.message
        );
        assert!(
            r.message
                .contains(&format!("started at execution {}", ExecutionId([1; 16])))
        );
        assert_eq!(refused.warn, Some(0), "the first refusal is logged");
        assert_eq!(gates.refusals("p"), (1, Some(r.clone())));
        assert_eq!(gates.refusals("other"), (0, None));
    }

    #[test]
    fn refusals_are_logged_once_per_interval_with_the_count_not_logged() {
        let mut gates = Gates::default();
        let d = def(None, None);
        let t0 = Instant::now();
        assert_eq!(
            gates.admit("p", &d, 1, &cause(2), t0, 0).unwrap_err().warn,
            Some(0)
        );
        for i in 1..=10 {
            let t = t0 + Duration::from_millis(i * 100);
            assert_eq!(
                gates.admit("p", &d, 1, &cause(2), t, 0).unwrap_err().warn,
                None
            );
        }
        // Another process has its own interval.
        assert_eq!(
            gates.admit("q", &d, 1, &cause(2), t0, 0).unwrap_err().warn,
            Some(0)
        );
        let later = t0 + WARN_EVERY;
        assert_eq!(
            gates
                .admit("p", &d, 1, &cause(2), later, 0)
                .unwrap_err()
                .warn,
            Some(10)
        );
        assert_eq!(gates.refusals("p").0, 12);
        gates.forget("p");
        assert_eq!(gates.refusals("p"), (0, None));
    }

    #[test]
    fn the_rate_limit_gives_its_burst_then_its_rate() {
        let mut gates = Gates::default();
        let rate = RateLimit {
            per_second: 2.0,
            burst: 3,
        };
        let d = def(None, Some(rate));
        let t0 = Instant::now();
        let admitted = (0..10)
            .filter(|_| gates.admit("p", &d, 16, &cause(1), t0, 0).is_ok())
            .count();
        assert_eq!(admitted, 3, "the burst");
        let refused = gates.admit("p", &d, 16, &cause(1), t0, 0).unwrap_err();
        assert_eq!(refused.refusal.reason, RefusalReason::Rate);
        assert_eq!(refused.refusal.limit, 3);
        // Half a second later: one more token.
        let t1 = t0 + Duration::from_millis(500);
        assert!(gates.admit("p", &d, 16, &cause(1), t1, 0).is_ok());
        assert!(gates.admit("p", &d, 16, &cause(1), t1, 0).is_err());
        assert_eq!(gates.refusals("p").0, 9, "7 + 1 + 1");
    }

    #[test]
    fn a_trigger_too_deep_takes_no_token() {
        let mut gates = Gates::default();
        let d = def(
            None,
            Some(RateLimit {
                per_second: 1.0,
                burst: 1,
            }),
        );
        let t0 = Instant::now();
        let deep = gates.admit("p", &d, 2, &cause(3), t0, 0).unwrap_err();
        assert_eq!(deep.refusal.reason, RefusalReason::Depth);
        assert!(
            gates.admit("p", &d, 2, &cause(1), t0, 0).is_ok(),
            "the token is still there"
        );
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let metrics = ProcessMetrics::default();
        metrics.refused(RefusalReason::Depth);
        metrics.refused(RefusalReason::Depth);
        metrics.refused(RefusalReason::Rate);
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("mesg_process_triggers_refused_total{reason=\"depth\"} 2"),
            "{text}"
        );
        assert!(text.contains("mesg_process_triggers_refused_total{reason=\"rate\"} 1"));
    }
}
