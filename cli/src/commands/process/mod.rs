//! `mesg process create|validate|list|show|runs|run|logs|delete`.
//!
//! The file's `$(env:NAME)` values are collected here ([`collect_env`]): from --env, else
//! from the environment; the node substitutes them. `logs` prints what changed in each run
//! by comparing it with the previous snapshot of that run ([`run_changes`]).

use super::views;
use super::{Ctx, Exit, print_json, process_limits};
use crate::client::{ApiError, Client};
use crate::inputs;
use crate::output::{
    Cell, Paint, SHORT, Table, compact_json, errln, format_age, format_clock, format_duration_ms,
    format_timestamp, outln, pe, po, short,
};
use anyhow::anyhow;
use mesg_api_types::{
    ProcessBody, ProcessList, ProcessView, Run, RunList, RunStatus, StepRun, StepStatus,
};
use mesg_protocol::ServiceHash;
use mesg_protocol::process::{
    Condition, Expr, ProcessDefinition, StepKind, TaskStep, TriggerSource,
};
use mesg_protocol::yaml::{self, Node, NodeKind};
use mesg_protocol::{ExecutionId, now_ms};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

mod logs;
mod runs;
mod show;
#[cfg(test)]
mod tests;
mod text;

pub use logs::*;
pub use runs::*;
pub use show::*;
pub use text::*;

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

pub(super) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Read a process file; `Exit(code)` after saying why when it cannot be read.
pub(super) fn read_file(file: &Path, code: u8) -> anyhow::Result<String> {
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
pub(super) fn body(
    file: &Path,
    given: &[(String, String)],
    code: u8,
) -> anyhow::Result<ProcessBody> {
    let text = read_file(file, code)?;
    let env = collect_env(&text, given, env_var).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    for name in &env.unused {
        errln!(
            "{} --env {name}: {} has no $(env:{name})",
            pe(Paint::Yellow, "warning:"),
            file.display()
        );
    }
    Ok(ProcessBody {
        definition: text,
        env: env.env,
    })
}

/// Every error of a process file, as `FILE:LINE:COL: path: message` (`FILE: path:
/// message` when the node knows no position), and their count.
pub(super) fn print_process_errors(file: &Path, errors: &[String]) {
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
    let services: BTreeMap<String, ServiceHash> =
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
