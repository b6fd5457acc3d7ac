//! Package files of the services this node knows, in its data dir: written once,
//! owner-only, atomically; a marker file keeps a package deployed `--private` from being
//! served to peers.

use super::Services;
use crate::engine::error::EngineError;
use crate::store::StoreError;
use mesg_protocol::PackageHash;
use std::path::PathBuf;

impl Services {
    pub fn package_path(&self, package: &PackageHash) -> PathBuf {
        self.config.packages_dir.join(format!("{package}.tar"))
    }

    /// The marker of a package deployed with `private`: kept next to the package, so a
    /// later public deploy of the same package removes it.
    pub(super) fn private_marker(&self, package: &PackageHash) -> PathBuf {
        self.config.packages_dir.join(format!("{package}.private"))
    }

    /// Whether this node's operator deployed `package` as private: it is then never
    /// served to peers (nor announced as held in the DHT).
    pub fn is_private_package(&self, package: &PackageHash) -> bool {
        self.private_marker(package).exists()
    }

    pub(super) fn set_private_package(
        &self,
        package: &PackageHash,
        private: bool,
    ) -> Result<(), EngineError> {
        let marker = self.private_marker(package);
        let done = if private {
            std::fs::write(&marker, b"deployed with --private: not served to peers\n")
        } else {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        done.map_err(|e| {
            EngineError::Store(StoreError::Encode(format!(
                "cannot mark package {package} as {}: {e}",
                if private { "private" } else { "public" }
            )))
        })
    }

    pub fn save_package(&self, hash: &PackageHash, tar: &[u8]) -> Result<(), EngineError> {
        let path = self.package_path(hash);
        if path.exists() {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // Owner only, like everything in the data dir.
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(crate::datadir::FILE_MODE)
                .open(&tmp)?;
            f.write_all(tar)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            EngineError::Store(StoreError::Encode(format!(
                "cannot save package {}: {e}",
                path.display()
            )))
        })
    }
}
