//! [`Store`] on sled: opening the database (schema version check, owner-only files), the
//! group-commit flusher, and the trait's methods handed to the trees of each kind of
//! record, one file each.

mod blobs;
mod codec;
mod event_log;
mod events;
mod executions;
mod flush;
pub use flush::FlushCounters;
mod outbox;
mod payloads;
mod processes;
mod recent;
mod services;
mod spill;

use crate::processes::{ProcessRecord, Run};
use crate::store::{
    ExecutionFilter, InstanceEntry, OutboxEntry, SCHEMA_VERSION, ServiceEntry, Store, StoreError,
};
use blobs::BlobTrees;
use event_log::EventLogTree;
use events::{EventTree, NonceTrees};
use executions::ExecutionTrees;
use flush::Flusher;
use futures::future::BoxFuture;
use mesg_protocol::envelope::Signed;
use mesg_protocol::{
    Event, Execution, ExecutionId, ExecutionRequest, ExecutionResult, Hash32, InstanceHash,
    PublicKey, ServiceHash,
};
use outbox::OutboxTree;
use processes::ProcessTrees;
use services::ServiceTrees;
use spill::Spill;
use std::path::Path;
use std::sync::Arc;

/// Size of sled's page cache. sled's default is 1 GiB, and the cache fills up to it as
/// the store grows (a node's RSS reached ~270 MiB over 100k executions). Nodes run on
/// small machines, often many of them side by side, so memory must stay bounded; the hot
/// set (live executions, recent indexes, the outbox) is small, and older records are read
/// rarely enough that going to the OS page cache for them costs nothing noticeable.
const STORE_CACHE_BYTES: u64 = 32 * 1024 * 1024;

const META_SCHEMA: &[u8] = b"schema_version";

/// How long opening waits for sled's file lock to be let go. Closing a store drops the
/// database, but sled's own background threads hold its files a moment longer; a node
/// restarted in the same process (tests, a supervisor) would otherwise fail to open the
/// store it just closed. Two nodes on one data dir never get here: the data dir's own
/// lock refuses the second one first.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        let opened = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(500))
            .cache_capacity(STORE_CACHE_BYTES)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return Ok(other?),
        }
    }
}

pub struct SledStore {
    db: sled::Db,
    meta: sled::Tree,
    services: ServiceTrees,
    executions: ExecutionTrees,
    outbox: OutboxTree,
    events: EventTree,
    event_log: EventLogTree,
    nonces: NonceTrees,
    processes: ProcessTrees,
    blobs: BlobTrees,
    spill: Arc<Spill>,
    flusher: Flusher,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

impl SledStore {
    /// Open (or create) the store at `path`. Must be called inside a tokio runtime: it
    /// spawns the group-commit flusher.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let db = open_db(path)?;
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
        let spill = Arc::new(Spill::open(path)?);
        Ok(SledStore {
            meta,
            services: ServiceTrees::open(&db)?,
            executions: ExecutionTrees::open(&db, spill.clone())?,
            outbox: OutboxTree::open(&db, spill.clone())?,
            events: EventTree::open(&db)?,
            event_log: EventLogTree::open(&db)?,
            nonces: NonceTrees::open(&db)?,
            processes: ProcessTrees::open(&db)?,
            blobs: BlobTrees::new(db.clone()),
            flusher: Flusher::spawn(db.clone(), spill.clone()),
            spill,
            db,
        })
    }

    /// Flush and close the database, waiting until its files are released (so the same
    /// path can be opened again, e.g. by a restarted node in the same process).
    pub async fn close(self) -> Result<(), StoreError> {
        self.flusher.stop().await;
        let doomed = self.spill.before_flush().map_err(|e| {
            StoreError::Encode(format!("cannot sync the spilled values' directory: {e}"))
        })?;
        self.db.flush_async().await?;
        doomed.iter().for_each(|p| spill::delete(p));
        Ok(())
    }

    /// Write a different schema version (tests of the version check).
    #[doc(hidden)]
    pub fn force_schema_version(&self, v: u32) -> Result<(), StoreError> {
        self.meta.insert(META_SCHEMA, &v.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }
}

impl Store for SledStore {
    fn tree(&self, name: &'static str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    fn persist(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flusher.persist()
    }

    fn flush_counters(&self) -> FlushCounters {
        self.flusher.counters()
    }

    fn put_service(&self, entry: &ServiceEntry) -> Result<(), StoreError> {
        self.services.put_service(entry)
    }

    fn service(&self, hash: &ServiceHash) -> Result<Option<ServiceEntry>, StoreError> {
        self.services.service(hash)
    }

    fn service_by_sid(&self, sid: &str) -> Result<Option<ServiceEntry>, StoreError> {
        self.services.service_by_sid(sid)
    }

    fn services(&self) -> Result<Vec<ServiceEntry>, StoreError> {
        self.services.services()
    }

    fn delete_service(&self, hash: &ServiceHash) -> Result<bool, StoreError> {
        self.services.delete_service(hash)
    }

    fn put_instance(&self, entry: &InstanceEntry) -> Result<(), StoreError> {
        self.services.put_instance(entry)
    }

    fn instance(&self, hash: &InstanceHash) -> Result<Option<InstanceEntry>, StoreError> {
        self.services.instance(hash)
    }

    fn instances(&self) -> Result<Vec<InstanceEntry>, StoreError> {
        self.services.instances()
    }

    fn delete_instance(&self, hash: &InstanceHash) -> Result<bool, StoreError> {
        self.services.delete_instance(hash)
    }

    fn insert_execution(
        &self,
        execution: &Execution,
        request: &Signed<ExecutionRequest>,
    ) -> Result<(), StoreError> {
        self.executions.insert(execution, request)
    }

    fn execution(&self, id: &ExecutionId) -> Result<Option<Execution>, StoreError> {
        self.executions.get(id)
    }

    fn request(&self, id: &ExecutionId) -> Result<Option<Signed<ExecutionRequest>>, StoreError> {
        self.executions.request(id)
    }

    fn update_execution(
        &self,
        id: &ExecutionId,
        change: &mut dyn FnMut(&mut Execution) -> Result<(), StoreError>,
    ) -> Result<Execution, StoreError> {
        self.executions.update(id, change)
    }

    fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, StoreError> {
        self.executions.list(filter)
    }

    fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError> {
        self.executions.unfinished()
    }

    fn prune_executions(
        &self,
        keep: usize,
        batch: usize,
        keyed_kept_since: u64,
    ) -> Result<usize, StoreError> {
        self.executions
            .prune(keep, batch, keyed_kept_since, |id| self.outbox.holds(id))
    }

    fn remove_execution(&self, id: &ExecutionId) -> Result<(), StoreError> {
        let Some(e) = self.executions.get(id)? else {
            return Ok(());
        };
        if !e.status.is_final() || self.outbox.holds(&id.0)? {
            return Err(StoreError::Encode(format!(
                "execution {id} is still running or owed to a node: not removed"
            )));
        }
        self.executions.remove(&e)
    }

    fn put_result(
        &self,
        result: &Signed<ExecutionResult>,
        id: &ExecutionId,
    ) -> Result<(), StoreError> {
        self.executions.put_result(result, id)
    }

    fn result(&self, id: &ExecutionId) -> Result<Option<Signed<ExecutionResult>>, StoreError> {
        self.executions.result(id)
    }

    fn put_outbox(&self, id: &ExecutionId, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.outbox.put(id, entry)
    }

    fn outbox_entry(
        &self,
        id: &ExecutionId,
        node: &PublicKey,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        self.outbox.entry(id, node)
    }

    fn remove_outbox(&self, id: &ExecutionId, node: &PublicKey) -> Result<(), StoreError> {
        self.outbox.remove(id, node)
    }

    fn add_owed_copy(
        &self,
        id: &ExecutionId,
        node: &PublicKey,
        request_digest: &Hash32,
    ) -> Result<(), StoreError> {
        self.outbox.add_copy(id, node, request_digest)
    }

    fn take_owed_copies(&self, id: &ExecutionId) -> Result<Vec<(PublicKey, Hash32)>, StoreError> {
        self.outbox.take_copies(id)
    }

    fn outbox(&self) -> Result<Vec<(ExecutionId, OutboxEntry)>, StoreError> {
        self.outbox.all()
    }

    fn put_event(&self, event: &Event, keep: usize) -> Result<(), StoreError> {
        self.events.put(event, keep)
    }

    fn recent_events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.events.recent(limit)
    }

    fn log_event(&self, event: &Event, signed: &Signed<Event>) -> Result<(), StoreError> {
        self.event_log.put(event, signed)
    }

    fn logged_events(
        &self,
        service: &ServiceHash,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Signed<Event>>, StoreError> {
        self.event_log.after(service, after, limit, max_bytes)
    }

    fn last_event_seq(&self, service: &ServiceHash) -> Result<u64, StoreError> {
        self.event_log.last_seq(service)
    }

    fn prune_event_log(&self, before: u64) -> Result<usize, StoreError> {
        self.event_log.prune(before)
    }

    fn record_nonce(
        &self,
        signer: &PublicKey,
        nonce: &[u8; 16],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        self.nonces.record(signer, nonce, expires_at)
    }

    fn purge_nonces(&self, now: u64) -> Result<usize, StoreError> {
        self.nonces.purge(now)
    }

    fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreError> {
        self.processes.put_process(record)
    }

    fn process(&self, id: &str) -> Result<Option<ProcessRecord>, StoreError> {
        self.processes.process(id)
    }

    fn processes(&self) -> Result<Vec<ProcessRecord>, StoreError> {
        self.processes.processes()
    }

    fn delete_process(&self, id: &str) -> Result<(), StoreError> {
        self.processes.delete_process(id)
    }

    fn put_run(&self, run: &Run) -> Result<(), StoreError> {
        self.processes.put_run(run)
    }

    fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        self.processes.run(id)
    }

    fn running_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.processes.running_runs()
    }

    fn process_runs(&self, process: &str, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.processes.process_runs(process, limit)
    }

    fn put_blob(&self, tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.blobs.put(tree, key, value)
    }

    fn blob(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.blobs.get(tree, key)
    }
}
