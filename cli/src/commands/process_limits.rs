//! How `mesg process show` and `list` say what protects a process from loops: its depth
//! and rate limits, and the triggers it refused.

use crate::output::format_age;
use mesg_api_types::{ProcessView, TriggerRefusal};

/// `depth 16, at most 20 runs/s (burst 40)`.
pub fn limits_text(p: &ProcessView) -> String {
    let depth = match p.definition.max_depth {
        Some(own) if own <= p.max_depth => format!("depth {own}"),
        Some(own) => format!(
            "depth {} (the node's limit; the process asks {own})",
            p.max_depth
        ),
        None => format!("depth {} (the node's limit)", p.max_depth),
    };
    match &p.definition.rate_limit {
        Some(r) => format!(
            "{depth}, at most {} runs/s (burst {})",
            r.per_second, r.burst
        ),
        None => format!("{depth}, no rate limit"),
    }
}

/// `none`, or `12 trigger(s); last 3s ago (depth): MESSAGE`.
pub fn refusals_text(count: u64, last: Option<&TriggerRefusal>, now: u64) -> String {
    match last {
        None if count == 0 => "none".to_string(),
        None => format!("{count} trigger(s)"),
        Some(r) => format!(
            "{count} trigger(s); last {} ({}): {}",
            format_age(now, r.at),
            r.reason.as_str(),
            r.message
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_api_types::RefusalReason;
    use mesg_protocol::process::{ProcessDefinition, RateLimit};
    use mesg_protocol::{CauseRef, ExecutionId};
    use std::collections::BTreeMap;

    fn view(own: Option<u32>, node: u32, rate: Option<RateLimit>) -> ProcessView {
        ProcessView {
            id: "p".into(),
            name: "p".into(),
            definition: ProcessDefinition {
                name: "p".into(),
                steps: Vec::new(),
                max_depth: own,
                rate_limit: rate,
            },
            services: BTreeMap::new(),
            created_at: 0,
            runs_running: 0,
            max_depth: own.map_or(node, |o| o.min(node)),
            triggers_refused: 0,
            last_refusal: None,
        }
    }

    #[test]
    fn limits_say_whose_depth_applies_and_the_rate() {
        assert_eq!(
            limits_text(&view(None, 16, None)),
            "depth 16 (the node's limit), no rate limit"
        );
        let rate = RateLimit {
            per_second: 2.5,
            burst: 5,
        };
        assert_eq!(
            limits_text(&view(Some(4), 16, Some(rate))),
            "depth 4, at most 2.5 runs/s (burst 5)"
        );
        assert_eq!(
            limits_text(&view(Some(40), 16, None)),
            "depth 16 (the node's limit; the process asks 40), no rate limit"
        );
    }

    #[test]
    fn refusals_say_how_many_and_the_last_one() {
        assert_eq!(refusals_text(0, None, 0), "none");
        let root = CauseRef::Execution(ExecutionId([1; 16]));
        let last = TriggerRefusal {
            reason: RefusalReason::Depth,
            message: "depth 5 is beyond the limit 4".into(),
            depth: 5,
            limit: 4,
            root,
            parent: root,
            at: 7_000,
        };
        assert_eq!(
            refusals_text(3, Some(&last), 10_000),
            "3 trigger(s); last 3s ago (depth): depth 5 is beyond the limit 4"
        );
    }
}
