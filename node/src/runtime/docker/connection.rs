//! The connection to the Docker Engine: a lazily connected, version-negotiated bollard
//! client, dropped again when the engine stops answering so the next call reconnects;
//! how bollard's errors become [`RuntimeError`]s; and `check` (the engine's version).

use super::{DockerRuntime, Inner, lock};
use crate::runtime::{DockerInfo, RuntimeError};
use bollard::Docker;
use bollard::errors::Error as DockerError;
use std::fmt;
use std::time::Duration;
use tracing::info;

/// How long the first contact (`/version`) may take before the engine counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl DockerRuntime {
    /// The connected client, connecting first if needed (and starting the event watcher
    /// if someone subscribed).
    pub(super) async fn docker(&self) -> Result<Docker, RuntimeError> {
        self.ensure_watcher();
        self.inner.docker().await
    }

    /// [`crate::runtime::Runtime::check`]: the engine's version, connecting if needed.
    pub(super) async fn version(&self) -> Result<DockerInfo, RuntimeError> {
        let docker = self.docker().await?;
        let v = docker
            .version()
            .await
            .map_err(|e| self.inner.fail("version", e))?;
        Ok(DockerInfo {
            server_version: v.version.unwrap_or_default(),
            api_version: docker.client_version().to_string(),
        })
    }
}

impl Inner {
    pub(super) fn host_display(&self) -> String {
        match &self.host {
            Some(h) => h.clone(),
            None => match std::env::var("DOCKER_HOST") {
                Ok(h) if h.starts_with("unix://") => h,
                _ => "unix:///var/run/docker.sock".to_string(),
            },
        }
    }

    pub(super) async fn docker(&self) -> Result<Docker, RuntimeError> {
        if let Some(d) = lock(&self.client).clone() {
            return Ok(d);
        }
        let host = self.host_display();
        let docker = match &self.host {
            Some(h) => Docker::connect_with_host(h),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| RuntimeError::Unavailable(format!("{host}: {e}")))?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| {
                RuntimeError::Unavailable(format!(
                    "{host}: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| RuntimeError::Unavailable(format!("{host}: {e}")))?;
        info!(%host, api = %docker.client_version(), "connected to the Docker Engine");
        *lock(&self.client) = Some(docker.clone());
        Ok(docker)
    }

    /// Forget the client: the next call connects (and negotiates) again.
    pub(super) fn disconnect(&self) {
        *lock(&self.client) = None;
    }

    /// A bollard error as a [`RuntimeError`]; transport failures drop the client so the
    /// next call connects (and negotiates) again.
    pub(super) fn fail(&self, what: impl fmt::Display, e: DockerError) -> RuntimeError {
        if is_transport(&e) {
            self.disconnect();
            RuntimeError::Unavailable(format!("{}: {what}: {e}", self.host_display()))
        } else {
            match e {
                DockerError::DockerResponseServerError { message, .. } => {
                    RuntimeError::Docker(format!("{what}: {message}"))
                }
                e => RuntimeError::Docker(format!("{what}: {e}")),
            }
        }
    }
}

fn is_transport(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::SocketNotFoundError(_)
            | DockerError::HyperLegacyError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::IOError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::UnsupportedURISchemeError { .. }
    )
}

/// Whether Docker answered with HTTP status `code`.
pub(super) fn is_status(e: &DockerError, code: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

pub(super) fn is_not_found(e: &DockerError) -> bool {
    is_status(e, 404)
}
