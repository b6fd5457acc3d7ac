//! The inputs of the last few executions with large inputs, parsed, kept in memory.
//!
//! Why: inputs are stored once and never change, but every status change hands back the
//! whole execution, and its inputs were parsed from their stored JSON text each time:
//! for a 1 MiB payload, four or five parses per execution and node (accepted, result
//! noted, finished, read by the result handler). A copy of a parsed value is a memcpy
//! (docs/benchmarks.md, "Large payloads").

use mesg_protocol::{ExecutionId, Json};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Bytes of inputs kept (their stored size), all executions together.
const KEEP_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Default)]
pub(super) struct RecentInputs {
    /// Newest last: (execution, inputs, their stored size).
    entries: Mutex<VecDeque<(ExecutionId, Json, usize)>>,
}

impl RecentInputs {
    /// Keep `inputs` of `id` (stored in `size` bytes), forgetting the oldest beyond the
    /// budget. Inputs larger than the whole budget are not kept.
    pub(super) fn keep(&self, id: ExecutionId, inputs: &Json, size: usize) {
        if size > KEEP_BYTES {
            return;
        }
        let mut entries = self.entries.lock().expect("recent inputs lock");
        entries.retain(|(e, _, _)| *e != id);
        let mut total: usize = entries.iter().map(|(_, _, s)| s).sum::<usize>() + size;
        while total > KEEP_BYTES {
            match entries.pop_front() {
                Some((_, _, s)) => total -= s,
                None => break,
            }
        }
        entries.push_back((id, inputs.clone(), size));
    }

    pub(super) fn get(&self, id: &ExecutionId) -> Option<Json> {
        let entries = self.entries.lock().expect("recent inputs lock");
        entries
            .iter()
            .rev()
            .find(|(e, _, _)| e == id)
            .map(|(_, j, _)| j.clone())
    }

    pub(super) fn forget(&self, id: &ExecutionId) {
        self.entries
            .lock()
            .expect("recent inputs lock")
            .retain(|(e, _, _)| e != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_within_its_budget() {
        let r = RecentInputs::default();
        let (a, b) = (ExecutionId([1; 16]), ExecutionId([2; 16]));
        let v = Json(serde_json::json!({"m": "x"}));
        r.keep(a, &v, KEEP_BYTES / 2);
        r.keep(b, &v, KEEP_BYTES / 2 + 1);
        assert!(r.get(&a).is_none(), "the oldest went to make room");
        assert_eq!(r.get(&b), Some(v.clone()));
        r.forget(&b);
        assert!(r.get(&b).is_none());
        r.keep(a, &v, KEEP_BYTES + 1);
        assert!(r.get(&a).is_none(), "too large to keep");
    }
}
