//! Which images exist on the engine and which this node may use: a dependency's `image:`
//! and every image a Dockerfile builds from must exist and be built by this node (its
//! `mesg.node` label) or allowed by the operator ([`crate::runtime::policy`]). Nothing is
//! ever pulled.

use super::DockerRuntime;
use super::connection::is_not_found;
use super::names::label_of;
use crate::runtime::policy::dockerfile_images;
use crate::runtime::{PolicyError, RuntimeError, labels};
use bollard::Docker;
use mesg_protocol::ServiceDefinition;

impl DockerRuntime {
    pub(super) async fn image_exists_with(
        &self,
        docker: &Docker,
        image: &str,
    ) -> Result<bool, RuntimeError> {
        Ok(self.image_owner(docker, image).await?.is_some())
    }

    /// The image's `mesg.node` label (set on every image this node builds), `None` when
    /// the image does not exist.
    async fn image_owner(
        &self,
        docker: &Docker,
        image: &str,
    ) -> Result<Option<String>, RuntimeError> {
        match docker.inspect_image(image).await {
            Ok(info) => Ok(Some(
                label_of(
                    info.config.as_ref().and_then(|c| c.labels.as_ref()),
                    labels::NODE,
                )
                .unwrap_or("")
                .to_string(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.inner.fail(format!("inspect image {image}"), e)),
        }
    }

    /// [`crate::runtime::Runtime::check_definition`] on a connected engine.
    pub(super) async fn check_definition_with(
        &self,
        docker: &Docker,
        def: &ServiceDefinition,
    ) -> Result<(), RuntimeError> {
        let policy = &self.inner.config.policy;
        policy.check_ports(def)?;
        for (key, dep) in &def.dependencies {
            let image = dep.image.clone().unwrap_or_default();
            let owner = if image.is_empty() {
                None
            } else {
                self.image_owner(docker, &image).await?
            };
            let Some(owner) = owner else {
                return Err(RuntimeError::MissingImage {
                    key: key.clone(),
                    image,
                });
            };
            if owner != self.inner.config.node_id && !policy.image_listed(&image) {
                return Err(PolicyError::ImageNotAllowed {
                    key: key.clone(),
                    image,
                }
                .into());
            }
        }
        Ok(())
    }

    /// [`crate::runtime::Runtime::check_build`]: every image `dockerfile` builds from.
    pub(super) async fn check_build_images(&self, dockerfile: &str) -> Result<(), RuntimeError> {
        let images = dockerfile_images(dockerfile)?;
        if images.is_empty() {
            return Ok(());
        }
        let docker = self.docker().await?;
        for image in images {
            let owner = self.image_owner(&docker, &image).await?;
            let allowed = owner.is_some_and(|o| {
                o == self.inner.config.node_id || self.inner.config.policy.image_listed(&image)
            });
            if !allowed {
                return Err(PolicyError::BaseImageNotAllowed { image }.into());
            }
        }
        Ok(())
    }
}
