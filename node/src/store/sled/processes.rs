//! Processes and their runs.
//!
//! These trees were written through the store's generic blob trees before they had their
//! own methods: they keep the `blob:` tree names, the JSON encoding and the key layout of
//! that time, so a data dir written then reads unchanged.

use crate::processes::{ProcessRecord, Run, RunStatus};
use crate::store::StoreError;

/// Process records (JSON), by process id.
const PROCESSES: &str = "blob:processes";
/// Runs (JSON), by run id.
const RUNS: &str = "blob:runs";
/// Index of the runs of each process: `[process id][0xff][started_at be][run id]`, empty
/// values. 0xff never occurs in UTF-8, so it ends the process id unambiguously.
const RUNS_BY_PROCESS: &str = "blob:runs_by_process";

/// The process trees.
#[derive(Debug)]
pub(super) struct ProcessTrees {
    processes: sled::Tree,
    runs: sled::Tree,
    runs_by_process: sled::Tree,
}

fn process_prefix(process: &str) -> Vec<u8> {
    let mut k = process.as_bytes().to_vec();
    k.push(0xff);
    k
}

fn run_key(process: &str, started_at: u64, run: &str) -> Vec<u8> {
    let mut k = process_prefix(process);
    k.extend_from_slice(&started_at.to_be_bytes());
    k.extend_from_slice(run.as_bytes());
    k
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Encode(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        message: e.to_string(),
    })
}

impl ProcessTrees {
    pub(super) fn open(db: &sled::Db) -> Result<ProcessTrees, StoreError> {
        Ok(ProcessTrees {
            processes: db.open_tree(PROCESSES)?,
            runs: db.open_tree(RUNS)?,
            runs_by_process: db.open_tree(RUNS_BY_PROCESS)?,
        })
    }

    pub(super) fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreError> {
        self.processes
            .insert(record.id.as_bytes(), encode(record)?)?;
        Ok(())
    }

    pub(super) fn process(&self, id: &str) -> Result<Option<ProcessRecord>, StoreError> {
        match self.processes.get(id.as_bytes())? {
            Some(v) => Ok(Some(decode("processes", &v)?)),
            None => Ok(None),
        }
    }

    pub(super) fn processes(&self) -> Result<Vec<ProcessRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.processes.iter() {
            let (k, v) = item?;
            match decode("processes", &v) {
                Ok(record) => out.push(record),
                Err(e) => tracing::error!(
                    process = %String::from_utf8_lossy(&k),
                    "unreadable process: {e}"
                ),
            }
        }
        Ok(out)
    }

    pub(super) fn delete_process(&self, id: &str) -> Result<(), StoreError> {
        self.processes.remove(id.as_bytes())?;
        Ok(())
    }

    pub(super) fn put_run(&self, run: &Run) -> Result<(), StoreError> {
        let bytes = encode(run)?;
        // The index entry first: one without its run is skipped by listings.
        self.runs_by_process
            .insert(run_key(&run.process, run.started_at, &run.id), &[])?;
        self.runs.insert(run.id.as_bytes(), bytes)?;
        Ok(())
    }

    pub(super) fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        match self.runs.get(id.as_bytes())? {
            Some(v) => Ok(Some(decode("runs", &v)?)),
            None => Ok(None),
        }
    }

    pub(super) fn running_runs(&self) -> Result<Vec<Run>, StoreError> {
        let mut out = Vec::new();
        for item in self.runs.iter() {
            let (_, v) = item?;
            // An unreadable run cannot be resumed; it is still shown as corrupt by `run`.
            if let Ok(run) = decode::<Run>("runs", &v)
                && run.status == RunStatus::Running
            {
                out.push(run);
            }
        }
        Ok(out)
    }

    pub(super) fn process_runs(&self, process: &str, limit: usize) -> Result<Vec<Run>, StoreError> {
        let prefix = process_prefix(process);
        let mut out = Vec::new();
        for item in self.runs_by_process.scan_prefix(&prefix).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item?;
            let Some(run_id) = k.get(prefix.len() + 8..) else {
                continue;
            };
            // An index entry without a readable run is skipped.
            if let Some(v) = self.runs.get(run_id)?
                && let Ok(run) = decode::<Run>("runs", &v)
            {
                out.push(run);
            }
        }
        Ok(out)
    }
}
