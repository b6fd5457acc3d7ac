//! `mesg exec SERVICE TASK`: create an execution, signed by the node or by an account.

use super::executions::duration_of;
use super::views;
use super::why;
use super::{Ctx, Exit, print_json};
use crate::accounts;
use crate::args::ExecArgs;
use crate::client::{ApiError, Client};
use crate::inputs;
use crate::output::{Paint, errln, format_duration_ms, outln, pe, po, pretty_json, status_paint};
use anyhow::anyhow;
use mesg_protocol::envelope::MAX_TTL_MS;
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{
    Execution, ExecutionId, ExecutionRequest, ExecutionStatus, Json, PublicKey, ServiceHash,
    Signed, now_ms,
};
use serde_json::{Value, json};

/// Default timeout of a task without one, as the node applies it.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// How long a signed request stays valid beyond the execution's own timeout: covers
/// clock skew and the time the request spends reaching its executor.
pub const SIGNED_SLACK_MS: u64 = 10 * 60 * 1000;

pub async fn run(ctx: &Ctx, args: ExecArgs) -> anyhow::Result<()> {
    let inputs = match &args.input {
        Some(text) => inputs::parse_input_json(text).map_err(anyhow::Error::msg)?,
        None => inputs::parse_data_args(&args.data).map_err(anyhow::Error::msg)?,
    };
    let client = ctx.client()?;
    // One cheap call first: with no provider known anywhere, the execution is created
    // without waiting, so that the user is warned at once (then waited for).
    let unprovided = why::provider_known(client, &args.service).await == Some(false);
    let wait = [("wait", args.wait && !unprovided)];
    let request = match &ctx.global.account {
        None => {
            let body = json!({
                "service": args.service,
                "task": args.task,
                "inputs": inputs,
                "tags": args.tags,
                "timeout_ms": args.timeout,
                "parent": args.parent,
                "max_price": args.max_price,
                "verify": args.verify,
            });
            let mut request = client.post(&["v1", "executions"]).query(&wait).json(&body);
            if let Some(key) = &args.idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            request
        }
        Some(account) => {
            let signed = sign_request(client, account, &args, inputs).await?;
            client
                .post(&["v1", "executions", "signed"])
                .query(&wait)
                .json(&signed)
        }
    };
    let response = client.send(request).await?;
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let mut value: Value = response
        .json()
        .await
        .map_err(|e| anyhow!("the node answered with unexpected JSON: {e}"))?;
    let mut execution: Execution = views::decode(&value, "execution")?;
    if replayed && !ctx.json() {
        errln!(
            "{} idempotency key `{}` already names execution {} ({}): nothing new was run",
            pe(Paint::Cyan, "note:"),
            args.idempotency_key.as_deref().unwrap_or_default(),
            execution.id,
            execution.status
        );
    }
    if unprovided {
        let id = execution.id.to_string();
        why::warn_if_unprovided(client, &id, &args.service).await;
        if args.wait {
            value = wait_for(client, &execution).await?;
            execution = views::decode(&value, "execution")?;
        }
    }
    if ctx.json() {
        print_json(&value);
    } else {
        print_outcome(&execution, args.wait);
    }
    if args.wait {
        match execution.status {
            ExecutionStatus::Completed => {}
            ExecutionStatus::Failed => {
                if !ctx.json() {
                    errln!(
                        "{} execution {} failed: {}",
                        pe(Paint::Red, "error:"),
                        execution.id,
                        crate::output::sanitize(
                            execution.error.as_deref().unwrap_or("(no reason given)"),
                            false
                        )
                    );
                }
                return Err(Exit(1).into());
            }
            _ => {
                if !ctx.json() {
                    errln!(
                        "{} execution {} has not ended yet; follow it with `mesg executions show {}`",
                        pe(Paint::Yellow, "warning:"),
                        execution.id,
                        execution.id
                    );
                }
                return Err(Exit(1).into());
            }
        }
    }
    Ok(())
}

/// Wait for an execution to end (as `POST ...?wait=true` would have): until its timeout
/// and a second have passed.
async fn wait_for(client: &Client, e: &Execution) -> anyhow::Result<Value> {
    let until = now_ms() + e.timeout_ms + 1000;
    let id = e.id.to_string();
    loop {
        let left = until.saturating_sub(now_ms()).max(1);
        let v: Value = client
            .json(
                client
                    .get(&["v1", "executions", &id, "wait"])
                    .query(&[("timeout_ms", left.min(3_600_000))]),
            )
            .await?;
        let done = v["status"]
            .as_str()
            .is_none_or(|s| s == "Completed" || s == "Failed");
        if done || now_ms() >= until {
            return Ok(v);
        }
    }
}

fn print_outcome(e: &Execution, waited: bool) {
    if !waited {
        outln!("{}", e.id);
        return;
    }
    let status = po(status_paint(e.status.as_str()), e.status.as_str());
    let word = if e.status == ExecutionStatus::Failed {
        "after"
    } else {
        "in"
    };
    let took = duration_of(e)
        .map(|ms| format!(" {word} {}", format_duration_ms(ms)))
        .unwrap_or_default();
    outln!("{}  {status}{took}", e.id);
    if let Some(outputs) = &e.outputs {
        outln!("{}", pretty_json(&outputs.0, 0));
    }
}

/// An account's key, with a warning when its file is readable by others.
pub fn account_key(account: &str) -> anyhow::Result<mesg_protocol::Keypair> {
    let home = accounts::mesg_home()?;
    let key = accounts::load(&home, account)?;
    let path = accounts::key_path(&home, account);
    if accounts::too_open(&path) {
        errln!(
            "{} {} is readable by other users; run chmod 600 {}",
            pe(Paint::Yellow, "warning:"),
            path.display(),
            path.display()
        );
    }
    Ok(key)
}

/// Build the execution request here and sign it with the account's key.
async fn sign_request(
    client: &Client,
    account: &str,
    args: &ExecArgs,
    inputs: Value,
) -> anyhow::Result<Signed<ExecutionRequest>> {
    let key = account_key(account)?;
    let node: Value = client.json(client.get(&["v1", "node"])).await?;
    let node_key: PublicKey = node["public_key"]
        .as_str()
        .ok_or_else(|| anyhow!("the node did not say its public key (GET /v1/node)"))?
        .parse()
        .map_err(|e| anyhow!("the node's public key is invalid: {e}"))?;
    let (service, _) = views::get_service(client, &args.service).await?;
    let service_hash: ServiceHash = service.hash;
    let Some(task) = service.definition.tasks.get(&args.task) else {
        return Err(ApiError {
            status: 0,
            code: "unknown_task".into(),
            message: format!(
                "service {} has no task `{}` (tasks: {})",
                service.label(),
                args.task,
                service
                    .definition
                    .tasks
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            details: Vec::new(),
        }
        .into());
    };
    let timeout_ms = args
        .timeout
        .or(task.timeout_ms)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    let parent = args
        .parent
        .as_deref()
        .map(str::parse::<ExecutionId>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let now = now_ms();
    let execution_id = match &args.idempotency_key {
        Some(k) => mesg_protocol::control::idempotent_execution_id(&key.public(), k),
        None => ExecutionId::random(),
    };
    let request = ExecutionRequest {
        execution_id,
        service_hash,
        task_key: args.task.clone(),
        inputs: Json(inputs),
        requester: key.public(),
        requester_node: node_key,
        parent,
        process: None,
        tags: args.tags.clone(),
        timeout_ms,
        created_at: now,
        cause: None,
        idempotency_key: args.idempotency_key.clone(),
        max_price: args.max_price,
        verify: args.verify.or(task.verify),
    };
    let ttl = timeout_ms.saturating_add(SIGNED_SLACK_MS).min(MAX_TTL_MS);
    Signed::sign(
        &key,
        domains::EXECUTION_REQUEST,
        &request,
        now,
        ttl,
        MAX_WORK_MESSAGE,
    )
    .map_err(|e| anyhow!("cannot sign the request: {e}"))
}
