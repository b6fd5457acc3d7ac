//! Reading a process file: [`ProcessDefinition::from_yaml`] walks the YAML tree with the
//! shared [`Walker`], reads the top level and each step here (values, expressions and
//! conditions in [`super::parse_value`]), then checks the step graph and the services,
//! reporting every problem of the file at once.

use super::graph::check_graph;
use super::services::{ServiceLookup, check_services};
use super::{
    Expr, MAX_RETRIES, MAX_STEP_PRICE, MAX_STEPS, ProcessDefinition, ProcessErrors, Step, StepKind,
    TaskStep, Trigger, TriggerSource,
};
use crate::definition::{is_valid_key, parse_duration_ms};
use crate::yaml::{
    Fields, Node, NodeKind, NullSection, Pos, Scalar, Walker, join_path, parse_root,
};
use std::collections::{BTreeMap, HashSet};

const PROCESS_FIELDS: &[&str] = &["name", "max_depth", "rate_limit", "steps"];
const STEP_FIELDS: &[&str] = &["key", "after", "trigger", "filter", "map", "task"];
/// The fields of a step that say what it does; a step has exactly one.
const STEP_KINDS: [&str; 4] = ["trigger", "filter", "map", "task"];
const TRIGGER_FIELDS: &[&str] = &["service", "event", "result"];
const TASK_FIELDS: &[&str] = &[
    "service",
    "task",
    "inputs",
    "retries",
    "backoff",
    "timeout",
    "on_error",
    "max_price",
    "verify",
];
/// First retry delay when a task step does not say.
const DEFAULT_BACKOFF_MS: u64 = 1000;

impl ProcessDefinition {
    /// Parse a process file, substituting `$(env:NAME)` from `env`, and validate it;
    /// `services` checks services, tasks, events and input types where it knows them.
    pub fn from_yaml(
        src: &str,
        env: &BTreeMap<String, String>,
        services: &dyn ServiceLookup,
    ) -> Result<ProcessDefinition, ProcessErrors> {
        let root = parse_root(src, "the process is empty; it needs `name` and `steps`")
            .map_err(|e| ProcessErrors(vec![e]))?;
        let mut parser = ProcessParser {
            walker: Walker::new(NullSection::Refused),
            env,
        };
        let parsed = parser.process(&root);
        if let Some(def) = &parsed {
            check_graph(def, &root, &mut parser.walker);
            check_services(def, &root, services, &mut parser.walker);
        }
        match parsed {
            Some(def) if !parser.walker.has_errors() => Ok(def),
            _ => Err(ProcessErrors(parser.walker.into_errors())),
        }
    }
}

/// The process file's rules on top of the shared walker, with the values that replace
/// `$(env:NAME)`.
pub(super) struct ProcessParser<'e> {
    pub(super) walker: Walker,
    pub(super) env: &'e BTreeMap<String, String>,
}

/// A step as read, before its default `after` is known: the step, the `after` it gives,
/// its position.
type ReadStep = (Step, Option<String>, Pos);

impl ProcessParser<'_> {
    fn process(&mut self, root: &Node) -> Option<ProcessDefinition> {
        let f = self.walker.fields(root, "", PROCESS_FIELDS)?;
        let name = self
            .walker
            .required(&f, "name", "", root.pos)
            .and_then(|n| self.name(n));
        // A wrong limit is reported and left out, so the steps are still checked.
        let max_depth = f.get("max_depth").and_then(|n| self.max_depth(n));
        let rate_limit = f.get("rate_limit").and_then(|n| self.rate_limit(n));
        let steps_node = self.walker.required(&f, "steps", "", root.pos)?;
        let NodeKind::Sequence(items) = &steps_node.kind else {
            self.walker
                .type_error("steps", steps_node, "a list of steps");
            return None;
        };
        if items.is_empty() {
            self.walker
                .error("steps", steps_node.pos, "needs at least a trigger");
            return None;
        }
        if items.len() > MAX_STEPS {
            self.walker.error(
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
        Some(ProcessDefinition {
            name: name?,
            steps: self.link(steps),
            max_depth,
            rate_limit,
        })
    }

    fn name(&mut self, node: &Node) -> Option<String> {
        let name = self.text(node, "name")?;
        if name.trim().is_empty() {
            self.walker.error("name", node.pos, "must not be empty");
            return None;
        }
        Some(name)
    }

    /// Give each step its `after`: the one it names, else the step listed before, unless
    /// it starts an error branch. The first step must be the trigger, and only it.
    fn link(&mut self, steps: Vec<ReadStep>) -> Vec<Step> {
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
                self.walker
                    .error(&path, pos, "the first step must be a `trigger`");
            }
            if i > 0 && is_trigger {
                self.walker
                    .error(&path, pos, "only the first step can be a `trigger`");
            }
            if error_roots.contains(&step.key) {
                if explicit_after.is_some() {
                    self.walker.error(
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
        out
    }

    fn step(&mut self, node: &Node, i: usize) -> Option<ReadStep> {
        let path = format!("steps[{i}]");
        let f = self.walker.fields(node, &path, STEP_FIELDS)?;
        let key = match f.get("key") {
            Some(n) => {
                let p = join_path(&path, "key");
                let k = self.text(n, &p)?;
                if !is_valid_key(&k) {
                    self.walker.error(
                        &p,
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
            Some(n) => Some(self.text(n, &join_path(&path, "after"))?),
            None => None,
        };
        let kinds: Vec<&str> = STEP_KINDS
            .into_iter()
            .filter(|k| f.contains_key(k))
            .collect();
        if kinds.len() != 1 {
            self.walker.error(
                &path,
                node.pos,
                "a step has exactly one of `trigger`, `filter`, `map`, `task`",
            );
            return None;
        }
        let kind = match kinds[0] {
            "trigger" => {
                StepKind::Trigger(self.trigger(f["trigger"], &join_path(&path, "trigger"))?)
            }
            "filter" => StepKind::Filter(self.condition(f["filter"], &join_path(&path, "filter"))?),
            "map" => StepKind::Map(self.expr(f["map"], &join_path(&path, "map"))?),
            _ => StepKind::Task(self.task(f["task"], &join_path(&path, "task"))?),
        };
        let step = Step {
            key,
            after: None,
            kind,
        };
        Some((step, after, node.pos))
    }

    fn trigger(&mut self, node: &Node, path: &str) -> Option<Trigger> {
        let t = self.walker.fields(node, path, TRIGGER_FIELDS)?;
        let service = match t.get("service") {
            Some(n) => self.text(n, &join_path(path, "service"))?,
            None => {
                self.walker.error(path, node.pos, "`service` is required");
                return None;
            }
        };
        let source = match (t.get("event"), t.get("result")) {
            (Some(e), None) => TriggerSource::Event(self.text(e, &join_path(path, "event"))?),
            (None, Some(r)) => TriggerSource::Result(self.text(r, &join_path(path, "result"))?),
            _ => {
                self.walker.error(
                    path,
                    node.pos,
                    "a trigger has exactly one of `event: KEY` and `result: TASK`",
                );
                return None;
            }
        };
        Some(Trigger { service, source })
    }

    fn task(&mut self, node: &Node, path: &str) -> Option<TaskStep> {
        let t = self.walker.fields(node, path, TASK_FIELDS)?;
        let service = match t.get("service") {
            Some(n) => self.text(n, &join_path(path, "service")),
            None => {
                self.walker.error(path, node.pos, "`service` is required");
                None
            }
        };
        let task = match t.get("task") {
            Some(n) => self.text(n, &join_path(path, "task")),
            None => {
                self.walker.error(path, node.pos, "`task` is required");
                None
            }
        };
        let inputs = match t.get("inputs") {
            Some(n) => self.expr(n, &join_path(path, "inputs")),
            None => Some(Expr::Object(BTreeMap::new())),
        };
        let retries = match t.get("retries") {
            Some(n) => match &n.kind {
                NodeKind::Scalar(Scalar::Int(r), _) if (0..=MAX_RETRIES as i64).contains(r) => {
                    Some(*r as u32)
                }
                _ => {
                    self.walker.error(
                        &join_path(path, "retries"),
                        n.pos,
                        format!("expected a whole number from 0 to {MAX_RETRIES}"),
                    );
                    None
                }
            },
            None => Some(0),
        };
        let backoff = self.duration(&t, "backoff", path);
        let timeout = self.duration(&t, "timeout", path);
        let on_error = match t.get("on_error") {
            Some(n) => Some(Some(self.text(n, &join_path(path, "on_error"))?)),
            None => Some(None),
        };
        let max_price = match t.get("max_price") {
            Some(n) => self.max_price(n, &join_path(path, "max_price")).map(Some),
            None => Some(None),
        };
        let verify = match t.get("verify") {
            Some(n) => {
                crate::definition::verify_spec(&mut self.walker, n, &join_path(path, "verify"))
                    .map(Some)
            }
            None => Some(None),
        };
        Some(TaskStep {
            service: service?,
            task: task?,
            inputs: inputs?,
            retries: retries?,
            backoff_ms: backoff?.unwrap_or(DEFAULT_BACKOFF_MS),
            timeout_ms: timeout?,
            on_error: on_error?,
            max_price: max_price?,
            verify: verify?,
        })
    }

    /// A step's `max_price`: a whole number of micro-credits from 0 to
    /// [`MAX_STEP_PRICE`], read from its text (a figure past 64 bits is reported as too
    /// large, never rounded through a float).
    fn max_price(&mut self, node: &Node, path: &str) -> Option<u64> {
        let expected =
            format!("expected a whole number of micro-credits from 0 to {MAX_STEP_PRICE}");
        let text = match &node.kind {
            NodeKind::Scalar(Scalar::Int(_) | Scalar::Float(_), t) => t.trim().to_string(),
            _ => {
                self.walker
                    .type_error(path, node, "a whole number of micro-credits");
                return None;
            }
        };
        let digits = text.strip_prefix('+').unwrap_or(&text).replace('_', "");
        let problem = if digits.starts_with('-') {
            "is negative"
        } else if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            "is not a whole number"
        } else {
            match digits.parse::<u64>() {
                Ok(v) if v <= MAX_STEP_PRICE => return Some(v),
                _ => "is too large",
            }
        };
        self.walker
            .error(path, node.pos, format!("`{text}` {problem}; {expected}"));
        None
    }

    /// An optional duration field, in milliseconds: `Some(None)` when absent, `None` when
    /// it is not a duration.
    fn duration(&mut self, fields: &Fields<'_>, name: &str, path: &str) -> Option<Option<u64>> {
        let Some(node) = fields.get(name) else {
            return Some(None);
        };
        let p = join_path(path, name);
        let text = self.text(node, &p)?;
        match parse_duration_ms(&text) {
            Ok(ms) => Some(Some(ms)),
            Err(e) => {
                self.walker.error(&p, node.pos, e);
                None
            }
        }
    }
}
