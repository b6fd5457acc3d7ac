//! The rules of a run, as pure functions of its state: which steps are ready, what a step
//! becomes when it starts, what a failed attempt leads to (retry, error branch, failed
//! run), and how a run that ends closes its open steps. The runner applies them.

use super::model::{Run, RunStatus, StepRun, StepStatus};
use crate::engine::EngineError;
use mesg_protocol::ExecutionId;
use mesg_protocol::process::{Outputs, ProcessDefinition, Step, StepKind, TaskStep};

/// Longest doubling of the backoff between attempts (2^16 times the first delay).
const MAX_BACKOFF_DOUBLINGS: u32 = 16;

/// The output of every step that has one, by step key.
pub(super) fn step_outputs(run: &Run) -> Outputs {
    run.steps
        .iter()
        .filter_map(|(k, s)| s.output.clone().map(|o| (k.clone(), o)))
        .collect()
}

/// Steps not started yet whose predecessor is done.
pub(super) fn ready_steps<'a>(def: &'a ProcessDefinition, run: &Run) -> Vec<&'a Step> {
    def.steps
        .iter()
        .filter(|s| !run.steps.contains_key(&s.key))
        .filter(|s| match &s.after {
            Some(a) => run
                .steps
                .get(a)
                .is_some_and(|p| p.status == StepStatus::Done),
            None => false,
        })
        .collect()
}

/// Whether a step of the run is still running or waiting for a retry.
pub(super) fn has_open_steps(run: &Run) -> bool {
    run.steps
        .values()
        .any(|s| matches!(s.status, StepStatus::Running | StepStatus::Waiting))
}

/// A task step about to make its first attempt.
fn waiting_task(now: u64) -> StepRun {
    StepRun {
        status: StepStatus::Waiting,
        output: None,
        error: None,
        attempts: Vec::new(),
        started_at: now,
        finished_at: None,
        retry_at: Some(now),
        waiting: None,
    }
}

/// What a step becomes when it starts, `previous` being the step whose output it takes
/// (a passing filter passes it on). A filter or map is evaluated at once; a task waits for
/// its first attempt. `None` for a trigger, which never starts within a run.
pub(super) fn start_step(
    step: &Step,
    outputs: &Outputs,
    previous: &str,
    now: u64,
) -> Option<StepRun> {
    let mut started = StepRun {
        status: StepStatus::Done,
        output: None,
        error: None,
        attempts: Vec::new(),
        started_at: now,
        finished_at: Some(now),
        retry_at: None,
        waiting: None,
    };
    match &step.kind {
        StepKind::Trigger(_) => return None,
        StepKind::Filter(cond) => {
            if cond.eval(outputs, previous) {
                started.output = outputs.get(previous).cloned();
            } else {
                started.status = StepStatus::Filtered;
            }
        }
        StepKind::Map(expr) => match expr.eval(outputs) {
            Ok(v) => started.output = Some(v),
            Err(e) => {
                started.status = StepStatus::Failed;
                started.error = Some(e);
            }
        },
        StepKind::Task(_) => started = waiting_task(now),
    }
    Some(started)
}

/// The step at the head of an `on_error` branch, which sees the failure as the failed
/// step's output.
pub(super) fn start_error_branch(
    def: &ProcessDefinition,
    run: &Run,
    target: &Step,
    now: u64,
) -> StepRun {
    if let StepKind::Task(_) = target.kind {
        return waiting_task(now);
    }
    // A map or filter heading the branch is evaluated as if it followed the failed step.
    let failed_step = def
        .steps
        .iter()
        .find(|s| matches!(&s.kind, StepKind::Task(t) if t.on_error.as_deref() == Some(target.key.as_str())))
        .map(|s| s.key.clone())
        .unwrap_or_default();
    start_step(target, &step_outputs(run), &failed_step, now).unwrap_or(StepRun {
        status: StepStatus::Done,
        output: None,
        error: None,
        attempts: Vec::new(),
        started_at: now,
        finished_at: Some(now),
        retry_at: None,
        waiting: None,
    })
}

/// When a run ends, the steps still open end with it: nothing will advance them any more.
pub(super) fn close_open_steps(run: &mut Run, now: u64) {
    if run.status == RunStatus::Running {
        return;
    }
    for step in run.steps.values_mut() {
        if matches!(step.status, StepStatus::Running | StepStatus::Waiting) {
            step.status = StepStatus::Failed;
            step.error = Some("the run ended before this step finished".into());
            step.finished_at = Some(now);
            step.retry_at = None;
        }
    }
}

/// The execution of the nearest task step before `key` (or the triggering execution).
pub(super) fn parent_execution(
    def: &ProcessDefinition,
    run: &Run,
    key: &str,
) -> Option<ExecutionId> {
    let mut current = def.step(key)?.after.clone();
    while let Some(k) = current {
        if let Some(a) = run.steps.get(&k).and_then(|s| s.attempts.last()) {
            return Some(a.execution_id);
        }
        current = def.step(&k).and_then(|s| s.after.clone());
    }
    run.trigger_execution
}

/// The idempotency key of attempt `number` (from 1) of step `step` of a run: the
/// attempt's execution id is derived from it and this node's key, so recording the id
/// before creating the execution, and creating it again after a crash or a lost answer,
/// name one and the same execution on every node.
pub(super) fn attempt_key(process: &str, run: &str, step: &str, number: usize) -> String {
    format!("process/{process}/{run}/{step}/{number}")
}

/// Whether an ended execution is the current attempt of a running step (else it is an
/// older attempt, or one already handled).
pub(super) fn is_current_attempt(step: &StepRun, execution: ExecutionId) -> bool {
    step.status == StepStatus::Running
        && step.attempts.last().map(|a| a.execution_id) == Some(execution)
}

/// Whether creating the execution of an attempt may succeed if tried again: not when the
/// request itself is wrong.
pub(super) fn is_retriable(e: &EngineError) -> bool {
    !matches!(
        e,
        EngineError::InvalidInputs(_)
            | EngineError::UnknownTask { .. }
            | EngineError::BadRequest(_)
    )
}

/// What follows a failed attempt of a task step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AfterFailure {
    /// Try again after this many milliseconds.
    Retry { delay_ms: u64 },
    /// The step failed for good; its `on_error` step runs next.
    ErrorBranch(String),
    /// The step failed for good and the run with it.
    FailRun,
}

/// Retry while retriable and retries are left (the delay doubling from `backoff_ms` with
/// each attempt), else take `on_error`, else fail the run. `attempts`: made so far,
/// including the failed one.
pub(super) fn after_failure(task: &TaskStep, attempts: u32, retriable: bool) -> AfterFailure {
    if retriable && attempts <= task.retries {
        let doublings = attempts.saturating_sub(1).min(MAX_BACKOFF_DOUBLINGS);
        return AfterFailure::Retry {
            delay_ms: task.backoff_ms.saturating_mul(1u64 << doublings),
        };
    }
    match &task.on_error {
        Some(target) => AfterFailure::ErrorBranch(target.clone()),
        None => AfterFailure::FailRun,
    }
}

#[cfg(test)]
mod tests {
    use super::{
        AfterFailure, after_failure, attempt_key, close_open_steps, has_open_steps,
        is_current_attempt, is_retriable, parent_execution, ready_steps, start_error_branch,
        start_step, step_outputs,
    };
    use crate::engine::EngineError;
    use crate::processes::model::{Attempt, Run, RunStatus, StepRun, StepStatus};
    use mesg_protocol::process::{
        Condition, Expr, Op, Path, ProcessDefinition, Step, StepKind, TaskStep, Trigger,
        TriggerSource,
    };
    use mesg_protocol::{ExecutionId, Hash32, ServiceHash};
    use serde_json::{Value, json};

    fn task(retries: u32, backoff_ms: u64, on_error: Option<&str>) -> TaskStep {
        TaskStep {
            service: "kv".into(),
            task: "set".into(),
            inputs: Expr::Ref {
                step: "double".into(),
                path: Path::default(),
            },
            retries,
            backoff_ms,
            timeout_ms: None,
            on_error: on_error.map(str::to_string),
            max_price: None,
            verify: None,
        }
    }

    fn step(key: &str, after: Option<&str>, kind: StepKind) -> Step {
        Step {
            key: key.into(),
            after: after.map(str::to_string),
            kind,
        }
    }

    /// tick (trigger) -> only-go (filter value == go) -> double (map) -> store (task,
    /// on_error: alert); alert (task) -> note (map of the failure).
    fn definition() -> ProcessDefinition {
        ProcessDefinition {
            name: "pipeline".into(),
            max_depth: None,
            rate_limit: None,
            steps: vec![
                step(
                    "tick",
                    None,
                    StepKind::Trigger(Trigger {
                        service: "echo".into(),
                        source: TriggerSource::Event("tick".into()),
                    }),
                ),
                step(
                    "only-go",
                    Some("tick"),
                    StepKind::Filter(Condition::Test {
                        step: None,
                        path: Path::parse("value").unwrap(),
                        op: Op::Eq,
                        value: json!("go"),
                    }),
                ),
                step(
                    "double",
                    Some("only-go"),
                    StepKind::Map(Expr::Ref {
                        step: "tick".into(),
                        path: Path::parse("count").unwrap(),
                    }),
                ),
                step(
                    "store",
                    Some("double"),
                    StepKind::Task(task(2, 100, Some("alert"))),
                ),
                step("alert", None, StepKind::Task(task(0, 100, None))),
                step(
                    "note",
                    Some("alert"),
                    StepKind::Map(Expr::Ref {
                        step: "store".into(),
                        path: Path::parse("error").unwrap(),
                    }),
                ),
            ],
        }
    }

    fn done(output: Option<Value>) -> StepRun {
        StepRun {
            status: StepStatus::Done,
            output,
            error: None,
            attempts: Vec::new(),
            started_at: 1,
            finished_at: Some(1),
            retry_at: None,
            waiting: None,
        }
    }

    fn run_with(steps: Vec<(&str, StepRun)>) -> Run {
        Run {
            id: "run".into(),
            process: "p".into(),
            status: RunStatus::Running,
            error: None,
            trigger_execution: None,
            cause: None,
            steps: steps.into_iter().map(|(k, s)| (k.to_string(), s)).collect(),
            started_at: 1,
            finished_at: None,
        }
    }

    fn attempt(id: ExecutionId) -> Attempt {
        Attempt {
            execution_id: id,
            started_at: 1,
            finished_at: None,
            error: None,
        }
    }

    fn keys(steps: &[&Step]) -> Vec<String> {
        steps.iter().map(|s| s.key.clone()).collect()
    }

    #[test]
    fn a_step_is_ready_when_its_predecessor_is_done_and_error_branches_never_are() {
        let def = definition();
        let run = run_with(vec![("tick", done(Some(json!({"value": "go"}))))]);
        assert_eq!(keys(&ready_steps(&def, &run)), ["only-go"]);
        let mut filtered = done(None);
        filtered.status = StepStatus::Filtered;
        let run = run_with(vec![("tick", done(None)), ("only-go", filtered)]);
        assert!(
            ready_steps(&def, &run).is_empty(),
            "nothing runs after a filter that did not match"
        );
        // `alert` has no `after`: it starts only as an error branch.
        let run = run_with(vec![
            ("tick", done(None)),
            ("only-go", done(None)),
            ("double", done(None)),
            ("store", done(None)),
        ]);
        assert!(ready_steps(&def, &run).is_empty());
    }

    #[test]
    fn a_filter_passes_its_input_on_or_stops_the_branch() {
        let def = definition();
        let filter = def.step("only-go").unwrap();
        let go = run_with(vec![(
            "tick",
            done(Some(json!({"value": "go", "count": 3}))),
        )]);
        let s = start_step(filter, &step_outputs(&go), "tick", 5).unwrap();
        assert_eq!(s.status, StepStatus::Done);
        assert_eq!(s.output, Some(json!({"value": "go", "count": 3})));
        assert_eq!((s.started_at, s.finished_at), (5, Some(5)));
        let stop = run_with(vec![("tick", done(Some(json!({"value": "stop"}))))]);
        let s = start_step(filter, &step_outputs(&stop), "tick", 5).unwrap();
        assert_eq!(s.status, StepStatus::Filtered);
        assert_eq!(s.output, None);
    }

    #[test]
    fn a_map_computes_its_output_or_fails_with_the_reason() {
        let def = definition();
        let map = def.step("double").unwrap();
        let run = run_with(vec![("tick", done(Some(json!({"count": 3}))))]);
        let s = start_step(map, &step_outputs(&run), "only-go", 5).unwrap();
        assert_eq!((s.status, s.output), (StepStatus::Done, Some(json!(3))));
        let run = run_with(vec![("tick", done(Some(json!({}))))]);
        let s = start_step(map, &step_outputs(&run), "only-go", 5).unwrap();
        assert_eq!(s.status, StepStatus::Failed);
        assert!(s.error.unwrap().contains("count"));
    }

    #[test]
    fn a_task_waits_for_its_first_attempt_and_a_trigger_never_starts() {
        let def = definition();
        let s = start_step(def.step("store").unwrap(), &Default::default(), "double", 7).unwrap();
        assert_eq!(s.status, StepStatus::Waiting);
        assert_eq!((s.retry_at, s.finished_at), (Some(7), None));
        assert!(start_step(def.step("tick").unwrap(), &Default::default(), "", 7).is_none());
    }

    #[test]
    fn failed_attempts_retry_with_doubling_backoff_then_take_the_error_branch() {
        let t = task(2, 100, Some("alert"));
        assert_eq!(
            after_failure(&t, 1, true),
            AfterFailure::Retry { delay_ms: 100 }
        );
        assert_eq!(
            after_failure(&t, 2, true),
            AfterFailure::Retry { delay_ms: 200 }
        );
        assert_eq!(
            after_failure(&t, 3, true),
            AfterFailure::ErrorBranch("alert".into())
        );
        // An error retrying cannot fix goes to the branch at once.
        assert_eq!(
            after_failure(&t, 1, false),
            AfterFailure::ErrorBranch("alert".into())
        );
        let no_branch = task(0, 100, None);
        assert_eq!(after_failure(&no_branch, 1, true), AfterFailure::FailRun);
    }

    #[test]
    fn the_backoff_stops_doubling_and_never_overflows() {
        let t = task(20, 1000, None);
        assert_eq!(
            after_failure(&t, 20, true),
            AfterFailure::Retry {
                delay_ms: 1000 << 16
            }
        );
        let huge = task(3, u64::MAX / 2, None);
        assert_eq!(
            after_failure(&huge, 3, true),
            AfterFailure::Retry { delay_ms: u64::MAX }
        );
    }

    #[test]
    fn only_errors_of_the_request_itself_are_not_retried() {
        assert!(!is_retriable(&EngineError::BadRequest("x".into())));
        assert!(!is_retriable(&EngineError::UnknownTask {
            service: ServiceHash(Hash32::sha256(b"s")),
            task: "t".into(),
            known: String::new(),
        }));
        assert!(is_retriable(&EngineError::NoProvider(ServiceHash(
            Hash32::sha256(b"s")
        ))));
        assert!(is_retriable(&EngineError::Busy("full".into())));
    }

    #[test]
    fn an_error_branch_task_waits_and_its_map_reads_the_failure() {
        let def = definition();
        let failure = json!({"step": "store", "error": "disk full"});
        let mut failed = done(Some(failure));
        failed.status = StepStatus::Failed;
        let run = run_with(vec![("tick", done(None)), ("store", failed)]);
        let s = start_error_branch(&def, &run, def.step("alert").unwrap(), 9);
        assert_eq!((s.status, s.retry_at), (StepStatus::Waiting, Some(9)));
        // A map heading a branch is evaluated at once.
        let mut def = def;
        def.steps[3].kind = StepKind::Task(task(0, 100, Some("note")));
        def.steps[5].after = None;
        let s = start_error_branch(&def, &run, def.step("note").unwrap(), 9);
        assert_eq!(
            (s.status, s.output),
            (StepStatus::Done, Some(json!("disk full")))
        );
    }

    #[test]
    fn an_ended_run_closes_its_open_steps_and_a_running_one_keeps_them() {
        let mut waiting = done(None);
        waiting.status = StepStatus::Waiting;
        waiting.retry_at = Some(50);
        let mut run = run_with(vec![("tick", done(None)), ("store", waiting)]);
        assert!(has_open_steps(&run));
        close_open_steps(&mut run, 10);
        assert_eq!(run.steps["store"].status, StepStatus::Waiting);
        run.status = RunStatus::Failed;
        close_open_steps(&mut run, 10);
        let store = &run.steps["store"];
        assert_eq!(store.status, StepStatus::Failed);
        assert_eq!((store.finished_at, store.retry_at), (Some(10), None));
        assert_eq!(run.steps["tick"].status, StepStatus::Done);
        assert!(!has_open_steps(&run));
    }

    #[test]
    fn the_parent_of_an_attempt_is_the_nearest_task_before_it_else_the_trigger() {
        let mut def = definition();
        let trigger = ExecutionId::random();
        let mut run = run_with(vec![("tick", done(None))]);
        run.trigger_execution = Some(trigger);
        assert_eq!(parent_execution(&def, &run, "store"), Some(trigger));
        // A task before `store`: its last attempt is the parent.
        def.steps[2].kind = StepKind::Task(task(0, 1, None));
        let (first, second) = (ExecutionId::random(), ExecutionId::random());
        let mut double = done(None);
        double.attempts = vec![attempt(first), attempt(second)];
        run.steps.insert("double".into(), double);
        assert_eq!(parent_execution(&def, &run, "store"), Some(second));
        assert_eq!(parent_execution(&def, &run, "missing"), None);
    }

    #[test]
    fn an_attempt_key_names_process_run_step_and_attempt_and_is_a_valid_key() {
        let process = Hash32::sha256(b"p").to_string();
        let run = ExecutionId::random().to_string();
        let step = "s".repeat(64);
        let key = attempt_key(&process, &run, &step, 20);
        assert_eq!(key, format!("process/{process}/{run}/{step}/20"));
        mesg_protocol::control::check_idempotency_key(&key).unwrap();
        assert_ne!(
            attempt_key(&process, &run, "a", 1),
            attempt_key(&process, &run, "a", 2),
            "each attempt is a new execution"
        );
    }

    #[test]
    fn only_the_last_attempt_of_a_running_step_counts() {
        let (old, current) = (ExecutionId::random(), ExecutionId::random());
        let mut s = done(None);
        s.status = StepStatus::Running;
        s.attempts = vec![attempt(old), attempt(current)];
        assert!(is_current_attempt(&s, current));
        assert!(!is_current_attempt(&s, old));
        s.status = StepStatus::Done;
        assert!(!is_current_attempt(&s, current), "already handled");
    }
}
