//! Accounts: ed25519 keys of the person or Application using the CLI, kept in
//! `$MESG_HOME/accounts/NAME.key` (MESG_HOME defaults to `~/.mesg-cli`).
//!
//! A key file holds the 32-byte secret seed as 64 hex characters and a newline. It is
//! created readable by its owner only (0600, in a 0700 directory) and atomically: the
//! seed is written and synced to a temporary file created with mode 0600, which is then
//! hard-linked to its final name. Unlike a rename, a link never replaces an existing
//! file, so creating an account can never overwrite another, even in a race.

use anyhow::{Context, anyhow, bail};
use mesg_protocol::{Keypair, PublicKey};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An account on disk.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub public_key: PublicKey,
    pub path: PathBuf,
}

/// `$MESG_HOME`, or `~/.mesg-cli`.
pub fn mesg_home() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("MESG_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("neither MESG_HOME nor HOME is set: set MESG_HOME to a directory for the CLI's accounts"))?;
    Ok(PathBuf::from(home).join(".mesg-cli"))
}

fn accounts_dir(home: &Path) -> PathBuf {
    home.join("accounts")
}

/// Account names are file names: letters, digits, `-`, `_`, `.` (not first), 1-64 chars.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!(
            "`{name}` is not a valid account name: use 1 to 64 letters, digits, `-`, `_` or `.` (not first)"
        );
    }
    Ok(())
}

pub fn key_path(home: &Path, name: &str) -> PathBuf {
    accounts_dir(home).join(format!("{name}.key"))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Create account `name` with a new key. Refuses to replace an existing account.
pub fn create(home: &Path, name: &str) -> anyhow::Result<Account> {
    check_name(name)?;
    let dir = accounts_dir(home);
    create_private_dir(&dir)?;
    let path = key_path(home, name);
    if path.exists() {
        bail!(
            "account `{name}` already exists ({}); choose another name, or remove that file yourself if you really mean to lose its key",
            path.display()
        );
    }
    let key = Keypair::generate().map_err(|e| anyhow!("cannot generate a key: {e}"))?;
    let tmp = dir.join(format!(
        ".{name}.key.tmp-{}-{}",
        std::process::id(),
        hex::encode(mesg_protocol::ExecutionId::random().0)
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = create_private_file(&tmp)?;
        file.write_all(format!("{}\n", hex::encode(key.secret_bytes())).as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!("cannot write {}: {e}", tmp.display()));
    }
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "account `{name}` already exists ({}); choose another name",
            path.display()
        ),
        Err(e) => bail!("cannot create {}: {e}", path.display()),
    }
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(Account {
        name: name.to_string(),
        public_key: key.public(),
        path,
    })
}

fn decode_key(bytes: &[u8], path: &Path) -> anyhow::Result<Keypair> {
    let seed: [u8; 32] = if bytes.len() == 32 {
        bytes.try_into().expect("32 bytes")
    } else {
        let text = std::str::from_utf8(bytes).unwrap_or("").trim();
        hex::decode(text)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                anyhow!(
                    "{} is not an account key (expected 64 hex characters)",
                    path.display()
                )
            })?
    };
    Ok(Keypair::from_secret_bytes(seed))
}

/// The key of account `name`.
pub fn load(home: &Path, name: &str) -> anyhow::Result<Keypair> {
    check_name(name)?;
    let path = key_path(home, name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no account `{name}` in {}; create it with `mesg account create {name}`",
            accounts_dir(home).display()
        ),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    decode_key(&bytes, &path)
}

/// Whether others than the owner may read the key file.
pub fn too_open(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Every account, sorted by name. Files that are not keys are reported as errors.
pub fn list(home: &Path) -> anyhow::Result<Vec<Result<Account, String>>> {
    let dir = accounts_dir(home);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => bail!("cannot read {}: {e}", dir.display()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file_name.strip_suffix(".key") else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let account = std::fs::read(&path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|b| decode_key(&b, &path).map_err(|e| e.to_string()))
            .map(|key| Account {
                name: name.to_string(),
                public_key: key.public(),
                path: path.clone(),
            });
        out.push((name.to_string(), account));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, a)| a).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn key_files_are_private_and_directories_too() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let account = create(home.path(), "default").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&account.path), 0o600);
        assert_eq!(mode(&home.path().join("accounts")), 0o700);
        assert!(!too_open(&account.path));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(home.path().join("accounts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["default.key"]);
        // The file holds the seed: loading gives the same public key.
        let key = load(home.path(), "default").unwrap();
        assert_eq!(key.public(), account.public_key);
        std::fs::set_permissions(&account.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(too_open(&account.path));
    }

    #[test]
    fn an_existing_account_is_never_overwritten() {
        let home = tempfile::tempdir().unwrap();
        let first = create(home.path(), "alice").unwrap();
        let before = std::fs::read(&first.path).unwrap();
        let err = create(home.path(), "alice").unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&first.path).unwrap(), before);
        assert_eq!(
            load(home.path(), "alice").unwrap().public(),
            first.public_key
        );
    }

    #[test]
    fn list_is_sorted_and_names_are_checked() {
        let home = tempfile::tempdir().unwrap();
        assert!(list(home.path()).unwrap().is_empty());
        let b = create(home.path(), "bob").unwrap();
        let a = create(home.path(), "alice").unwrap();
        std::fs::write(home.path().join("accounts/notes.txt"), "x").unwrap();
        std::fs::write(home.path().join("accounts/broken.key"), "nope").unwrap();
        let listed = list(home.path()).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].as_ref().unwrap().public_key, a.public_key);
        assert_eq!(listed[1].as_ref().unwrap().public_key, b.public_key);
        assert!(listed[2].as_ref().unwrap_err().contains("broken.key"));
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(create(home.path(), bad).is_err(), "{bad:?}");
        }
        let missing = load(home.path(), "carol").unwrap_err().to_string();
        assert!(missing.contains("mesg account create carol"), "{missing}");
    }
}
