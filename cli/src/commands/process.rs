//! `mesg process create|validate|list|show|runs|run|logs|delete`.
//!
//! The file's `$(env:NAME)` values are collected here ([`collect_env`]): from --env, else
//! from the environment; the node substitutes them. `logs` prints what changed in each run
//! by comparing it with the previous snapshot of that run ([`run_changes`]).

use super::views::{self, ProcessView, RunView, StepRunView};
use super::{Ctx, Exit, print_json};
use crate::client::{ApiError, Client};
use crate::inputs;
use crate::output::{
    Cell, Paint, SHORT, Table, compact_json, errln, format_age, format_clock, format_duration_ms,
    format_timestamp, outln, pe, po, short,
};
use anyhow::anyhow;
use mesg_protocol::process::{
    Condition, Expr, ProcessDefinition, StepKind, TaskStep, TriggerSource,
};
use mesg_protocol::yaml::{self, Node, NodeKind};
use mesg_protocol::{ExecutionId, now_ms};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

// ---------------------------------------------------------------------- env

/// The `$(env:NAME)` a process file uses, in order of first use, or `None` when the file
/// is not YAML (the node reports that). Only values count, as for the node: a reference in
/// a comment or a key is not substituted, so it is not asked for.
pub fn env_names(text: &str) -> Option<Vec<String>> {
    fn walk(node: &Node, out: &mut Vec<String>) {
        match &node.kind {
            NodeKind::Scalar(_, text) => {
                for name in mesg_protocol::process::env_references(text) {
                    if !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
            NodeKind::Sequence(items) => items.iter().for_each(|n| walk(n, out)),
            NodeKind::Mapping(entries) => entries.iter().for_each(|(_, n)| walk(n, out)),
        }
    }
    let root = yaml::parse(text).ok()?;
    let mut out = Vec::new();
    if let Some(root) = &root {
        walk(root, &mut out);
    }
    Some(out)
}

/// The env sent with a process file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEnv {
    pub env: BTreeMap<String, String>,
    /// --env names the file does not use (likely a typo).
    pub unused: Vec<String>,
}

/// Values of the file's `$(env:NAME)`: each from `given` (--env), else from `lookup` (the
/// environment). A name in neither is an error that names every missing one. Every
/// --env is sent; of the environment, only the names the file uses.
pub fn collect_env(
    text: &str,
    given: &[(String, String)],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<FileEnv, String> {
    let mut env = inputs::env_map(given)?;
    let Some(names) = env_names(text) else {
        // Not YAML: the node says where; send what was given.
        return Ok(FileEnv {
            env,
            unused: Vec::new(),
        });
    };
    let mut missing = Vec::new();
    for name in &names {
        if env.contains_key(name) {
            continue;
        }
        match lookup(name) {
            Some(v) => {
                env.insert(name.clone(), v);
            }
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        let list = missing
            .iter()
            .map(|n| format!("$(env:{n})"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "the file uses {list}, which {} not set: give {} with --env {}=VALUE, or set {} in the environment",
            if missing.len() == 1 { "is" } else { "are" },
            if missing.len() == 1 { "it" } else { "each" },
            missing[0],
            if missing.len() == 1 { "it" } else { "them" },
        ));
    }
    let unused = given
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !names.contains(k))
        .collect();
    Ok(FileEnv { env, unused })
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Read a process file; `Exit(code)` after saying why when it cannot be read.
fn read_file(file: &Path, code: u8) -> anyhow::Result<String> {
    std::fs::read_to_string(file).map_err(|e| {
        errln!(
            "{} cannot read {}: {e}",
            pe(Paint::Red, "error:"),
            file.display()
        );
        Exit(code).into()
    })
}

/// The file and its env, ready to send; warns about --env the file does not use.
fn body(file: &Path, given: &[(String, String)], code: u8) -> anyhow::Result<Value> {
    let text = read_file(file, code)?;
    let env = collect_env(&text, given, env_var).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    for name in &env.unused {
        errln!(
            "{} --env {name}: {} has no $(env:{name})",
            pe(Paint::Yellow, "warning:"),
            file.display()
        );
    }
    Ok(json!({"definition": text, "env": env.env}))
}

/// Every error of a process file, as `FILE:LINE:COL: path: message` (`FILE: path:
/// message` when the node knows no position), and their count.
fn print_process_errors(file: &Path, errors: &[String]) {
    for e in errors {
        let sep = if e.starts_with(|c: char| c.is_ascii_digit()) {
            ":"
        } else {
            ": "
        };
        errln!("{}{sep}{e}", file.display());
    }
    errln!("{} error(s) in {}", errors.len(), file.display());
}

// ------------------------------------------------------------ create/validate

pub async fn create(ctx: &Ctx, file: &Path, env: &[(String, String)]) -> anyhow::Result<()> {
    let body = body(file, env, 1)?;
    let client = ctx.client()?;
    let v: Value = match client
        .json(client.post(&["v1", "processes"]).json(&body))
        .await
    {
        Ok(v) => v,
        Err(e) => {
            if let Some(api) = e.downcast_ref::<ApiError>()
                && api.code == "invalid_process"
                && !api.details.is_empty()
            {
                print_process_errors(file, &api.details);
                return Err(Exit(1).into());
            }
            return Err(e);
        }
    };
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let p: ProcessView = views::decode(&v, "process")?;
    outln!("{}", p.id);
    errln!(
        "{} process {}: {}, {} step(s); follow it with `mesg process logs {}`",
        pe(Paint::Green, "created"),
        p.name,
        trigger_text(&p.definition),
        p.definition.steps.len(),
        p.name
    );
    Ok(())
}

pub async fn validate(ctx: &Ctx, file: &Path, env: &[(String, String)]) -> anyhow::Result<()> {
    let body = body(file, env, 2)?;
    let client = ctx.client()?;
    let v: Value = client
        .json(client.post(&["v1", "processes", "validate"]).json(&body))
        .await?;
    let valid = v["valid"].as_bool() == Some(true);
    if ctx.json() {
        print_json(&v);
        return if valid { Ok(()) } else { Err(Exit(1).into()) };
    }
    if !valid {
        let errors: Vec<String> = v["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                e.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string())
            })
            .collect();
        print_process_errors(file, &errors);
        return Err(Exit(1).into());
    }
    let def: ProcessDefinition = views::decode(&v["definition"], "process definition")?;
    let services: BTreeMap<String, String> =
        views::decode(v.get("services").unwrap_or(&Value::Null), "service list")
            .unwrap_or_default();
    outln!("{} is valid", file.display());
    outln!("name:   {}", def.name);
    outln!("steps:  {}", def.steps.len());
    print_steps(&def, &services, "  ");
    Ok(())
}

// ------------------------------------------------------------ ids

/// A process as typed: a name or full id as is, or the id a unique prefix stands for.
pub async fn resolve_process(client: &Client, text: &str) -> anyhow::Result<String> {
    let v: Value = client.json(client.get(&["v1", "processes"])).await?;
    let list = v["processes"].as_array().cloned().unwrap_or_default();
    let field = |p: &Value, k: &str| p[k].as_str().map(str::to_string);
    if list.iter().any(|p| {
        field(p, "id").as_deref() == Some(text) || field(p, "name").as_deref() == Some(text)
    }) {
        return Ok(text.to_string());
    }
    let ids: Vec<String> = list
        .iter()
        .filter_map(|p| field(p, "id"))
        .filter(|id| id.starts_with(text))
        .collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Ok(text.to_string()),
        many => Err(anyhow!(
            "`{text}` is the start of {} process ids; give more characters",
            many.len()
        )),
    }
}

/// A full run id from an id or a unique prefix of one of the 1000 newest runs of a
/// process.
pub async fn resolve_run(client: &Client, text: &str) -> anyhow::Result<String> {
    let t = text.trim().to_ascii_lowercase();
    if t.parse::<ExecutionId>().is_ok() {
        return Ok(t);
    }
    if t.is_empty() || t.len() > 32 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        anyhow::bail!("`{text}` is not a run id (32 hex characters, or the start of one)");
    }
    let v: Value = client.json(client.get(&["v1", "processes"])).await?;
    let mut ids: Vec<String> = Vec::new();
    for p in v["processes"].as_array().into_iter().flatten() {
        let Some(id) = p["id"].as_str() else { continue };
        let runs: Value = client
            .json(
                client
                    .get(&["v1", "processes", id, "runs"])
                    .query(&[("limit", 1000)]),
            )
            .await?;
        ids.extend(
            runs["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["id"].as_str())
                .filter(|id| id.starts_with(&t))
                .map(str::to_string),
        );
    }
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(anyhow!(
            "no run id starts with `{text}` (the 1000 newest runs of each process were searched); give the full id"
        )),
        many => Err(anyhow!(
            "`{text}` is the start of {} run ids ({}, ...); give more characters",
            many.len(),
            many.iter()
                .take(3)
                .map(|s| short(s, 12))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

// ------------------------------------------------------------ steps as text

/// A reference to a step's output: `@tick.count`, `@payload`.
fn reference(step: &str, path: &str) -> String {
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

fn trigger_text(def: &ProcessDefinition) -> String {
    match def.steps.first().map(|s| &s.kind) {
        Some(StepKind::Trigger(t)) => match &t.source {
            TriggerSource::Event(e) => format!("on event {}.{e}", t.service),
            TriggerSource::Result(task) => format!("on result of {}.{task}", t.service),
        },
        _ => "no trigger".to_string(),
    }
}

fn task_options(t: &TaskStep) -> String {
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
    out.join(", ")
}

/// Kind, what the step does, and its options.
fn step_columns(kind: &StepKind) -> (&'static str, String, String) {
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

fn compact(text: &str, max: usize) -> String {
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

fn print_steps(def: &ProcessDefinition, services: &BTreeMap<String, String>, indent: &str) {
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
            seen.entry(name.clone()).or_insert_with(|| hash.clone());
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

// ------------------------------------------------------------ list / show

pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client.json(client.get(&["v1", "processes"])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let list: Vec<ProcessView> = views::decode(&v["processes"], "process list")?;
    if list.is_empty() {
        outln!("no processes on this node; create one with `mesg process create FILE`");
        return Ok(());
    }
    let now = now_ms();
    let mut table = Table::new(&["ID", "NAME", "TRIGGER", "STEPS", "RUNNING", "CREATED"]);
    for p in &list {
        let trigger = match p.definition.steps.first().map(|s| &s.kind) {
            Some(StepKind::Trigger(t)) => match &t.source {
                TriggerSource::Event(e) => format!("event {}.{e}", t.service),
                TriggerSource::Result(task) => format!("result {}.{task}", t.service),
            },
            _ => "-".into(),
        };
        table.row(vec![
            short(&p.id, SHORT).into(),
            p.name.clone().into(),
            trigger.into(),
            p.definition.steps.len().to_string().into(),
            if p.runs_running > 0 {
                Cell::painted(p.runs_running.to_string(), Paint::Yellow)
            } else {
                "0".into()
            },
            format_age(now, p.created_at).into(),
        ]);
    }
    table.print();
    Ok(())
}

async fn get_process(client: &Client, id: &str) -> anyhow::Result<(ProcessView, Value)> {
    let id = resolve_process(client, id).await?;
    let v: Value = client.json(client.get(&["v1", "processes", &id])).await?;
    Ok((views::decode(&v, "process")?, v))
}

pub async fn show(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let (p, raw) = get_process(client, id).await?;
    if ctx.json() {
        print_json(&raw);
        return Ok(());
    }
    let now = now_ms();
    outln!("{}", views::bold(&p.name));
    outln!("id:       {}", p.id);
    outln!("trigger:  {}", trigger_text(&p.definition));
    outln!(
        "created:  {} ({})",
        format_timestamp(p.created_at),
        format_age(now, p.created_at)
    );
    outln!(
        "running:  {} run(s); see `mesg process runs {}`",
        p.runs_running,
        p.name
    );
    outln!();
    print_steps(&p.definition, &p.services, "");
    Ok(())
}

pub async fn delete(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = resolve_process(client, id).await?;
    let v: Value = client
        .json(client.delete(&["v1", "processes", &id]))
        .await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let p: ProcessView = views::decode(&v, "process")?;
    outln!("deleted process {} ({})", p.name, p.id);
    Ok(())
}

// ------------------------------------------------------------ runs

/// The colour of a run or step status.
pub fn run_paint(status: &str) -> Paint {
    match status {
        "completed" | "done" => Paint::Green,
        "failed" => Paint::Red,
        "running" | "waiting" => Paint::Yellow,
        _ => Paint::Dim,
    }
}

fn span(started: u64, finished: Option<u64>, now: u64) -> String {
    match finished {
        Some(f) => format_duration_ms(f.saturating_sub(started)),
        None => format!("{}…", format_duration_ms(now.saturating_sub(started))),
    }
}

fn clean(text: &str) -> String {
    crate::output::sanitize(text, false)
}

pub async fn runs(ctx: &Ctx, id: &str, limit: Option<u32>) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = resolve_process(client, id).await?;
    let mut request = client.get(&["v1", "processes", &id, "runs"]);
    if let Some(n) = limit {
        request = request.query(&[("limit", n)]);
    }
    let v: Value = client.json(request).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let runs: Vec<RunView> = views::decode(&v["runs"], "run list")?;
    if runs.is_empty() {
        outln!("no runs yet: a run starts when the process's trigger happens");
        return Ok(());
    }
    let now = now_ms();
    let mut table = Table::new(&["RUN", "STATUS", "STARTED", "DURATION", "STEPS", "ERROR"]);
    for r in &runs {
        table.row(vec![
            short(&r.id, SHORT).into(),
            Cell::painted(r.status.clone(), run_paint(&r.status)),
            format_age(now, r.started_at).into(),
            span(r.started_at, r.finished_at, now).into(),
            step_counts(r).into(),
            compact(&clean(r.error.as_deref().unwrap_or("")), 80).into(),
        ]);
    }
    table.print();
    Ok(())
}

/// `4 done, 1 filtered`.
fn step_counts(r: &RunView) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in r.steps.values() {
        *counts.entry(s.status.as_str()).or_default() += 1;
    }
    let order = ["done", "running", "waiting", "filtered", "failed"];
    let mut out: Vec<String> = order
        .iter()
        .filter_map(|k| counts.get(k).map(|n| format!("{n} {k}")))
        .collect();
    out.extend(
        counts
            .iter()
            .filter(|(k, _)| !order.contains(k))
            .map(|(k, n)| format!("{n} {k}")),
    );
    out.join(", ")
}

/// What a step of a run shows in the last column: output, error or retry time.
fn step_detail(s: &StepRunView, max: usize) -> String {
    match s.status.as_str() {
        "failed" => compact(&clean(s.error.as_deref().unwrap_or("")), max),
        "waiting" if s.attempts.is_empty() => "starting".to_string(),
        "waiting" => {
            let last = s
                .attempts
                .last()
                .and_then(|a| a.error.as_deref())
                .unwrap_or("");
            match s.retry_at {
                Some(t) => compact(
                    &format!("retry at {}: {}", format_clock(t), clean(last)),
                    max,
                ),
                None => compact(&clean(last), max),
            }
        }
        _ => s
            .output
            .as_ref()
            .map(|o| compact_json(o, max))
            .unwrap_or_default(),
    }
}

pub async fn run(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = resolve_run(client, id).await?;
    let v: Value = client.json(client.get(&["v1", "runs", &id])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let r: RunView = views::decode(&v, "run")?;
    // The definition gives the order of the steps and those that did not run.
    let process: Option<ProcessView> = match client
        .json::<Value>(client.get(&["v1", "processes", &r.process]))
        .await
    {
        Ok(v) => views::decode(&v, "process").ok(),
        Err(_) => None,
    };
    let now = now_ms();
    let w = |label: &str, value: String| outln!("{:<10}{value}", format!("{label}:"));
    w("run", r.id.clone());
    match &process {
        Some(p) => w("process", format!("{} ({})", p.name, p.id)),
        None => w("process", format!("{} (deleted)", r.process)),
    }
    w("status", po(run_paint(&r.status), &r.status));
    if let Some(e) = &r.trigger_execution {
        w("trigger", format!("execution {e}"));
    }
    w(
        "started",
        format!(
            "{} ({})",
            format_timestamp(r.started_at),
            format_age(now, r.started_at)
        ),
    );
    match r.finished_at {
        Some(f) => w(
            "finished",
            format!(
                "{} (took {})",
                format_timestamp(f),
                format_duration_ms(f.saturating_sub(r.started_at))
            ),
        ),
        None => w(
            "running",
            format!(
                "for {}",
                format_duration_ms(now.saturating_sub(r.started_at))
            ),
        ),
    }
    if let Some(e) = &r.error {
        w("error", po(Paint::Red, &clean(e)));
    }
    outln!();
    let mut keys: Vec<String> = match &process {
        Some(p) => p.definition.steps.iter().map(|s| s.key.clone()).collect(),
        None => Vec::new(),
    };
    let mut extra: Vec<(&String, &StepRunView)> =
        r.steps.iter().filter(|(k, _)| !keys.contains(k)).collect();
    extra.sort_by_key(|(k, s)| (s.started_at, (*k).clone()));
    keys.extend(extra.into_iter().map(|(k, _)| k.clone()));
    let mut table = Table::new(&["STEP", "STATUS", "TIME", "OUTPUT / ERROR"]);
    for key in &keys {
        let Some(s) = r.steps.get(key) else {
            let why = if r.status == "running" {
                "(not yet)"
            } else {
                "(did not run)"
            };
            table.row(vec![
                Cell::painted(key.clone(), Paint::Dim),
                Cell::painted("-", Paint::Dim),
                "".into(),
                Cell::painted(why, Paint::Dim),
            ]);
            continue;
        };
        // A step left unfinished by a run that ended (another branch failed) has no
        // running time.
        let time = match (s.finished_at, r.finished_at) {
            (None, Some(_)) => "-".to_string(),
            _ => span(s.started_at, s.finished_at, now),
        };
        table.row(vec![
            key.clone().into(),
            Cell::painted(s.status.clone(), run_paint(&s.status)),
            time.into(),
            step_detail(s, 100).into(),
        ]);
        for (i, a) in s.attempts.iter().enumerate() {
            let status = match (&a.finished_at, &a.error) {
                (None, _) => "running",
                (Some(_), Some(_)) => "failed",
                (Some(_), None) => "completed",
            };
            let error = a
                .error
                .as_deref()
                .map(|e| format!(": {}", compact(&clean(e), 80)))
                .unwrap_or_default();
            table.row(vec![
                Cell::painted(format!("  #{}", i + 1), Paint::Dim),
                Cell::painted(status, run_paint(status)),
                span(a.started_at, a.finished_at, now).into(),
                format!("execution {}{error}", a.execution_id).into(),
            ]);
        }
    }
    table.print();
    Ok(())
}

// ------------------------------------------------------------ logs

/// A step that changed between two snapshots of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepChange {
    pub key: String,
    pub status: String,
    /// Attempts so far (task steps).
    pub attempts: usize,
    /// Output, error, or the execution of a running attempt; summarised.
    pub detail: String,
}

impl StepChange {
    pub fn text(&self) -> String {
        let status = po(run_paint(&self.status), &self.status);
        let attempt = if self.attempts > 1 {
            format!(" (attempt {})", self.attempts)
        } else {
            String::new()
        };
        format!("{} {status}{attempt} {}", self.key, self.detail)
            .trim_end()
            .to_string()
    }
}

/// The steps of `next` that are new or changed (status, attempts) since `prev`, in
/// `order` (the process's steps) and then by start time.
pub fn run_changes(prev: Option<&RunView>, next: &RunView, order: &[String]) -> Vec<StepChange> {
    let mut out: Vec<(usize, u64, StepChange)> = Vec::new();
    for (key, s) in &next.steps {
        let before = prev.and_then(|p| p.steps.get(key));
        let changed = match before {
            None => true,
            Some(b) => b.status != s.status || b.attempts.len() != s.attempts.len(),
        };
        // A task step is recorded `waiting` with no attempt for an instant before its
        // first attempt starts: not worth a line.
        if !changed || (s.status == "waiting" && s.attempts.is_empty()) {
            continue;
        }
        let detail = match s.status.as_str() {
            "running" => s
                .attempts
                .last()
                .map(|a| format!("execution {}", short(&a.execution_id, SHORT)))
                .unwrap_or_default(),
            _ => step_detail(s, 100),
        };
        let rank = order.iter().position(|k| k == key).unwrap_or(usize::MAX);
        out.push((
            rank,
            s.started_at,
            StepChange {
                key: key.clone(),
                status: s.status.clone(),
                attempts: s.attempts.len(),
                detail,
            },
        ));
    }
    out.sort_by(|a, b| (a.0, a.1, &a.2.key).cmp(&(b.0, b.1, &b.2.key)));
    out.into_iter().map(|(_, _, c)| c).collect()
}

/// One line for a change of a run (without the time), or `None` when nothing changed.
pub fn run_line(prev: Option<&RunView>, next: &RunView, order: &[String]) -> Option<String> {
    let changes = run_changes(prev, next, order);
    let status_changed = prev.is_none_or(|p| p.status != next.status);
    if changes.is_empty() && !status_changed {
        return None;
    }
    let mut parts: Vec<String> = changes.iter().map(StepChange::text).collect();
    if status_changed && next.status != "running" {
        let took = next
            .finished_at
            .map(|f| format_duration_ms(f.saturating_sub(next.started_at)))
            .unwrap_or_default();
        // The error is not repeated when it is that of a step on this line.
        let repeated = |e: &str| {
            changes
                .iter()
                .any(|c| c.status == "failed" && !c.detail.is_empty() && e.contains(&c.detail))
        };
        match &next.error {
            Some(e) if !repeated(e) => parts.push(format!(
                "run {} after {took}: {}",
                next.status,
                compact(&clean(e), 100)
            )),
            _ if next.status == "failed" => parts.push(format!("run failed after {took}")),
            _ => parts.push(format!("run {} in {took}", next.status)),
        }
    }
    if prev.is_none() && parts.is_empty() {
        parts.push("started".into());
    }
    Some(format!(
        "{}  {}  {}",
        short(&next.id, SHORT),
        po(run_paint(&next.status), &format!("{:<9}", next.status)),
        parts.join("; ")
    ))
}

pub async fn logs(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = resolve_process(client, id).await?;
    // Subscribe first, then read the runs in progress: their next change is shown against
    // what they were, not as if they had just started.
    let response = client
        .send(client.get(&["v1", "processes", &id, "logs"]))
        .await?;
    let mut snapshots: HashMap<String, RunView> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    if !ctx.json() {
        let (p, _) = get_process(client, &id).await?;
        order = p.definition.steps.iter().map(|s| s.key.clone()).collect();
        let v: Value = client
            .json(
                client
                    .get(&["v1", "processes", &p.id, "runs"])
                    .query(&[("limit", 100)]),
            )
            .await?;
        let runs: Vec<RunView> = views::decode(&v["runs"], "run list")?;
        for r in runs.into_iter().filter(|r| r.status == "running") {
            snapshots.insert(r.id.clone(), r);
        }
        errln!(
            "{}",
            pe(
                Paint::Dim,
                &format!(
                    "following runs of {} ({} in progress; Ctrl-C to stop)",
                    p.name,
                    snapshots.len()
                )
            )
        );
    }
    let mut events = client.sse(response);
    while let Some(event) = events.next().await {
        let event = event?;
        match event.event.as_str() {
            "run" if ctx.json() => outln!("{}", event.data),
            "run" => {
                let r: RunView = serde_json::from_str(&event.data)
                    .map_err(|e| anyhow!("the node sent an invalid run: {e}"))?;
                if let Some(line) = run_line(snapshots.get(&r.id), &r, &order) {
                    outln!("{}  {line}", po(Paint::Dim, &format_clock(r.changed_at())));
                }
                if r.status == "running" {
                    snapshots.insert(r.id.clone(), r);
                } else {
                    snapshots.remove(&r.id);
                }
            }
            "lagged" => errln!(
                "{} missed some run updates: the stream was too slow ({})",
                pe(Paint::Yellow, "warning:"),
                event.data
            ),
            _ => {}
        }
        if crate::output::stdout_closed() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(
        text: &str,
        given: &[(&str, &str)],
        shell: &[(&str, &str)],
    ) -> Result<FileEnv, String> {
        let given: Vec<(String, String)> = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let shell: HashMap<String, String> = shell
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        collect_env(text, &given, |n| shell.get(n).cloned())
    }

    const FILE: &str = r#"
name: $(env:NAME)-pipeline   # $(env:IN_A_COMMENT) is not substituted
steps:
  - key: tick
    trigger: {service: "$(env:SERVICE)", event: tick}
  - key: alert
    task:
      service: echo
      task: echo
      inputs: {message: "to $(env:WHO) and $(env:WHO), from $(env:NAME)", count: 3}
"#;

    #[test]
    fn the_files_env_references_are_its_values_only() {
        assert_eq!(
            env_names(FILE).unwrap(),
            vec!["NAME", "SERVICE", "WHO"],
            "in order of first use, once each, comments left out"
        );
        assert_eq!(
            env_names("name: x\nsteps: []\n").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(env_names("a: [unclosed"), None);
    }

    #[test]
    fn env_comes_from_flags_then_the_environment() {
        let got = env_of(
            FILE,
            &[("WHO", "ops"), ("NAME", "flag")],
            &[
                ("NAME", "shell"),
                ("SERVICE", "echo"),
                ("UNRELATED", "secret"),
            ],
        )
        .unwrap();
        let expected: BTreeMap<String, String> =
            [("NAME", "flag"), ("SERVICE", "echo"), ("WHO", "ops")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(
            got.env, expected,
            "--env wins; nothing else of the environment is sent"
        );
        assert!(got.unused.is_empty());
        // An empty value is a value.
        let got = env_of(FILE, &[("WHO", "")], &[("NAME", "n"), ("SERVICE", "s")]).unwrap();
        assert_eq!(got.env["WHO"], "");
    }

    #[test]
    fn missing_env_is_an_error_naming_each_one() {
        let err = env_of(FILE, &[("WHO", "ops")], &[]).unwrap_err();
        assert!(err.contains("$(env:NAME), $(env:SERVICE)"), "{err}");
        assert!(err.contains("are not set"), "{err}");
        assert!(err.contains("--env NAME=VALUE"), "{err}");
        assert!(!err.contains("WHO"), "{err}");
        let err = env_of(FILE, &[], &[("NAME", "n"), ("SERVICE", "s")]).unwrap_err();
        assert!(err.contains("$(env:WHO), which is not set"), "{err}");
        // A reference in a comment is not asked for.
        assert!(!err.contains("IN_A_COMMENT"), "{err}");
    }

    #[test]
    fn unused_and_duplicate_flags() {
        let got = env_of(
            FILE,
            &[
                ("WHO", "a"),
                ("NAME", "b"),
                ("SERVICE", "c"),
                ("WHOO", "typo"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(got.unused, vec!["WHOO"]);
        assert_eq!(got.env["WHOO"], "typo", "an explicit --env is still sent");
        let err = env_of(FILE, &[("WHO", "a"), ("WHO", "b")], &[]).unwrap_err();
        assert!(err.contains("given twice"), "{err}");
        // Not YAML: nothing is required (the node reports the YAML error).
        let got = env_of("a: [$(env:X)", &[], &[]).unwrap();
        assert!(got.env.is_empty());
    }

    fn step(
        status: &str,
        attempts: usize,
        output: Option<Value>,
        error: Option<&str>,
    ) -> StepRunView {
        StepRunView {
            status: status.into(),
            output,
            error: error.map(str::to_string),
            attempts: (0..attempts)
                .map(|i| views::AttemptView {
                    execution_id: format!("{:032x}", i + 10),
                    started_at: 1_000 + i as u64,
                    finished_at: None,
                    error: None,
                })
                .collect(),
            started_at: 1_000,
            finished_at: None,
            retry_at: None,
        }
    }

    fn run(status: &str, steps: Vec<(&str, StepRunView)>) -> RunView {
        RunView {
            id: "ab".repeat(16),
            process: "p".into(),
            status: status.into(),
            error: None,
            trigger_execution: None,
            steps: steps.into_iter().map(|(k, s)| (k.to_string(), s)).collect(),
            started_at: 1_000,
            finished_at: None,
        }
    }

    fn keys(changes: &[StepChange]) -> Vec<(&str, &str, usize)> {
        changes
            .iter()
            .map(|c| (c.key.as_str(), c.status.as_str(), c.attempts))
            .collect()
    }

    #[test]
    fn run_diff_shows_new_and_changed_steps_only() {
        let order: Vec<String> = ["tick", "store", "alert"].map(String::from).to_vec();
        let first = run(
            "running",
            vec![
                ("tick", step("done", 0, Some(json!({"count": 3})), None)),
                ("store", step("running", 1, None, None)),
            ],
        );
        // A run seen for the first time: every step, in the process's order.
        let c = run_changes(None, &first, &order);
        assert_eq!(keys(&c), vec![("tick", "done", 0), ("store", "running", 1)]);
        assert_eq!(c[0].detail, r#"{"count":3}"#);
        assert_eq!(
            c[1].detail,
            format!("execution {}", short(&format!("{:032x}", 10), SHORT))
        );
        // Same snapshot again: nothing.
        assert!(run_changes(Some(&first), &first, &order).is_empty());
        assert_eq!(run_line(Some(&first), &first, &order), None);
        // The attempt failed, a retry is due.
        let mut waiting = first.clone();
        let s = waiting.steps.get_mut("store").unwrap();
        s.status = "waiting".into();
        s.attempts[0].error = Some("boom".into());
        s.attempts[0].finished_at = Some(1_500);
        s.retry_at = Some(2_500);
        let c = run_changes(Some(&first), &waiting, &order);
        assert_eq!(keys(&c), vec![("store", "waiting", 1)]);
        assert!(c[0].detail.contains("boom"), "{c:?}");
        // The second attempt: same status as the first snapshot, one more attempt.
        let mut second = waiting.clone();
        let s = second.steps.get_mut("store").unwrap();
        s.status = "running".into();
        s.attempts
            .push(step("running", 2, None, None).attempts[1].clone());
        let c = run_changes(Some(&first), &second, &order);
        assert_eq!(keys(&c), vec![("store", "running", 2)]);
        assert!(
            c[0].text().contains("store running (attempt 2) execution"),
            "{}",
            c[0].text()
        );
        // It fails for good; its error branch starts; the run goes on.
        let mut failed = second.clone();
        let s = failed.steps.get_mut("store").unwrap();
        s.status = "failed".into();
        s.error = Some("boom again".into());
        failed
            .steps
            .insert("alert".into(), step("running", 1, None, None));
        let c = run_changes(Some(&second), &failed, &order);
        assert_eq!(
            keys(&c),
            vec![("store", "failed", 2), ("alert", "running", 1)]
        );
        assert_eq!(c[0].detail, "boom again");
        // The run ends with no step change: the line says so.
        let mut done = failed.clone();
        done.steps.get_mut("alert").unwrap().status = "done".into();
        let mut ended = done.clone();
        ended.status = "completed".into();
        ended.finished_at = Some(3_200);
        assert!(run_changes(Some(&done), &ended, &order).is_empty());
        let line = run_line(Some(&done), &ended, &order).unwrap();
        assert!(
            line.starts_with("abababab  completed  run completed in 2.2 s"),
            "{line}"
        );
        // A failed run names its error once.
        let mut failing = second.clone();
        let s = failing.steps.get_mut("store").unwrap();
        s.status = "failed".into();
        s.error = Some("boom again".into());
        failing.status = "failed".into();
        failing.error = Some("step `store` failed: boom again".into());
        failing.finished_at = Some(2_000);
        let line = run_line(Some(&second), &failing, &order).unwrap();
        assert_eq!(
            line,
            "abababab  failed     store failed (attempt 2) boom again; run failed after 1.0 s"
        );
        // An error of the run itself is shown.
        let mut deleted = second.clone();
        deleted.status = "failed".into();
        deleted.error = Some("the process was deleted".into());
        deleted.finished_at = Some(1_100);
        let line = run_line(Some(&second), &deleted, &order).unwrap();
        assert_eq!(
            line,
            "abababab  failed     run failed after 100 ms: the process was deleted"
        );
    }

    #[test]
    fn steps_outside_the_order_come_last_by_start() {
        let mut late = step("done", 0, None, None);
        late.started_at = 5;
        let mut early = step("done", 0, None, None);
        early.started_at = 1;
        let r = run(
            "running",
            vec![
                ("zeta", late),
                ("omega", early),
                ("tick", step("done", 0, None, None)),
            ],
        );
        let c = run_changes(None, &r, &["tick".to_string()]);
        assert_eq!(
            c.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            vec!["tick", "omega", "zeta"]
        );
    }

    #[test]
    fn steps_read_as_a_tree_with_error_branches() {
        let yaml = r#"
name: demo
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: go
    filter: {path: value, eq: go}
  - key: payload
    map: {key: last, value: {step: tick, path: count}}
  - key: store
    task: {service: kv, task: set, inputs: {step: payload}, retries: 2, backoff: 500ms, timeout: 5s, on_error: alert}
  - key: confirm
    task: {service: kv, task: get, inputs: {key: {step: payload, path: key}}}
  - key: announce
    after: store
    task: {service: echo, task: echo, inputs: {count: 1}}
  - key: alert
    task: {service: echo, task: echo, inputs: {message: {step: store, path: error}}}
"#;
        let def = ProcessDefinition::from_yaml(yaml, &BTreeMap::new(), &|_: &str| None).unwrap();
        let rows = step_tree(&def);
        let labels: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            labels,
            vec![
                "tick",
                "└─ go",
                "   └─ payload",
                "      └─ store",
                "         ├─ confirm",
                "         ├─ announce",
                "         └─ on error: alert",
            ]
        );
        assert_eq!(rows[0][2], "event echo.tick");
        assert_eq!(rows[1][2], r#"value eq "go""#);
        assert_eq!(rows[2][2], r#"{key: "last", value: @tick.count}"#);
        assert_eq!(rows[3][1], "task");
        assert_eq!(rows[3][2], "kv.set @payload");
        assert_eq!(
            rows[3][3],
            "retries 2 (backoff 500 ms, doubling), timeout 5.0 s, on error: alert"
        );
        assert_eq!(rows[4][2], "kv.get {key: @payload.key}");
    }
}
