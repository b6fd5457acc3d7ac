//! The errors of a process file: [`ProcessError`] is the shared
//! [`FileError`] (the same type service definitions report), and
//! [`ProcessErrors`] is every one of a file.

use crate::yaml::FileError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem in a process file: the step, the field path (`steps[2] (store).task.inputs.key`
/// or a top-level field), the position.
pub type ProcessError = FileError;

/// Every problem found in a process file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct ProcessErrors(pub Vec<ProcessError>);

impl fmt::Display for ProcessErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::yaml::write_lines(&self.0, f)
    }
}
