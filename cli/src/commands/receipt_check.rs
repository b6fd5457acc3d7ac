//! The receipt half of `mesg executions verify`: a priced execution's usage receipt is
//! evidence like its signed result, so anyone can check again what a node says was
//! charged: signed by the executor that signed the result, for that very result, and for
//! exactly the price applied to the usage within the request's cap.

use crate::client::Client;
use mesg_protocol::economy::UsageReceipt;
use mesg_protocol::evidence::{receipt_mismatches, verify_receipt};
use mesg_protocol::{Execution, ExecutionResult, Signed, now_ms};
use serde_json::{Value, json};

/// What checking an execution's receipt found.
pub struct ReceiptCheck {
    /// For `--json`: `null` when there is no receipt.
    pub json: Value,
    /// Lines for people (one when there is no receipt).
    pub lines: Vec<String>,
    /// Why the receipt does not hold, if it does not.
    pub problems: Vec<String>,
}

/// Fetch the receipt the node keeps for `id` and check it against `result` and `record`.
pub async fn check(
    client: &Client,
    id: &str,
    result: &Signed<ExecutionResult>,
    record: Option<&Execution>,
) -> anyhow::Result<ReceiptCheck> {
    let Some(raw) = client
        .json_if_found::<Value>(client.get(&["v1", "executions", id, "receipt"]))
        .await?
    else {
        return Ok(ReceiptCheck {
            json: Value::Null,
            lines: vec![
                "receipt:    none (a free task, or asked on its executor's own node)".into(),
            ],
            problems: Vec::new(),
        });
    };
    let signed: Signed<UsageReceipt> = match serde_json::from_value(raw) {
        Ok(s) => s,
        Err(e) => {
            return Ok(ReceiptCheck {
                json: json!({"valid": false}),
                lines: Vec::new(),
                problems: vec![format!("the node's receipt is not a signed receipt ({e})")],
            });
        }
    };
    let verdict = verify_receipt(&signed, now_ms());
    let (problems, lines, json) = match &verdict.result {
        Ok(r) => {
            let problems = receipt_mismatches(r, result, record);
            let mut lines = vec![format!(
                "receipt:    {} µc (receipt {} of the pair, {} µc in total), usage {} call, {} ms, {} B out",
                r.amount,
                r.sequence,
                r.cumulative,
                r.usage.calls,
                r.usage.duration_ms,
                r.usage.bytes_out
            )];
            if problems.is_empty() {
                lines.push(format!(
                    "            receipt signature valid (signed by the executor {}), amount = price × usage",
                    r.executor
                ));
            }
            let json = json!({
                "valid": problems.is_empty(),
                "amount": r.amount,
                "sequence": r.sequence,
                "cumulative": r.cumulative,
                "executor": r.executor.to_string(),
                "requester": r.requester.to_string(),
                "note": verdict.note,
            });
            (problems, lines, json)
        }
        Err(e) => (
            vec![format!("receipt signature invalid: {e}")],
            Vec::new(),
            json!({"valid": false, "signer": signed.header.signer.to_string()}),
        ),
    };
    let mut json = json;
    json["problems"] = json!(problems);
    Ok(ReceiptCheck {
        json,
        lines,
        problems,
    })
}
