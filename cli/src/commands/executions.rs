//! `mesg executions list|show|watch|cancel|verify` (`why` is in `why.rs`).

use super::views::{self, service_label};
use super::{Ctx, Exit, print_json};
use crate::args::ExecutionFilter;
use crate::client::Client;
use crate::output::{
    Cell, Paint, SHORT, Table, compact_json, errln, format_age, format_clock, format_duration_ms,
    format_timestamp, outln, pe, po, pretty_json, short, status_paint,
};
use anyhow::anyhow;
use mesg_api_types::CancelExecution;
use mesg_protocol::evidence::{mismatches, verify_result};
use mesg_protocol::{
    Execution, ExecutionId, ExecutionResult, ExecutionStatus, Outcome, Signed, now_ms,
};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Run time of an ended execution (start to end), if it started.
pub fn duration_of(e: &Execution) -> Option<u64> {
    match (e.started_at, e.finished_at) {
        (Some(s), Some(f)) => Some(f.saturating_sub(s)),
        _ => None,
    }
}

fn duration_cell(e: &Execution, now: u64) -> String {
    match (e.started_at, e.finished_at) {
        (Some(s), Some(f)) => format_duration_ms(f.saturating_sub(s)),
        (Some(s), None) => format!("{}…", format_duration_ms(now.saturating_sub(s))),
        _ => "-".to_string(),
    }
}

fn filter_query(f: &ExecutionFilter) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    for (k, v) in [
        ("status", &f.status),
        ("service", &f.service),
        ("tag", &f.tag),
        ("task", &f.task),
        ("parent", &f.parent),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    q
}

/// A full execution id from an id or a unique prefix of a recent one.
pub async fn resolve_id(client: &Client, text: &str) -> anyhow::Result<String> {
    let t = text.trim().to_ascii_lowercase();
    if t.parse::<ExecutionId>().is_ok() {
        return Ok(t);
    }
    if t.is_empty() || t.len() > 32 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        anyhow::bail!("`{text}` is not an execution id (32 hex characters, or the start of one)");
    }
    let page: Value = client
        .json(client.get(&["v1", "executions"]).query(&[("limit", 1000)]))
        .await?;
    let ids: Vec<String> = page["executions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str())
        .filter(|id| id.starts_with(&t))
        .map(str::to_string)
        .collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(anyhow!(
            "no recent execution id starts with `{text}` (the 1000 newest were searched); give the full id"
        )),
        many => Err(anyhow!(
            "`{text}` is the start of {} execution ids ({}, ...); give more characters",
            many.len(),
            many.iter()
                .take(3)
                .map(|s| short(s, 12))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

// --------------------------------------------------------------------- list

pub async fn list(
    ctx: &Ctx,
    filter: &ExecutionFilter,
    limit: Option<u32>,
    all: bool,
) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let mut query = filter_query(filter);
    if let Some(n) = limit {
        query.push(("limit", n.to_string()));
    }
    let mut pages: Vec<Value> = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut q = query.clone();
        if let Some(cursor) = &next {
            q.push(("before", cursor.clone()));
        }
        let page: Value = client
            .json(client.get(&["v1", "executions"]).query(&q))
            .await?;
        let cursor = page["next"].as_str().map(str::to_string);
        let empty = page["executions"].as_array().is_none_or(Vec::is_empty);
        pages.push(page);
        match cursor {
            Some(c) if all && !empty && next.as_ref() != Some(&c) => next = Some(c),
            other => {
                next = other;
                break;
            }
        }
    }
    let executions: Vec<Value> = pages
        .iter()
        .flat_map(|p| p["executions"].as_array().cloned().unwrap_or_default())
        .collect();
    let more = if all { None } else { next };
    if ctx.json() {
        print_json(&json!({ "executions": executions, "next": more }));
        return Ok(());
    }
    let list: Vec<Execution> = views::decode(&Value::Array(executions), "execution list")?;
    if list.is_empty() {
        outln!("no executions match");
        return Ok(());
    }
    let labels = views::service_labels(client).await;
    let now = now_ms();
    let mut table = Table::new(&["ID", "SERVICE", "TASK", "STATUS", "AGE", "DURATION"]);
    for e in &list {
        table.row(vec![
            short(&e.id.to_string(), SHORT).into(),
            service_label(&labels, &e.service_hash.to_string()).into(),
            e.task_key.clone().into(),
            Cell::painted(e.status.as_str(), status_paint(e.status.as_str())),
            format_age(now, e.created_at).into(),
            duration_cell(e, now).into(),
        ]);
    }
    table.print();
    if more.is_some() {
        errln!(
            "{} more executions match: add --all for every page, or narrow with --status/--service/--tag",
            pe(Paint::Dim, "…")
        );
    }
    Ok(())
}

// --------------------------------------------------------------------- show

pub fn print_execution(e: &Execution, labels: &HashMap<String, String>) {
    let now = now_ms();
    let hash = e.service_hash.to_string();
    let w = |label: &str, value: String| outln!("{:<16}{value}", format!("{label}:"));
    w("id", e.id.to_string());
    match labels.get(&hash) {
        Some(l) => w("service", format!("{l} ({hash})")),
        None => w("service", hash),
    }
    w("task", e.task_key.clone());
    w(
        "status",
        po(status_paint(e.status.as_str()), e.status.as_str()),
    );
    w("requester", e.requester.to_string());
    if e.requester_node != e.requester {
        w("requester node", e.requester_node.to_string());
    }
    w(
        "executor",
        e.executor
            .map(|k| k.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(i) = &e.instance_hash {
        w("instance", i.to_string());
    }
    if let Some(p) = &e.parent {
        w("parent", p.to_string());
    }
    if let Some(p) = &e.process {
        w(
            "process",
            format!("{} run {} step {}", p.process, p.run, p.step),
        );
    }
    if !e.tags.is_empty() {
        w("tags", e.tags.join(", "));
    }
    w("timeout", format_duration_ms(e.timeout_ms));
    w(
        "created",
        format!(
            "{} ({})",
            format_timestamp(e.created_at),
            format_age(now, e.created_at)
        ),
    );
    if let Some(s) = e.started_at {
        w(
            "started",
            format!(
                "{} (+{})",
                format_timestamp(s),
                format_duration_ms(s.saturating_sub(e.created_at))
            ),
        );
    }
    if let Some(f) = e.finished_at {
        let took = duration_of(e)
            .map(|ms| format!(" (ran {})", format_duration_ms(ms)))
            .unwrap_or_default();
        w("finished", format!("{}{took}", format_timestamp(f)));
    }
    if let Some(cap) = e.max_price {
        w("max price", format!("{cap} µc"));
    }
    if let Some(c) = &e.cost {
        w("cost", views::format_cost(c));
    }
    outln!("inputs:");
    outln!("{}", pretty_json(&e.inputs.0, 2));
    if let Some(o) = &e.outputs {
        outln!("outputs:");
        outln!("{}", pretty_json(&o.0, 2));
    }
    if let Some(err) = &e.error {
        w(
            "error",
            po(Paint::Red, &crate::output::sanitize(err, false)),
        );
    }
}

pub async fn show(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = resolve_id(client, id).await?;
    let v: Value = client.json(client.get(&["v1", "executions", &id])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let e: Execution = views::decode(&v, "execution")?;
    let labels = views::service_labels(client).await;
    print_execution(&e, &labels);
    if let Some(line) = super::ledger::receipt_line(&v) {
        outln!("{:<16}{line}", "receipt:");
    }
    if let Some((_, record)) = super::attempts::fetch(client, &id).await? {
        for line in super::attempts::lines(&record) {
            outln!("{line}");
        }
    }
    super::why::print_waiting(&v, &e.id.to_string());
    Ok(())
}

// -------------------------------------------------------------------- watch

/// When an execution last changed.
pub fn changed_at(e: &Execution) -> u64 {
    e.finished_at.or(e.started_at).unwrap_or(e.created_at)
}

/// What changed, on one line (without the time), for `watch` and `dev`.
pub fn execution_summary(e: &Execution, labels: &HashMap<String, String>) -> String {
    let status = po(
        status_paint(e.status.as_str()),
        &format!("{:<10}", e.status.as_str()),
    );
    let detail = match e.status {
        ExecutionStatus::Created => format!("inputs {}", compact_json(&e.inputs.0, 120)),
        ExecutionStatus::InProgress => match &e.executor {
            Some(k) => format!("on {}", short(&k.to_string(), SHORT)),
            None => String::new(),
        },
        ExecutionStatus::Completed => format!(
            "{} {}",
            duration_of(e).map(format_duration_ms).unwrap_or_default(),
            e.outputs
                .as_ref()
                .map(|o| compact_json(&o.0, 120))
                .unwrap_or_default()
        ),
        ExecutionStatus::Failed => po(
            Paint::Red,
            &crate::output::sanitize(e.error.as_deref().unwrap_or(""), false),
        ),
    };
    format!(
        "{}  {} {}  {status} {detail}",
        short(&e.id.to_string(), SHORT),
        service_label(labels, &e.service_hash.to_string()),
        e.task_key,
    )
    .trim_end()
    .to_string()
}

pub async fn watch(ctx: &Ctx, filter: &ExecutionFilter) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let response = client
        .send(
            client
                .get(&["v1", "executions", "stream"])
                .query(&filter_query(filter)),
        )
        .await?;
    let mut labels = if ctx.json() {
        HashMap::new()
    } else {
        views::service_labels(client).await
    };
    if !ctx.json() {
        errln!("{}", pe(Paint::Dim, "watching executions (Ctrl-C to stop)"));
    }
    let mut refreshed = None;
    let mut events = client.sse(response);
    while let Some(event) = events.next().await {
        let event = event?;
        match event.event.as_str() {
            "execution" => {
                if ctx.json() {
                    outln!("{}", event.data);
                } else {
                    let e: Execution = serde_json::from_str(&event.data)
                        .map_err(|e| anyhow!("the node sent an invalid execution: {e}"))?;
                    let hash = e.service_hash.to_string();
                    views::refresh_labels(client, &mut labels, &mut refreshed, &hash).await;
                    outln!(
                        "{}  {}",
                        po(Paint::Dim, &format_clock(changed_at(&e))),
                        execution_summary(&e, &labels)
                    );
                }
            }
            "lagged" => errln!(
                "{} missed some updates: the stream was too slow ({})",
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

// ------------------------------------------------------------------- cancel

pub async fn cancel(ctx: &Ctx, id: &str, reason: Option<String>) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = resolve_id(client, id).await?;
    let mut request = client.post(&["v1", "executions", &id, "cancel"]);
    if let Some(r) = reason {
        request = request.json(&CancelExecution { reason: Some(r) });
    }
    let v: Value = client.json(request).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let e: Execution = views::decode(&v, "execution")?;
    outln!(
        "cancelled {}: {}{}",
        e.id,
        po(status_paint(e.status.as_str()), e.status.as_str()),
        e.error
            .as_deref()
            .map(|err| format!(" ({})", crate::output::sanitize(err, false)))
            .unwrap_or_default()
    );
    Ok(())
}

// ------------------------------------------------------------------- verify

pub async fn verify(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = resolve_id(client, id).await?;
    // A verified execution's evidence is its round: the executors' signed commits and
    // reveals, not one signed result.
    if let Some((raw, record)) = super::attempts::fetch(client, &id).await? {
        return super::attempts::verify_round(ctx, client, &id, raw, &record).await;
    }
    let raw: Value = client
        .json(client.get(&["v1", "executions", &id, "result"]))
        .await?;
    let signed: Signed<ExecutionResult> = serde_json::from_value(raw.clone())
        .map_err(|e| anyhow!("the node's answer is not a signed result ({e})"))?;
    let record: Option<Execution> = match client
        .json::<Value>(client.get(&["v1", "executions", &id]))
        .await
    {
        Ok(v) => views::decode(&v, "execution").ok(),
        Err(_) => None,
    };
    let verdict = verify_result(&signed, now_ms());
    let mut problems = match &verdict.result {
        Ok(r) => mismatches(r, &id, record.as_ref()),
        Err(e) => vec![format!("signature invalid: {e}")],
    };
    let receipt = super::receipt_check::check(client, &id, &signed, record.as_ref()).await?;
    problems.extend(receipt.problems.iter().cloned());
    let valid = problems.is_empty();
    let h = &signed.header;
    if ctx.json() {
        let (executor, outcome) = match &verdict.result {
            Ok(r) => (
                Some(r.executor.to_string()),
                Some(serde_json::to_value(&r.outcome).unwrap_or(Value::Null)),
            ),
            Err(_) => (None, None),
        };
        print_json(&json!({
            "execution_id": id,
            "valid": valid,
            "problems": problems,
            "note": verdict.note,
            "signer": h.signer.to_string(),
            "executor": executor,
            "outcome": outcome,
            "issued_at": h.issued_at,
            "expires_at": h.expires_at,
            "receipt": receipt.json,
        }));
    } else {
        outln!("execution:  {id}");
        if let Ok(r) = &verdict.result {
            outln!("service:    {}  task {}", r.service_hash, r.task_key);
            outln!("executor:   {}", r.executor);
            if let Some(i) = &r.instance_hash {
                outln!("instance:   {i}");
            }
            match &r.outcome {
                Outcome::Completed { outputs } => {
                    outln!("outcome:    {}", po(Paint::Green, "Completed"));
                    outln!("outputs:    {}", compact_json(&outputs.0, 400));
                }
                Outcome::Failed { error } => {
                    outln!("outcome:    {}", po(Paint::Red, "Failed"));
                    outln!("error:      {}", crate::output::sanitize(error, false));
                }
            }
        } else {
            outln!("signer:     {}", h.signer);
        }
        outln!(
            "signed:     {} ({}), valid until {}",
            format_timestamp(h.issued_at),
            format_age(now_ms(), h.issued_at),
            format_timestamp(h.expires_at)
        );
        for line in &receipt.lines {
            outln!("{line}");
        }
        if valid {
            outln!(
                "{} (ed25519, signed by the executor {})",
                po(Paint::Green, "signature valid"),
                h.signer
            );
            if let Some(note) = &verdict.note {
                outln!(
                    "note:       outside its validity window now ({note}); the signature was checked as of its issue time"
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_protocol::types::domains;
    use mesg_protocol::wire::MAX_WORK_MESSAGE;
    use mesg_protocol::{Hash32, Json, Keypair, ServiceHash};

    const NOW: u64 = 1_800_000_000_000;

    fn result(executor: &Keypair) -> ExecutionResult {
        ExecutionResult {
            execution_id: ExecutionId([7; 16]),
            request_digest: Hash32::sha256(b"request"),
            service_hash: ServiceHash(Hash32::sha256(b"service")),
            task_key: "echo".into(),
            executor: executor.public(),
            instance_hash: None,
            outcome: Outcome::Completed {
                outputs: Json(json!({"message": "hi"})),
            },
            started_at: Some(NOW - 10),
            finished_at: NOW,
        }
    }

    fn sign(key: &Keypair, r: &ExecutionResult, at: u64, ttl: u64) -> Signed<ExecutionResult> {
        Signed::sign(key, domains::EXECUTION_RESULT, r, at, ttl, MAX_WORK_MESSAGE).unwrap()
    }

    #[test]
    fn a_result_signed_by_its_executor_verifies_now_and_later() {
        let k = Keypair::generate().unwrap();
        let s = sign(&k, &result(&k), NOW, 60_000);
        let v = verify_result(&s, NOW + 1);
        assert!(v.result.is_ok() && v.note.is_none());
        // A year later the window is over, the signature still holds.
        let later = verify_result(&s, NOW + 365 * 86_400_000);
        assert!(later.result.is_ok());
        assert!(later.note.unwrap().contains("expired"));
        // Through JSON, as the API sends it.
        let back: Signed<ExecutionResult> =
            serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert!(verify_result(&back, NOW).result.is_ok());
    }

    #[test]
    fn forged_or_tampered_results_fail() {
        let executor = Keypair::generate().unwrap();
        let other = Keypair::generate().unwrap();
        // Signed by someone else than the executor it names.
        let forged = sign(&other, &result(&executor), NOW, 60_000);
        let v = verify_result(&forged, NOW);
        assert!(v.result.unwrap_err().contains("claims"));
        // Payload changed after signing.
        let mut tampered = sign(&executor, &result(&executor), NOW, 60_000);
        let mut changed = result(&executor);
        changed.outcome = Outcome::Failed {
            error: "nope".into(),
        };
        tampered.payload =
            mesg_protocol::Bytes(mesg_protocol::wire::encode(&changed, MAX_WORK_MESSAGE).unwrap());
        assert!(verify_result(&tampered, NOW).result.is_err());
        // Expired and tampered: still invalid (the fallback checks the signature too).
        assert!(
            verify_result(&tampered, NOW + 365 * 86_400_000)
                .result
                .is_err()
        );
        // A request envelope is not a result.
        let mut wrong_domain = sign(&executor, &result(&executor), NOW, 60_000);
        wrong_domain.header.domain = domains::EXECUTION_REQUEST.into();
        assert!(verify_result(&wrong_domain, NOW).result.is_err());
    }

    #[test]
    fn results_must_match_their_execution() {
        let k = Keypair::generate().unwrap();
        let r = result(&k);
        let id = r.execution_id.to_string();
        assert!(mismatches(&r, &id, None).is_empty());
        assert_eq!(mismatches(&r, &"ab".repeat(16), None).len(), 1);
    }
}
