//! The verification half of `mesg executions show|verify`: a verified execution's record
//! (every executor asked, its signed commit, reveal or failure, its verdict, and the
//! decision) fetched from the node, shown, and re-checked from the signatures alone, so
//! that nobody has to take the requesting node's word for the verdict.

use super::{Ctx, Exit, print_json, views};
use crate::client::Client;
use crate::output::{Paint, compact_json, errln, outln, pe, po};
use mesg_protocol::evidence::check_verification;
use mesg_protocol::verification::{Decision, Verdict, VerificationRecord};
use mesg_protocol::{Execution, ExecutionStatus};
use serde_json::{Value, json};

/// The record the node keeps for `id`, as sent and decoded; None when it is not a
/// verified execution requested on that node.
pub async fn fetch(
    client: &Client,
    id: &str,
) -> anyhow::Result<Option<(Value, VerificationRecord)>> {
    let Some(raw) = client
        .json_if_found::<Value>(client.get(&["v1", "executions", id, "attempts"]))
        .await?
    else {
        return Ok(None);
    };
    let record: VerificationRecord = serde_json::from_value(raw.clone())
        .map_err(|e| anyhow::anyhow!("the node's verification record does not decode ({e})"))?;
    Ok(Some((raw, record)))
}

fn verdict_paint(v: Option<Verdict>) -> Paint {
    match v {
        Some(Verdict::Agreed) => Paint::Green,
        Some(Verdict::Disagreed | Verdict::Failed | Verdict::TimedOut) => Paint::Red,
        _ => Paint::Dim,
    }
}

/// Lines for people: the spec, one line per attempt, the decision.
pub fn lines(record: &VerificationRecord) -> Vec<String> {
    let spec = record.spec;
    let mut out = vec![format!(
        "verification: {}/{} (quorum/replicas), at most {} executors",
        spec.quorum, spec.replicas, spec.max_total
    )];
    for a in &record.attempts {
        let verdict = a.verdict.map_or("running", |v| v.as_str());
        let digest = a
            .output_digest
            .map(|d| {
                format!(
                    "  outputs {}",
                    &d.to_string()[..12.min(d.to_string().len())]
                )
            })
            .unwrap_or_default();
        let note = a
            .note
            .as_deref()
            .map(|n| format!("  ({})", crate::output::sanitize(n, false)))
            .unwrap_or_default();
        out.push(format!(
            "  {}  {:<10}{digest}{note}",
            a.executor,
            po(verdict_paint(a.verdict), verdict)
        ));
    }
    match &record.decision {
        None => out.push("  decision: none yet".into()),
        Some(Decision::Agreed {
            outputs, executors, ..
        }) => out.push(format!(
            "  decision: {} by {} executors: {}",
            po(Paint::Green, "agreed"),
            executors.len(),
            compact_json(&outputs.0, 200)
        )),
        Some(d @ Decision::Undecided { .. }) => out.push(format!(
            "  decision: {}",
            po(Paint::Red, &d.error().unwrap_or_default())
        )),
    }
    out
}

/// Why the record does not hold, or does not match the execution's end (none: it holds).
pub fn problems(record: &VerificationRecord, execution: Option<&Execution>) -> Vec<String> {
    let mut out = check_verification(record);
    if let Some(e) = execution {
        if e.id != record.execution_id {
            out.push(format!(
                "the record is of execution {}, not {}",
                record.execution_id, e.id
            ));
        }
        match (&record.decision, e.status) {
            (Some(Decision::Agreed { outputs, .. }), ExecutionStatus::Completed)
                if e.outputs.as_ref().map(|o| &o.0) != Some(&outputs.0) =>
            {
                out.push("the execution's outputs are not the ones the quorum agreed on".into());
            }
            (Some(Decision::Agreed { .. }), ExecutionStatus::Completed) => {}
            (Some(Decision::Undecided { .. }), ExecutionStatus::Failed) => {}
            (Some(_), status) if status.is_final() => out.push(format!(
                "the execution is {status}, which is not what the record decided"
            )),
            (None, ExecutionStatus::Completed) => {
                out.push("the execution completed but the record decided nothing".into())
            }
            _ => {}
        }
    }
    out
}

/// `verify` of a verified execution: its record re-checked from the signatures alone,
/// and against the execution's end.
pub async fn verify_round(
    ctx: &Ctx,
    client: &Client,
    id: &str,
    raw: Value,
    record: &mesg_protocol::verification::VerificationRecord,
) -> anyhow::Result<()> {
    let execution: Option<Execution> = match client
        .json::<Value>(client.get(&["v1", "executions", id]))
        .await
    {
        Ok(v) => views::decode(&v, "execution").ok(),
        Err(_) => None,
    };
    let problems = problems(record, execution.as_ref());
    let valid = problems.is_empty();
    if ctx.json() {
        print_json(&json!({
            "execution_id": id,
            "valid": valid,
            "problems": problems,
            "verification": raw,
        }));
    } else {
        outln!("execution:  {id}");
        for line in lines(record) {
            outln!("{line}");
        }
        if valid {
            outln!(
                "{} (every commit, reveal and failure signed by its executor; the verdict follows from them)",
                po(Paint::Green, "verification valid")
            );
        }
    }
    if !valid {
        for p in &problems {
            errln!("{} {p}", pe(Paint::Red, "error:"));
        }
        return Err(Exit(1).into());
    }
    Ok(())
}
