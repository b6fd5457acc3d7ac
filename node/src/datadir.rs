//! The node's data directory: an exclusive lock (one node per directory), the node key
//! (created on first start, 0600), and the paths of everything else kept there.
//!
//! The directory holds the node's key, instance tokens (in the store) and packages, so it
//! is made [`DIR_MODE`] (owner only) on every start, whatever it was before, and so are the
//! node's own subdirectories (files in them [`FILE_MODE`]). Other files an operator keeps
//! there are left as they are (the data dir may be a directory with other uses).

use mesg_protocol::Keypair;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data dir {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data dir {path} is in use by another mesg-node (lock held on {lock}); stop that node or choose another --data-dir"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read node key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "node key {path} is corrupt: expected 32 bytes, found {len}; restore it from a backup or delete it to create a new identity"
    )]
    CorruptKey { path: PathBuf, len: usize },
    #[error("cannot write node key {path}: {source}")]
    WriteKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a key: {0}")]
    Random(String),
    #[error("cannot read the API token {path}: {source}")]
    ReadToken {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the API token {path} is empty or not text; delete it to have a new one generated")]
    CorruptToken { path: PathBuf },
    #[error("cannot write the API token {path}: {source}")]
    WriteToken {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Name of the API token's file in the data dir (the CLI looks for it there).
pub const API_TOKEN_FILE: &str = "api.token";

/// Mode of the data dir and every directory in it: only the node's user may list or
/// enter them (the store holds instance tokens in clear).
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files the node keeps (key, store files, packages).
pub const FILE_MODE: u32 = 0o600;

/// Make `path` (a file or a directory tree) readable by its owner only: directories
/// [`DIR_MODE`], files [`FILE_MODE`]. Symlinks are left alone (never followed).
pub fn restrict_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        if meta.permissions().mode() & 0o777 != DIR_MODE {
            fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))?;
        }
        for entry in fs::read_dir(path)? {
            restrict_tree(&entry?.path())?;
        }
    } else if meta.permissions().mode() & 0o777 != FILE_MODE {
        fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

fn lock_path_of(root: &Path) -> PathBuf {
    root.join("LOCK")
}

/// An opened, locked data directory. The lock is released when this is dropped.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// The default: `$HOME/.mesg`, or `./.mesg` when there is no home.
    pub fn default_path() -> PathBuf {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".mesg")
    }

    pub fn open(root: &Path) -> Result<DataDir, DataDirError> {
        fs::create_dir_all(root).map_err(|source| DataDirError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        let lock_path = lock_path_of(root);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| DataDirError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked {
                    path: root.to_path_buf(),
                    lock: lock_path,
                });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(DataDirError::Lock {
                    path: lock_path,
                    source,
                });
            }
        }
        let dir = DataDir {
            root: root.to_path_buf(),
            _lock: lock,
        };
        let packages = dir.packages_dir();
        fs::create_dir_all(&packages).map_err(|source| DataDirError::Create {
            path: packages,
            source,
        })?;
        let restrict = |path: &Path, mode: u32, tree: bool| {
            use std::os::unix::fs::PermissionsExt;
            let done = if tree {
                restrict_tree(path)
            } else {
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
            };
            done.map_err(|source| DataDirError::Create {
                path: path.to_path_buf(),
                source,
            })
        };
        restrict(root, DIR_MODE, false)?;
        restrict(&lock_path_of(root), FILE_MODE, false)?;
        restrict(&dir.packages_dir(), DIR_MODE, true)?;
        if dir.key_path().exists() {
            restrict(&dir.key_path(), FILE_MODE, false)?;
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn key_path(&self) -> PathBuf {
        self.root.join("node.key")
    }

    pub fn store_path(&self) -> PathBuf {
        self.root.join("store")
    }

    /// The Application API's bearer token (created on first start, 0600).
    pub fn api_token_path(&self) -> PathBuf {
        self.root.join(API_TOKEN_FILE)
    }

    /// Load the API token, creating it on first start. Returns whether it was created.
    pub fn load_or_create_api_token(&self) -> Result<(String, bool), DataDirError> {
        let path = self.api_token_path();
        match fs::read(&path) {
            Ok(bytes) => {
                let token = String::from_utf8(bytes)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or_else(|| DataDirError::CorruptToken { path: path.clone() })?;
                Ok((token, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut raw = [0u8; 32];
                mesg_protocol::keys::random_bytes(&mut raw)
                    .map_err(|e| DataDirError::Random(e.to_string()))?;
                let token = hex::encode(raw);
                write_secret(&path, token.as_bytes())
                    .map_err(|source| DataDirError::WriteToken { path, source })?;
                Ok((token, true))
            }
            Err(source) => Err(DataDirError::ReadToken { path, source }),
        }
    }

    /// Package tars by package hash, served to nodes that fetch a service.
    pub fn packages_dir(&self) -> PathBuf {
        self.root.join("packages")
    }

    /// Load the node key, creating it on first start. Returns whether it was created.
    pub fn load_or_create_key(&self) -> Result<(Keypair, bool), DataDirError> {
        let path = self.key_path();
        match fs::read(&path) {
            Ok(bytes) => {
                let seed: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| DataDirError::CorruptKey {
                            path: path.clone(),
                            len: bytes.len(),
                        })?;
                Ok((Keypair::from_secret_bytes(seed), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Keypair::generate().map_err(|e| DataDirError::Random(e.to_string()))?;
                write_secret(&path, &key.secret_bytes())
                    .map_err(|source| DataDirError::WriteKey { path, source })?;
                Ok((key, true))
            }
            Err(source) => Err(DataDirError::ReadKey { path, source }),
        }
    }
}

/// Write a secret with 0600 permissions, atomically (temp file, fsync, rename).
pub fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_created_once_with_0600_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let (k1, created) = DataDir::open(tmp.path())
            .unwrap()
            .load_or_create_key()
            .unwrap();
        assert!(created);
        let mode = fs::metadata(tmp.path().join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (k2, created) = DataDir::open(tmp.path())
            .unwrap()
            .load_or_create_key()
            .unwrap();
        assert!(!created);
        assert_eq!(k1.public(), k2.public());
    }

    #[test]
    fn the_api_token_is_created_once_with_0600_and_the_dir_is_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("node");
        let dir = DataDir::open(&root).unwrap();
        let (t1, created) = dir.load_or_create_api_token().unwrap();
        assert!(created);
        assert_eq!(t1.len(), 64, "{t1}");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root.join(API_TOKEN_FILE)), 0o600);
        assert_eq!(mode(&root), 0o700);
        drop(dir);
        let (t2, created) = DataDir::open(&root)
            .unwrap()
            .load_or_create_api_token()
            .unwrap();
        assert!(!created);
        assert_eq!(t1, t2);
        fs::write(root.join(API_TOKEN_FILE), b"  \n").unwrap();
        let err = DataDir::open(&root)
            .unwrap()
            .load_or_create_api_token()
            .unwrap_err();
        assert!(matches!(err, DataDirError::CorruptToken { .. }), "{err}");
    }

    #[test]
    fn the_data_dir_and_what_the_node_keeps_there_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        fs::create_dir_all(root.join("packages")).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("packages/p.tar"), b"tar").unwrap();
        fs::set_permissions(
            root.join("packages/p.tar"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        fs::write(root.join("node.key"), [1u8; 32]).unwrap();
        fs::set_permissions(root.join("node.key"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(root.join("notes.sh"), b"operator's own").unwrap();
        fs::set_permissions(root.join("notes.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let dir = DataDir::open(&root).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&dir.packages_dir()), 0o700);
        assert_eq!(mode(&root.join("packages/p.tar")), 0o600);
        assert_eq!(mode(&root.join("node.key")), 0o600);
        assert_eq!(mode(&root.join("LOCK")), 0o600);
        assert_eq!(
            mode(&root.join("notes.sh")),
            0o755,
            "not the node's: untouched"
        );
    }

    #[test]
    fn restrict_tree_reaches_every_file_and_skips_links() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        fs::create_dir_all(store.join("blobs")).unwrap();
        fs::write(store.join("db"), b"tokens").unwrap();
        fs::write(store.join("blobs/1"), b"x").unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, b"o").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, store.join("link")).unwrap();
        restrict_tree(&store).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store), 0o700);
        assert_eq!(mode(&store.join("blobs")), 0o700);
        assert_eq!(mode(&store.join("db")), 0o600);
        assert_eq!(mode(&store.join("blobs/1")), 0o600);
        assert_eq!(mode(&outside), 0o644, "a link is not followed");
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDir::open(tmp.path()).unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err();
        assert!(matches!(err, DataDirError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another mesg-node"));
        drop(first);
        DataDir::open(tmp.path()).unwrap();
    }

    #[test]
    fn a_corrupt_key_is_reported_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("node.key"), b"short").unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        assert!(matches!(
            dir.load_or_create_key(),
            Err(DataDirError::CorruptKey { len: 5, .. })
        ));
        assert_eq!(fs::read(tmp.path().join("node.key")).unwrap(), b"short");
    }
}
