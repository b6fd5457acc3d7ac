//! The content hash of a service package (its build context).
//!
//! The hash covers, for every file in path order: the relative path, whether it is
//! executable or a symlink, and the sha256 of its content. Timestamps, owners and the
//! order files were found in do not count, so the same directory hashes the same on every
//! machine, and a node that receives a package as a tar can check it against the hash.

use crate::hash::{Hash32, PackageHash};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Executable,
    /// Content is the link target.
    Symlink,
}

impl EntryKind {
    fn tag(self) -> u8 {
        match self {
            EntryKind::File => b'f',
            EntryKind::Executable => b'x',
            EntryKind::Symlink => b'l',
        }
    }
}

/// One file of a package; `path` is relative, `/`-separated, without `.` or `..` parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    pub path: String,
    pub kind: EntryKind,
    pub content_hash: Hash32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("path `{0}` is not a clean relative path")]
    BadPath(String),
    #[error("path `{0}` appears twice in the package")]
    Duplicate(String),
}

/// Whether `path` is relative, `/`-separated and free of `.`, `..` and empty parts.
pub fn is_clean_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

impl PackageHash {
    pub fn of_entries(mut entries: Vec<PackageEntry>) -> Result<PackageHash, PackageError> {
        for e in &entries {
            if !is_clean_relative_path(&e.path) {
                return Err(PackageError::BadPath(e.path.clone()));
            }
        }
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        for pair in entries.windows(2) {
            if pair[0].path == pair[1].path {
                return Err(PackageError::Duplicate(pair[0].path.clone()));
            }
        }
        let count = (entries.len() as u64).to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![&count];
        let tags: Vec<[u8; 1]> = entries.iter().map(|e| [e.kind.tag()]).collect();
        for (e, tag) in entries.iter().zip(&tags) {
            parts.push(e.path.as_bytes());
            parts.push(tag);
            parts.push(e.content_hash.as_bytes());
        }
        Ok(PackageHash(Hash32::domain("mesg/package/1", &parts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind, content: &[u8]) -> PackageEntry {
        PackageEntry {
            path: path.into(),
            kind,
            content_hash: Hash32::sha256(content),
        }
    }

    #[test]
    fn order_does_not_matter_but_content_mode_and_path_do() {
        let a = vec![
            entry("mesg.yml", EntryKind::File, b"name: x"),
            entry("bin/app", EntryKind::Executable, b"\x7fELF"),
        ];
        let mut b = a.clone();
        b.reverse();
        let h = PackageHash::of_entries(a.clone()).unwrap();
        assert_eq!(h, PackageHash::of_entries(b).unwrap());
        let mut c = a.clone();
        c[1].kind = EntryKind::File;
        assert_ne!(h, PackageHash::of_entries(c).unwrap());
        let mut d = a.clone();
        d[0].path = "mesg.yaml".into();
        assert_ne!(h, PackageHash::of_entries(d).unwrap());
        let mut e = a;
        e[0].content_hash = Hash32::sha256(b"name: y");
        assert_ne!(h, PackageHash::of_entries(e).unwrap());
    }

    #[test]
    fn unclean_and_duplicate_paths_are_refused() {
        for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", "a\\b"] {
            assert!(
                PackageHash::of_entries(vec![entry(bad, EntryKind::File, b"")]).is_err(),
                "{bad:?}"
            );
        }
        let dup = vec![
            entry("a", EntryKind::File, b"1"),
            entry("a", EntryKind::File, b"2"),
        ];
        assert_eq!(
            PackageHash::of_entries(dup),
            Err(PackageError::Duplicate("a".into()))
        );
    }
}
