//! YAML as both of mesg's file languages use it: service definitions (`mesg.yml`) and
//! process files.
//!
//! - `tree.rs`: the document tree with the position of every node (duplicate keys kept).
//! - `walker.rs`: the field walker the two validators share (required and optional
//!   fields, unknown fields with "did you mean", type errors naming the expected type).
//! - `error.rs`: [`FileError`], one problem of a file, the same for both languages.
//! - `suggestion.rs`: the closest allowed name to a misspelt one.

mod error;
pub(crate) mod suggestion;
mod tree;
mod walker;

pub use error::FileError;
pub(crate) use error::write_lines;
pub(crate) use tree::resolve_plain;
pub use tree::{Key, MAX_DEPTH, MAX_YAML_BYTES, Node, NodeKind, Pos, Scalar, YamlError, parse};
pub(crate) use walker::{Fields, NullSection, Walker, join_path, parse_root};
