//! Named node contexts, as docker and kubectl users expect: `mesg context add prod --node
//! URL --token T`, then `mesg --context prod ...` or `mesg context use prod`. Kept in
//! `$MESG_HOME/contexts.json` (tokens inside: created readable by its owner only).
//!
//! What a command talks to: `--node`/`--token`/`--node-data-dir` (or their MESG_*
//! variables) when given, else the context named by `--context` (MESG_CONTEXT), else the
//! current context, else the local node at http://127.0.0.1:50052.

use crate::accounts::{check_name, mesg_home};
use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The node a command talks to when nothing says otherwise.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:50052";

/// One named node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeContext {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_data_dir: Option<PathBuf>,
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, NodeContext>,
}

pub fn path_in(home: &Path) -> PathBuf {
    home.join("contexts.json")
}

impl Contexts {
    /// The stored contexts (none when the file does not exist).
    pub fn load(home: &Path) -> anyhow::Result<Contexts> {
        let path = path_in(home);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid contexts file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contexts::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Write atomically (a temporary file renamed over the old one), mode 0600.
    pub fn save(&self, home: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let path = path_in(home);
        let tmp = home.join(format!(".contexts.json.tmp-{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(self)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub fn add(&mut self, name: &str, context: NodeContext) -> anyhow::Result<()> {
        check_name(name)?;
        if context.node.trim().is_empty() {
            bail!("a context needs a node URL (--node)");
        }
        self.contexts.insert(name.to_string(), context);
        Ok(())
    }

    pub fn get(&self, name: &str) -> anyhow::Result<&NodeContext> {
        self.contexts.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.contexts.keys().map(String::as_str).collect();
            if known.is_empty() {
                anyhow!("no context `{name}`: there are none yet; add one with `mesg context add {name} --node URL`")
            } else {
                anyhow!("no context `{name}` (contexts: {})", known.join(", "))
            }
        })
    }

    pub fn remove(&mut self, name: &str) -> anyhow::Result<NodeContext> {
        self.get(name)?;
        if self.current.as_deref() == Some(name) {
            self.current = None;
        }
        Ok(self.contexts.remove(name).expect("checked above"))
    }
}

/// Where a command's node comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub node: String,
    pub token: Option<String>,
    pub node_data_dir: Option<PathBuf>,
    /// The context it came from, if any.
    pub context: Option<String>,
}

/// Resolve the flags against the contexts: explicit flags win, field by field.
pub fn resolve(
    contexts: &Contexts,
    named: Option<&str>,
    node: Option<&str>,
    token: Option<&str>,
    node_data_dir: Option<&Path>,
) -> anyhow::Result<Target> {
    let name = named.or(contexts.current.as_deref());
    let context = match name {
        Some(n) => Some(contexts.get(n).with_context(|| match named {
            Some(_) => "--context".to_string(),
            None => "the current context (`mesg context use`)".to_string(),
        })?),
        None => None,
    };
    // A node given explicitly replaces the context's node and, with it, its credentials.
    let from_context = context.filter(|_| node.is_none());
    Ok(Target {
        node: node
            .map(str::to_string)
            .or_else(|| from_context.map(|c| c.node.clone()))
            .unwrap_or_else(|| DEFAULT_NODE.to_string()),
        token: token
            .map(str::to_string)
            .or_else(|| from_context.and_then(|c| c.token.clone())),
        node_data_dir: node_data_dir
            .map(Path::to_path_buf)
            .or_else(|| from_context.and_then(|c| c.node_data_dir.clone())),
        context: from_context.and(name.map(str::to_string)),
    })
}

/// The contexts of this user (`$MESG_HOME`).
pub fn load_default() -> anyhow::Result<(PathBuf, Contexts)> {
    let home = mesg_home()?;
    let contexts = Contexts::load(&home)?;
    Ok((home, contexts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Contexts {
        let mut c = Contexts::default();
        c.add(
            "prod",
            NodeContext {
                node: "http://10.0.0.5:50052".into(),
                token: Some("secret".into()),
                node_data_dir: None,
            },
        )
        .unwrap();
        c.add(
            "lab",
            NodeContext {
                node: "http://127.0.0.1:60052".into(),
                token: None,
                node_data_dir: Some("/tmp/lab".into()),
            },
        )
        .unwrap();
        c
    }

    #[test]
    fn flags_win_then_the_named_context_then_the_current_one_then_the_default() {
        let mut c = two();
        let t = resolve(&c, None, None, None, None).unwrap();
        assert_eq!((t.node.as_str(), t.token), (DEFAULT_NODE, None));
        c.current = Some("lab".into());
        let t = resolve(&c, None, None, None, None).unwrap();
        assert_eq!(t.node, "http://127.0.0.1:60052");
        assert_eq!(t.node_data_dir, Some(PathBuf::from("/tmp/lab")));
        let t = resolve(&c, Some("prod"), None, None, None).unwrap();
        assert_eq!(
            (t.node.as_str(), t.token.as_deref(), t.context.as_deref()),
            ("http://10.0.0.5:50052", Some("secret"), Some("prod"))
        );
        let t = resolve(&c, Some("prod"), None, Some("other"), None).unwrap();
        assert_eq!(
            t.token.as_deref(),
            Some("other"),
            "a flag overrides one field"
        );
        // Another node given: the context's token is not sent to it.
        let t = resolve(&c, Some("prod"), Some("http://1.2.3.4:1"), None, None).unwrap();
        assert_eq!((t.token, t.context), (None, None));
    }

    #[test]
    fn unknown_names_and_bad_names_are_explained() {
        let c = two();
        let e = resolve(&c, Some("stage"), None, None, None).unwrap_err();
        assert!(format!("{e:#}").contains("contexts: lab, prod"), "{e:#}");
        let mut c = Contexts::default();
        assert!(c.add("../x", NodeContext::default()).is_err());
        let e = c.add("ok", NodeContext::default()).unwrap_err().to_string();
        assert!(e.contains("--node"), "{e}");
    }

    #[test]
    fn saved_privately_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = two();
        c.current = Some("prod".into());
        c.save(dir.path()).unwrap();
        assert_eq!(Contexts::load(dir.path()).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path_in(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(Contexts::load(empty.path()).unwrap(), Contexts::default());
    }
}
