//! `mesg process logs`: what changed in each run, as it happens.

use super::*;

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
pub fn run_changes(prev: Option<&Run>, next: &Run, order: &[String]) -> Vec<StepChange> {
    let mut out: Vec<(usize, u64, StepChange)> = Vec::new();
    for (key, s) in &next.steps {
        let before = prev.and_then(|p| p.steps.get(key));
        let changed = match before {
            None => true,
            Some(b) => b.status != s.status || b.attempts.len() != s.attempts.len(),
        };
        // A task step is recorded `waiting` with no attempt for an instant before its
        // first attempt starts: not worth a line.
        if !changed || (s.status == StepStatus::Waiting && s.attempts.is_empty()) {
            continue;
        }
        let detail = match s.status.as_str() {
            "running" => s
                .attempts
                .last()
                .map(|a| format!("execution {}", short(&a.execution_id.to_string(), SHORT)))
                .unwrap_or_default(),
            _ => step_detail(s, 100),
        };
        let rank = order.iter().position(|k| k == key).unwrap_or(usize::MAX);
        out.push((
            rank,
            s.started_at,
            StepChange {
                key: key.clone(),
                status: s.status.as_str().to_string(),
                attempts: s.attempts.len(),
                detail,
            },
        ));
    }
    out.sort_by(|a, b| (a.0, a.1, &a.2.key).cmp(&(b.0, b.1, &b.2.key)));
    out.into_iter().map(|(_, _, c)| c).collect()
}

/// One line for a change of a run (without the time), or `None` when nothing changed.
pub fn run_line(prev: Option<&Run>, next: &Run, order: &[String]) -> Option<String> {
    let changes = run_changes(prev, next, order);
    let status_changed = prev.is_none_or(|p| p.status != next.status);
    if changes.is_empty() && !status_changed {
        return None;
    }
    let mut parts: Vec<String> = changes.iter().map(StepChange::text).collect();
    if status_changed && next.status != RunStatus::Running {
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
                next.status.as_str(),
                compact(&clean(e), 100)
            )),
            _ if next.status == RunStatus::Failed => parts.push(format!("run failed after {took}")),
            _ => parts.push(format!("run {} in {took}", next.status.as_str())),
        }
    }
    if prev.is_none() && parts.is_empty() {
        parts.push("started".into());
    }
    Some(format!(
        "{}  {}  {}",
        short(&next.id, SHORT),
        po(
            run_paint(next.status.as_str()),
            &format!("{:<9}", next.status.as_str())
        ),
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
    let mut snapshots: HashMap<String, Run> = HashMap::new();
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
        let runs = views::decode::<RunList>(&v, "run list")?.runs;
        for r in runs.into_iter().filter(|r| r.status == RunStatus::Running) {
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
                let r: Run = serde_json::from_str(&event.data)
                    .map_err(|e| anyhow!("the node sent an invalid run: {e}"))?;
                if let Some(line) = run_line(snapshots.get(&r.id), &r, &order) {
                    outln!("{}  {line}", po(Paint::Dim, &format_clock(r.changed_at())));
                }
                if r.status == RunStatus::Running {
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
