//! The catalogue (`GET /v1/catalogue`): the services this node knows of on the network,
//! with their publisher, their tasks' prices and their providers, filtered by sid, task,
//! price and publisher. It exists so that a client can find what to run and what it
//! costs before it runs it, as MESG's marketplace did, without a chain: everything in it
//! comes from signed announcements and self-certifying service records.

use mesg_protocol::economy::Price;
use mesg_protocol::{PublicKey, ServiceHash};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Services `GET /v1/catalogue` answers when the query names no limit.
pub const DEFAULT_CATALOGUE_LIMIT: usize = 100;
/// Most services one answer lists.
pub const MAX_CATALOGUE_LIMIT: usize = 1000;
/// Shortest publisher prefix accepted: shorter would match keys by chance.
pub const MIN_PUBLISHER_PREFIX: usize = 4;
/// Longest publisher filter (a base58 ed25519 key has at most 44 characters).
pub const MAX_PUBLISHER_FILTER: usize = 64;

/// The query of `GET /v1/catalogue`. Every filter is optional; together they all apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogueQuery {
    /// A sid or the start of one (`ech` finds `echo` and `echo-2`; an exact match comes
    /// first): lowercase letters, digits, `-` and `.`, at most 63 characters.
    #[param(pattern = r"^[a-z0-9.-]{1,63}$")]
    pub sid: Option<String>,
    /// A task key: only services that have this task, and only this task listed.
    #[param(pattern = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
    pub task: Option<String>,
    /// Only tasks whose `call` price (µc, the least one call costs) is at most this; a
    /// free task costs 0. Services left with no task are not listed.
    #[param(maximum = 18446744073709551615u64)]
    pub max_price: Option<u64>,
    /// A publisher's public key (base58), or its first characters (at least 4).
    #[param(pattern = r"^[1-9A-HJ-NP-Za-km-z]{4,64}$")]
    pub publisher: Option<String>,
    /// At most this many services (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A task of a catalogued service, with its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogueTask {
    pub key: String,
    pub name: Option<String>,
    /// The task's price (µc); null: free.
    pub price: Option<Price>,
    /// No price, or every part of it 0.
    pub free: bool,
}

/// A node that runs an instance of a catalogued service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogueProvider {
    pub node: PublicKey,
    pub peer_id: String,
    /// This node itself.
    pub local: bool,
    /// Executions in progress on the provider's instance, as the provider announced it
    /// (its own claim, unverifiable; 0 to 2^32-1).
    pub in_flight: u32,
    /// Milliseconds since this node last heard the provider announce it (0 for itself).
    #[schema(maximum = 18446744073709551615u64)]
    pub last_seen_ms_ago: u64,
    /// When that announcement expires.
    #[schema(maximum = 18446744073709551615u64)]
    pub expires_in_ms: u64,
}

/// A service of the network, as the catalogue lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogueEntry {
    pub service_hash: ServiceHash,
    pub sid: Option<String>,
    /// The definition's name; null when the definition is not known here.
    pub name: Option<String>,
    pub description: Option<String>,
    /// The keys whose signed claim on the sid, for this service hash, this node verified
    /// (usually one). Empty: unpublished, usable by hash only.
    pub publishers: Vec<PublicKey>,
    /// The publisher's share of each amount, in basis points (0 when the definition sets
    /// none); null when the definition is not known here.
    #[schema(maximum = 10000)]
    pub publisher_share_bps: Option<u16>,
    /// Whether this node has the service's definition (deployed here, or its record
    /// fetched from the network and checked against the hash). False: known from
    /// announcements only, its record not found yet; `tasks` is then empty.
    pub definition_known: bool,
    pub tasks: Vec<CatalogueTask>,
    /// Providers, least loaded first.
    pub providers: Vec<CatalogueProvider>,
}

/// `GET /v1/catalogue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Catalogue {
    /// Exact sid matches first, then by sid and hash.
    pub services: Vec<CatalogueEntry>,
    /// Services that matched, before the limit.
    #[schema(maximum = 18446744073709551615u64)]
    pub matched: u64,
    /// Services whose record this node could not fetch in time for this answer (listed
    /// with `definition_known: false` unless a task or price filter excluded them).
    #[schema(maximum = 18446744073709551615u64)]
    pub unfetched: u64,
}
