//! A priced copy of the echo example service, for the economy's tests (prices, caps,
//! receipts, the ledger, the catalogue): the same binary, with a price on its `echo` task
//! and optionally a publisher share, in a directory of its own that goes away with it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A copy of an example service in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct ServiceCopy {
    dir: PathBuf,
}

impl ServiceCopy {
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ServiceCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// echo whose `echo` task costs `price` (YAML, e.g. `{call: 1000, per_ms: 2}`), with
/// `economy.publisher_share_bps` when `share_bps` is given.
pub fn priced_echo(price: &str, share_bps: Option<u32>) -> ServiceCopy {
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mesg-priced-echo-{}-{}-{}",
        std::process::id(),
        COPIES.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("create a directory for the priced echo");
    let copy = ServiceCopy { dir };
    for entry in std::fs::read_dir(crate::service_dir("echo")).expect("echo's directory") {
        let entry = entry.expect("echo's directory entry");
        std::fs::copy(entry.path(), copy.dir.join(entry.file_name())).expect("copy echo");
    }
    let yml = copy.dir.join("mesg.yml");
    let text = std::fs::read_to_string(&yml).expect("echo's mesg.yml");
    let mut priced = text.replace(
        "    description: Return the inputs unchanged.\n",
        &format!("    description: Return the inputs unchanged.\n    price: {price}\n"),
    );
    assert_ne!(priced, text, "echo's mesg.yml changed: update priced_echo");
    if let Some(bps) = share_bps {
        priced.push_str(&format!("economy:\n  publisher_share_bps: {bps}\n"));
    }
    std::fs::write(&yml, priced).expect("write the priced mesg.yml");
    copy
}
