//! [`FileError`]: one problem in a YAML file, shared by service definitions and process
//! files so that both report a problem the same way (field path, position, message and,
//! when there is one, what the author probably meant).

use super::Pos;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem in a file. Shown as `LINE:COL: path: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct FileError {
    /// Dotted field path, e.g. `tasks.send.inputs.email.type` or
    /// `steps[2] (store).task.inputs.key`; empty for the whole file.
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    /// What was probably meant (a field name, a type name) when a close one exists; the
    /// message already says it, this is for tools that want it on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl FileError {
    /// A problem at a position of the file.
    pub fn at(path: &str, pos: Pos, message: impl Into<String>) -> FileError {
        FileError {
            path: path.to_string(),
            line: Some(pos.line),
            column: Some(pos.column),
            message: message.into(),
            suggestion: None,
        }
    }

    /// A problem of a field found after parsing, when its position is no longer known
    /// (e.g. a task a service does not have).
    pub fn unplaced(path: &str, message: impl Into<String>) -> FileError {
        FileError {
            path: path.to_string(),
            line: None,
            column: None,
            message: message.into(),
            suggestion: None,
        }
    }

    /// A problem of the whole file, without a position (e.g. an empty file).
    pub fn whole_file(message: impl Into<String>) -> FileError {
        FileError::unplaced("", message)
    }

    pub fn with_suggestion(mut self, suggestion: impl Into<String>) -> FileError {
        self.suggestion = Some(suggestion.into());
        self
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "{l}:{c}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every error of a file, one a line (the `Display` of both languages' error lists).
pub(crate) fn write_lines(errors: &[FileError], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            writeln!(f)?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{FileError, Pos};

    #[test]
    fn display_puts_the_position_and_the_path_first() {
        let e = FileError::at("tasks.a", Pos { line: 3, column: 5 }, "unknown field");
        assert_eq!(e.to_string(), "3:5: tasks.a: unknown field");
        assert_eq!(FileError::whole_file("empty").to_string(), "empty");
        assert_eq!(
            FileError::unplaced("steps[1] (x).task.task", "no task").to_string(),
            "steps[1] (x).task.task: no task"
        );
    }

    #[test]
    fn json_has_no_suggestion_field_unless_there_is_one() {
        let e = FileError::at("a", Pos { line: 1, column: 1 }, "m");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"path": "a", "line": 1, "column": 1, "message": "m"})
        );
        let back: FileError = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        let with = serde_json::to_value(e.with_suggestion("b")).unwrap();
        assert_eq!(with["suggestion"], "b");
    }
}
