//! The errors of a definition file: [`DefinitionError`] is the shared
//! [`FileError`] (the same type process files report), and
//! [`DefinitionErrors`] is every one of a file.

use crate::yaml::FileError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem in a definition file: field path, position, message.
pub type DefinitionError = FileError;

/// Every problem found in a definition file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct DefinitionErrors(pub Vec<DefinitionError>);

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::yaml::write_lines(&self.0, f)
    }
}
