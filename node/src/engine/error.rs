use crate::runtime::{PolicyError, RuntimeError};
use crate::store::StoreError;
use mesg_protocol::schema::ValueErrors;
use mesg_protocol::{DefinitionErrors, ExecutionId, ServiceHash};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("invalid service definition:\n{0}")]
    InvalidDefinition(DefinitionErrors),
    #[error("invalid package: {0}")]
    InvalidPackage(String),
    #[error("invalid process:\n{0}")]
    InvalidProcess(mesg_protocol::process::ProcessErrors),
    #[error("invalid inputs: {0}")]
    InvalidInputs(ValueErrors),
    #[error("invalid event data: {0}")]
    InvalidEventData(ValueErrors),
    #[error("service {service} has no task `{task}` (tasks: {known})")]
    UnknownTask {
        service: ServiceHash,
        task: String,
        known: String,
    },
    #[error("service {service} has no event `{event}` (events: {known})")]
    UnknownEvent {
        service: ServiceHash,
        event: String,
        known: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid limits: {0}")]
    InvalidLimits(#[from] crate::runtime::limits::LimitError),
    #[error("{0}")]
    Conflict(String),
    /// An idempotency key already names another request (same requester).
    #[error("{0}")]
    IdempotencyKeyReused(String),
    #[error("execution {0} is not running on this instance")]
    NotOwner(ExecutionId),
    #[error("signature: {0}")]
    BadSignature(String),
    #[error("request replayed: this (signer, nonce) was seen before")]
    Replayed,
    #[error("no node runs service {0}; start an instance of it first")]
    NoProvider(ServiceHash),
    #[error("busy: {0}")]
    Busy(String),
    #[error("invalid or missing token")]
    Unauthorized,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("network: {0}")]
    Network(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error(transparent)]
    Name(#[from] super::services::names::NameError),
    #[error("{0}")]
    BadClaim(#[from] mesg_protocol::ClaimError),
    /// A signed request dated too far ahead of this node's clock, or already past its
    /// deadline.
    #[error("{0}")]
    RequestTime(#[from] mesg_protocol::RequestTimeError),
    /// A priced task asked for without a spending cap, or with a cap below its least cost.
    #[error("{}", price_above_cap_message(service, task, price, *max_price))]
    PriceAboveCap {
        service: ServiceHash,
        task: String,
        price: mesg_protocol::economy::Price,
        max_price: Option<u64>,
    },
    /// The economy's ledger (a credit limit reached, a corrupt record, an overflow).
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// A settlement refused or with nothing to settle.
    #[error(transparent)]
    Settle(#[from] crate::ledger::SettleError),
    /// A signed envelope issued too far ahead of this node's clock.
    #[error("signature: {0}: check the signer's clock")]
    NotYetValid(mesg_protocol::EnvelopeError),
}

/// "Task `t` of service S costs at least 1000 µc a call (its price: ...), above the
/// request's max_price of 500 µc: raise max_price to at least 1000".
fn price_above_cap_message(
    service: &ServiceHash,
    task: &str,
    price: &mesg_protocol::economy::Price,
    max_price: Option<u64>,
) -> String {
    let least = price.minimum();
    match max_price {
        None => format!(
            "price above cap: task `{task}` of service {service} is priced ({price}) and the request sets no spending cap: set max_price (`mesg exec --max-price N`, in micro-credits) to at least {least}"
        ),
        Some(cap) => format!(
            "price above cap: task `{task}` of service {service} costs at least {least} µc a call ({price}), above the request's max_price of {cap} µc: raise max_price to at least {least}"
        ),
    }
}

impl EngineError {
    /// A stable machine-readable code, part of the API contract.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::NotFound { .. } => "not_found",
            EngineError::InvalidDefinition(_) => "invalid_definition",
            EngineError::InvalidProcess(_) => "invalid_process",
            EngineError::InvalidPackage(_) => "invalid_package",
            EngineError::InvalidInputs(_) => "invalid_inputs",
            EngineError::InvalidEventData(_) => "invalid_event_data",
            EngineError::UnknownTask { .. } => "unknown_task",
            EngineError::UnknownEvent { .. } => "unknown_event",
            EngineError::BadRequest(_) => "bad_request",
            EngineError::InvalidLimits(_) => "invalid_limits",
            EngineError::Conflict(_) => "conflict",
            EngineError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            EngineError::NotOwner(_) => "not_owner",
            EngineError::BadSignature(_) => "bad_signature",
            EngineError::Replayed => "replayed",
            EngineError::NoProvider(_) => "no_provider",
            EngineError::Busy(_) => "busy",
            EngineError::Unauthorized => "unauthorized",
            EngineError::Runtime(RuntimeError::Unavailable(_)) => "docker_unavailable",
            EngineError::Runtime(RuntimeError::MissingImage { .. }) => "missing_image",
            EngineError::Runtime(RuntimeError::UndeclaredEnv { .. }) => "undeclared_env",
            EngineError::Runtime(RuntimeError::Policy(
                PolicyError::ImageNotAllowed { .. } | PolicyError::BaseImageNotAllowed { .. },
            )) => "image_not_allowed",
            EngineError::Runtime(RuntimeError::Policy(PolicyError::ReservedPort { .. })) => {
                "reserved_port"
            }
            EngineError::Runtime(RuntimeError::Policy(_)) => "bad_request",
            EngineError::Runtime(RuntimeError::Build(_)) => "build_failed",
            EngineError::Runtime(RuntimeError::UnknownInstance(_)) => "not_found",
            EngineError::Runtime(_) => "runtime_error",
            EngineError::Store(_) => "store_error",
            EngineError::Network(_) => "network_error",
            EngineError::Timeout(_) => "timeout",
            EngineError::Name(e) => e.code(),
            EngineError::PriceAboveCap { .. } => "price_above_cap",
            EngineError::BadClaim(_) => "bad_publisher_claim",
            EngineError::Ledger(crate::ledger::LedgerError::CreditLimit { .. }) => "credit_limit",
            EngineError::Ledger(_) => "ledger_error",
            EngineError::Settle(crate::ledger::SettleError::NothingOwed { .. }) => "nothing_owed",
            EngineError::Settle(_) => "settlement_refused",
            EngineError::RequestTime(mesg_protocol::RequestTimeError::InTheFuture { .. })
            | EngineError::NotYetValid(_) => "clock_skew",
            EngineError::RequestTime(mesg_protocol::RequestTimeError::DeadlinePassed {
                ..
            }) => "expired",
        }
    }

    /// One line per detail (validation errors), for clients that show lists.
    pub fn details(&self) -> Vec<String> {
        match self {
            EngineError::InvalidDefinition(e) => e.0.iter().map(|e| e.to_string()).collect(),
            EngineError::InvalidProcess(e) => e.0.iter().map(|e| e.to_string()).collect(),
            EngineError::InvalidInputs(e) | EngineError::InvalidEventData(e) => {
                e.0.iter().map(|e| e.to_string()).collect()
            }
            EngineError::Name(e) => e.details(),
            _ => Vec::new(),
        }
    }
}
