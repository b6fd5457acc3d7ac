//! `mesg exec SERVICE TASK`: create an execution, signed by the node or by an account.

use super::executions::duration_of;
use super::views;
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
    let wait = [("wait", args.wait)];
    let value: Value = match &ctx.global.account {
        None => {
            let body = json!({
                "service": args.service,
                "task": args.task,
                "inputs": inputs,
                "tags": args.tags,
                "timeout_ms": args.timeout,
                "parent": args.parent,
            });
            client
                .json(client.post(&["v1", "executions"]).query(&wait).json(&body))
                .await?
        }
        Some(account) => {
            let signed = sign_request(client, account, &args, inputs).await?;
            client
                .json(
                    client
                        .post(&["v1", "executions", "signed"])
                        .query(&wait)
                        .json(&signed),
                )
                .await?
        }
    };
    let execution: Execution = views::decode(&value, "execution")?;
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
    let service_hash: ServiceHash = service
        .hash
        .parse()
        .map_err(|e| anyhow!("the node answered an invalid service hash: {e}"))?;
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
    let request = ExecutionRequest {
        execution_id: ExecutionId::random(),
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
