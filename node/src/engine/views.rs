//! The engine's answers as the Application API shows them, and what an Application
//! asks for: plain data, serialized as JSON by the API.

use crate::store::ServiceEntry;
use serde::Serialize;

// The Application API's bodies are declared once, in mesg-api-types (shared with the CLI).
pub use mesg_api_types::{CreateExecution, DeployProgress, InstanceView, ServiceView};

impl From<&ServiceEntry> for ServiceView {
    fn from(e: &ServiceEntry) -> Self {
        ServiceView {
            hash: e.record.service_hash,
            sid: e.record.definition.sid.clone(),
            name: e.record.definition.name.clone(),
            definition: e.record.definition.clone(),
            package_hash: e.record.package_hash,
            package_size: e.record.package_size,
            publisher: e.record.publisher,
            sid_publisher: None,
            image: e.image.clone(),
            deployed_at: e.deployed_at,
        }
    }
}

/// What `Engine::recover` did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RecoveryReport {
    pub reconcile: Option<crate::runtime::ReconcileReport>,
    pub redispatched: usize,
    pub kept_running: usize,
    pub failed: usize,
    pub expired: usize,
}
