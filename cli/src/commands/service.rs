//! `mesg service validate|deploy|list|show|start|stop|delete|logs`.

use super::views::{self, bold, painted_status};
use super::{Ctx, Exit, print_json};
use crate::client::{ApiError, Client};
use crate::inputs;
use crate::output::{
    Cell, Paint, Progress, SHORT, Table, errln, format_age, format_bytes, format_duration_ms,
    format_timestamp, outln, pe, po, short, status_paint,
};
use anyhow::Context;
use mesg_api_types::{
    InstanceView, LogLine, PUBLISHER_CLAIM_HEADER, ServiceList, ServiceView, StartInstance,
    StopInstance,
};
use mesg_package::{DEFAULT_MAX_PACKAGE_BYTES, Package};
use mesg_protocol::{DefinitionErrors, ServiceDefinition, now_ms};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// ----------------------------------------------------------------- validate

fn definition_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("mesg.yml")
    } else {
        path.to_path_buf()
    }
}

/// Every error of a definition, as `FILE:LINE:COL: path: message`, and their count.
pub fn print_definition_errors(file: &Path, errors: &DefinitionErrors) {
    for e in &errors.0 {
        errln!("{}:{e}", file.display());
    }
    errln!("{} error(s) in {}", errors.0.len(), file.display());
}

pub fn validate(path: &Path) -> anyhow::Result<()> {
    let file = definition_path(path);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            errln!(
                "{} cannot read {}: {e}",
                pe(Paint::Red, "error:"),
                file.display()
            );
            return Err(Exit(2).into());
        }
    };
    let def = match ServiceDefinition::from_yaml(&text) {
        Ok(def) => def,
        Err(errors) => {
            print_definition_errors(&file, &errors);
            return Err(Exit(1).into());
        }
    };
    outln!("{} is valid", file.display());
    outln!("name: {}", def.name);
    if let Some(sid) = &def.sid {
        outln!("sid:  {sid}");
    }
    outln!(
        "tasks: {}",
        def.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    outln!(
        "events: {}",
        def.events.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    if path.is_dir() {
        match Package::from_dir(path, DEFAULT_MAX_PACKAGE_BYTES) {
            Ok(pkg) => {
                outln!(
                    "package: {} files, {} bytes, hash {}",
                    pkg.file_count(),
                    pkg.size(),
                    pkg.hash()
                );
                outln!("service hash: {}", def.service_hash(&pkg.hash()));
            }
            Err(e) => {
                errln!(
                    "{} the definition is valid but the package is not: {e}",
                    pe(Paint::Red, "error:")
                );
                return Err(Exit(1).into());
            }
        }
    } else {
        outln!(
            "service hash: (validate the service directory to compute it; it covers the whole package)"
        );
    }
    Ok(())
}

// ------------------------------------------------------------------- deploy

/// Package `dir`, check its definition here, send it and follow the build. Returns the
/// deployed service (typed, and as the node answered). A `private` package is not served
/// to the node's peers.
/// Chunks of a deploy's upload (each one moves the progress shown).
const UPLOAD_CHUNK: usize = 64 * 1024;

pub async fn deploy(ctx: &Ctx, dir: &Path, private: bool) -> anyhow::Result<(ServiceView, Value)> {
    let client = ctx.client()?;
    let pkg = Package::from_dir(dir, DEFAULT_MAX_PACKAGE_BYTES)
        .with_context(|| format!("cannot package {}", dir.display()))?;
    let definition = match pkg.definition() {
        Ok(d) => d,
        Err(errors) => {
            print_definition_errors(&dir.join(mesg_package::DEFINITION_FILE), &errors);
            return Err(Exit(1).into());
        }
    };
    let tar = pkg
        .to_tar_bytes()
        .with_context(|| format!("cannot package {}", dir.display()))?;
    // The account, if any, publishes the sid: it signs "this service is <sid>".
    let claim = match (&ctx.global.account, &definition.sid) {
        (Some(account), Some(sid)) => {
            let key = crate::commands::exec::account_key(account)?;
            let hash = definition.service_hash(&pkg.hash());
            let claim = mesg_protocol::SignedClaim::sign(&key, sid, hash, now_ms())?;
            Some(claim.to_hex()?)
        }
        _ => None,
    };
    let progress = Progress::new(&format!(
        "deploying {} from {}: {} files, {}, to {}",
        definition.sid.as_deref().unwrap_or(&definition.name),
        dir.display(),
        pkg.file_count(),
        format_bytes(pkg.size()),
        client.base()
    ));
    let mut request = client.post(&["v1", "services"]);
    if private {
        request = request.query(&[("private", true)]);
    }
    // Sent in chunks, so that a terminal shows the upload's progress (a large build
    // context on a slow link otherwise looks stuck).
    let progress = std::sync::Arc::new(progress);
    let total = tar.len() as u64;
    let body = {
        let progress = progress.clone();
        let mut sent = 0u64;
        let tar = bytes::Bytes::from(tar);
        let chunks: Vec<bytes::Bytes> = (0..tar.len())
            .step_by(UPLOAD_CHUNK)
            .map(|at| tar.slice(at..(at + UPLOAD_CHUNK).min(tar.len())))
            .collect();
        futures::stream::iter(chunks.into_iter().map(move |chunk| {
            sent += chunk.len() as u64;
            progress.bytes("uploading the package", sent, total);
            Ok::<_, std::io::Error>(chunk)
        }))
    };
    let mut request = request
        .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
        .header(reqwest::header::CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(body));
    if let Some(claim) = claim {
        request = request.header(PUBLISHER_CLAIM_HEADER, claim);
    }
    let response = client.send(request).await?;
    let mut lines = client.lines(response);
    while let Some(line) = lines.next().await {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            progress.step(&line);
            continue;
        };
        match v["type"].as_str() {
            Some("progress") => progress.step(v["message"].as_str().unwrap_or_default()),
            Some("done") => {
                progress.finish();
                let service = v["service"].clone();
                return Ok((views::decode(&service, "service")?, service));
            }
            Some("error") => {
                progress.finish();
                return Err(ApiError::from_value(&v["error"]).into());
            }
            _ => {}
        }
    }
    progress.finish();
    anyhow::bail!(
        "the node at {} ended the deploy without saying whether it succeeded; check `mesg service list`",
        client.base()
    )
}

pub async fn start_instance(
    client: &Client,
    service: &str,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<(InstanceView, Value)> {
    start_instance_with(client, service, env, None).await
}

/// Start an instance; with `progress`, the node's steps (fetching a service known only
/// from the network, the bytes received, its image's build) are shown as they happen.
pub async fn start_instance_with(
    client: &Client,
    service: &str,
    env: &BTreeMap<String, String>,
    progress: Option<&Progress>,
) -> anyhow::Result<(InstanceView, Value)> {
    let body = StartInstance {
        service: service.to_string(),
        env: env.clone(),
        limits: None,
    };
    let Some(progress) = progress else {
        let v: Value = client
            .json(client.post(&["v1", "instances"]).json(&body))
            .await?;
        return Ok((views::decode(&v, "instance")?, v));
    };
    let response = client
        .send(
            client
                .post(&["v1", "instances"])
                .query(&[("progress", true)])
                .json(&body),
        )
        .await?;
    let mut lines = client.lines(response);
    while let Some(line) = lines.next().await {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match v["type"].as_str() {
            Some("progress") => progress.step(v["message"].as_str().unwrap_or_default()),
            Some("done") => {
                let instance = v["instance"].clone();
                return Ok((views::decode(&instance, "instance")?, instance));
            }
            Some("error") => return Err(ApiError::from_value(&v["error"]).into()),
            _ => {}
        }
    }
    anyhow::bail!(
        "the node at {} ended the start without saying whether it succeeded; check `mesg service list`",
        client.base()
    )
}

fn print_started(instance: &InstanceView) {
    outln!(
        "started instance {} of {}: {}",
        instance.hash,
        instance
            .sid
            .clone()
            .unwrap_or_else(|| instance.service.to_string()),
        painted_status(instance.status())
    );
    if let Some(reason) = instance.state.as_ref().and_then(|s| s.reason.as_deref()) {
        outln!("  {reason}");
    }
}

pub async fn deploy_cmd(
    ctx: &Ctx,
    dir: &Path,
    start: bool,
    env: &[(String, String)],
    private: bool,
) -> anyhow::Result<()> {
    let env = inputs::env_map(env).map_err(anyhow::Error::msg)?;
    let (service, raw) = deploy(ctx, dir, private).await?;
    if !ctx.json() {
        outln!(
            "{} {}{}",
            po(Paint::Green, "deployed"),
            service.name,
            service
                .sid
                .as_ref()
                .map(|s| format!(" (sid {s})"))
                .unwrap_or_default()
        );
        outln!("service hash: {}", service.hash);
        if let Some(p) = &service.sid_publisher {
            let whose = if ctx.global.account.is_some() {
                "your account"
            } else {
                "the node's key; deploy with --account NAME to publish it as your account"
            };
            outln!("sid publisher: {p} ({whose})");
        }
        if private {
            outln!("package: private, kept on this node (peers cannot fetch it)");
        } else {
            outln!(
                "package: public, any peer of the network can fetch it (this directory minus .dockerignore); deploy with --private to keep it on this node"
            );
        }
    }
    if !start {
        if ctx.json() {
            print_json(&raw);
        }
        return Ok(());
    }
    let (instance, raw_instance) =
        start_instance(ctx.client()?, &service.hash.to_string(), &env).await?;
    if ctx.json() {
        print_json(&json!({"service": raw, "instance": raw_instance}));
    } else {
        print_started(&instance);
    }
    Ok(())
}

// ------------------------------------------------------------- list / show

pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client.json(client.get(&["v1", "services"])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let services = views::decode::<ServiceList>(&v, "service list")?.services;
    if services.is_empty() {
        outln!("no services on this node; deploy one with `mesg service deploy DIR`");
        return Ok(());
    }
    let instances = views::list_instances(client).await?;
    let now = now_ms();
    let mut table = Table::new(&[
        "SID",
        "PUBLISHER",
        "NAME",
        "HASH",
        "TASKS",
        "INSTANCES",
        "DEPLOYED",
    ]);
    for s in &services {
        let mine: Vec<&InstanceView> = instances.iter().filter(|i| i.service == s.hash).collect();
        let running = mine.iter().filter(|i| i.status() == "running").count();
        let inst = if mine.is_empty() {
            Cell::from("-")
        } else {
            let text = format!("{running}/{} running", mine.len());
            if running == mine.len() {
                Cell::painted(text, Paint::Green)
            } else {
                Cell::painted(text, Paint::Yellow)
            }
        };
        table.row(vec![
            s.sid.clone().unwrap_or_else(|| "-".into()).into(),
            s.sid_publisher
                .as_ref()
                .map(|p| short(&p.to_string(), SHORT))
                .unwrap_or_else(|| "-".into())
                .into(),
            s.name.clone().into(),
            short(&s.hash.to_string(), SHORT).into(),
            s.definition.tasks.len().to_string().into(),
            inst,
            format_age(now, s.deployed_at).into(),
        ]);
    }
    table.print();
    Ok(())
}

pub async fn show(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = views::resolve_service(client, id).await?;
    let (s, raw) = views::get_service(client, &id).await?;
    if ctx.json() {
        print_json(&raw);
        return Ok(());
    }
    let instances: Vec<InstanceView> = views::list_instances(client)
        .await?
        .into_iter()
        .filter(|i| i.service == s.hash)
        .collect();
    let def = &s.definition;
    let now = now_ms();
    outln!(
        "{}{}",
        bold(&s.name),
        s.sid
            .as_ref()
            .map(|sid| format!("  (sid {sid})"))
            .unwrap_or_default()
    );
    if let Some(d) = &def.description {
        outln!("{d}");
    }
    outln!("hash:       {}", s.hash);
    outln!(
        "package:    {}, hash {}",
        format_bytes(s.package_size),
        s.package_hash
    );
    outln!("publisher:  {}", s.publisher);
    if let Some(p) = &s.sid_publisher {
        outln!("sid publisher: {p}");
    }
    if let Some(image) = &s.image {
        outln!("image:      {image}");
    }
    outln!(
        "deployed:   {} ({})",
        format_timestamp(s.deployed_at),
        format_age(now, s.deployed_at)
    );
    if !def.configuration.env.is_empty() {
        outln!("env:        {}", views::format_env(&def.configuration.env));
    }
    if !def.dependencies.is_empty() {
        let deps: Vec<String> = def
            .dependencies
            .iter()
            .map(|(k, c)| format!("{k} ({})", c.image.as_deref().unwrap_or("?")))
            .collect();
        outln!("depends on: {}", deps.join(", "));
    }
    outln!();
    outln!("{}", bold("tasks:"));
    if def.tasks.is_empty() {
        outln!("  (none)");
    }
    for (key, t) in &def.tasks {
        let about = t.description.as_deref().or(t.name.as_deref()).unwrap_or("");
        outln!("  {}  {about}", po(Paint::Cyan, key));
        outln!("    inputs:   {}", views::format_params_inline(&t.inputs));
        outln!("    outputs:  {}", views::format_params_inline(&t.outputs));
        match t.timeout_ms {
            Some(ms) => outln!("    timeout:  {}", format_duration_ms(ms)),
            None => outln!("    timeout:  60 s (default)"),
        }
        outln!("    price:    {}", views::format_price(t.price));
    }
    if let Some(e) = def.economy {
        outln!("publisher share: {}", views::format_share(e));
    }
    outln!("{}", bold("events:"));
    if def.events.is_empty() {
        outln!("  (none)");
    }
    for (key, e) in &def.events {
        let about = e.description.as_deref().or(e.name.as_deref()).unwrap_or("");
        outln!("  {}  {about}", po(Paint::Cyan, key));
        outln!("    data:     {}", views::format_params_inline(&e.data));
    }
    outln!("{}", bold("instances:"));
    if instances.is_empty() {
        outln!(
            "  (none; start one with `mesg service start {}`)",
            s.label()
        );
    } else {
        let mut table = Table::new(&[
            "HASH",
            "STATUS",
            "DESIRED",
            "CONNECTED",
            "IN FLIGHT",
            "ENV",
            "CREATED",
        ]);
        for i in &instances {
            table.row(vec![
                short(&i.hash.to_string(), SHORT).into(),
                Cell::painted(i.status(), status_paint(i.status())),
                i.desired.as_str().into(),
                (if i.connected { "yes" } else { "no" }).into(),
                i.in_flight.to_string().into(),
                views::format_env(&i.env).into(),
                format_age(now, i.created_at).into(),
            ]);
        }
        let text = table.render(crate::output::color_out());
        for line in text.lines() {
            outln!("  {line}");
        }
        for i in &instances {
            if let Some(reason) = i.state.as_ref().and_then(|s| s.reason.as_deref()) {
                outln!("  {}: {reason}", short(&i.hash.to_string(), SHORT));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------ start / stop / delete

pub async fn start(ctx: &Ctx, id: &str, env: &[(String, String)]) -> anyhow::Result<()> {
    let env = inputs::env_map(env).map_err(anyhow::Error::msg)?;
    let client = ctx.client()?;
    let id = views::resolve_service(client, id).await?;
    // A service this node has not built yet is fetched from a peer and built first:
    // seconds to minutes, so say so while it lasts.
    let progress = Progress::new(&format!(
        "starting an instance of {id} (a service known only from the network is fetched from a peer and built first)"
    ));
    let started = start_instance_with(client, &id, &env, Some(&progress)).await;
    progress.finish();
    let (instance, raw) = started?;
    if ctx.json() {
        print_json(&raw);
    } else {
        print_started(&instance);
    }
    Ok(())
}

pub async fn stop_instance(
    client: &Client,
    id: &str,
    grace_ms: Option<u64>,
) -> anyhow::Result<(InstanceView, Value)> {
    let mut request = client.post(&["v1", "instances", id, "stop"]);
    if let Some(ms) = grace_ms {
        request = request.json(&StopInstance { grace_ms: Some(ms) });
    }
    let v: Value = client.json(request).await?;
    Ok((views::decode(&v, "instance")?, v))
}

pub async fn delete_instance(
    client: &Client,
    id: &str,
    keep_data: bool,
) -> anyhow::Result<(InstanceView, Value)> {
    let v: Value = client
        .json(
            client
                .delete(&["v1", "instances", id])
                .query(&[("keep_data", keep_data)]),
        )
        .await?;
    Ok((views::decode(&v, "instance")?, v))
}

pub async fn stop(
    ctx: &Ctx,
    id: &str,
    delete: bool,
    keep_data: bool,
    grace: Option<u64>,
) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = &views::resolve_instance(client, id).await?;
    let stopped = stop_instance(client, id, grace).await;
    let (instance, raw) = match stopped {
        Ok(r) => r,
        // The instance may be beyond stopping (e.g. its containers are gone): removing
        // it is still what was asked.
        Err(e)
            if delete
                && e.downcast_ref::<ApiError>()
                    .is_some_and(|a| a.code != "not_found") =>
        {
            errln!(
                "{} stopping failed ({e}); removing it anyway",
                pe(Paint::Yellow, "warning:")
            );
            let (i, raw) = delete_instance(client, id, keep_data).await?;
            report_deleted(ctx, &i, &raw, keep_data);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if !delete {
        if ctx.json() {
            print_json(&raw);
        } else {
            outln!("stopped instance {}", instance.hash);
        }
        return Ok(());
    }
    if !ctx.json() {
        outln!("stopped instance {}", instance.hash);
    }
    // Delete by hash: the id may have named the service, which no longer resolves if
    // something else changed in between.
    let (i, raw) = delete_instance(client, &instance.hash.to_string(), keep_data).await?;
    report_deleted(ctx, &i, &raw, keep_data);
    Ok(())
}

fn report_deleted(ctx: &Ctx, instance: &InstanceView, raw: &Value, keep_data: bool) {
    if ctx.json() {
        print_json(raw);
    } else if keep_data {
        outln!(
            "removed instance {} (its data volumes are kept)",
            instance.hash
        );
    } else {
        outln!("removed instance {} and its data", instance.hash);
    }
}

pub async fn delete(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = views::resolve_service(client, id).await?;
    let v: Value = client.json(client.delete(&["v1", "services", &id])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let s: ServiceView = views::decode(&v, "service")?;
    outln!("deleted service {} ({})", s.label(), s.hash);
    Ok(())
}

// --------------------------------------------------------------------- logs

/// Prints log lines aligned on their container key.
#[derive(Debug, Default)]
pub struct LogPrinter {
    width: usize,
}

impl LogPrinter {
    /// One NDJSON line of the logs stream.
    pub fn line(&mut self, raw: &str, prefix: &str) {
        let v: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(_) => {
                outln!("{prefix}{raw}");
                return;
            }
        };
        if let Some(err) = v.get("error").and_then(Value::as_str) {
            errln!("{} logs: {err}", pe(Paint::Yellow, "warning:"));
            return;
        }
        let Ok(line) = serde_json::from_value::<LogLine>(v) else {
            outln!("{prefix}{raw}");
            return;
        };
        self.width = self.width.max(line.key.len());
        let key = format!("{:>w$}", line.key, w = self.width);
        let color = crate::output::color_out();
        let text = crate::output::sanitize(&line.text, color);
        let text = if line.stream == "stderr" {
            po(Paint::Red, &text)
        } else {
            text
        };
        outln!("{prefix}{} {text}", po(Paint::Dim, &format!("{key} |")));
    }
}

pub async fn logs(ctx: &Ctx, id: &str, follow: bool, tail: Option<usize>) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = views::resolve_instance(client, id).await?;
    let mut request = client
        .get(&["v1", "instances", &id, "logs"])
        .query(&[("follow", follow)]);
    if let Some(n) = tail {
        request = request.query(&[("tail", n)]);
    }
    let response = client.send(request).await?;
    let mut lines = client.lines(response);
    let mut printer = LogPrinter::default();
    while let Some(line) = lines.next().await {
        let line = line?;
        if ctx.json() {
            outln!("{line}");
        } else {
            printer.line(&line, "");
        }
        if crate::output::stdout_closed() {
            break;
        }
    }
    Ok(())
}
