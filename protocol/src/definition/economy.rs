//! The economy fields of `mesg.yml`: a task's `price` and the service's `economy`
//! section. Integers of micro-credits only: a negative, fractional or oversized figure is
//! an error with its position, a misspelt key gets a "did you mean".

use super::parse::DefinitionParser;
use crate::economy::{BPS_DENOMINATOR, Economy, MAX_PRICE_PART, Price};
use crate::yaml::{Node, NodeKind, Scalar, join_path};

/// Parts of a task's `price`, each optional (default 0).
pub(super) const PRICE_FIELDS: &[&str] = &["call", "per_ms", "per_kib"];
/// Fields of the service's `economy` section.
pub(super) const ECONOMY_FIELDS: &[&str] = &["publisher_share_bps"];

impl DefinitionParser {
    /// A task's `price: {call, per_ms, per_kib}`; all zero is free (None).
    pub(super) fn price(&mut self, node: &Node, path: &str) -> Option<Option<Price>> {
        if !matches!(node.kind, NodeKind::Mapping(_)) {
            self.walker.error(
                path,
                node.pos,
                format!(
                    "expected a mapping of micro-credits like `{{call: 1000, per_ms: 2, per_kib: 5}}`, got {}",
                    node.kind_name()
                ),
            );
            return None;
        }
        let f = self.walker.fields(node, path, PRICE_FIELDS)?;
        let mut part = |name: &str| match f.get(name) {
            None => Some(0),
            Some(n) => self.whole(n, &join_path(path, name), MAX_PRICE_PART, "micro-credits"),
        };
        let (call, per_ms, per_kib) = (part("call"), part("per_ms"), part("per_kib"));
        let price = Price {
            call: call?,
            per_ms: per_ms?,
            per_kib: per_kib?,
        };
        Some((!price.is_free()).then_some(price))
    }

    /// The service's `economy: {publisher_share_bps}`; all defaults is None.
    pub(super) fn economy(&mut self, node: &Node, path: &str) -> Option<Option<Economy>> {
        let f = self.walker.fields(node, path, ECONOMY_FIELDS)?;
        let share = match f.get("publisher_share_bps") {
            None => 0,
            Some(n) => self.whole(
                n,
                &join_path(path, "publisher_share_bps"),
                BPS_DENOMINATOR,
                "basis points (10000 is 100%)",
            )?,
        };
        let economy = Economy {
            publisher_share_bps: share as u16,
        };
        Some((economy != Economy::default()).then_some(economy))
    }

    /// A whole number from 0 to `max`, read from its text (so that a figure too large
    /// for 64 bits is reported as such, never rounded through a float).
    fn whole(&mut self, node: &Node, path: &str, max: u64, unit: &str) -> Option<u64> {
        let text = match &node.kind {
            NodeKind::Scalar(Scalar::Int(_) | Scalar::Float(_), t) => t.trim().to_string(),
            _ => {
                self.walker
                    .type_error(path, node, &format!("a whole number of {unit}"));
                return None;
            }
        };
        let digits = text.strip_prefix('+').unwrap_or(&text).replace('_', "");
        let message = if digits.starts_with('-') {
            format!("`{text}` is negative; expected a whole number of {unit} from 0 to {max}")
        } else if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.is_empty() {
            format!(
                "`{text}` is not a whole number; expected a whole number of {unit} from 0 to {max}"
            )
        } else {
            match digits.parse::<u64>() {
                Ok(v) if v <= max => return Some(v),
                _ => format!("`{text}` is too large; at most {max} {unit}"),
            }
        };
        self.walker.error(path, node.pos, message);
        None
    }
}
