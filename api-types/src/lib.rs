//! The JSON bodies of a mesg node's Application API (HTTP), declared once: the node
//! serializes them, the CLI (and any Rust client) deserializes them, and the node's
//! OpenAPI document is generated from their schemas (utoipa `ToSchema` / `IntoParams`),
//! so the three cannot drift apart.
//!
//! One module per resource of the API. Protocol types that travel as they are
//! ([`mesg_protocol::Execution`], [`mesg_protocol::Event`], signed envelopes, hashes, keys)
//! stay in `mesg-protocol`, whose `openapi` feature gives them schemas.
//!
//! Numeric bounds in the schemas (`maximum = 18446744073709551615` on a `u64`) say what the
//! node can parse: a client (or a fuzzer reading the document) then never sends a number
//! the node must refuse for its size alone.

pub mod catalogue;
pub mod diagnosis;
pub mod error;
pub mod events;
pub mod executions;
pub mod instances;
pub mod ledger;
pub mod network;
pub mod node;
pub mod processes;
pub mod services;
pub mod verify;
mod whole;

pub use catalogue::{
    Catalogue, CatalogueEntry, CatalogueProvider, CatalogueQuery, CatalogueTask,
    DEFAULT_CATALOGUE_LIMIT, MAX_CATALOGUE_LIMIT,
};
pub use diagnosis::{Diagnosis, DiagnosisState, ExecutionView, PeerDiagnosis, PeerVerdict};
pub use error::{ApiError, StreamError};
pub use events::{EventList, EventQuery};
pub use executions::{
    CancelExecution, CreateExecution, CreateExecutionQuery, ExecutionPage, ExecutionQuery,
    ResultVerification, WaitQuery,
};
pub use instances::{
    ContainerState, DeleteInstanceQuery, DesiredState, InstanceList, InstanceState, InstanceStatus,
    InstanceView, LogLine, LogsQuery, ResourceLimits, StartInstance, StartInstanceQuery, StartLine,
    StopInstance,
};
pub use ledger::{
    LedgerAccount, LedgerAccounts, LedgerEntry, LedgerLog, LedgerLogQuery, ReceiptView,
    SetCreditLimit, SettleRequest, Settled,
};
pub use network::{
    BanPeer, NetworkServiceList, NetworkServiceView, NodeView, PeerInfo, PeerList,
    PeerReputationView, ProviderView,
};
pub use node::{DockerStatus, NodeInfo};
pub use processes::{
    Attempt, ProcessBody, ProcessCheck, ProcessList, ProcessView, RefusalReason, Run, RunList,
    RunStatus, RunsQuery, StepRun, StepStatus, TriggerRefusal,
};
pub use services::{
    DeployLine, DeployProgress, DeployQuery, PUBLISHER_CLAIM_HEADER, ServiceList, ServiceView,
};
