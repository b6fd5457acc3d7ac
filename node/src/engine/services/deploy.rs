//! Deploying a package: checks (definition, Dockerfile and images under this node's
//! rules, the publisher's claim on the sid), the package kept on disk, the image built,
//! the service recorded.

use super::Services;
use crate::engine::error::EngineError;
use crate::engine::views::{DeployProgress, ServiceView};
use crate::engine::{config::SIGNED_TTL_MS, image_tag};
use crate::store::ServiceEntry;
use mesg_package::Package;
use mesg_protocol::envelope::Signed;
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_PACKAGE_MESSAGE;
use mesg_protocol::{ServiceDefinition, ServiceRecord, SignedClaim, now_ms};
use tokio::sync::mpsc;

impl Services {
    /// Deploy a package checked by [`Services::check_package`]: store the package, build
    /// the image, record the service (the caller publishes it to the network). Progress
    /// lines go to `progress`. A `private` package is never served to peers (see
    /// [`Services::is_private_package`]). `claim` is
    /// the publisher's signed claim on the service's sid (from a CLI account); without one,
    /// this node's key publishes the sid.
    pub async fn deploy(
        &self,
        package: Package,
        definition: ServiceDefinition,
        private: bool,
        claim: Option<SignedClaim>,
        progress: mpsc::Sender<DeployProgress>,
    ) -> Result<ServiceEntry, EngineError> {
        let service_hash = definition.service_hash(&package.hash());
        let say = |message: String| {
            let progress = progress.clone();
            async move {
                let _ = progress.send(DeployProgress::Progress { message }).await;
            }
        };
        let claim = match (&definition.sid, claim) {
            (Some(sid), Some(c)) => {
                c.verify_for(&service_hash, sid, now_ms())?;
                Some(c)
            }
            (Some(sid), None) => Some(SignedClaim::sign(&self.key, sid, service_hash, now_ms())?),
            (None, Some(_)) => {
                return Err(EngineError::BadRequest(
                    "a publisher claim was sent for a service without a sid; remove it or add a sid to mesg.yml".into(),
                ));
            }
            (None, None) => None,
        };
        if let Some(c) = &claim {
            self.check_local_claim(c)?;
            let who = if c.claim.publisher == self.node() {
                " (this node's key: deploy with `mesg --account NAME service deploy` to publish it as your account)"
            } else {
                ""
            };
            say(format!(
                "sid {} published by {}{who}",
                c.claim.sid, c.claim.publisher
            ))
            .await;
        }
        say(format!(
            "package {}: {} files, {} bytes; service hash {}",
            package.hash(),
            package.file_count(),
            package.size(),
            service_hash
        ))
        .await;
        self.check_runnable(&package, &definition).await?;
        let (package_hash, package_size, file_count) =
            (package.hash(), package.size(), package.file_count());
        // Each file's bytes are released as the tar is written: one copy in memory.
        let tar = package
            .into_tar_bytes()
            .map_err(|e| EngineError::InvalidPackage(e.to_string()))?;
        self.save_package(&package_hash, &tar)?;
        self.set_private_package(&package_hash, private)?;
        say(if private {
            format!(
                "private: the package ({file_count} files) stays on this node; peers can route executions to it but cannot fetch the package to run the service themselves"
            )
        } else {
            format!(
                "public: any peer of the network can fetch this package ({file_count} files, {package_size} bytes, the whole build context minus .dockerignore) to run the service; deploy with --private to keep it on this node"
            )
        })
        .await;
        let image = image_tag(&self.node(), &service_hash);
        say(format!("building image {image}")).await;
        let (line_tx, mut line_rx) = mpsc::channel::<String>(256);
        let forward = {
            let progress = progress.clone();
            tokio::spawn(async move {
                while let Some(line) = line_rx.recv().await {
                    let line = line.trim_end().to_string();
                    if !line.is_empty() {
                        let _ = progress
                            .send(DeployProgress::Progress { message: line })
                            .await;
                    }
                }
            })
        };
        let built = self.runtime.build(tar, &image, line_tx).await;
        let _ = forward.await;
        built?;
        let record = ServiceRecord {
            service_hash,
            definition,
            package_hash,
            package_size,
            publisher: self.node(),
        };
        let entry = self.record_service(record, Some(image))?;
        if let Some(c) = &claim {
            self.commit_local_claim(c)?;
        }
        self.store.persist().await?;
        Ok(entry)
    }

    /// A service as the API shows it, with its sid's publisher.
    pub fn view(&self, entry: &ServiceEntry) -> ServiceView {
        let mut v = ServiceView::from(entry);
        v.sid_publisher = entry
            .record
            .definition
            .sid
            .as_ref()
            .and_then(|_| self.stored_claim(&entry.record.service_hash))
            .map(|c| c.claim.publisher);
        v
    }

    /// Whether this node may build `package` and run `definition`'s containers (images
    /// built by this node or allowed by its operator, in the Dockerfile and as
    /// dependencies; no host port of the node's own), asked before anything is stored or
    /// built.
    pub async fn check_runnable(
        &self,
        package: &Package,
        definition: &ServiceDefinition,
    ) -> Result<(), EngineError> {
        let dockerfile = package.dockerfile_text().ok_or_else(|| {
            EngineError::InvalidPackage(
                "the Dockerfile must be a regular UTF-8 file, not a link".into(),
            )
        })?;
        self.runtime.check_build(&dockerfile).await?;
        Ok(self.runtime.check_definition(definition).await?)
    }

    /// Parse and validate a package tar.
    pub fn check_package(&self, tar: &[u8]) -> Result<(Package, ServiceDefinition), EngineError> {
        let package = Package::from_tar(tar, self.config.max_package_bytes)
            .map_err(|e| EngineError::InvalidPackage(e.to_string()))?;
        let definition = package
            .definition()
            .map_err(EngineError::InvalidDefinition)?;
        Ok((package, definition))
    }

    pub fn record_service(
        &self,
        record: ServiceRecord,
        image: Option<String>,
    ) -> Result<ServiceEntry, EngineError> {
        let signed = Signed::sign(
            &self.key,
            domains::SERVICE_RECORD,
            &record,
            now_ms(),
            SIGNED_TTL_MS,
            MAX_PACKAGE_MESSAGE,
        )
        .map_err(|e| EngineError::InvalidPackage(e.to_string()))?;
        let entry = ServiceEntry {
            record,
            signed,
            image,
            deployed_at: now_ms(),
        };
        self.store.put_service(&entry)?;
        Ok(entry)
    }
}
