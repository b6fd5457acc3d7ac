//! Value expressions (constants, references to earlier steps' outputs, lists and objects
//! of them): the inputs of tasks and the output of `map` steps, built at run time.

use super::{Outputs, Path};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A value built at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    Const(Value),
    Ref { step: String, path: Path },
    List(Vec<Expr>),
    Object(BTreeMap<String, Expr>),
}

impl Expr {
    /// Build the value; a reference to a missing step or path is an error.
    pub fn eval(&self, outputs: &Outputs) -> Result<Value, String> {
        match self {
            Expr::Const(v) => Ok(v.clone()),
            Expr::Ref { step, path } => outputs
                .get(step)
                .and_then(|v| path.get(v))
                .cloned()
                .ok_or_else(|| {
                    if path.0.is_empty() {
                        format!("step `{step}` has no output")
                    } else {
                        format!("step `{step}` has no `{path}`")
                    }
                }),
            Expr::List(items) => items
                .iter()
                .map(|e| e.eval(outputs))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Expr::Object(map) => {
                let mut out = serde_json::Map::new();
                for (k, e) in map {
                    out.insert(k.clone(), e.eval(outputs)?);
                }
                Ok(Value::Object(out))
            }
        }
    }

    /// The steps this expression reads.
    pub(super) fn refs(&self, out: &mut Vec<String>) {
        match self {
            Expr::Const(_) => {}
            Expr::Ref { step, .. } => out.push(step.clone()),
            Expr::List(items) => items.iter().for_each(|e| e.refs(out)),
            Expr::Object(map) => map.values().for_each(|e| e.refs(out)),
        }
    }
}
