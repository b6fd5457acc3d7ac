//! Steps, triggers and conditions of a process as text (`show` and the tree of steps).

use super::*;

// ------------------------------------------------------------ steps as text

/// A reference to a step's output: `@tick.count`, `@payload`.
pub(super) fn reference(step: &str, path: &str) -> String {
    if path.is_empty() {
        format!("@{step}")
    } else {
        format!("@{step}.{path}")
    }
}

/// A value expression: constants as JSON, references as `@step.path`.
pub fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Const(v) => v.to_string(),
        Expr::Ref { step, path } => reference(step, &path.to_string()),
        Expr::List(items) => format!(
            "[{}]",
            items.iter().map(expr_text).collect::<Vec<_>>().join(", ")
        ),
        Expr::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}: {}", expr_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A filter condition: `value eq "go"`, `@tick.count gte 2`, `any(...)`.
pub fn condition_text(c: &Condition) -> String {
    let list = |cs: &[Condition]| cs.iter().map(condition_text).collect::<Vec<_>>().join(", ");
    match c {
        Condition::All(cs) => format!("all({})", list(cs)),
        Condition::Any(cs) => format!("any({})", list(cs)),
        Condition::Test {
            step,
            path,
            op,
            value,
        } => {
            let op = serde_json::to_value(op)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{op:?}"));
            let left = match step {
                Some(s) => reference(s, &path.to_string()),
                None => path.to_string(),
            };
            format!("{left} {op} {value}")
        }
    }
}

pub(super) fn trigger_text(def: &ProcessDefinition) -> String {
    match def.steps.first().map(|s| &s.kind) {
        Some(StepKind::Trigger(t)) => match &t.source {
            TriggerSource::Event(e) => format!("on event {}.{e}", t.service),
            TriggerSource::Result(task) => format!("on result of {}.{task}", t.service),
        },
        _ => "no trigger".to_string(),
    }
}

pub(super) fn task_options(t: &TaskStep) -> String {
    let mut out = Vec::new();
    if t.retries > 0 {
        out.push(format!(
            "retries {} (backoff {}{})",
            t.retries,
            format_duration_ms(t.backoff_ms),
            if t.retries > 1 { ", doubling" } else { "" }
        ));
    }
    if let Some(ms) = t.timeout_ms {
        out.push(format!("timeout {}", format_duration_ms(ms)));
    }
    if let Some(target) = &t.on_error {
        out.push(format!("on error: {target}"));
    }
    if let Some(cap) = t.max_price {
        out.push(format!("max price {cap} µc"));
    }
    out.join(", ")
}

/// Kind, what the step does, and its options.
pub(super) fn step_columns(kind: &StepKind) -> (&'static str, String, String) {
    match kind {
        StepKind::Trigger(t) => (
            "trigger",
            match &t.source {
                TriggerSource::Event(e) => format!("event {}.{e}", t.service),
                TriggerSource::Result(task) => format!("result {}.{task}", t.service),
            },
            String::new(),
        ),
        StepKind::Filter(c) => ("filter", condition_text(c), String::new()),
        StepKind::Map(e) => ("map", compact(&expr_text(e), 80), String::new()),
        StepKind::Task(t) => (
            "task",
            format!(
                "{}.{} {}",
                t.service,
                t.task,
                compact(&expr_text(&t.inputs), 80)
            ),
            task_options(t),
        ),
    }
}

pub(super) fn compact(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The steps as a tree, in file order: each step under the step it runs after; an
/// `on_error` target under the step whose failure runs it, marked `on error:`. Each row:
/// (tree and key, kind, what it runs, options).
pub fn step_tree(def: &ProcessDefinition) -> Vec<[String; 4]> {
    let children = |key: &str| -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = def
            .steps
            .iter()
            .filter(|s| s.after.as_deref() == Some(key))
            .map(|s| (s.key.clone(), false))
            .collect();
        if let Some(StepKind::Task(t)) = def.step(key).map(|s| &s.kind)
            && let Some(target) = &t.on_error
            && def.step(target).is_some()
        {
            out.push((target.clone(), true));
        }
        out
    };
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    // (key, on_error, prefix for this line, prefix for its children)
    let mut stack: Vec<(String, bool, String, String)> = Vec::new();
    let roots: Vec<&str> = def
        .steps
        .first()
        .map(|s| s.key.as_str())
        .into_iter()
        .collect();
    for r in roots {
        stack.push((r.to_string(), false, String::new(), String::new()));
    }
    loop {
        while let Some((key, on_error, line_prefix, child_prefix)) = stack.pop() {
            if !seen.insert(key.clone()) {
                continue;
            }
            let Some(step) = def.step(&key) else { continue };
            let (kind, what, options) = step_columns(&step.kind);
            let label = if on_error {
                format!("{line_prefix}on error: {key}")
            } else {
                format!("{line_prefix}{key}")
            };
            rows.push([label, kind.to_string(), what, options]);
            let kids = children(&key);
            let n = kids.len();
            for (i, (kid, err)) in kids.into_iter().enumerate().rev() {
                let last = i + 1 == n;
                stack.push((
                    kid,
                    err,
                    format!("{child_prefix}{}", if last { "└─ " } else { "├─ " }),
                    format!("{child_prefix}{}", if last { "   " } else { "│  " }),
                ));
            }
        }
        // Whatever the tree did not reach (not in a valid definition): at the top level.
        match def.steps.iter().find(|s| !seen.contains(&s.key)) {
            Some(s) => stack.push((s.key.clone(), false, String::new(), String::new())),
            None => break,
        }
    }
    rows
}

pub(super) fn print_steps(
    def: &ProcessDefinition,
    services: &BTreeMap<String, ServiceHash>,
    indent: &str,
) {
    let mut table = Table::new(&["STEP", "KIND", "RUNS", "OPTIONS"]);
    for [label, kind, what, options] in step_tree(def) {
        table.row(vec![
            label.into(),
            Cell::painted(kind, Paint::Cyan),
            what.into(),
            options.into(),
        ]);
    }
    let text = table.render(crate::output::color_out());
    for line in text.lines() {
        outln!("{indent}{line}");
    }
    // sid -> service hash, once each.
    let mut seen = BTreeMap::new();
    for step in &def.steps {
        let name = match &step.kind {
            StepKind::Trigger(t) => &t.service,
            StepKind::Task(t) => &t.service,
            _ => continue,
        };
        if let Some(hash) = services.get(&step.key) {
            seen.entry(name.clone()).or_insert_with(|| hash.to_string());
        }
    }
    if !seen.is_empty() {
        let list: Vec<String> = seen
            .iter()
            .map(|(name, hash)| {
                if name == hash {
                    name.clone()
                } else {
                    format!("{name} = {hash}")
                }
            })
            .collect();
        outln!("{indent}services: {}", list.join(", "));
    }
}
