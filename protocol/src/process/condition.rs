//! Filter conditions (`{path: count, gte: 2}`, `all`, `any`) and their evaluation on the
//! outputs of a run.

use super::{Outputs, Path};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
    Exists,
}

impl Op {
    /// Each operator by the field that names it in a condition.
    pub(super) const ALL: [(&'static str, Op); 8] = [
        ("eq", Op::Eq),
        ("ne", Op::Ne),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("contains", Op::Contains),
        ("exists", Op::Exists),
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Test {
        /// Whose output the path reads; `None`: the step before the filter.
        step: Option<String>,
        path: Path,
        op: Op,
        value: Value,
    },
}

impl Condition {
    /// `default_step`: the step before the filter.
    pub fn eval(&self, outputs: &Outputs, default_step: &str) -> bool {
        match self {
            Condition::All(cs) => cs.iter().all(|c| c.eval(outputs, default_step)),
            Condition::Any(cs) => cs.iter().any(|c| c.eval(outputs, default_step)),
            Condition::Test {
                step,
                path,
                op,
                value,
            } => {
                let found = outputs
                    .get(step.as_deref().unwrap_or(default_step))
                    .and_then(|v| path.get(v))
                    .filter(|v| !v.is_null());
                match op {
                    Op::Exists => found.is_some() == value.as_bool().unwrap_or(true),
                    Op::Ne => found != Some(value),
                    _ => found.is_some_and(|f| compare(*op, f, value)),
                }
            }
        }
    }
}

fn compare(op: Op, left: &Value, right: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        Op::Eq => left == right,
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Gte => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        Op::Lt => ord == Some(Ordering::Less),
        Op::Lte => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Contains => match (left, right) {
            (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
            (Value::Array(items), v) => items.contains(v),
            (Value::Object(map), Value::String(k)) => map.contains_key(k),
            _ => false,
        },
        Op::Ne | Op::Exists => unreachable!("handled by the caller"),
    }
}

impl Condition {
    /// The steps this condition reads (other than the default one).
    pub(super) fn refs(&self, out: &mut Vec<String>) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.refs(out)),
            Condition::Test { step: Some(s), .. } => out.push(s.clone()),
            Condition::Test { step: None, .. } => {}
        }
    }
}
