//! [`Store`] on sled.

use super::*;
use futures::FutureExt;
use mesg_protocol::wire;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Cap on one stored record (an execution with large inputs and outputs).
const MAX_RECORD: usize = 64 * 1024 * 1024;

/// Size of sled's page cache. sled's default is 1 GiB, and the cache fills up to it as
/// the store grows (a node's RSS reached ~270 MiB over 100k executions). Nodes run on
/// small machines, often many of them side by side, so memory must stay bounded; the hot
/// set (live executions, recent indexes, the outbox) is small, and older records are read
/// rarely enough that going to the OS page cache for them costs nothing noticeable.
const STORE_CACHE_BYTES: u64 = 32 * 1024 * 1024;

const META_SCHEMA: &[u8] = b"schema_version";

pub struct SledStore {
    db: sled::Db,
    meta: sled::Tree,
    services: sled::Tree,
    sids: sled::Tree,
    instances: sled::Tree,
    /// Execution records without their payloads (see [`split_payloads`]).
    executions: sled::Tree,
    /// Inputs of each execution, written once when it is recorded.
    exec_inputs: sled::Tree,
    /// Outputs of each completed execution, written once when it completes.
    exec_outputs: sled::Tree,
    requests: sled::Tree,
    results: sled::Tree,
    by_time: sled::Tree,
    by_status: sled::Tree,
    by_service: sled::Tree,
    by_tag: sled::Tree,
    by_parent: sled::Tree,
    outbox: sled::Tree,
    events: sled::Tree,
    nonces: sled::Tree,
    nonce_expiry: sled::Tree,
    flush: mpsc::Sender<oneshot::Sender<Result<(), String>>>,
    flusher: tokio::task::JoinHandle<()>,
    event_inserts: Arc<AtomicU64>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    wire::encode(v, MAX_RECORD).map_err(|e| StoreError::Encode(e.to_string()))
}

fn dec<T: serde::de::DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    wire::decode(bytes, MAX_RECORD).map_err(|e| StoreError::Corrupt {
        tree,
        message: e.to_string(),
    })
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

/// How many times the group-commit flusher yields to ready tasks before it flushes.
const FLUSH_GATHER_YIELDS: usize = 3;

impl SledStore {
    /// Open (or create) the store at `path`. Must be called inside a tokio runtime: it
    /// spawns the group-commit flusher.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(500))
            .cache_capacity(STORE_CACHE_BYTES)
            .open()?;
        // sled creates its files with the process umask (usually 0644): the store holds
        // instance tokens, so owner only (new files land in the 0700 directory).
        crate::datadir::restrict_tree(path).map_err(|e| {
            StoreError::Encode(format!(
                "cannot restrict {} to its owner: {e}",
                path.display()
            ))
        })?;
        let meta = db.open_tree("meta")?;
        match meta.get(META_SCHEMA)? {
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaVersion {
                        path: path.display().to_string(),
                        found,
                    });
                }
            }
            None => {
                meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<Result<(), String>>>(4096);
        let flush_db = db.clone();
        let flusher = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Everyone already waiting shares this flush: their writes happened before
                // they asked, so before the flush starts.
                let mut waiters = vec![first];
                // Let the tasks that are ready run first: under load, more writers ask
                // for a flush within microseconds and share this one. When nothing else
                // is ready, the yields return at once and a lone writer does not wait.
                for _ in 0..FLUSH_GATHER_YIELDS {
                    while let Ok(w) = rx.try_recv() {
                        waiters.push(w);
                    }
                    tokio::task::yield_now().await;
                }
                while let Ok(w) = rx.try_recv() {
                    waiters.push(w);
                }
                let result = flush_db
                    .flush_async()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        Ok(SledStore {
            meta,
            services: db.open_tree("services")?,
            sids: db.open_tree("sids")?,
            instances: db.open_tree("instances")?,
            executions: db.open_tree("executions")?,
            exec_inputs: db.open_tree("exec_inputs")?,
            exec_outputs: db.open_tree("exec_outputs")?,
            requests: db.open_tree("requests")?,
            results: db.open_tree("results")?,
            by_time: db.open_tree("exec_by_time")?,
            by_status: db.open_tree("exec_by_status")?,
            by_service: db.open_tree("exec_by_service")?,
            by_tag: db.open_tree("exec_by_tag")?,
            by_parent: db.open_tree("exec_by_parent")?,
            outbox: db.open_tree("outbox")?,
            events: db.open_tree("events")?,
            nonces: db.open_tree("nonces")?,
            nonce_expiry: db.open_tree("nonce_expiry")?,
            db,
            flush: tx,
            flusher,
            event_inserts: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Flush and close the database, waiting until its files are released (so the same
    /// path can be opened again, e.g. by a restarted node in the same process).
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        let SledStore { flush, flusher, .. } = self;
        drop(flush);
        let _ = flusher.await;
        Ok(())
    }

    /// Write a different schema version (tests of the version check).
    #[doc(hidden)]
    pub fn force_schema_version(&self, v: u32) -> Result<(), StoreError> {
        self.meta.insert(META_SCHEMA, &v.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    fn tree(&self, name: &'static str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(format!("blob:{name}"))?)
    }

    fn load_execution(&self, id_bytes: &[u8]) -> Result<Option<Execution>, StoreError> {
        let Some(v) = self.executions.get(id_bytes)? else {
            return Ok(None);
        };
        let mut e: Execution = dec("executions", &v)?;
        let inputs = self.exec_inputs.get(id_bytes)?;
        let outputs = self.exec_outputs.get(id_bytes)?;
        join_payloads(&mut e, inputs.as_deref(), outputs.as_deref())?;
        Ok(Some(e))
    }
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

impl Store for SledStore {
    fn persist(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let tx = self.flush.clone();
        async move {
            let (done, wait) = oneshot::channel();
            tx.send(done).await.map_err(|_| StoreError::FlusherGone)?;
            wait.await
                .map_err(|_| StoreError::FlusherGone)?
                .map_err(|e| StoreError::Db(sled::Error::Io(std::io::Error::other(e))))
        }
        .boxed()
    }

    fn put_service(&self, entry: &ServiceEntry) -> Result<(), StoreError> {
        let hash = entry.record.service_hash;
        self.services.insert(hash.as_bytes(), enc(entry)?)?;
        if let Some(sid) = &entry.record.definition.sid {
            self.sids.insert(sid.as_bytes(), hash.as_bytes())?;
        }
        Ok(())
    }

    fn service(&self, hash: &ServiceHash) -> Result<Option<ServiceEntry>, StoreError> {
        match self.services.get(hash.as_bytes())? {
            Some(v) => Ok(Some(dec("services", &v)?)),
            None => Ok(None),
        }
    }

    fn service_by_sid(&self, sid: &str) -> Result<Option<ServiceEntry>, StoreError> {
        let Some(h) = self.sids.get(sid.to_ascii_lowercase().as_bytes())? else {
            return Ok(None);
        };
        let arr: [u8; 32] = h.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            tree: "sids",
            message: "hash is not 32 bytes".into(),
        })?;
        self.service(&ServiceHash(mesg_protocol::Hash32(arr)))
    }

    fn services(&self) -> Result<Vec<ServiceEntry>, StoreError> {
        self.services
            .iter()
            .map(|r| {
                let (_, v) = r?;
                dec("services", &v)
            })
            .collect()
    }

    fn delete_service(&self, hash: &ServiceHash) -> Result<bool, StoreError> {
        let Some(old) = self.service(hash)? else {
            return Ok(false);
        };
        self.services.remove(hash.as_bytes())?;
        if let Some(sid) = &old.record.definition.sid
            && self.sids.get(sid.as_bytes())?.as_deref() == Some(hash.as_bytes().as_slice())
        {
            self.sids.remove(sid.as_bytes())?;
        }
        Ok(true)
    }

    fn put_instance(&self, entry: &InstanceEntry) -> Result<(), StoreError> {
        self.instances
            .insert(entry.instance_hash.as_bytes(), enc(entry)?)?;
        Ok(())
    }

    fn instance(&self, hash: &InstanceHash) -> Result<Option<InstanceEntry>, StoreError> {
        match self.instances.get(hash.as_bytes())? {
            Some(v) => Ok(Some(dec("instances", &v)?)),
            None => Ok(None),
        }
    }

    fn instances(&self) -> Result<Vec<InstanceEntry>, StoreError> {
        self.instances
            .iter()
            .map(|r| {
                let (_, v) = r?;
                dec("instances", &v)
            })
            .collect()
    }

    fn delete_instance(&self, hash: &InstanceHash) -> Result<bool, StoreError> {
        Ok(self.instances.remove(hash.as_bytes())?.is_some())
    }

    fn insert_execution(
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
            &self.exec_inputs,
            &self.exec_outputs,
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

    fn execution(&self, id: &ExecutionId) -> Result<Option<Execution>, StoreError> {
        self.load_execution(&id.0)
    }

    fn request(&self, id: &ExecutionId) -> Result<Option<Signed<ExecutionRequest>>, StoreError> {
        match self.requests.get(id.0)? {
            Some(v) => Ok(Some(dec("requests", &v)?)),
            None => Ok(None),
        }
    }

    fn update_execution(
        &self,
        id: &ExecutionId,
        change: &mut dyn FnMut(&mut Execution) -> Result<(), StoreError>,
    ) -> Result<Execution, StoreError> {
        let id = *id;
        let change = std::cell::RefCell::new(change);
        let trees = (
            &self.executions,
            &self.by_status,
            &self.exec_inputs,
            &self.exec_outputs,
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

    fn list_executions(&self, f: &ExecutionFilter) -> Result<Vec<Execution>, StoreError> {
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
            let Some(e) = self.load_execution(&k[k.len() - 16..])? else {
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

    fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError> {
        let mut out = Vec::new();
        for status in [ExecutionStatus::Created, ExecutionStatus::InProgress] {
            for item in self.by_status.scan_prefix([status_byte(status)]) {
                let (k, _) = item?;
                if let Some(e) = self.load_execution(&k[k.len() - 16..])? {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    fn prune_executions(&self, keep: usize, batch: usize) -> Result<usize, StoreError> {
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
            if !e.status.is_final() || self.outbox.contains_key(id_bytes)? {
                continue;
            }
            let id = e.id;
            let keys = IndexKeys::of(&e);
            let trees = (
                &self.executions,
                &self.requests,
                &self.results,
                &self.by_time,
                &self.by_status,
                &self.by_service,
                &self.by_tag,
                &self.by_parent,
                &self.exec_inputs,
                &self.exec_outputs,
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
            removed += 1;
            excess -= 1;
        }
        Ok(removed)
    }

    fn put_result(
        &self,
        result: &Signed<ExecutionResult>,
        id: &ExecutionId,
    ) -> Result<(), StoreError> {
        self.results.insert(id.0, enc(result)?)?;
        Ok(())
    }

    fn result(&self, id: &ExecutionId) -> Result<Option<Signed<ExecutionResult>>, StoreError> {
        match self.results.get(id.0)? {
            Some(v) => Ok(Some(dec("results", &v)?)),
            None => Ok(None),
        }
    }

    fn outbox_entry(&self, id: &ExecutionId) -> Result<Option<OutboxEntry>, StoreError> {
        match self.outbox.get(id.0)? {
            Some(v) => Ok(Some(dec("outbox", &v)?)),
            None => Ok(None),
        }
    }

    fn put_outbox(&self, id: &ExecutionId, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.outbox.insert(id.0, enc(entry)?)?;
        Ok(())
    }

    fn remove_outbox(&self, id: &ExecutionId) -> Result<(), StoreError> {
        self.outbox.remove(id.0)?;
        Ok(())
    }

    fn outbox(&self) -> Result<Vec<(ExecutionId, OutboxEntry)>, StoreError> {
        self.outbox
            .iter()
            .map(|r| {
                let (k, v) = r?;
                let id: [u8; 16] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: "outbox",
                    message: "key is not an execution id".into(),
                })?;
                Ok((ExecutionId(id), dec("outbox", &v)?))
            })
            .collect()
    }

    fn put_event(&self, event: &Event, keep: usize) -> Result<(), StoreError> {
        let mut key = event.created_at.to_be_bytes().to_vec();
        key.extend_from_slice(&event.id.0);
        self.events.insert(key, enc(event)?)?;
        // Trim now and then rather than on every insert: counting a sled tree is a scan.
        if self.event_inserts.fetch_add(1, Ordering::Relaxed) % 256 == 255 {
            let len = self.events.len();
            if len > keep {
                for item in self.events.iter().take(len - keep) {
                    let (k, _) = item?;
                    self.events.remove(k)?;
                }
            }
        }
        Ok(())
    }

    fn recent_events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.events
            .iter()
            .rev()
            .take(limit)
            .map(|r| {
                let (_, v) = r?;
                dec("events", &v)
            })
            .collect()
    }

    fn record_nonce(
        &self,
        signer: &PublicKey,
        nonce: &[u8; 16],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let mut key = signer.0.to_vec();
        key.extend_from_slice(nonce);
        let fresh = self
            .nonces
            .compare_and_swap(&key, None as Option<&[u8]>, Some(&expires_at.to_be_bytes()))?
            .is_ok();
        if fresh {
            let mut exp = expires_at.to_be_bytes().to_vec();
            exp.extend_from_slice(&key);
            self.nonce_expiry.insert(exp, &[])?;
        }
        Ok(fresh)
    }

    fn purge_nonces(&self, now: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.nonce_expiry.range(..now.to_be_bytes().to_vec()) {
            let (k, _) = item?;
            self.nonces.remove(&k[8..])?;
            self.nonce_expiry.remove(&k)?;
            n += 1;
        }
        Ok(n)
    }

    fn put_blob(&self, tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)?.insert(key, value)?;
        Ok(())
    }

    fn blob(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(tree)?.get(key)?.map(|v| v.to_vec()))
    }

    fn blobs(&self, tree: &'static str) -> Result<Vec<KeyValue>, StoreError> {
        self.tree(tree)?
            .iter()
            .map(|r| {
                let (k, v) = r?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn delete_blob(&self, tree: &'static str, key: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)?.remove(key)?;
        Ok(())
    }
}
