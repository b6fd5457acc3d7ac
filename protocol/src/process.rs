//! Processes: declarative Applications that a node runs. A process is a trigger (an event
//! of a service, or the result of a service's task) followed by steps that filter, map and
//! execute tasks, in chains and branches:
//!
//! ```yaml
//! name: tick-to-kv
//! steps:
//!   - key: tick
//!     trigger: {service: echo, event: tick}
//!   - filter: {path: count, gte: 2}          # the trigger's data
//!   - key: payload
//!     map:
//!       key: last-tick
//!       value: {step: tick, path: count}      # a reference
//!   - key: store
//!     task:
//!       service: kv
//!       task: set
//!       inputs: {step: payload}
//!       retries: 2
//!       backoff: 500ms
//!       timeout: 5s
//!       on_error: alert                        # runs when `store` fails for good
//!   - key: read
//!     after: store                             # a branch (several steps after one)
//!     task: {service: kv, task: get, inputs: {key: last-tick}}
//!   - key: alert
//!     task: {service: echo, task: echo, inputs: {message: "store failed: $(env:WHO)"}}
//! ```
//!
//! A step follows the step listed before it unless it says `after: KEY`; the target of an
//! `on_error` starts an error branch (it has no `after`), and the steps listed after it
//! continue that branch. `$(env:NAME)` is replaced when the process is created.
//!
//! This module parses and validates (every error with its step and path), and evaluates
//! paths, conditions and value expressions. Running processes is the node's job.

use crate::definition::{ServiceDefinition, parse_duration_ms};
use crate::schema::{ParamMap, ValueError, check_param};
use crate::yaml::{self, Key, Node, NodeKind, Pos, Scalar};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

pub const MAX_STEPS: usize = 256;
pub const MAX_RETRIES: u32 = 20;

/// A validated process definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessDefinition {
    pub name: String,
    /// In file order; the first is the trigger.
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub key: String,
    /// The step whose success runs this one; `None` for the trigger and error branches.
    pub after: Option<String>,
    pub kind: StepKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Trigger(Trigger),
    Filter(Condition),
    Map(Expr),
    Task(TaskStep),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// Service sid or hash, as written.
    pub service: String,
    pub source: TriggerSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerSource {
    Event(String),
    /// A Completed execution of this task.
    Result(String),
}

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
    const ALL: [(&'static str, Op); 8] = [
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

/// A value built at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    Const(Value),
    Ref { step: String, path: Path },
    List(Vec<Expr>),
    Object(BTreeMap<String, Expr>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStep {
    /// Service sid or hash, as written.
    pub service: String,
    pub task: String,
    pub inputs: Expr,
    pub retries: u32,
    /// First retry delay; doubles with each attempt.
    pub backoff_ms: u64,
    pub timeout_ms: Option<u64>,
    pub on_error: Option<String>,
}

/// A path into a JSON value: `a.b[0].c`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path(pub Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut segments = Vec::new();
        if text.is_empty() {
            return Ok(Path(segments));
        }
        for part in text.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            // A part is a key with optional indexes; only the first part may be bare
            // indexes (`[0].a` reads an array at the top).
            let first = segments.is_empty();
            if name.is_empty() && (rest.is_empty() || !first) {
                return Err(format!("`{text}`: empty path segment"));
            }
            if !name.is_empty() {
                segments.push(Segment::Key(name.to_string()));
            }
            while !rest.is_empty() {
                let close = rest
                    .find(']')
                    .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
                let index = rest[1..close]
                    .parse::<usize>()
                    .map_err(|_| format!("`{text}`: `{}` is not an index", &rest[1..close]))?;
                segments.push(Segment::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(format!("`{text}`: unexpected `{rest}`"));
                }
            }
        }
        Ok(Path(segments))
    }

    pub fn get<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for s in &self.0 {
            v = match s {
                Segment::Key(k) => v.as_object()?.get(k)?,
                Segment::Index(i) => v.as_array()?.get(*i)?,
            };
        }
        Some(v)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Path::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Step outputs of a run, by step key.
pub type Outputs = HashMap<String, Value>;

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

    fn refs(&self, out: &mut Vec<String>) {
        match self {
            Expr::Const(_) => {}
            Expr::Ref { step, .. } => out.push(step.clone()),
            Expr::List(items) => items.iter().for_each(|e| e.refs(out)),
            Expr::Object(map) => map.values().for_each(|e| e.refs(out)),
        }
    }
}

impl Condition {
    fn refs(&self, out: &mut Vec<String>) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.refs(out)),
            Condition::Test { step: Some(s), .. } => out.push(s.clone()),
            Condition::Test { step: None, .. } => {}
        }
    }
}

/// One problem in a process file: the step, the field path, the position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessError {
    /// `steps[2] (store).task.inputs.key`, or a top-level field.
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "{l}:{c}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct ProcessErrors(pub Vec<ProcessError>);

impl fmt::Display for ProcessErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// What validation may know about services: their definitions by sid or hash.
pub trait ServiceLookup {
    fn definition(&self, service: &str) -> Option<ServiceDefinition>;
}

impl<F: Fn(&str) -> Option<ServiceDefinition>> ServiceLookup for F {
    fn definition(&self, service: &str) -> Option<ServiceDefinition> {
        self(service)
    }
}

/// `$(env:NAME)` references in a text.
pub fn env_references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("$(env:") {
        let after = &rest[i + 6..];
        match after.find(')') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// A service named by a step (`trigger.service` or `task.service`), found even in a file
/// that has other errors, so that unknown services are reported with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// `steps[2] (store).task.service`
    pub path: String,
    pub name: String,
    pub line: usize,
    pub column: usize,
}

/// Every service a process file names (best effort on malformed files).
pub fn service_refs(src: &str) -> Vec<ServiceRef> {
    let Ok(Some(root)) = yaml::parse(src) else {
        return Vec::new();
    };
    let get = |node: &Node, key: &str| -> Option<Node> {
        match &node.kind {
            NodeKind::Mapping(entries) => entries
                .iter()
                .find(|(k, _)| k.text == key)
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    };
    let Some(steps) = get(&root, "steps") else {
        return Vec::new();
    };
    let NodeKind::Sequence(items) = &steps.kind else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = match get(item, "key").map(|n| n.kind) {
            Some(NodeKind::Scalar(_, text)) => text,
            _ => format!("step{i}"),
        };
        for field in ["trigger", "task"] {
            if let Some(section) = get(item, field)
                && let Some(service) = get(&section, "service")
                && let NodeKind::Scalar(_, name) = &service.kind
            {
                out.push(ServiceRef {
                    path: format!("steps[{i}] ({key}).{field}.service"),
                    name: name.clone(),
                    line: service.pos.line,
                    column: service.pos.column,
                });
            }
        }
    }
    out
}

impl ProcessDefinition {
    /// Parse a process file, substituting `$(env:NAME)` from `env`, and validate it;
    /// `services` checks services, tasks, events and input types where it knows them.
    pub fn from_yaml(
        src: &str,
        env: &BTreeMap<String, String>,
        services: &dyn ServiceLookup,
    ) -> Result<ProcessDefinition, ProcessErrors> {
        let mut v = Parser {
            errors: Vec::new(),
            env,
        };
        let root = match yaml::parse(src) {
            Ok(Some(root)) => root,
            Ok(None) => {
                return Err(ProcessErrors(vec![ProcessError {
                    path: String::new(),
                    line: None,
                    column: None,
                    message: "the process is empty; it needs `name` and `steps`".into(),
                }]));
            }
            Err(e) => {
                return Err(ProcessErrors(vec![ProcessError {
                    path: String::new(),
                    line: Some(e.line),
                    column: Some(e.column),
                    message: format!("invalid YAML: {}", e.message),
                }]));
            }
        };
        let parsed = v.process(&root);
        if let Some(def) = &parsed {
            v.check_graph(def, &root);
            v.check_services(def, services);
        }
        match parsed {
            Some(def) if v.errors.is_empty() => Ok(def),
            _ => {
                v.errors
                    .sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
                Err(ProcessErrors(v.errors))
            }
        }
    }

    pub fn trigger(&self) -> &Trigger {
        match &self.steps[0].kind {
            StepKind::Trigger(t) => t,
            _ => unreachable!("validated: the first step is the trigger"),
        }
    }

    pub fn step(&self, key: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.key == key)
    }

    /// Steps that run when `key` succeeds.
    pub fn successors(&self, key: &str) -> Vec<&Step> {
        self.steps
            .iter()
            .filter(|s| s.after.as_deref() == Some(key))
            .collect()
    }
}

struct Parser<'e> {
    errors: Vec<ProcessError>,
    env: &'e BTreeMap<String, String>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Parser<'_> {
    fn err(&mut self, path: &str, pos: Pos, message: impl Into<String>) {
        self.errors.push(ProcessError {
            path: path.to_string(),
            line: Some(pos.line),
            column: Some(pos.column),
            message: message.into(),
        });
    }

    fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&'static str],
    ) -> Option<BTreeMap<&'static str, &'n Node>> {
        let NodeKind::Mapping(entries) = &node.kind else {
            self.err(
                path,
                node.pos,
                format!("expected a mapping, got {}", node.kind_name()),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (Key { text, pos }, value) in entries {
            match allowed.iter().find(|a| **a == text) {
                Some(a) => {
                    if out.insert(*a, value).is_some() {
                        self.err(&join(path, text), *pos, "duplicate key");
                    }
                }
                None => self.err(
                    &join(path, text),
                    *pos,
                    format!("unknown field; allowed: {}", allowed.join(", ")),
                ),
            }
        }
        Some(out)
    }

    /// Scalar text with `$(env:NAME)` replaced.
    fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Null, _) | NodeKind::Mapping(_) | NodeKind::Sequence(_) => {
                self.err(
                    path,
                    node.pos,
                    format!("expected a string, got {}", node.kind_name()),
                );
                None
            }
            NodeKind::Scalar(_, text) => self.substitute(text, path, node.pos),
        }
    }

    fn substitute(&mut self, text: &str, path: &str, pos: Pos) -> Option<String> {
        let mut out = text.to_string();
        for name in env_references(text) {
            match self.env.get(&name) {
                Some(v) => out = out.replace(&format!("$(env:{name})"), v),
                None => {
                    self.err(
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
                    let value = self.constant(v, &join(path, &k.text))?;
                    if out.insert(k.text.clone(), value).is_some() {
                        self.err(&join(path, &k.text), k.pos, "duplicate key");
                    }
                }
                Value::Object(out)
            }
        })
    }

    fn expr(&mut self, node: &Node, path: &str) -> Option<Expr> {
        match &node.kind {
            NodeKind::Mapping(entries) => {
                let keys: Vec<&str> = entries.iter().map(|(k, _)| k.text.as_str()).collect();
                if keys == ["const"] {
                    return self
                        .constant(&entries[0].1, &join(path, "const"))
                        .map(Expr::Const);
                }
                let is_ref =
                    keys.contains(&"step") && keys.iter().all(|k| *k == "step" || *k == "path");
                if is_ref {
                    let f = self.fields(node, path, &["step", "path"])?;
                    let step = self.text(f["step"], &join(path, "step"))?;
                    let p = match f.get("path") {
                        Some(n) => {
                            let t = self.text(n, &join(path, "path"))?;
                            match Path::parse(&t) {
                                Ok(p) => p,
                                Err(e) => {
                                    self.err(&join(path, "path"), n.pos, e);
                                    return None;
                                }
                            }
                        }
                        None => Path::default(),
                    };
                    return Some(Expr::Ref { step, path: p });
                }
                let mut out = BTreeMap::new();
                let mut ok = true;
                for (k, v) in entries {
                    match self.expr(v, &join(path, &k.text)) {
                        Some(e) => {
                            if out.insert(k.text.clone(), e).is_some() {
                                self.err(&join(path, &k.text), k.pos, "duplicate key");
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

    fn condition(&mut self, node: &Node, path: &str) -> Option<Condition> {
        if let NodeKind::Mapping(entries) = &node.kind
            && entries.len() == 1
            && (entries[0].0.text == "all" || entries[0].0.text == "any")
        {
            let (k, v) = &entries[0];
            let p = join(path, &k.text);
            let NodeKind::Sequence(items) = &v.kind else {
                self.err(&p, v.pos, "expected a list of conditions");
                return None;
            };
            if items.is_empty() {
                self.err(&p, v.pos, "needs at least one condition");
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
        let f = self.fields(node, path, &allowed)?;
        let step = match f.get("step") {
            Some(n) => Some(self.text(n, &join(path, "step"))?),
            None => None,
        };
        let Some(path_node) = f.get("path") else {
            self.err(path, node.pos, "a condition needs `path` (and one of eq, ne, gt, gte, lt, lte, contains, exists), or `all`/`any`");
            return None;
        };
        let text = self.text(path_node, &join(path, "path"))?;
        let p = match Path::parse(&text) {
            Ok(p) => p,
            Err(e) => {
                self.err(&join(path, "path"), path_node.pos, e);
                return None;
            }
        };
        let ops: Vec<(Op, &Node, &str)> = Op::ALL
            .iter()
            .filter_map(|(name, op)| f.get(name).map(|n| (*op, *n, *name)))
            .collect();
        if ops.len() != 1 {
            self.err(
                path,
                node.pos,
                "a condition needs exactly one of eq, ne, gt, gte, lt, lte, contains, exists",
            );
            return None;
        }
        let (op, value_node, name) = ops[0];
        let value = self.constant(value_node, &join(path, name))?;
        if op == Op::Exists && !value.is_boolean() {
            self.err(
                &join(path, name),
                value_node.pos,
                "`exists` takes true or false",
            );
            return None;
        }
        if matches!(op, Op::Gt | Op::Gte | Op::Lt | Op::Lte)
            && !(value.is_number() || value.is_string())
        {
            self.err(
                &join(path, name),
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

    fn process(&mut self, root: &Node) -> Option<ProcessDefinition> {
        let f = self.fields(root, "", &["name", "steps"])?;
        let name = match f.get("name") {
            Some(n) => self.text(n, "name").filter(|s| !s.trim().is_empty()),
            None => {
                self.err("name", root.pos, "required field is missing");
                None
            }
        };
        let Some(steps_node) = f.get("steps") else {
            self.err("steps", root.pos, "required field is missing");
            return None;
        };
        let NodeKind::Sequence(items) = &steps_node.kind else {
            self.err("steps", steps_node.pos, "expected a list of steps");
            return None;
        };
        if items.is_empty() {
            self.err("steps", steps_node.pos, "needs at least a trigger");
            return None;
        }
        if items.len() > MAX_STEPS {
            self.err(
                "steps",
                steps_node.pos,
                format!("at most {MAX_STEPS} steps"),
            );
            return None;
        }
        let mut steps = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.step(item, i) {
                Some(s) => steps.push(s),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        // Default `after`: the step listed before, unless this step starts an error branch.
        let error_roots: HashSet<String> = steps
            .iter()
            .filter_map(|(s, _, _)| match &s.kind {
                StepKind::Task(t) => t.on_error.clone(),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        let mut previous: Option<String> = None;
        for (i, (mut step, explicit_after, pos)) in steps.into_iter().enumerate() {
            let path = format!("steps[{i}] ({})", step.key);
            let is_trigger = matches!(step.kind, StepKind::Trigger(_));
            if i == 0 && !is_trigger {
                self.err(&path, pos, "the first step must be a `trigger`");
            }
            if i > 0 && is_trigger {
                self.err(&path, pos, "only the first step can be a `trigger`");
            }
            if error_roots.contains(&step.key) {
                if explicit_after.is_some() {
                    self.err(
                        &path,
                        pos,
                        "this step is an `on_error` target; it cannot also have `after`",
                    );
                }
                step.after = None;
            } else if i > 0 {
                step.after = explicit_after.or_else(|| previous.clone());
            }
            previous = Some(step.key.clone());
            out.push(step);
        }
        Some(ProcessDefinition {
            name: name?,
            steps: out,
        })
    }

    fn step(&mut self, node: &Node, i: usize) -> Option<(Step, Option<String>, Pos)> {
        let path = format!("steps[{i}]");
        let f = self.fields(
            node,
            &path,
            &["key", "after", "trigger", "filter", "map", "task"],
        )?;
        let key = match f.get("key") {
            Some(n) => {
                let k = self.text(n, &join(&path, "key"))?;
                if !crate::definition::is_valid_key(&k) {
                    self.err(
                        &join(&path, "key"),
                        n.pos,
                        "use letters, digits, `_` and `-`, starting with a letter",
                    );
                    return None;
                }
                k
            }
            None => format!("step{i}"),
        };
        let path = format!("steps[{i}] ({key})");
        let after = match f.get("after") {
            Some(n) => Some(self.text(n, &join(&path, "after"))?),
            None => None,
        };
        let kinds: Vec<&str> = ["trigger", "filter", "map", "task"]
            .into_iter()
            .filter(|k| f.contains_key(k))
            .collect();
        if kinds.len() != 1 {
            self.err(
                &path,
                node.pos,
                "a step has exactly one of `trigger`, `filter`, `map`, `task`",
            );
            return None;
        }
        let kind = match kinds[0] {
            "trigger" => {
                let p = join(&path, "trigger");
                let t = self.fields(f["trigger"], &p, &["service", "event", "result"])?;
                let service = match t.get("service") {
                    Some(n) => self.text(n, &join(&p, "service"))?,
                    None => {
                        self.err(&p, f["trigger"].pos, "`service` is required");
                        return None;
                    }
                };
                let source = match (t.get("event"), t.get("result")) {
                    (Some(e), None) => TriggerSource::Event(self.text(e, &join(&p, "event"))?),
                    (None, Some(r)) => TriggerSource::Result(self.text(r, &join(&p, "result"))?),
                    _ => {
                        self.err(
                            &p,
                            f["trigger"].pos,
                            "a trigger has exactly one of `event: KEY` and `result: TASK`",
                        );
                        return None;
                    }
                };
                StepKind::Trigger(Trigger { service, source })
            }
            "filter" => StepKind::Filter(self.condition(f["filter"], &join(&path, "filter"))?),
            "map" => StepKind::Map(self.expr(f["map"], &join(&path, "map"))?),
            _ => {
                let p = join(&path, "task");
                let t = self.fields(
                    f["task"],
                    &p,
                    &[
                        "service", "task", "inputs", "retries", "backoff", "timeout", "on_error",
                    ],
                )?;
                let service = match t.get("service") {
                    Some(n) => self.text(n, &join(&p, "service")),
                    None => {
                        self.err(&p, f["task"].pos, "`service` is required");
                        None
                    }
                };
                let task = match t.get("task") {
                    Some(n) => self.text(n, &join(&p, "task")),
                    None => {
                        self.err(&p, f["task"].pos, "`task` is required");
                        None
                    }
                };
                let inputs = match t.get("inputs") {
                    Some(n) => self.expr(n, &join(&p, "inputs")),
                    None => Some(Expr::Object(BTreeMap::new())),
                };
                let retries = match t.get("retries") {
                    Some(n) => match &n.kind {
                        NodeKind::Scalar(Scalar::Int(r), _)
                            if (0..=MAX_RETRIES as i64).contains(r) =>
                        {
                            Some(*r as u32)
                        }
                        _ => {
                            self.err(
                                &join(&p, "retries"),
                                n.pos,
                                format!("expected a whole number from 0 to {MAX_RETRIES}"),
                            );
                            None
                        }
                    },
                    None => Some(0),
                };
                let mut duration = |name: &str, default: Option<u64>| -> Option<Option<u64>> {
                    match t.get(name) {
                        Some(n) => {
                            let text = self.text(n, &join(&p, name))?;
                            match parse_duration_ms(&text) {
                                Ok(ms) => Some(Some(ms)),
                                Err(e) => {
                                    self.err(&join(&p, name), n.pos, e);
                                    None
                                }
                            }
                        }
                        None => Some(default),
                    }
                };
                let backoff = duration("backoff", Some(1000));
                let timeout = duration("timeout", None);
                let on_error = match t.get("on_error") {
                    Some(n) => Some(Some(self.text(n, &join(&p, "on_error"))?)),
                    None => Some(None),
                };
                StepKind::Task(TaskStep {
                    service: service?,
                    task: task?,
                    inputs: inputs?,
                    retries: retries?,
                    backoff_ms: backoff?.unwrap_or(1000),
                    timeout_ms: timeout?,
                    on_error: on_error?,
                })
            }
        };
        Some((
            Step {
                key,
                after: None,
                kind,
            },
            after,
            node.pos,
        ))
    }

    /// Keys unique; `after`, `on_error` and references name existing, earlier steps; no
    /// cycles (every step's `after` is listed before it, so the graph is a forest).
    fn check_graph(&mut self, def: &ProcessDefinition, root: &Node) {
        let pos = |i: usize| -> Pos {
            if let NodeKind::Mapping(entries) = &root.kind
                && let Some((_, steps)) = entries.iter().find(|(k, _)| k.text == "steps")
                && let NodeKind::Sequence(items) = &steps.kind
                && let Some(item) = items.get(i)
            {
                return item.pos;
            }
            root.pos
        };
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, s) in def.steps.iter().enumerate() {
            if index.insert(&s.key, i).is_some() {
                self.err(
                    &format!("steps[{i}] ({})", s.key),
                    pos(i),
                    "duplicate step key",
                );
            }
        }
        for (i, s) in def.steps.iter().enumerate() {
            let path = format!("steps[{i}] ({})", s.key);
            let earlier = |k: &str| index.get(k).copied().filter(|j| *j < i);
            if let Some(a) = &s.after {
                match index.get(a.as_str()) {
                    None => self.err(&join(&path, "after"), pos(i), format!("no step `{a}`")),
                    Some(j) if *j >= i => self.err(
                        &join(&path, "after"),
                        pos(i),
                        format!("`{a}` comes at or after this step; steps run after earlier steps only (no cycles)"),
                    ),
                    _ => {}
                }
            }
            let mut refs = Vec::new();
            match &s.kind {
                StepKind::Filter(c) => c.refs(&mut refs),
                StepKind::Map(e) => e.refs(&mut refs),
                StepKind::Task(t) => {
                    t.inputs.refs(&mut refs);
                    if let Some(target) = &t.on_error {
                        match index.get(target.as_str()) {
                            None => self.err(
                                &join(&path, "task.on_error"),
                                pos(i),
                                format!("no step `{target}`"),
                            ),
                            Some(j) if *j <= i => self.err(
                                &join(&path, "task.on_error"),
                                pos(i),
                                format!("`{target}` must come after this step"),
                            ),
                            Some(j) if matches!(def.steps[*j].kind, StepKind::Trigger(_)) => self
                                .err(
                                    &join(&path, "task.on_error"),
                                    pos(i),
                                    "cannot go to the trigger",
                                ),
                            _ => {}
                        }
                    }
                }
                StepKind::Trigger(_) => {}
            }
            for r in refs {
                if earlier(&r).is_none() {
                    let why = if index.contains_key(r.as_str()) {
                        "comes at or after this step; reference earlier steps only"
                    } else {
                        "does not exist"
                    };
                    self.err(
                        &path,
                        pos(i),
                        format!("reference to step `{r}`, which {why}"),
                    );
                } else if !self.is_ancestor(def, &r, &s.key) {
                    self.err(
                        &path,
                        pos(i),
                        format!("reference to step `{r}`, which does not always run before this step (it is on another branch)"),
                    );
                }
            }
        }
    }

    /// Whether `ancestor` is on the path from the trigger to `key` (via `after` and
    /// `on_error` links).
    fn is_ancestor(&self, def: &ProcessDefinition, ancestor: &str, key: &str) -> bool {
        let mut current = key.to_string();
        let mut guard = 0;
        while guard <= def.steps.len() {
            guard += 1;
            let parent = def
                .step(&current)
                .and_then(|s| s.after.clone())
                .or_else(|| {
                    def.steps.iter().find_map(|s| match &s.kind {
                        StepKind::Task(t) if t.on_error.as_deref() == Some(current.as_str()) => {
                            Some(s.key.clone())
                        }
                        _ => None,
                    })
                });
            match parent {
                Some(p) if p == ancestor => return true,
                Some(p) => current = p,
                None => return false,
            }
        }
        false
    }

    fn check_services(&mut self, def: &ProcessDefinition, services: &dyn ServiceLookup) {
        for (i, s) in def.steps.iter().enumerate() {
            let path = format!("steps[{i}] ({})", s.key);
            match &s.kind {
                StepKind::Trigger(t) => {
                    let Some(d) = services.definition(&t.service) else {
                        continue;
                    };
                    match &t.source {
                        TriggerSource::Event(e) if !d.events.contains_key(e) => {
                            self.errors.push(ProcessError {
                                path: join(&path, "trigger.event"),
                                line: None,
                                column: None,
                                message: format!(
                                    "service `{}` has no event `{e}` (events: {})",
                                    t.service,
                                    keys(d.events.keys())
                                ),
                            })
                        }
                        TriggerSource::Result(task) if !d.tasks.contains_key(task) => {
                            self.errors.push(ProcessError {
                                path: join(&path, "trigger.result"),
                                line: None,
                                column: None,
                                message: format!(
                                    "service `{}` has no task `{task}` (tasks: {})",
                                    t.service,
                                    keys(d.tasks.keys())
                                ),
                            })
                        }
                        _ => {}
                    }
                }
                StepKind::Task(t) => {
                    let Some(d) = services.definition(&t.service) else {
                        continue;
                    };
                    let Some(task) = d.tasks.get(&t.task) else {
                        self.errors.push(ProcessError {
                            path: join(&path, "task.task"),
                            line: None,
                            column: None,
                            message: format!(
                                "service `{}` has no task `{}` (tasks: {})",
                                t.service,
                                t.task,
                                keys(d.tasks.keys())
                            ),
                        });
                        continue;
                    };
                    for e in check_inputs(&task.inputs, &t.inputs) {
                        self.errors.push(ProcessError {
                            path: join(&join(&path, "task"), &e.path),
                            line: None,
                            column: None,
                            message: e.message,
                        });
                    }
                }
                _ => {}
            }
        }
    }
}

fn keys<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Check what can be known before running: declared keys, required keys present, and
/// the types of constants.
fn check_inputs(params: &ParamMap, inputs: &Expr) -> Vec<ValueError> {
    let mut errors = Vec::new();
    match inputs {
        Expr::Object(map) => {
            for (k, p) in params {
                if !p.optional && !map.contains_key(k) {
                    errors.push(ValueError {
                        path: format!("inputs.{k}"),
                        message: format!("required {} is missing", p.kind),
                    });
                }
            }
            for (k, e) in map {
                match params.get(k) {
                    None => errors.push(ValueError {
                        path: format!("inputs.{k}"),
                        message: "unknown input (not declared by the task)".into(),
                    }),
                    Some(p) => {
                        if let Expr::Const(v) = e
                            && !(v.is_null() && p.optional)
                        {
                            check_param(p, v, &format!("inputs.{k}"), &mut errors);
                        }
                    }
                }
            }
        }
        Expr::Const(v) => {
            if let Err(e) = crate::schema::validate(params, v, "inputs") {
                errors.extend(e.0);
            }
        }
        Expr::List(_) => errors.push(ValueError {
            path: "inputs".into(),
            message: "expected an object of inputs, got a list".into(),
        }),
        Expr::Ref { .. } => {}
    }
    errors
}
