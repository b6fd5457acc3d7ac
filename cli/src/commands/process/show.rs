//! `mesg process list|show|delete`.

use super::*;

// ------------------------------------------------------------ list / show

pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client.json(client.get(&["v1", "processes"])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let list = views::decode::<ProcessList>(&v, "process list")?.processes;
    if list.is_empty() {
        outln!("no processes on this node; create one with `mesg process create FILE`");
        return Ok(());
    }
    let now = now_ms();
    let mut table = Table::new(&[
        "ID", "NAME", "TRIGGER", "STEPS", "RUNNING", "REFUSED", "CREATED",
    ]);
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
            if p.triggers_refused > 0 {
                Cell::painted(p.triggers_refused.to_string(), Paint::Red)
            } else {
                "0".into()
            },
            format_age(now, p.created_at).into(),
        ]);
    }
    table.print();
    Ok(())
}

pub(super) async fn get_process(client: &Client, id: &str) -> anyhow::Result<(ProcessView, Value)> {
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
    outln!("limits:   {}", process_limits::limits_text(&p));
    let refused = process_limits::refusals_text(p.triggers_refused, p.last_refusal.as_ref(), now);
    if p.triggers_refused > 0 {
        outln!("refused:  {}", po(Paint::Red, &refused));
    } else {
        outln!("refused:  {refused}");
    }
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
