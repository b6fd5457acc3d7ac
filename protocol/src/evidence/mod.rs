//! Checking a signed result (and a priced execution's usage receipt) as evidence, after the fact: by the CLI (`mesg executions
//! verify`, anyone can re-check what a node says) and by the node (its
//! `/v1/executions/{id}/verification`), with the same rules and words.

use crate::economy::{MAX_RECEIPT_BYTES, UsageReceipt};
use crate::envelope::{Claims, EnvelopeError, Signed};
use crate::types::domains;
use crate::wire::MAX_WORK_MESSAGE;
use crate::{Execution, ExecutionResult, ExecutionStatus, Outcome};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The outcome of checking a signed result.
#[derive(Debug)]
pub struct Verdict<T = ExecutionResult> {
    pub result: Result<T, String>,
    /// Why the validity window did not hold now, when the signature still checks out.
    pub note: Option<String>,
}

/// Verify a signed result: version, domain, signature, and that the signer is the
/// executor the result names. A result is evidence kept after the fact: its validity
/// window limits replays on the wire, so when the window is over (or, with a skewed
/// clock, not begun), the signature is checked as of the time it was issued.
pub fn verify_result(signed: &Signed<ExecutionResult>, now: u64) -> Verdict {
    verify_evidence(signed, domains::EXECUTION_RESULT, MAX_WORK_MESSAGE, now)
}

/// Verify a signed usage receipt as evidence, as [`verify_result`] does a result: the
/// executor it names signed it, under the receipt domain.
pub fn verify_receipt(signed: &Signed<UsageReceipt>, now: u64) -> Verdict<UsageReceipt> {
    verify_evidence(signed, domains::RECEIPT, MAX_RECEIPT_BYTES, now)
}

fn verify_evidence<T: Serialize + DeserializeOwned + Claims>(
    signed: &Signed<T>,
    domain: &str,
    max: usize,
    now: u64,
) -> Verdict<T> {
    match signed.verify(domain, now, max) {
        Ok(r) => Verdict {
            result: Ok(r),
            note: None,
        },
        Err(e @ (EnvelopeError::Expired { .. } | EnvelopeError::NotYetValid { .. })) => {
            match signed.verify(domain, signed.header.issued_at, max) {
                Ok(r) => Verdict {
                    result: Ok(r),
                    note: Some(e.to_string()),
                },
                Err(e) => Verdict {
                    result: Err(e.to_string()),
                    note: None,
                },
            }
        }
        Err(e) => Verdict {
            result: Err(e.to_string()),
            note: None,
        },
    }
}

/// Where a (validly signed) receipt disagrees with the signed result it should charge for
/// and with the execution: another execution, executor or result, another service or task,
/// or an amount that is not the price applied to the usage within the request's cap
/// (integers, so it is recomputed exactly).
pub fn receipt_mismatches(
    receipt: &UsageReceipt,
    result: &Signed<ExecutionResult>,
    record: Option<&Execution>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(r) = result.payload_unverified(MAX_WORK_MESSAGE) {
        if receipt.execution_id != r.execution_id {
            out.push(format!(
                "the receipt charges for execution {}, not {}",
                receipt.execution_id, r.execution_id
            ));
        }
        if receipt.executor != r.executor {
            out.push(format!(
                "the receipt was signed by {}, but the result by {}",
                receipt.executor, r.executor
            ));
        }
        if receipt.service_hash != r.service_hash || receipt.task_key != r.task_key {
            out.push("the receipt names another service or task than the result".into());
        }
    }
    if receipt.result_digest != result.digest() {
        out.push("the receipt charges for another signed result than this one".into());
    }
    let cap = record.and_then(|e| e.max_price);
    match receipt.price.charge(&receipt.usage, cap) {
        Ok(amount) if amount == receipt.amount => {}
        Ok(amount) => out.push(format!(
            "the receipt charges {} µc, but its price applied to its usage{} is {amount} µc",
            receipt.amount,
            if cap.is_some() { " within the cap" } else { "" }
        )),
        Err(_) => out.push("the receipt's price applied to its usage overflows".into()),
    }
    if let Some(cap) = cap
        && receipt.amount > cap
    {
        out.push(format!(
            "the receipt charges {} µc, above the request's cap of {cap} µc",
            receipt.amount
        ));
    }
    out
}

/// Where a (valid) result disagrees with the execution it should answer.
pub fn mismatches(result: &ExecutionResult, id: &str, record: Option<&Execution>) -> Vec<String> {
    let mut out = Vec::new();
    if result.execution_id.to_string() != id {
        out.push(format!(
            "the result answers execution {}, not {id}",
            result.execution_id
        ));
    }
    if let Some(e) = record {
        if e.service_hash != result.service_hash || e.task_key != result.task_key {
            out.push("the result names another service or task than the execution".into());
        }
        if let Some(executor) = e.executor
            && executor != result.executor
        {
            out.push(format!(
                "the execution's executor is {executor}, but the result was signed by {}",
                result.executor
            ));
        }
        let outcome_status = match result.outcome {
            Outcome::Completed { .. } => ExecutionStatus::Completed,
            Outcome::Failed { .. } => ExecutionStatus::Failed,
        };
        if e.status.is_final() && e.status != outcome_status {
            out.push(format!(
                "the execution is {} but the signed outcome is {}",
                e.status, outcome_status
            ));
        }
    }
    out
}

mod verification;
pub use verification::check_verification;
