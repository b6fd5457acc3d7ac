//! Executions: their records (payloads kept apart), signed requests and results, and the
//! index trees listings scan (by time, status, service, tag, parent).

use super::codec::{dec, enc};
use crate::store::{ExecutionFilter, StoreError};
use mesg_protocol::envelope::Signed;
use mesg_protocol::{Execution, ExecutionId, ExecutionRequest, ExecutionResult, ExecutionStatus};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// The execution trees.
#[derive(Debug)]
pub(super) struct ExecutionTrees {
    /// Execution records without their payloads (see [`split_payloads`]).
    executions: sled::Tree,
    /// Inputs of each execution, written once when it is recorded.
    inputs: sled::Tree,
    /// Outputs of each completed execution, written once when it completes.
    outputs: sled::Tree,
    requests: sled::Tree,
    results: sled::Tree,
    by_time: sled::Tree,
    by_status: sled::Tree,
    by_service: sled::Tree,
    by_tag: sled::Tree,
    by_parent: sled::Tree,
}

fn status_byte(s: ExecutionStatus) -> u8 {
    match s {
        ExecutionStatus::Created => 0,
        ExecutionStatus::InProgress => 1,
        ExecutionStatus::Completed => 2,
        ExecutionStatus::Failed => 3,
    }
}

/// `[prefix][created_at be][id]`: every index key ends with the time and the id so that a
/// prefix scan is in creation order.
fn index_key(prefix: &[u8], created_at: u64, id: &ExecutionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 24);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&created_at.to_be_bytes());
    k.extend_from_slice(&id.0);
    k
}

/// The keys of one execution in the index trees (the status one for its current status).
struct IndexKeys {
    time: Vec<u8>,
    status: Vec<u8>,
    service: Vec<u8>,
    tags: Vec<Vec<u8>>,
    parent: Option<Vec<u8>>,
}

impl IndexKeys {
    fn of(e: &Execution) -> IndexKeys {
        let (t, id) = (e.created_at, &e.id);
        IndexKeys {
            time: index_key(&[], t, id),
            status: index_key(&[status_byte(e.status)], t, id),
            service: index_key(e.service_hash.as_bytes(), t, id),
            tags: e
                .tags
                .iter()
                .map(|tag| index_key(&tag_prefix(tag), t, id))
                .collect(),
            parent: e.parent.map(|p| index_key(&p.0, t, id)),
        }
    }
}

fn tag_prefix(tag: &str) -> Vec<u8> {
    // 0xff never occurs in UTF-8, so it ends the tag unambiguously.
    let mut p = tag.as_bytes().to_vec();
    p.push(0xff);
    p
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// An execution as stored: the record without its inputs and outputs, which are kept
/// apart and written once each, so the status changes of an execution with large
/// payloads rewrite a few hundred bytes instead of the payloads.
struct StoredExecution {
    record: Vec<u8>,
    inputs: Vec<u8>,
    outputs: Option<Vec<u8>>,
}

fn split_payloads(e: &Execution) -> Result<StoredExecution, StoreError> {
    // Field by field, so the payloads are not copied only to be dropped.
    let head = Execution {
        id: e.id,
        service_hash: e.service_hash,
        task_key: e.task_key.clone(),
        inputs: mesg_protocol::Json::null(),
        requester: e.requester,
        requester_node: e.requester_node,
        executor: e.executor,
        instance_hash: e.instance_hash,
        status: e.status,
        outputs: None,
        error: e.error.clone(),
        parent: e.parent,
        process: e.process.clone(),
        tags: e.tags.clone(),
        timeout_ms: e.timeout_ms,
        created_at: e.created_at,
        started_at: e.started_at,
        finished_at: e.finished_at,
        idempotency_key: e.idempotency_key.clone(),
        cause: e.cause,
        max_price: e.max_price,
        cost: e.cost,
    };
    let outputs = e.outputs.as_ref().map(enc).transpose()?;
    Ok(StoredExecution {
        record: enc(&head)?,
        inputs: enc(&e.inputs)?,
        outputs,
    })
}

/// Put the payloads back into a stored record. A record written before payloads were kept
/// apart still holds them itself: then there is no separate entry and it stays as it is.
fn join_payloads(
    e: &mut Execution,
    inputs: Option<&[u8]>,
    outputs: Option<&[u8]>,
) -> Result<(), StoreError> {
    if let Some(b) = inputs {
        e.inputs = dec("exec_inputs", b)?;
    }
    if let Some(b) = outputs {
        e.outputs = Some(dec("exec_outputs", b)?);
    }
    Ok(())
}

fn tx_abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn tx_result<T>(r: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(StoreError::Db(e)),
    }
}

impl ExecutionTrees {
    pub(super) fn open(db: &sled::Db) -> Result<ExecutionTrees, StoreError> {
        Ok(ExecutionTrees {
            executions: db.open_tree("executions")?,
            inputs: db.open_tree("exec_inputs")?,
            outputs: db.open_tree("exec_outputs")?,
            requests: db.open_tree("requests")?,
            results: db.open_tree("results")?,
            by_time: db.open_tree("exec_by_time")?,
            by_status: db.open_tree("exec_by_status")?,
            by_service: db.open_tree("exec_by_service")?,
            by_tag: db.open_tree("exec_by_tag")?,
            by_parent: db.open_tree("exec_by_parent")?,
        })
    }

    fn load(&self, id_bytes: &[u8]) -> Result<Option<Execution>, StoreError> {
        let Some(v) = self.executions.get(id_bytes)? else {
            return Ok(None);
        };
        let mut e: Execution = dec("executions", &v)?;
        let inputs = self.inputs.get(id_bytes)?;
        let outputs = self.outputs.get(id_bytes)?;
        join_payloads(&mut e, inputs.as_deref(), outputs.as_deref())?;
        Ok(Some(e))
    }

    pub(super) fn insert(
        &self,
        e: &Execution,
        request: &Signed<ExecutionRequest>,
    ) -> Result<(), StoreError> {
        let StoredExecution {
            record: value,
            inputs,
            outputs,
        } = split_payloads(e)?;
        let req = enc(request)?;
        let id = e.id;
        let keys = IndexKeys::of(e);
        let trees = (
            &self.executions,
            &self.requests,
            &self.by_time,
            &self.by_status,
            &self.by_service,
            &self.by_tag,
            &self.by_parent,
            &self.inputs,
            &self.outputs,
        );
        tx_result(
            trees.transaction(|(ex, rq, bt, bs, bsv, btag, bp, ei, eo)| {
                if ex.get(id.0)?.is_some() {
                    return Err(tx_abort(StoreError::ExecutionExists(id)));
                }
                ex.insert(&id.0, value.as_slice())?;
                ei.insert(&id.0, inputs.as_slice())?;
                if let Some(o) = &outputs {
                    eo.insert(&id.0, o.as_slice())?;
                }
                rq.insert(&id.0, req.as_slice())?;
                bt.insert(keys.time.as_slice(), &[])?;
                bs.insert(keys.status.as_slice(), &[])?;
                bsv.insert(keys.service.as_slice(), &[])?;
                for k in &keys.tags {
                    btag.insert(k.as_slice(), &[])?;
                }
                if let Some(k) = &keys.parent {
                    bp.insert(k.as_slice(), &[])?;
                }
                Ok(())
            }),
        )
    }

    pub(super) fn get(&self, id: &ExecutionId) -> Result<Option<Execution>, StoreError> {
        self.load(&id.0)
    }

    pub(super) fn request(
        &self,
        id: &ExecutionId,
    ) -> Result<Option<Signed<ExecutionRequest>>, StoreError> {
        match self.requests.get(id.0)? {
            Some(v) => Ok(Some(dec("requests", &v)?)),
            None => Ok(None),
        }
    }

    pub(super) fn update(
        &self,
        id: &ExecutionId,
        change: &mut dyn FnMut(&mut Execution) -> Result<(), StoreError>,
    ) -> Result<Execution, StoreError> {
        let id = *id;
        let change = std::cell::RefCell::new(change);
        let trees = (
            &self.executions,
            &self.by_status,
            &self.inputs,
            &self.outputs,
        );
        tx_result(trees.transaction(|(ex, bs, ei, eo)| {
            let Some(bytes) = ex.get(id.0)? else {
                return Err(tx_abort(StoreError::UnknownExecution(id)));
            };
            let mut e: Execution = dec("executions", &bytes).map_err(tx_abort)?;
            let stored_inputs = ei.get(id.0)?;
            let stored_outputs = eo.get(id.0)?;
            join_payloads(&mut e, stored_inputs.as_deref(), stored_outputs.as_deref())
                .map_err(tx_abort)?;
            let before = e.status;
            (change.borrow_mut())(&mut e).map_err(tx_abort)?;
            if e.status != before {
                bs.remove(index_key(&[status_byte(before)], e.created_at, &id))?;
                bs.insert(index_key(&[status_byte(e.status)], e.created_at, &id), &[])?;
            }
            let StoredExecution {
                record,
                inputs,
                outputs,
            } = split_payloads(&e).map_err(tx_abort)?;
            ex.insert(&id.0, record)?;
            // Inputs never change; outputs are set once, when the execution completes.
            // A record from before payloads were kept apart gets its entries now.
            if stored_inputs.is_none() {
                ei.insert(&id.0, inputs)?;
            }
            if let Some(o) = outputs
                && stored_outputs.is_none()
            {
                eo.insert(&id.0, o)?;
            }
            Ok(e)
        }))
    }

    pub(super) fn list(&self, f: &ExecutionFilter) -> Result<Vec<Execution>, StoreError> {
        // Scan the most selective index; check the other filters on each record.
        let (tree, prefix) = if let Some(p) = &f.parent {
            (&self.by_parent, p.0.to_vec())
        } else if let Some(t) = &f.tag {
            (&self.by_tag, tag_prefix(t))
        } else if let Some(s) = &f.service {
            (&self.by_service, s.as_bytes().to_vec())
        } else if let Some(s) = f.status {
            (&self.by_status, vec![status_byte(s)])
        } else {
            (&self.by_time, Vec::new())
        };
        let upper = match &f.before {
            Some((t, id)) => Some(index_key(&prefix, *t, id)),
            None => prefix_end(&prefix),
        };
        let iter = match upper {
            Some(u) => tree.range(prefix.clone()..u),
            None => tree.range(prefix.clone()..),
        };
        let limit = f.limit.max(1);
        let mut out = Vec::new();
        for item in iter.rev() {
            let (k, _) = item?;
            if k.len() < 16 {
                continue;
            }
            let Some(e) = self.load(&k[k.len() - 16..])? else {
                continue;
            };
            let keep = f.status.is_none_or(|s| e.status == s)
                && f.service.is_none_or(|s| e.service_hash == s)
                && f.tag.as_ref().is_none_or(|t| e.tags.contains(t))
                && f.parent.is_none_or(|p| e.parent == Some(p))
                && f.task.as_ref().is_none_or(|t| &e.task_key == t);
            if keep {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(super) fn unfinished(&self) -> Result<Vec<Execution>, StoreError> {
        let mut out = Vec::new();
        for status in [ExecutionStatus::Created, ExecutionStatus::InProgress] {
            for item in self.by_status.scan_prefix([status_byte(status)]) {
                let (k, _) = item?;
                if let Some(e) = self.load(&k[k.len() - 16..])? {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// Remove the oldest finished executions beyond `keep`, at most `batch`; those for
    /// which `owed` answers true (a result still in the outbox), and those created with an
    /// idempotency key at or after `keyed_kept_since` (the key is still live), are kept.
    pub(super) fn prune(
        &self,
        keep: usize,
        batch: usize,
        keyed_kept_since: u64,
        owed: impl Fn(&[u8]) -> Result<bool, StoreError>,
    ) -> Result<usize, StoreError> {
        // `by_time` holds one key per execution, oldest first.
        let total = self.by_time.len();
        let mut excess = total.saturating_sub(keep).min(batch);
        let mut removed = 0;
        let mut keys = self.by_time.iter().keys();
        while excess > 0 {
            let Some(key) = keys.next() else { break };
            let key = key?;
            if key.len() < 16 {
                continue;
            }
            let id_bytes = &key[key.len() - 16..];
            // The record alone says whether it may go: its payloads are not read.
            let Some(record) = self.executions.get(id_bytes)? else {
                // An index entry without its record: drop it, it counts for nothing.
                self.by_time.remove(&key)?;
                continue;
            };
            let e: Execution = dec("executions", &record)?;
            if !e.status.is_final() || owed(id_bytes)? {
                continue;
            }
            if e.idempotency_key.is_some() && e.created_at >= keyed_kept_since {
                continue;
            }
            self.remove(&e)?;
            removed += 1;
            excess -= 1;
        }
        Ok(removed)
    }

    /// Remove one execution with its payloads, request, result and index entries.
    pub(super) fn remove(&self, e: &Execution) -> Result<(), StoreError> {
        let id = e.id;
        let keys = IndexKeys::of(e);
        let trees = (
            &self.executions,
            &self.requests,
            &self.results,
            &self.by_time,
            &self.by_status,
            &self.by_service,
            &self.by_tag,
            &self.by_parent,
            &self.inputs,
            &self.outputs,
        );
        tx_result(
            trees.transaction(|(ex, rq, rs, bt, bs, bsv, btag, bp, ei, eo)| {
                ex.remove(&id.0)?;
                ei.remove(&id.0)?;
                eo.remove(&id.0)?;
                rq.remove(&id.0)?;
                rs.remove(&id.0)?;
                bt.remove(keys.time.as_slice())?;
                bs.remove(keys.status.as_slice())?;
                bsv.remove(keys.service.as_slice())?;
                for k in &keys.tags {
                    btag.remove(k.as_slice())?;
                }
                if let Some(k) = &keys.parent {
                    bp.remove(k.as_slice())?;
                }
                Ok(())
            }),
        )?;
        Ok(())
    }

    pub(super) fn put_result(
        &self,
        result: &Signed<ExecutionResult>,
        id: &ExecutionId,
    ) -> Result<(), StoreError> {
        self.results.insert(id.0, enc(result)?)?;
        Ok(())
    }

    pub(super) fn result(
        &self,
        id: &ExecutionId,
    ) -> Result<Option<Signed<ExecutionResult>>, StoreError> {
        match self.results.get(id.0)? {
            Some(v) => Ok(Some(dec("results", &v)?)),
            None => Ok(None),
        }
    }
}
