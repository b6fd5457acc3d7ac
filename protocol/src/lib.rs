//! mesg protocol: the types every part of mesg shares, and nothing that does I/O.
//!
//! - [`definition`]: `mesg.yml`, strict validation, canonical encoding and [`ServiceHash`].
//! - [`process`]: process files (a trigger and steps), their validation and evaluation.
//! - [`yaml`]: the positioned YAML tree, the field walker and the error type both file
//!   languages share.
//! - [`schema`]: typed parameters and validation of JSON values against them.
//! - [`hash`], [`package`]: content hashes.
//! - [`keys`], [`envelope`]: ed25519 keys (also libp2p identities) and signed envelopes.
//! - [`types`], [`messages`]: executions, events, announcements, and what nodes exchange.
//! - [`publisher`]: a publisher's signed claim binding a sid to a service hash.
//! - [`economy`]: prices, amounts, spending caps, costs and signed usage receipts.
//! - [`verification`]: k-of-n verification: commit and reveal, the verdict logic.
//! - [`wire`]: the size-limited, versioned binary codec.
//! - [`service_api`]: the JSON API between a node and its service containers.
//! - `openapi` (feature `openapi`): OpenAPI schemas of the types the Application API carries.

pub mod canonical;
pub mod control;
pub mod definition;
pub mod economy;
pub mod envelope;
pub mod evidence;
pub mod hardening;
pub mod hash;
pub mod keys;
pub mod messages;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod package;
pub mod process;
pub mod publisher;
mod request_codec;
pub mod schema;
pub mod service_api;
pub mod types;
pub mod value;
pub mod verification;
pub mod wire;
pub mod yaml;

pub use control::{Cause, CauseRef};
pub use definition::{DefinitionError, DefinitionErrors, ServiceDefinition};
pub use envelope::{Claims, EnvelopeError, Signed};
pub use hash::{EnvHash, Hash32, InstanceHash, PackageHash, ServiceHash};
pub use keys::{Keypair, PublicKey};
pub use publisher::{ClaimError, PublisherClaim, SignedClaim};
pub use types::*;
pub use value::{Bytes, Json};
