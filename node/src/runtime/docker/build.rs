//! Image builds: a package's tar built as one tagged image, labelled as this node's,
//! without network and within [`BUILD_MEMORY`] and one CPU (a package builds `FROM
//! scratch` or local images, so it needs no network, and a hostile Dockerfile must not
//! reach one or exhaust the host). Build output goes line by line to the caller.

use super::DockerRuntime;
use crate::runtime::{RuntimeError, labels};
use bollard::errors::Error as DockerError;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;
use mesg_protocol::ServiceHash;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tracing::info;

/// Memory of one image build (bytes, swap included): enough to copy a package of
/// [`mesg_package::DEFAULT_MAX_PACKAGE_BYTES`] several times over, not enough to take the
/// host down.
pub const BUILD_MEMORY: i32 = 1024 * 1024 * 1024;
/// CPU of one image build, as a CFS quota over [`BUILD_CPU_PERIOD`]: one CPU.
pub const BUILD_CPU_QUOTA: i32 = 100_000;
/// The CFS period (µs) of [`BUILD_CPU_QUOTA`].
pub const BUILD_CPU_PERIOD: i32 = 100_000;

impl DockerRuntime {
    /// [`crate::runtime::Runtime::build`].
    pub(super) async fn build_image(
        &self,
        tar: Vec<u8>,
        tag: &str,
        progress: mpsc::Sender<String>,
    ) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let labels = HashMap::from([(labels::NODE, self.inner.config.node_id.as_str())]);
        let opts = BuildImageOptionsBuilder::new()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .networkmode("none")
            .memory(BUILD_MEMORY)
            .memswap(BUILD_MEMORY)
            .cpuperiod(BUILD_CPU_PERIOD)
            .cpuquota(BUILD_CPU_QUOTA)
            .labels(&labels)
            .build();
        let body = bollard::body_full(bytes::Bytes::from(tar));
        let mut out = docker.build_image(opts, None, Some(body));
        while let Some(item) = out.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream {
                        for line in text.lines() {
                            let line = line.trim_end();
                            if !line.is_empty() {
                                // A gone receiver only means nobody watches.
                                let _ = progress.send(line.to_string()).await;
                            }
                        }
                    }
                    if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                        return Err(RuntimeError::Build(msg));
                    }
                }
                Err(DockerError::DockerStreamError { error }) => {
                    return Err(RuntimeError::Build(error));
                }
                Err(DockerError::DockerResponseServerError { message, .. }) => {
                    return Err(RuntimeError::Build(message));
                }
                Err(e) => return Err(self.inner.fail(format!("build {tag}"), e)),
            }
        }
        info!("image built");
        Ok(())
    }
}

/// The service hash an image tag ends with (`mesg-service:<node8>-<service hash>`, as the
/// engine names images), for the build span; `None` for any other tag.
pub(super) fn service_of_tag(tag: &str) -> Option<ServiceHash> {
    let (_, name) = tag.rsplit_once(':')?;
    let (_, service) = name.rsplit_once('-')?;
    service.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::service_of_tag;
    use mesg_protocol::{Hash32, ServiceHash};

    #[test]
    fn build_span_finds_the_service_in_the_engine_s_tags() {
        let service = ServiceHash(Hash32::sha256(b"s"));
        assert_eq!(
            service_of_tag(&format!("mesg-service:abcd1234-{service}")),
            Some(service)
        );
        assert_eq!(service_of_tag("redis:7"), None);
        assert_eq!(service_of_tag("mesg-test-x"), None);
    }
}
