//! The rules of a process's step graph, checked once every step is read: step keys are
//! unique; `after`, `on_error` and references name existing steps in the right order (so
//! the graph has no cycles: every step's `after` is listed before it, a forest); a
//! reference reads a step that always runs before (not one on another branch).

use super::{ProcessDefinition, StepKind};
use crate::yaml::{Node, NodeKind, Pos, Walker, join_path};
use std::collections::HashMap;

/// Where the `i`th step of the file starts (the file's start if it cannot be found).
pub(super) fn step_pos(root: &Node, i: usize) -> Pos {
    if let NodeKind::Mapping(entries) = &root.kind
        && let Some((_, steps)) = entries.iter().find(|(k, _)| k.text == "steps")
        && let NodeKind::Sequence(items) = &steps.kind
        && let Some(item) = items.get(i)
    {
        return item.pos;
    }
    root.pos
}

/// Check the graph of a parsed process; `root` gives the steps' positions.
pub(super) fn check_graph(def: &ProcessDefinition, root: &Node, walker: &mut Walker) {
    let pos = |i: usize| step_pos(root, i);
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in def.steps.iter().enumerate() {
        if index.insert(&s.key, i).is_some() {
            walker.error(
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
                None => walker.error(&join_path(&path, "after"), pos(i), format!("no step `{a}`")),
                Some(j) if *j >= i => walker.error(
                    &join_path(&path, "after"),
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
                    let at = join_path(&path, "task.on_error");
                    match index.get(target.as_str()) {
                        None => walker.error(&at, pos(i), format!("no step `{target}`")),
                        Some(j) if *j <= i => walker.error(
                            &at,
                            pos(i),
                            format!("`{target}` must come after this step"),
                        ),
                        Some(j) if matches!(def.steps[*j].kind, StepKind::Trigger(_)) => {
                            walker.error(&at, pos(i), "cannot go to the trigger")
                        }
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
                walker.error(
                    &path,
                    pos(i),
                    format!("reference to step `{r}`, which {why}"),
                );
            } else if !is_ancestor(def, &r, &s.key) {
                walker.error(
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
fn is_ancestor(def: &ProcessDefinition, ancestor: &str, key: &str) -> bool {
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
