//! Large values kept out of sled, one file each, with a small marker in sled instead.
//!
//! Why: sled 0.34 keeps up to 16 entries per leaf and writes a whole leaf (every value in
//! it) when it splits or consolidates it, and anything over a quarter of a segment as a
//! separate blob file. With 1 MiB payloads a leaf of `requests` or `exec_inputs` held
//! many MiB, rewritten again and again: a profile of 1 MiB round trips found a third of
//! both nodes' CPU in sled's log writes (docs/benchmarks.md, "Large payloads"). A spilled
//! value is written once, in its own file, and read back once when asked for.
//!
//! Durability: the file is written and its data synced before its marker goes into sled,
//! so a marker that reached the disk (sled also flushes on its own every 500 ms) never
//! names a file whose bytes did not; the directory is synced before the next flush of
//! the store ([`Spill::sync_dir`], called by the group-commit flusher), so a file is
//! named on disk before anything acknowledged refers to it. A file is deleted only after
//! the store flushed the removal of its marker. What a crash can leave behind is a file
//! without a marker (written, marker not yet flushed): unused, never read.

use crate::store::StoreError;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Values of at least this many bytes go to a file.
pub(super) const SPILL_AT: usize = 64 * 1024;
/// How a marker starts. No value stored inline in the trees that spill starts with a
/// zero byte: their bincode encodings start with a version (1) or with the non-zero
/// length of a JSON text.
const MAGIC: &[u8] = b"\0mesg-spill/1\0";
/// Hex characters of a file name (16 random bytes).
const NAME_LEN: usize = 32;

/// The directory of spilled values.
#[derive(Debug)]
pub(super) struct Spill {
    dir: PathBuf,
    /// Files were created since the directory was last synced.
    dirty: AtomicBool,
    /// Files whose markers were removed or replaced: deleted after the next flush.
    doomed: Mutex<Vec<PathBuf>>,
}

/// A value read from a tree that may spill: the bytes in sled, or those of its file.
pub(super) enum Loaded {
    Inline(sled::IVec),
    File(Vec<u8>),
}

impl std::ops::Deref for Loaded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Loaded::Inline(v) => v,
            Loaded::File(v) => v,
        }
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Encode(format!("{what} {}: {e}", path.display()))
}

impl Spill {
    /// The spill directory inside the store's directory (created, owner only).
    pub(super) fn open(store: &Path) -> Result<Spill, StoreError> {
        let dir = store.join("spilled");
        std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, e))?;
        crate::datadir::restrict_tree(&dir).map_err(|e| io_err("cannot restrict", &dir, e))?;
        Ok(Spill {
            dir,
            dirty: AtomicBool::new(false),
            doomed: Mutex::new(Vec::new()),
        })
    }

    /// What to store in sled for `bytes`: the bytes themselves when small, else a marker
    /// naming the file they were written (and synced) to. The caller hands a marker that
    /// does not end up in sled to [`Spill::discard`].
    pub(super) fn store(&self, bytes: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        if bytes.len() < SPILL_AT {
            return Ok(bytes);
        }
        let mut id = [0u8; NAME_LEN / 2];
        mesg_protocol::keys::random_bytes(&mut id)
            .map_err(|e| StoreError::Encode(format!("no random source: {e}")))?;
        let name = hex::encode(id);
        let path = self.dir.join(&name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err("cannot create", &path, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_data())
            .map_err(|e| io_err("cannot write", &path, e))?;
        self.dirty.store(true, Ordering::Release);
        let mut marker = Vec::with_capacity(MAGIC.len() + 8 + NAME_LEN);
        marker.extend_from_slice(MAGIC);
        marker.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        marker.extend_from_slice(name.as_bytes());
        Ok(marker)
    }

    /// The value stored as `stored` in `tree`: itself, or its file's bytes.
    pub(super) fn load(
        &self,
        tree: &'static str,
        stored: sled::IVec,
    ) -> Result<Loaded, StoreError> {
        let Some((len, path)) = self.parse(tree, &stored)? else {
            return Ok(Loaded::Inline(stored));
        };
        let corrupt = |message: String| StoreError::Corrupt { tree, message };
        let mut f = std::fs::File::open(&path)
            .map_err(|e| corrupt(format!("spilled value {}: {e}", path.display())))?;
        let mut bytes = Vec::with_capacity(len);
        Read::by_ref(&mut f)
            .take(len as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(format!("spilled value {}: {e}", path.display())))?;
        if bytes.len() != len {
            return Err(corrupt(format!(
                "spilled value {} holds {} bytes, its marker says {len}",
                path.display(),
                bytes.len()
            )));
        }
        Ok(Loaded::File(bytes))
    }

    /// The file a stored value names (None when it is inline).
    pub(super) fn file_of(&self, stored: &[u8]) -> Option<PathBuf> {
        self.parse("", stored).ok().flatten().map(|(_, p)| p)
    }

    /// Delete the file of a marker that was not stored (or whose removal is flushed).
    pub(super) fn discard(&self, stored: &[u8]) {
        if let Some(path) = self.file_of(stored) {
            delete(&path);
        }
    }

    /// The marker `stored` was removed from sled (or replaced): its file goes once that
    /// is flushed, so a crash before cannot leave a marker without its file.
    pub(super) fn doom(&self, stored: &[u8]) {
        if let Some(path) = self.file_of(stored) {
            self.doomed.lock().expect("spill lock").push(path);
        }
    }

    /// Before a flush: sync the directory and take the files to delete once it is done.
    pub(super) fn before_flush(&self) -> std::io::Result<Vec<PathBuf>> {
        self.sync_dir()?;
        Ok(std::mem::take(
            &mut *self.doomed.lock().expect("spill lock"),
        ))
    }

    fn parse(
        &self,
        tree: &'static str,
        stored: &[u8],
    ) -> Result<Option<(usize, PathBuf)>, StoreError> {
        let Some(rest) = stored.strip_prefix(MAGIC) else {
            return Ok(None);
        };
        let bad = || StoreError::Corrupt {
            tree,
            message: "malformed spill marker".into(),
        };
        if rest.len() != 8 + NAME_LEN {
            return Err(bad());
        }
        let (len, name) = rest.split_at(8);
        let len = u64::from_be_bytes(len.try_into().map_err(|_| bad())?);
        // Only our own names: hex, so a marker can never point outside the directory.
        if !name.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        let name = std::str::from_utf8(name).map_err(|_| bad())?;
        Ok(Some((
            usize::try_from(len).map_err(|_| bad())?,
            self.dir.join(name),
        )))
    }

    /// Sync the directory when files were created since the last time, so that their
    /// names are on disk before the flush that follows makes their markers durable.
    fn sync_dir(&self) -> std::io::Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let synced = std::fs::File::open(&self.dir).and_then(|d| d.sync_all());
            if synced.is_err() {
                self.dirty.store(true, Ordering::Release);
            }
            synced?;
        }
        Ok(())
    }
}

/// Delete a spilled file (already gone is fine; anything else is logged).
pub(super) fn delete(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot delete spilled value {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_stay_inline_large_ones_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::open(dir.path()).unwrap();
        let small = spill.store(vec![1; 100]).unwrap();
        assert_eq!(small, vec![1; 100]);
        assert!(spill.file_of(&small).is_none());
        let big = vec![7u8; SPILL_AT + 5];
        let marker = spill.store(big.clone()).unwrap();
        assert!(marker.len() < 100, "{}", marker.len());
        let path = spill.file_of(&marker).unwrap();
        assert!(path.is_file());
        let back = spill.load("t", sled::IVec::from(marker.clone())).unwrap();
        assert_eq!(&*back, &big[..]);
        spill.doom(&marker);
        assert!(path.exists(), "deleted only after the next flush");
        assert_eq!(spill.before_flush().unwrap(), vec![path.clone()]);
        spill.discard(&marker);
        assert!(!path.exists());
        // A marker whose file is gone, or a forged one, is a clear error, not a panic.
        match spill.load("t", sled::IVec::from(marker)) {
            Err(StoreError::Corrupt { tree: "t", .. }) => {}
            other => panic!("{:?}", other.map(|l| l.len())),
        }
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&1u64.to_be_bytes());
        forged.extend_from_slice(b"../../../../../../etc/passwd.....");
        assert!(matches!(
            spill.load("t", sled::IVec::from(forged)),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
