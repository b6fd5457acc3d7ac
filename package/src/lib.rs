//! A service package is its build context: the directory with `mesg.yml`, a `Dockerfile`
//! and whatever the image needs. This crate collects it (honouring `.dockerignore`,
//! leaving out `.git`, capping the size), computes its [`PackageHash`], writes it as a tar
//! for Docker and for transfer to other nodes, and reads such a tar back with checks.

use mesg_protocol::package::{EntryKind, PackageEntry, PackageError};
use mesg_protocol::{Hash32, PackageHash, ServiceDefinition};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

mod tar_read;
pub use tar_read::hash_tar;
use tar_read::{content_len, read_tar};

/// Default cap on a package's total file size.
pub const DEFAULT_MAX_PACKAGE_BYTES: u64 = 256 * 1024 * 1024;
/// Most bytes reserved up front for one tar entry, whatever size its header declares: a
/// header is outside input, so a larger entry grows its buffer as its bytes really arrive
/// (a 6 MB tar once reserved 586 GiB of address space by declaring huge sizes).
pub const MAX_ENTRY_PREALLOC: u64 = 1024 * 1024;
/// Most entries (files and symlinks) in a package: each costs a hash and a path in memory
/// whatever its size, so an upload of empty files is bounded too. Real build contexts hold
/// a few thousand files at most.
pub const MAX_PACKAGE_ENTRIES: usize = 100_000;
pub const DEFINITION_FILE: &str = "mesg.yml";
pub const DOCKERFILE: &str = "Dockerfile";

#[derive(Debug, thiserror::Error)]
pub enum PackageIoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("the package has no {DEFINITION_FILE} at its root")]
    NoDefinition,
    #[error("the package has no {DOCKERFILE} at its root; a service is built as a Docker image")]
    NoDockerfile,
    #[error(
        "the package is larger than the {limit} byte limit ({size} bytes so far); add large files to .dockerignore"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error(".dockerignore: {0}")]
    DockerIgnore(String),
    #[error("tar: {0}")]
    Tar(String),
    #[error("tar entry `{0}` is not allowed (absolute, `..`, device or other special file)")]
    UnsafeEntry(String),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error("{DEFINITION_FILE} is not UTF-8")]
    DefinitionNotUtf8,
    #[error(
        "tar entry `{path}` declares {declared} bytes but the tar has only {available} left: the tar is truncated or forged"
    )]
    Truncated {
        path: String,
        declared: u64,
        available: u64,
    },
    #[error(
        "the package has more than {limit} files; add the ones the image does not need to .dockerignore"
    )]
    TooManyEntries { limit: usize },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageIoError + '_ {
    move |source| PackageIoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
enum Content {
    File(PathBuf),
    Link(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Item {
    entry: PackageEntry,
    size: u64,
    content: Content,
}

/// A collected package, ready to hash and tar.
#[derive(Debug, Clone)]
pub struct Package {
    items: Vec<Item>,
    hash: PackageHash,
    size: u64,
    definition_text: String,
}

impl Package {
    /// Collect `dir` as a build context.
    pub fn from_dir(dir: &Path, max_bytes: u64) -> Result<Package, PackageIoError> {
        if !dir.is_dir() {
            return Err(PackageIoError::NotADirectory(dir.to_path_buf()));
        }
        let ignore = docker_ignore(dir)?;
        let mut items = Vec::new();
        let mut size = 0u64;
        let mut stack = vec![PathBuf::new()];
        while let Some(rel_dir) = stack.pop() {
            let abs_dir = dir.join(&rel_dir);
            let mut names: Vec<_> = std::fs::read_dir(&abs_dir)
                .map_err(io(&abs_dir))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(io(&abs_dir))?;
            names.sort_by_key(|e| e.file_name());
            for entry in names {
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    return Err(PackageIoError::UnsafeEntry(
                        entry.path().display().to_string(),
                    ));
                };
                let rel = rel_dir.join(name);
                let rel_str = rel.to_string_lossy().replace('\\', "/");
                if rel_str == ".git" {
                    continue;
                }
                let meta = std::fs::symlink_metadata(entry.path()).map_err(io(&entry.path()))?;
                let is_dir = meta.is_dir();
                let forced = rel_str == DEFINITION_FILE || rel_str == DOCKERFILE;
                let ignored = ignore.matched_path_or_any_parents(&rel, is_dir).is_ignore();
                if is_dir {
                    // An excluded directory may still hold files that a `!` exception
                    // brings back, as in Docker; only then is it worth walking into.
                    if !ignored || ignore.num_whitelists() > 0 {
                        stack.push(rel);
                    }
                    continue;
                }
                if ignored && !forced {
                    continue;
                }
                let (kind, content, len) = if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(entry.path()).map_err(io(&entry.path()))?;
                    let target = target.to_string_lossy().to_string();
                    let len = target.len() as u64;
                    (EntryKind::Symlink, Content::Link(target), len)
                } else if meta.is_file() {
                    use std::os::unix::fs::PermissionsExt;
                    let exec = meta.permissions().mode() & 0o111 != 0;
                    let kind = if exec {
                        EntryKind::Executable
                    } else {
                        EntryKind::File
                    };
                    (kind, Content::File(entry.path()), meta.len())
                } else {
                    // Sockets, fifos, devices: never part of a build context.
                    continue;
                };
                size += len;
                if size > max_bytes {
                    return Err(PackageIoError::TooLarge {
                        size,
                        limit: max_bytes,
                    });
                }
                let content_hash = match &content {
                    Content::File(p) => hash_file(p)?,
                    Content::Link(t) => Hash32::sha256(t.as_bytes()),
                    Content::Bytes(b) => Hash32::sha256(b),
                };
                items.push(Item {
                    entry: PackageEntry {
                        path: rel_str,
                        kind,
                        content_hash,
                    },
                    size: len,
                    content,
                });
            }
        }
        Package::finish(items, size)
    }

    fn finish(mut items: Vec<Item>, size: u64) -> Result<Package, PackageIoError> {
        items.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
        let hash = PackageHash::of_entries(items.iter().map(|i| i.entry.clone()).collect())?;
        let def = items
            .iter()
            .find(|i| i.entry.path == DEFINITION_FILE && i.entry.kind != EntryKind::Symlink)
            .ok_or(PackageIoError::NoDefinition)?;
        let bytes = match &def.content {
            Content::File(p) => std::fs::read(p).map_err(io(p))?,
            Content::Bytes(b) => b.clone(),
            Content::Link(_) => return Err(PackageIoError::NoDefinition),
        };
        let definition_text =
            String::from_utf8(bytes).map_err(|_| PackageIoError::DefinitionNotUtf8)?;
        if !items.iter().any(|i| i.entry.path == DOCKERFILE) {
            return Err(PackageIoError::NoDockerfile);
        }
        Ok(Package {
            items,
            hash,
            size,
            definition_text,
        })
    }

    /// Read a package from tar bytes (an upload, or a transfer from another node), checking
    /// every entry. Directories are implied by file paths and not kept. Sizes declared by
    /// headers are outside input: they are added with checked arithmetic, compared with the
    /// bytes the tar really holds, and never reserved beyond [`MAX_ENTRY_PREALLOC`].
    pub fn from_tar(bytes: &[u8], max_bytes: u64) -> Result<Package, PackageIoError> {
        let mut items = Vec::new();
        let size = read_tar(bytes, max_bytes, |entry, content| {
            items.push(Item {
                size: content_len(&content),
                entry,
                content,
            });
            Ok(())
        })?;
        Package::finish(items, size)
    }

    pub fn hash(&self) -> PackageHash {
        self.hash
    }

    /// Total size of the files.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn file_count(&self) -> usize {
        self.items.len()
    }

    pub fn definition_text(&self) -> &str {
        &self.definition_text
    }

    /// The text of the package's `Dockerfile`, for checks before a build (which images it
    /// starts from). `None` when it is a symlink or not UTF-8: callers refuse those.
    pub fn dockerfile_text(&self) -> Option<String> {
        let item = self.items.iter().find(|i| i.entry.path == DOCKERFILE)?;
        let bytes = match &item.content {
            Content::File(p) => std::fs::read(p).ok()?,
            Content::Bytes(b) => b.clone(),
            Content::Link(_) => return None,
        };
        String::from_utf8(bytes).ok()
    }

    /// Parse the package's `mesg.yml`.
    pub fn definition(&self) -> Result<ServiceDefinition, mesg_protocol::DefinitionErrors> {
        ServiceDefinition::from_yaml(&self.definition_text)
    }

    /// Write the package as a tar with normalized metadata (mtime 0, root owner, 0644/0755).
    pub fn write_tar<W: Write>(&self, out: W) -> Result<W, PackageIoError> {
        let mut builder = tar::Builder::new(out);
        for item in &self.items {
            append_item(&mut builder, item)?;
        }
        builder
            .into_inner()
            .map_err(|e| PackageIoError::Tar(e.to_string()))
    }

    pub fn to_tar_bytes(&self) -> Result<Vec<u8>, PackageIoError> {
        self.write_tar(Vec::with_capacity(self.size as usize + 4096))
    }

    /// The tar, releasing each file's content once written: a package read from an upload
    /// is not held twice (as files and as tar) while its tar is built.
    pub fn into_tar_bytes(mut self) -> Result<Vec<u8>, PackageIoError> {
        let mut builder = tar::Builder::new(Vec::with_capacity(self.size as usize + 4096));
        for item in std::mem::take(&mut self.items) {
            append_item(&mut builder, &item)?;
        }
        builder
            .into_inner()
            .map_err(|e| PackageIoError::Tar(e.to_string()))
    }
}

/// One item as a tar entry with normalized metadata.
fn append_item<W: Write>(builder: &mut tar::Builder<W>, item: &Item) -> Result<(), PackageIoError> {
    let tar_err = |e: std::io::Error| PackageIoError::Tar(e.to_string());
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    match &item.content {
        Content::Link(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            builder
                .append_link(&mut header, &item.entry.path, target)
                .map_err(tar_err)
        }
        Content::File(path) => {
            let f = std::fs::File::open(path).map_err(io(path))?;
            header.set_size(item.size);
            header.set_mode(mode_of(item.entry.kind));
            builder
                .append_data(&mut header, &item.entry.path, f.take(item.size))
                .map_err(tar_err)
        }
        Content::Bytes(data) => {
            header.set_size(data.len() as u64);
            header.set_mode(mode_of(item.entry.kind));
            builder
                .append_data(&mut header, &item.entry.path, data.as_slice())
                .map_err(tar_err)
        }
    }
}

fn mode_of(kind: EntryKind) -> u32 {
    match kind {
        EntryKind::Executable => 0o755,
        _ => 0o644,
    }
}

fn hash_file(path: &Path) -> Result<Hash32, PackageIoError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(Hash32::sha256(&bytes))
}

/// `.dockerignore` patterns are relative to the context root: anchor each one so that the
/// gitignore matcher gives Docker's meaning (`foo` = `./foo` only, `**/foo` = anywhere).
fn docker_ignore(dir: &Path) -> Result<ignore::gitignore::Gitignore, PackageIoError> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(dir);
    let path = dir.join(".dockerignore");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (negate, pattern) = match line.strip_prefix('!') {
                    Some(p) => ("!", p.trim()),
                    None => ("", line),
                };
                let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
                builder
                    .add_line(None, &format!("{negate}/{pattern}"))
                    .map_err(|e| PackageIoError::DockerIgnore(e.to_string()))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(PackageIoError::Io { path, source }),
    }
    builder
        .build()
        .map_err(|e| PackageIoError::DockerIgnore(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    pub(crate) fn service_dir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "mesg.yml", "name: x\n");
        write(tmp.path(), "Dockerfile", "FROM scratch\n");
        write(tmp.path(), "bin/app", "binary");
        write(tmp.path(), "src/main.rs", "fn main() {}");
        write(tmp.path(), "src/deep/a.log", "log");
        write(tmp.path(), "top.log", "log");
        write(tmp.path(), ".git/HEAD", "ref");
        tmp
    }

    fn paths(p: &Package) -> Vec<String> {
        p.items.iter().map(|i| i.entry.path.clone()).collect()
    }

    #[test]
    fn dockerignore_is_anchored_like_docker_and_git_is_left_out() {
        let tmp = service_dir();
        write(
            tmp.path(),
            ".dockerignore",
            "# comment\n*.log\nsrc\n!src/main.rs\n",
        );
        let p = Package::from_dir(tmp.path(), DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        // `*.log` only matches at the root, as in Docker; `src` is excluded but the
        // exception brings main.rs back.
        assert_eq!(
            paths(&p),
            vec![
                ".dockerignore",
                "Dockerfile",
                "bin/app",
                "mesg.yml",
                "src/main.rs"
            ]
        );
        write(
            tmp.path(),
            ".dockerignore",
            "**/*.log\nmesg.yml\nDockerfile\n",
        );
        let p = Package::from_dir(tmp.path(), DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        assert_eq!(
            paths(&p),
            vec![
                ".dockerignore",
                "Dockerfile",
                "bin/app",
                "mesg.yml",
                "src/main.rs"
            ],
            "mesg.yml and Dockerfile are always sent"
        );
    }

    #[test]
    fn tar_round_trip_keeps_the_hash() {
        let tmp = service_dir();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            tmp.path().join("bin/app"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("app", tmp.path().join("bin/link")).unwrap();
        let p = Package::from_dir(tmp.path(), DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        let tar = p.to_tar_bytes().unwrap();
        let back = Package::from_tar(&tar, DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        assert_eq!(back.hash(), p.hash());
        assert_eq!(back.definition_text(), "name: x\n");
        // Changing a mode changes the hash.
        fs::set_permissions(
            tmp.path().join("bin/app"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let q = Package::from_dir(tmp.path(), DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        assert_ne!(q.hash(), p.hash());
    }

    #[test]
    fn size_cap_missing_files_and_unsafe_tars_are_clear_errors() {
        let tmp = service_dir();
        let err = Package::from_dir(tmp.path(), 10).unwrap_err();
        assert!(
            matches!(err, PackageIoError::TooLarge { limit: 10, .. }),
            "{err}"
        );
        fs::remove_file(tmp.path().join("Dockerfile")).unwrap();
        assert!(matches!(
            Package::from_dir(tmp.path(), DEFAULT_MAX_PACKAGE_BYTES),
            Err(PackageIoError::NoDockerfile)
        ));
        fs::remove_file(tmp.path().join("mesg.yml")).unwrap();
        assert!(matches!(
            Package::from_dir(tmp.path(), DEFAULT_MAX_PACKAGE_BYTES),
            Err(PackageIoError::NoDefinition)
        ));

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // `append_data` refuses `..`; write the raw name to build a hostile tar.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let hostile = b.into_inner().unwrap();
        assert!(matches!(
            Package::from_tar(&hostile, DEFAULT_MAX_PACKAGE_BYTES),
            Err(PackageIoError::UnsafeEntry(_))
        ));
        assert!(matches!(
            Package::from_tar(b"garbage", DEFAULT_MAX_PACKAGE_BYTES),
            Err(PackageIoError::Tar(_) | PackageIoError::NoDefinition)
        ));
    }

    #[test]
    fn what_dockerignore_excludes_never_reaches_the_tar() {
        let tmp = tempfile::tempdir().unwrap();
        for (rel, content) in [
            ("mesg.yml", "name: x\n"),
            ("Dockerfile", "FROM scratch\n"),
            ("secrets/key", "SECRET-1"),
            (".env", "SECRET-2"),
            ("x/temp1", "SECRET-3"),
            ("keep/.git/config", "SECRET-4"),
            ("node_modules/a/b", "SECRET-5"),
            ("c/d.key", "SECRET-6"),
            ("a/secrets/key", "kept: not at the root"),
        ] {
            write(tmp.path(), rel, content);
        }
        write(
            tmp.path(),
            ".dockerignore",
            "secrets/\n.env\n*/temp*\n**/.git\nnode_modules\n**/*.key\n",
        );
        let p = Package::from_dir(tmp.path(), DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        assert_eq!(
            paths(&p),
            vec![".dockerignore", "Dockerfile", "a/secrets/key", "mesg.yml"]
        );
        let tar = p.to_tar_bytes().unwrap();
        let text = String::from_utf8_lossy(&tar);
        assert!(
            !text.contains("SECRET-"),
            "an excluded file's bytes are in the tar"
        );
    }
}
