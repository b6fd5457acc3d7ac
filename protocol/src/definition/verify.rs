//! A task's verification fields in `mesg.yml`: `deterministic: true` and the default
//! `verify: {replicas, quorum, max_total}` (or `verify: 2/3`), allowed only on a
//! deterministic task. The `verify` reader is shared with process steps.

use super::parse::DefinitionParser;
use crate::verification::{MAX_VERIFY_EXECUTORS, VerifySpec};
use crate::yaml::{Fields, Node, NodeKind, Scalar, Walker, join_path};

/// Fields of a `verify` mapping.
const VERIFY_FIELDS: &[&str] = &["replicas", "quorum", "max_total"];

impl DefinitionParser {
    /// A task's `deterministic` and `verify`: `None` when either is wrong.
    pub(super) fn verification(
        &mut self,
        f: &Fields<'_>,
        path: &str,
    ) -> Option<(bool, Option<VerifySpec>)> {
        let deterministic = match f.get("deterministic") {
            None => Some(false),
            Some(n) => self.walker.bool(n, &join_path(path, "deterministic")),
        };
        let verify = match f.get("verify") {
            None => Some(None),
            Some(n) => {
                let p = join_path(path, "verify");
                let spec = verify_spec(&mut self.walker, n, &p);
                if spec.is_some() && deterministic == Some(false) {
                    self.walker.error(
                        &p,
                        n.pos,
                        "only a deterministic task can be verified: add `deterministic: true` if the same inputs always give the same outputs",
                    );
                    None
                } else {
                    spec.map(Some)
                }
            }
        };
        Some((deterministic?, verify?))
    }
}

/// A `verify` value: `{replicas: 3, quorum: 2, max_total: 5}` (`max_total` optional) or
/// the text `2/3` / `2/3/5` (QUORUM/REPLICAS[/MAX_TOTAL]); checked
/// `1 <= quorum <= replicas <= max_total <= 16`, errors at the value's position.
pub(crate) fn verify_spec(walker: &mut Walker, node: &Node, path: &str) -> Option<VerifySpec> {
    let spec = match &node.kind {
        NodeKind::Mapping(_) => {
            let f = walker.fields(node, path, VERIFY_FIELDS)?;
            let mut field = |name: &'static str, required: bool| -> Option<Option<u32>> {
                match f.get(name) {
                    None if required => {
                        walker.error(
                            &join_path(path, name),
                            node.pos,
                            "required field is missing",
                        );
                        None
                    }
                    None => Some(None),
                    Some(n) => count(walker, n, &join_path(path, name)).map(Some),
                }
            };
            let (replicas, quorum, max_total) = (
                field("replicas", true),
                field("quorum", true),
                field("max_total", false),
            );
            VerifySpec::new(quorum??, replicas??, max_total?)
        }
        NodeKind::Scalar(Scalar::Str(_), text) => text.parse::<VerifySpec>(),
        _ => {
            walker.type_error(
                path,
                node,
                "a mapping like `{replicas: 3, quorum: 2}` or text like `2/3` (quorum/replicas)",
            );
            return None;
        }
    };
    match spec {
        Ok(s) => Some(s),
        Err(e) => {
            walker.error(path, node.pos, e.to_string());
            None
        }
    }
}

/// A count of executors: a whole number from 1 to 16.
fn count(walker: &mut Walker, node: &Node, path: &str) -> Option<u32> {
    match &node.kind {
        NodeKind::Scalar(Scalar::Int(v), _)
            if (1..=i64::from(MAX_VERIFY_EXECUTORS)).contains(v) =>
        {
            Some(*v as u32)
        }
        NodeKind::Scalar(Scalar::Int(_) | Scalar::Float(_), text) => {
            walker.error(
                path,
                node.pos,
                format!("`{text}` is not a whole number from 1 to {MAX_VERIFY_EXECUTORS}"),
            );
            None
        }
        _ => {
            walker.type_error(
                path,
                node,
                &format!("a whole number from 1 to {MAX_VERIFY_EXECUTORS}"),
            );
            None
        }
    }
}
