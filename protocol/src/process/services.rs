//! What the services a process names say about it: a trigger's event or task exists, a
//! task step's task exists and its inputs fit the task's declared inputs (keys, required
//! ones, types of constants), and a step on a priced task carries a spending cap that
//! covers the task's least cost, and a step that asks for verification names a
//! deterministic task. Services the validator does not know are not checked:
//! they may be deployed later or elsewhere (a node creating a process knows them all).

use super::graph::step_pos;
use super::{Expr, ProcessDefinition, StepKind, TaskStep, TriggerSource};
use crate::definition::ServiceDefinition;
use crate::definition::TaskDefinition;
use crate::schema::{ParamMap, ValueError, check_param};
use crate::yaml::{FileError, Node, Walker, join_path};

/// What validation may know about services: their definitions by sid or hash.
pub trait ServiceLookup {
    fn definition(&self, service: &str) -> Option<ServiceDefinition>;
}

impl<F: Fn(&str) -> Option<ServiceDefinition>> ServiceLookup for F {
    fn definition(&self, service: &str) -> Option<ServiceDefinition> {
        self(service)
    }
}

/// Check the services' tasks, events, inputs and prices that a parsed process uses;
/// `root` gives the steps' positions.
pub(super) fn check_services(
    def: &ProcessDefinition,
    root: &Node,
    services: &dyn ServiceLookup,
    walker: &mut Walker,
) {
    for (i, s) in def.steps.iter().enumerate() {
        let path = format!("steps[{i}] ({})", s.key);
        match &s.kind {
            StepKind::Trigger(t) => {
                let Some(d) = services.definition(&t.service) else {
                    continue;
                };
                match &t.source {
                    TriggerSource::Event(e) if !d.events.contains_key(e) => {
                        walker.push(FileError::unplaced(
                            &join_path(&path, "trigger.event"),
                            format!(
                                "service `{}` has no event `{e}` (events: {})",
                                t.service,
                                keys(d.events.keys())
                            ),
                        ));
                    }
                    TriggerSource::Result(task) if !d.tasks.contains_key(task) => {
                        walker.push(FileError::unplaced(
                            &join_path(&path, "trigger.result"),
                            format!(
                                "service `{}` has no task `{task}` (tasks: {})",
                                t.service,
                                keys(d.tasks.keys())
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            StepKind::Task(t) => {
                let Some(d) = services.definition(&t.service) else {
                    continue;
                };
                let Some(task) = d.tasks.get(&t.task) else {
                    walker.push(FileError::unplaced(
                        &join_path(&path, "task.task"),
                        format!(
                            "service `{}` has no task `{}` (tasks: {})",
                            t.service,
                            t.task,
                            keys(d.tasks.keys())
                        ),
                    ));
                    continue;
                };
                if t.verify.is_some() && !task.deterministic {
                    walker.error(
                        &join_path(&path, "task.verify"),
                        step_pos(root, i),
                        format!(
                            "task `{}` of service `{}` is not deterministic: only a task whose publisher declares `deterministic: true` can be verified",
                            t.task, t.service
                        ),
                    );
                }
                if let Some(message) = uncapped(t, task) {
                    walker.error(
                        &join_path(&path, "task.max_price"),
                        step_pos(root, i),
                        message,
                    );
                }
                for e in check_inputs(&task.inputs, &t.inputs) {
                    walker.push(FileError::unplaced(
                        &join_path(&join_path(&path, "task"), &e.path),
                        e.message,
                    ));
                }
            }
            _ => {}
        }
    }
}

/// Why a step cannot pay for its task: the task is priced and the step sets no cap, or
/// one below the task's least cost (its `call` price). The same rule as for any request
/// (the cap is the requester's signed consent to pay; nothing fills one in), checked
/// when the process is created rather than at each run.
fn uncapped(step: &TaskStep, task: &TaskDefinition) -> Option<String> {
    let price = task.price?;
    let least = price.minimum();
    match step.max_price {
        Some(cap) if cap >= least => None,
        None => Some(format!(
            "task `{}` of service `{}` is priced ({price}) and this step sets no spending cap: add `max_price: N` (micro-credits, at least {least}) to the step's task",
            step.task, step.service
        )),
        Some(cap) => Some(format!(
            "task `{}` of service `{}` costs at least {least} µc a call ({price}), above this step's max_price of {cap} µc: raise max_price to at least {least}",
            step.task, step.service
        )),
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
