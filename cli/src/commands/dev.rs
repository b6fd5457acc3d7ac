//! `mesg service dev`: deploy, start, follow logs, events and executions of the service
//! until Ctrl-C, then stop and remove the instance (keeping its data).
//!
//! Once the instance is started, everything ends in the clean-up: a failing stream, a
//! closed stdout, Ctrl-C or SIGTERM all lead to it. A second Ctrl-C during the clean-up
//! abandons it and says how to finish it by hand.

use super::Ctx;
use super::events::event_summary;
use super::executions::{changed_at, execution_summary};
use super::service::{self, LogPrinter};
use super::views;
use crate::client::Client;
use crate::inputs;
use crate::output::{Paint, errln, format_clock, outln, pe, po};
use mesg_api_types::InstanceView;
use mesg_protocol::{EnvHash, Event, Execution, InstanceHash, now_ms};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// Ctrl-C and SIGTERM, listened to from creation on.
struct Interrupt {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn new() -> anyhow::Result<Interrupt> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Interrupt {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Interrupt {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn tag(kind: &str, paint: Paint) -> String {
    po(paint, &format!("{kind:<5}"))
}

fn clock(ms: u64) -> String {
    po(Paint::Dim, &format_clock(ms))
}

/// Follow one stream for as long as the task lives: reconnect after a failure (the node
/// restarting, a container restarting), reporting each new problem once.
async fn keep_following<F, Fut>(what: &'static str, mut once: F)
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut first = true;
    let mut last_problem = String::new();
    loop {
        let problem = match once(first).await {
            Ok(()) => format!("the {what} stream ended"),
            Err(e) => format!("{what}: {e:#}"),
        };
        if crate::output::stdout_closed() {
            return;
        }
        if problem != last_problem {
            errln!("{} {problem}; reconnecting", pe(Paint::Yellow, "warning:"));
            last_problem = problem;
        }
        first = false;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn follow_logs(client: Client, instance: String, json: bool) {
    keep_following("logs", move |first| {
        let (client, instance) = (client.clone(), instance.clone());
        async move {
            let tail = if first { 200 } else { 0 };
            let request = client
                .get(&["v1", "instances", &instance, "logs"])
                .query(&[("follow", "true"), ("tail", &tail.to_string())]);
            let response = client.send(request).await?;
            let mut lines = client.lines(response);
            let mut printer = LogPrinter::default();
            while let Some(line) = lines.next().await {
                let line = line?;
                if json {
                    let v: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                    outln!("{}", json!({ "log": v }));
                } else {
                    printer.line(
                        &line,
                        &format!("{} {} ", clock(now_ms()), tag("log", Paint::Dim)),
                    );
                }
                if crate::output::stdout_closed() {
                    return Ok(());
                }
            }
            // The containers' output ended: say why when the instance is not running.
            let v: Value = client
                .json(client.get(&["v1", "instances", &instance]))
                .await?;
            let i: InstanceView = views::decode(&v, "instance")?;
            if i.status() != "running" {
                let reason = i
                    .state
                    .as_ref()
                    .and_then(|s| s.reason.clone())
                    .unwrap_or_default();
                anyhow::bail!("the instance is {} {reason}", i.status());
            }
            Ok(())
        }
    })
    .await;
}

async fn follow_events(
    client: Client,
    service: String,
    json: bool,
    labels: HashMap<String, String>,
) {
    keep_following("events", move |_| {
        let (client, service, labels) = (client.clone(), service.clone(), labels.clone());
        async move {
            let response = client
                .send(
                    client
                        .get(&["v1", "events", "stream"])
                        .query(&[("service", &service)]),
                )
                .await?;
            let mut events = client.sse(response);
            while let Some(event) = events.next().await {
                let event = event?;
                if event.event != "event" {
                    continue;
                }
                match serde_json::from_str::<Event>(&event.data) {
                    Ok(e) if !json => outln!(
                        "{} {} {}",
                        clock(e.created_at),
                        tag("event", Paint::Cyan),
                        event_summary(&e, &labels)
                    ),
                    _ => outln!("{{\"event\":{}}}", event.data),
                }
                if crate::output::stdout_closed() {
                    return Ok(());
                }
            }
            Ok(())
        }
    })
    .await;
}

async fn follow_executions(
    client: Client,
    service: String,
    json: bool,
    labels: HashMap<String, String>,
) {
    keep_following("executions", move |_| {
        let (client, service, labels) = (client.clone(), service.clone(), labels.clone());
        async move {
            let response = client
                .send(
                    client
                        .get(&["v1", "executions", "stream"])
                        .query(&[("service", &service)]),
                )
                .await?;
            let mut events = client.sse(response);
            while let Some(event) = events.next().await {
                let event = event?;
                if event.event != "execution" {
                    continue;
                }
                match serde_json::from_str::<Execution>(&event.data) {
                    Ok(e) if !json => outln!(
                        "{} {} {}",
                        clock(changed_at(&e)),
                        tag("exec", Paint::Magenta),
                        execution_summary(&e, &labels)
                    ),
                    _ => outln!("{{\"execution\":{}}}", event.data),
                }
                if crate::output::stdout_closed() {
                    return Ok(());
                }
            }
            Ok(())
        }
    })
    .await;
}

/// Stop and remove the instance, keeping its data.
async fn clean_up(client: &Client, instance: &str) -> anyhow::Result<()> {
    errln!("stopping instance {instance} ...");
    if let Err(e) = service::stop_instance(client, instance, None).await {
        errln!(
            "{} stopping failed ({e:#}); removing it anyway",
            pe(Paint::Yellow, "warning:")
        );
    }
    service::delete_instance(client, instance, true).await?;
    errln!(
        "{} instance {instance} stopped and removed (its data volumes are kept)",
        pe(Paint::Green, "done:")
    );
    Ok(())
}

pub async fn run(ctx: &Ctx, dir: &Path, env: &[(String, String)]) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = inputs::env_map(env).map_err(anyhow::Error::msg)?;
    let client = ctx.client()?;
    let (service, _) = service::deploy(ctx, dir, false).await?;
    errln!(
        "{} {} ({})",
        pe(Paint::Green, "deployed"),
        service.label(),
        service.hash
    );
    let before: Vec<String> = views::list_instances(client)
        .await
        .map(|list| list.into_iter().map(|i| i.hash.to_string()).collect())
        .unwrap_or_default();
    // From here on, an interrupt no longer kills the process: it leads to the clean-up.
    let mut interrupt = Interrupt::new()?;
    let instance = match service::start_instance(client, &service.hash.to_string(), &env).await {
        Ok((i, _)) => i,
        Err(e) => {
            // The node may have recorded the instance before its containers failed to
            // start: remove it (by the hash it has for this service and env) so that a
            // failed `dev` leaves nothing running; unless it was there before `dev`.
            let env_hash = EnvHash::of(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let instance = InstanceHash::of(&service.hash, &env_hash).to_string();
            if !before.contains(&instance) {
                let _ = service::delete_instance(client, &instance, true).await;
            }
            return Err(e);
        }
    };
    let hash = instance.hash.to_string();
    errln!(
        "{} instance {} ({})",
        pe(Paint::Green, "started"),
        hash,
        instance.status()
    );
    if before.contains(&hash) {
        errln!(
            "{} this instance (same service and env) existed before; it is removed on exit too",
            pe(Paint::Yellow, "note:")
        );
    }
    errln!(
        "{}",
        pe(
            Paint::Dim,
            &format!(
                "following logs, events and executions of {}; Ctrl-C stops and removes the instance",
                service.label()
            )
        )
    );
    let labels = views::service_labels(client).await;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(follow_logs(client.clone(), hash.clone(), ctx.json()));
    tasks.spawn(follow_events(
        client.clone(),
        service.hash.to_string(),
        ctx.json(),
        labels.clone(),
    ));
    tasks.spawn(follow_executions(
        client.clone(),
        service.hash.to_string(),
        ctx.json(),
        labels,
    ));
    tokio::select! {
        _ = interrupt.recv() => errln!(),
        _ = async { while tasks.join_next().await.is_some() {} } => {}
    }
    tasks.abort_all();
    tokio::select! {
        r = clean_up(client, &hash) => r,
        _ = interrupt.recv() => {
            errln!(
                "{} clean-up interrupted; finish it with `mesg service stop {hash} --delete --keep-data`",
                pe(Paint::Yellow, "warning:")
            );
            Err(super::Exit(130).into())
        }
    }
}
