//! A process's protection from loops, read from its file: `max_depth` (how long a chain
//! of process triggers may lead to a run of it) and `rate_limit` (how many runs it starts
//! per second). The node applies them when a trigger fires.

use super::parse::ProcessParser;
use super::{MAX_DEPTH, MAX_TRIGGER_RATE, RateLimit};
use crate::yaml::{Node, NodeKind, Scalar, join_path};

const RATE_LIMIT_FIELDS: &[&str] = &["per_second", "burst"];

impl ProcessParser<'_> {
    /// `max_depth: N`, a whole number from 1 to [`MAX_DEPTH`].
    pub(super) fn max_depth(&mut self, node: &Node) -> Option<u32> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Int(n), _) if (1..=i64::from(MAX_DEPTH)).contains(n) => {
                Some(*n as u32)
            }
            _ => {
                self.walker.error(
                    "max_depth",
                    node.pos,
                    format!("expected a whole number from 1 to {MAX_DEPTH}"),
                );
                None
            }
        }
    }

    /// `rate_limit: {per_second: R, burst: B}`: R above 0 (fractions allowed), B a whole
    /// number from 1 (default: R rounded up, at least 1).
    pub(super) fn rate_limit(&mut self, node: &Node) -> Option<RateLimit> {
        let path = "rate_limit";
        let f = self.walker.fields(node, path, RATE_LIMIT_FIELDS)?;
        let per_second = self
            .walker
            .required(&f, "per_second", path, node.pos)
            .and_then(|n| {
                let value = match &n.kind {
                    NodeKind::Scalar(Scalar::Int(i), _) => Some(*i as f64),
                    NodeKind::Scalar(Scalar::Float(x), _) => Some(*x),
                    _ => None,
                };
                match value {
                    Some(r) if r > 0.0 && r <= f64::from(MAX_TRIGGER_RATE) => Some(r),
                    _ => {
                        self.walker.error(
                            &join_path(path, "per_second"),
                            n.pos,
                            format!(
                                "expected a number above 0 and at most {MAX_TRIGGER_RATE} (triggers per second; 0.5 is one every 2 s)"
                            ),
                        );
                        None
                    }
                }
            });
        let burst = match f.get("burst") {
            Some(n) => match &n.kind {
                NodeKind::Scalar(Scalar::Int(b), _)
                    if (1..=i64::from(MAX_TRIGGER_RATE)).contains(b) =>
                {
                    Some(Some(*b as u32))
                }
                _ => {
                    self.walker.error(
                        &join_path(path, "burst"),
                        n.pos,
                        format!("expected a whole number from 1 to {MAX_TRIGGER_RATE}"),
                    );
                    None
                }
            },
            None => Some(None),
        };
        let per_second = per_second?;
        let burst = burst?.unwrap_or_else(|| default_burst(per_second));
        Some(RateLimit { per_second, burst })
    }
}

/// A second's worth of triggers, at least one.
fn default_burst(per_second: f64) -> u32 {
    (per_second.ceil() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::default_burst;

    #[test]
    fn the_default_burst_is_a_second_of_the_rate_and_at_least_one() {
        assert_eq!(default_burst(20.0), 20);
        assert_eq!(default_burst(2.5), 3);
        assert_eq!(default_burst(0.1), 1);
    }
}
