//! Reading the values of a process file: text with `$(env:NAME)` replaced, constants,
//! value expressions (constants and references to earlier steps) and filter conditions.

use super::env_references;
use super::parse::ProcessParser;
use super::{Condition, Expr, Op, Path};
use crate::yaml::{self, Node, NodeKind, Pos, Scalar, join_path};
use serde_json::Value;
use std::collections::BTreeMap;

impl ProcessParser<'_> {
    /// Scalar text with `$(env:NAME)` replaced.
    pub(super) fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.walker.scalar_text(node, path)?;
        self.substitute(&text, path, node.pos)
    }

    fn substitute(&mut self, text: &str, path: &str, pos: Pos) -> Option<String> {
        let mut out = text.to_string();
        for name in env_references(text) {
            match self.env.get(&name) {
                Some(v) => out = out.replace(&format!("$(env:{name})"), v),
                None => {
                    self.walker.error(
                        path,
                        pos,
                        format!("`$(env:{name})` is not set (give it when creating the process)"),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    /// A path into a value (`a.b[0]`).
    fn path(&mut self, node: &Node, path: &str) -> Option<Path> {
        let text = self.text(node, path)?;
        match Path::parse(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.walker.error(path, node.pos, e);
                None
            }
        }
    }

    /// A YAML node as a JSON constant, with env substitution in strings.
    fn constant(&mut self, node: &Node, path: &str) -> Option<Value> {
        Some(match &node.kind {
            NodeKind::Scalar(scalar, text) => {
                let scalar = if text.contains("$(env:") {
                    let t = self.substitute(text, path, node.pos)?;
                    match scalar {
                        Scalar::Str(_) => Scalar::Str(t),
                        _ => yaml::resolve_plain(&t),
                    }
                } else {
                    scalar.clone()
                };
                match scalar {
                    Scalar::Null => Value::Null,
                    Scalar::Bool(b) => Value::Bool(b),
                    Scalar::Int(i) => Value::from(i),
                    Scalar::Float(f) => serde_json::Number::from_f64(f)
                        .map(Value::Number)
                        .unwrap_or(Value::Null),
                    Scalar::Str(s) => Value::String(s),
                }
            }
            NodeKind::Sequence(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.constant(item, &format!("{path}[{i}]"))?);
                }
                Value::Array(out)
            }
            NodeKind::Mapping(entries) => {
                let mut out = serde_json::Map::new();
                for (k, v) in entries {
                    let value = self.constant(v, &join_path(path, &k.text))?;
                    if out.insert(k.text.clone(), value).is_some() {
                        self.walker
                            .error(&join_path(path, &k.text), k.pos, "duplicate key");
                    }
                }
                Value::Object(out)
            }
        })
    }

    /// A value expression: `{const: …}`, a reference `{step: KEY, path: …}`, or a
    /// constant, list or object whose members are expressions.
    pub(super) fn expr(&mut self, node: &Node, path: &str) -> Option<Expr> {
        match &node.kind {
            NodeKind::Mapping(entries) => {
                let keys: Vec<&str> = entries.iter().map(|(k, _)| k.text.as_str()).collect();
                if keys == ["const"] {
                    return self
                        .constant(&entries[0].1, &join_path(path, "const"))
                        .map(Expr::Const);
                }
                let is_ref =
                    keys.contains(&"step") && keys.iter().all(|k| *k == "step" || *k == "path");
                if is_ref {
                    let f = self.walker.fields(node, path, &["step", "path"])?;
                    let step = self.text(f["step"], &join_path(path, "step"))?;
                    let p = match f.get("path") {
                        Some(n) => self.path(n, &join_path(path, "path"))?,
                        None => Path::default(),
                    };
                    return Some(Expr::Ref { step, path: p });
                }
                let mut out = BTreeMap::new();
                let mut ok = true;
                for (k, v) in entries {
                    match self.expr(v, &join_path(path, &k.text)) {
                        Some(e) => {
                            if out.insert(k.text.clone(), e).is_some() {
                                self.walker.error(
                                    &join_path(path, &k.text),
                                    k.pos,
                                    "duplicate key",
                                );
                            }
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Expr::Object(out))
            }
            NodeKind::Sequence(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.expr(item, &format!("{path}[{i}]")) {
                        Some(e) => out.push(e),
                        None => ok = false,
                    }
                }
                ok.then_some(Expr::List(out))
            }
            NodeKind::Scalar(..) => self.constant(node, path).map(Expr::Const),
        }
    }

    /// A filter condition: `{all: [...]}`, `{any: [...]}`, or a test
    /// `{path: P, OP: VALUE}` with an optional `step`.
    pub(super) fn condition(&mut self, node: &Node, path: &str) -> Option<Condition> {
        if let NodeKind::Mapping(entries) = &node.kind
            && entries.len() == 1
            && (entries[0].0.text == "all" || entries[0].0.text == "any")
        {
            let (k, v) = &entries[0];
            let p = join_path(path, &k.text);
            let NodeKind::Sequence(items) = &v.kind else {
                self.walker.type_error(&p, v, "a list of conditions");
                return None;
            };
            if items.is_empty() {
                self.walker.error(&p, v.pos, "needs at least one condition");
                return None;
            }
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match self.condition(item, &format!("{p}[{i}]")) {
                    Some(c) => out.push(c),
                    None => ok = false,
                }
            }
            return ok.then(|| {
                if k.text == "all" {
                    Condition::All(out)
                } else {
                    Condition::Any(out)
                }
            });
        }
        let mut allowed = vec!["path", "step"];
        allowed.extend(Op::ALL.iter().map(|(n, _)| *n));
        let f = self.walker.fields(node, path, &allowed)?;
        let step = match f.get("step") {
            Some(n) => Some(self.text(n, &join_path(path, "step"))?),
            None => None,
        };
        let Some(path_node) = f.get("path") else {
            self.walker.error(path, node.pos, "a condition needs `path` (and one of eq, ne, gt, gte, lt, lte, contains, exists), or `all`/`any`");
            return None;
        };
        let p = self.path(path_node, &join_path(path, "path"))?;
        let ops: Vec<(Op, &Node, &str)> = Op::ALL
            .iter()
            .filter_map(|(name, op)| f.get(name).map(|n| (*op, *n, *name)))
            .collect();
        if ops.len() != 1 {
            self.walker.error(
                path,
                node.pos,
                "a condition needs exactly one of eq, ne, gt, gte, lt, lte, contains, exists",
            );
            return None;
        }
        let (op, value_node, name) = ops[0];
        let value_path = join_path(path, name);
        let value = self.constant(value_node, &value_path)?;
        if op == Op::Exists && !value.is_boolean() {
            self.walker
                .error(&value_path, value_node.pos, "`exists` takes true or false");
            return None;
        }
        if matches!(op, Op::Gt | Op::Gte | Op::Lt | Op::Lte)
            && !(value.is_number() || value.is_string())
        {
            self.walker.error(
                &value_path,
                value_node.pos,
                "compare with a number or a string",
            );
            return None;
        }
        Some(Condition::Test {
            step,
            path: p,
            op,
            value,
        })
    }
}
