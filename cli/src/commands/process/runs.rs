//! `mesg process runs|run`: runs and their steps.

use super::*;

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

pub(super) fn span(started: u64, finished: Option<u64>, now: u64) -> String {
    match finished {
        Some(f) => format_duration_ms(f.saturating_sub(started)),
        None => format!("{}…", format_duration_ms(now.saturating_sub(started))),
    }
}

pub(super) fn clean(text: &str) -> String {
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
    let runs = views::decode::<RunList>(&v, "run list")?.runs;
    if runs.is_empty() {
        outln!("no runs yet: a run starts when the process's trigger happens");
        return Ok(());
    }
    let now = now_ms();
    let mut table = Table::new(&["RUN", "STATUS", "STARTED", "DURATION", "STEPS", "ERROR"]);
    for r in &runs {
        table.row(vec![
            short(&r.id, SHORT).into(),
            Cell::painted(r.status.as_str(), run_paint(r.status.as_str())),
            format_age(now, r.started_at).into(),
            span(r.started_at, r.finished_at, now).into(),
            step_counts(r).into(),
            compact(&run_note(r), 80).into(),
        ]);
    }
    table.print();
    Ok(())
}

/// The last column of a run: its error, else why a step of it waits.
pub(super) fn run_note(r: &Run) -> String {
    if let Some(e) = &r.error {
        return clean(e);
    }
    r.steps
        .iter()
        .find_map(|(k, s)| {
            s.waiting
                .as_deref()
                .map(|w| format!("{k} waiting: \"{}\"", clean(w)))
        })
        .unwrap_or_default()
}

/// `4 done, 1 filtered`.
pub(super) fn step_counts(r: &Run) -> String {
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

/// What a step of a run shows in the last column: output, error, retry time, or why its
/// execution is not running yet.
pub(super) fn step_detail(s: &StepRun, max: usize) -> String {
    match s.status.as_str() {
        "failed" => compact(&clean(s.error.as_deref().unwrap_or("")), max),
        "running" if s.waiting.is_some() => compact(
            &format!("waiting: \"{}\"", clean(s.waiting.as_deref().unwrap_or(""))),
            max,
        ),
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
    let r: Run = views::decode(&v, "run")?;
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
    w(
        "status",
        po(run_paint(r.status.as_str()), r.status.as_str()),
    );
    if let Some(e) = &r.trigger_execution {
        w("trigger", format!("execution {e}"));
    }
    if let Some(c) = &r.cause {
        let limit = process
            .as_ref()
            .map_or(String::new(), |p| format!(" of {}", p.max_depth));
        w(
            "depth",
            format!(
                "{}{limit} (triggered by {}; chain started at {})",
                c.depth, c.parent, c.root
            ),
        );
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
    let mut extra: Vec<(&String, &StepRun)> =
        r.steps.iter().filter(|(k, _)| !keys.contains(k)).collect();
    extra.sort_by_key(|(k, s)| (s.started_at, (*k).clone()));
    keys.extend(extra.into_iter().map(|(k, _)| k.clone()));
    let mut table = Table::new(&["STEP", "STATUS", "TIME", "OUTPUT / ERROR"]);
    for key in &keys {
        let Some(s) = r.steps.get(key) else {
            let why = if r.status == RunStatus::Running {
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
            Cell::painted(s.status.as_str(), run_paint(s.status.as_str())),
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
    // In full: the table cuts them.
    for key in &keys {
        if let Some(w) = r.steps.get(key).and_then(|s| s.waiting.as_deref()) {
            outln!("{key} waiting: \"{}\"", clean(w));
        }
    }
    Ok(())
}
