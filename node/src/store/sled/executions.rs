//! Executions: their records (payloads kept apart), signed requests and results, and the
//! index trees listings scan (by time, status, service, tag, parent).

use super::codec::{dec, enc};
use super::payloads::{IN_REQUEST, StoredExecution, join_outputs, split_payloads};
use super::recent::RecentInputs;
use super::spill::Spill;
use crate::store::{ExecutionFilter, StoreError};
use mesg_protocol::envelope::Signed;
use mesg_protocol::{
    Execution, ExecutionId, ExecutionRequest, ExecutionResult, ExecutionStatus, Json,
};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::sync::Arc;

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
    /// Inputs, outputs, requests and results of 64 KiB or more live in files.
    spill: Arc<Spill>,
    /// Large inputs parsed lately (they never change).
    recent: RecentInputs,
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
    pub(super) fn open(db: &sled::Db, spill: Arc<Spill>) -> Result<ExecutionTrees, StoreError> {
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
            spill,
            recent: RecentInputs::default(),
        })
    }

    fn load(&self, id_bytes: &[u8]) -> Result<Option<Execution>, StoreError> {
        let Some(v) = self.executions.get(id_bytes)? else {
            return Ok(None);
        };
        let mut e: Execution = dec("executions", &v)?;
        if let Some(i) = self.read(&self.inputs, "exec_inputs", id_bytes)? {
            e.inputs = self.inputs_from(id_bytes, i)?;
        }
        let outputs = self.read(&self.outputs, "exec_outputs", id_bytes)?;
        join_outputs(&mut e, outputs.as_deref())?;
        Ok(Some(e))
    }

    /// A value of a tree that may spill, from sled or its file.
    fn read(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        key: &[u8],
    ) -> Result<Option<super::spill::Loaded>, StoreError> {
        tree.get(key)?.map(|v| self.spill.load(name, v)).transpose()
    }

    pub(super) fn insert(
        &self,
        e: &Execution,
        request: &Signed<ExecutionRequest>,
    ) -> Result<(), StoreError> {
        let StoredExecution {
            record: value,
            outputs,
            ..
        } = split_payloads(e, false, true)?;
        let spilled = [
            self.stored_inputs(e, request)?,
            self.spill.store(enc(request)?)?,
            match outputs {
                Some(o) => self.spill.store(o)?,
                None => Vec::new(),
            },
        ];
        let inserted = self.insert_spilled(e, value, &spilled);
        match &inserted {
            // Parsed already: kept for the status changes to come (only once stored: an
            // id already taken keeps the inputs it has).
            Ok(()) if spilled[0] == IN_REQUEST => {
                self.recent.keep(e.id, &e.inputs, request.payload.0.len());
            }
            Ok(()) => {}
            Err(_) => spilled.iter().for_each(|v| self.spill.discard(v)),
        }
        inserted
    }

    /// What `exec_inputs` holds for `e`: [`IN_REQUEST`] when its inputs are large and
    /// those of its signed request (stored beside it), else their encoding, spilled
    /// when large. A large payload is then written once, not twice.
    fn stored_inputs(
        &self,
        e: &Execution,
        request: &Signed<ExecutionRequest>,
    ) -> Result<Vec<u8>, StoreError> {
        if request.payload.0.len() >= super::spill::SPILL_AT
            && request
                .payload_unverified(super::codec::MAX_RECORD)
                .is_ok_and(|r| r.inputs == e.inputs)
        {
            return Ok(IN_REQUEST.to_vec());
        }
        self.spill.store(enc(&e.inputs)?)
    }

    /// The inputs `exec_inputs` holds as `stored` for execution `id`.
    fn inputs_from(&self, id: &[u8], stored: super::spill::Loaded) -> Result<Json, StoreError> {
        if &*stored != IN_REQUEST {
            return dec("exec_inputs", &stored);
        }
        let id_key = ExecutionId(id.try_into().map_err(|_| StoreError::Corrupt {
            tree: "exec_inputs",
            message: "key is not an execution id".into(),
        })?);
        if let Some(inputs) = self.recent.get(&id_key) {
            return Ok(inputs);
        }
        let request: Signed<ExecutionRequest> = match self.read(&self.requests, "requests", id)? {
            Some(v) => dec("requests", &v)?,
            None => {
                return Err(StoreError::Corrupt {
                    tree: "exec_inputs",
                    message: "inputs kept in a request that is not stored".into(),
                });
            }
        };
        let inputs = request
            .payload_unverified(super::codec::MAX_RECORD)
            .map(|r| r.inputs)
            .map_err(|e| StoreError::Corrupt {
                tree: "requests",
                message: e.to_string(),
            })?;
        self.recent.keep(id_key, &inputs, request.payload.0.len());
        Ok(inputs)
    }

    fn insert_spilled(
        &self,
        e: &Execution,
        value: Vec<u8>,
        [inputs, req, outputs]: &[Vec<u8>; 3],
    ) -> Result<(), StoreError> {
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
                if !outputs.is_empty() {
                    eo.insert(&id.0, outputs.as_slice())?;
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
        match self.read(&self.requests, "requests", &id.0)? {
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
        // Inputs kept in the request are read before the transaction: a read of another
        // tree inside it would wait for the transaction's own lock. They never change.
        let in_request = match self.inputs.get(id.0)? {
            Some(v) if &*v == IN_REQUEST => {
                Some(self.inputs_from(&id.0, super::spill::Loaded::Inline(v))?)
            }
            _ => None,
        };
        let change = std::cell::RefCell::new(change);
        // Outputs spilled by an attempt of the transaction (sled may run it again).
        let spilled = std::cell::RefCell::new(Vec::<Vec<u8>>::new());
        let trees = (
            &self.executions,
            &self.by_status,
            &self.inputs,
            &self.outputs,
        );
        let updated = tx_result(trees.transaction(|(ex, bs, ei, eo)| {
            let Some(bytes) = ex.get(id.0)? else {
                return Err(tx_abort(StoreError::UnknownExecution(id)));
            };
            let mut e: Execution = dec("executions", &bytes).map_err(tx_abort)?;
            let stored_inputs = match ei.get(id.0)? {
                Some(v) => {
                    e.inputs = match &in_request {
                        Some(inputs) if &*v == IN_REQUEST => inputs.clone(),
                        None if &*v == IN_REQUEST => {
                            return Err(tx_abort(StoreError::Corrupt {
                                tree: "exec_inputs",
                                message: "inputs kept in a request that is not stored".into(),
                            }));
                        }
                        _ => {
                            let loaded = self.spill.load("exec_inputs", v).map_err(tx_abort)?;
                            dec("exec_inputs", &loaded).map_err(tx_abort)?
                        }
                    };
                    Some(())
                }
                None => None,
            };
            let stored_outputs = match eo.get(id.0)? {
                Some(v) => Some(self.spill.load("exec_outputs", v).map_err(tx_abort)?),
                None => None,
            };
            join_outputs(&mut e, stored_outputs.as_deref()).map_err(tx_abort)?;
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
            } = split_payloads(&e, stored_inputs.is_none(), stored_outputs.is_none())
                .map_err(tx_abort)?;
            ex.insert(&id.0, record)?;
            // Inputs never change; outputs are set once, when the execution completes.
            // A record from before payloads were kept apart gets its entries now.
            if let Some(i) = inputs {
                ei.insert(&id.0, i)?;
            }
            if let Some(o) = outputs {
                let o = self.spill.store(o).map_err(tx_abort)?;
                spilled.borrow_mut().push(o.clone());
                eo.insert(&id.0, o)?;
            }
            Ok(e)
        }));
        // Keep the file of the attempt that committed; drop the others'.
        let mut spilled = spilled.into_inner();
        if updated.as_ref().is_ok_and(|e| e.outputs.is_some()) {
            let kept = self.outputs.get(id.0)?;
            spilled.retain(|v| kept.as_deref() != Some(v.as_slice()));
        }
        spilled.iter().for_each(|v| self.spill.discard(v));
        updated
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
        // The files of its payloads go once the removal is flushed.
        let mut stored = Vec::new();
        for tree in [&self.inputs, &self.outputs, &self.requests, &self.results] {
            stored.extend(tree.get(id.0)?);
        }
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
        stored.iter().for_each(|v| self.spill.doom(v));
        self.recent.forget(&id);
        Ok(())
    }

    pub(super) fn put_result(
        &self,
        result: &Signed<ExecutionResult>,
        id: &ExecutionId,
    ) -> Result<(), StoreError> {
        let stored = self.spill.store(enc(result)?)?;
        match self.results.insert(id.0, stored.as_slice()) {
            Ok(Some(old)) => self.spill.doom(&old),
            Ok(None) => {}
            Err(e) => {
                self.spill.discard(&stored);
                return Err(e.into());
            }
        }
        Ok(())
    }

    pub(super) fn result(
        &self,
        id: &ExecutionId,
    ) -> Result<Option<Signed<ExecutionResult>>, StoreError> {
        match self.read(&self.results, "results", &id.0)? {
            Some(v) => Ok(Some(dec("results", &v)?)),
            None => Ok(None),
        }
    }
}
