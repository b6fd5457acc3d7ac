//! The field walker both file languages validate with. A validator (of `mesg.yml` or of a
//! process file) walks the [`Node`] tree through a [`Walker`], which checks the shape of
//! each node (fields of a mapping, required fields, the expected type) and collects every
//! problem as a [`FileError`] instead of stopping at the first, so a file's problems are
//! all reported at once, worded the same way in both languages.

use super::suggestion;
use super::{FileError, Key, Node, NodeKind, Pos, Scalar};
use std::collections::BTreeMap;

/// The known fields of a mapping, by name.
pub type Fields<'n> = BTreeMap<&'static str, &'n Node>;

/// What a field with nothing after it (`tasks:`) is, where a mapping or a list is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullSection {
    /// An empty mapping or list (service definitions: `tasks:` declares no tasks).
    Empty,
    /// A type error (process files: `trigger:` must say what triggers).
    Refused,
}

/// Collects the problems of one file while its validator walks the tree.
#[derive(Debug)]
pub struct Walker {
    errors: Vec<FileError>,
    null_section: NullSection,
}

/// `parent.key`, or `key` at the top.
pub fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The root node of a file, or the one error that stops validation: a file that is not
/// YAML (`invalid YAML: …`, with its position) or an empty one (`empty_message`).
pub fn parse_root(src: &str, empty_message: &str) -> Result<Node, FileError> {
    match super::parse(src) {
        Ok(Some(root)) => Ok(root),
        Ok(None) => Err(FileError::whole_file(empty_message)),
        Err(e) => Err(FileError {
            path: String::new(),
            line: Some(e.line),
            column: Some(e.column),
            message: format!("invalid YAML: {}", e.message),
            suggestion: None,
        }),
    }
}

impl Walker {
    pub fn new(null_section: NullSection) -> Walker {
        Walker {
            errors: Vec::new(),
            null_section,
        }
    }

    /// Record a problem at `pos`.
    pub fn error(&mut self, path: &str, pos: Pos, message: impl Into<String>) {
        self.errors.push(FileError::at(path, pos, message));
    }

    /// Record a problem built by the caller (e.g. one without a position).
    pub fn push(&mut self, error: FileError) {
        self.errors.push(error);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The problems in file order; those without a position last.
    pub fn into_errors(mut self) -> Vec<FileError> {
        self.errors
            .sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
        self.errors
    }

    /// `expected EXPECTED, got KIND` for a node of the wrong type.
    pub fn type_error(&mut self, path: &str, node: &Node, expected: &str) {
        self.error(
            path,
            node.pos,
            format!("expected {expected}, got {}", node.kind_name()),
        );
    }

    /// A mapping's entries in file order (duplicates kept).
    pub fn mapping<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [(Key, Node)]> {
        match &node.kind {
            NodeKind::Mapping(entries) => Some(entries),
            NodeKind::Scalar(Scalar::Null, _) if self.null_section == NullSection::Empty => {
                Some(&[])
            }
            _ => {
                self.type_error(path, node, "a mapping");
                None
            }
        }
    }

    /// The entries of a mapping with a fixed set of fields. An unknown field is an error
    /// that lists the allowed ones and suggests the closest; a field given twice is an
    /// error. `None` when the node is not a mapping.
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&'static str],
    ) -> Option<Fields<'n>> {
        let entries = self.mapping(node, path)?;
        let mut out = Fields::new();
        for (key, value) in entries {
            let field_path = join_path(path, &key.text);
            match allowed.iter().find(|a| **a == key.text) {
                Some(name) => {
                    if out.insert(name, value).is_some() {
                        self.error(&field_path, key.pos, "duplicate key");
                    }
                }
                None => {
                    let closest = suggestion::closest(&key.text, allowed);
                    let message = format!(
                        "unknown field{}; allowed fields: {}",
                        suggestion::hint(closest),
                        allowed.join(", ")
                    );
                    let mut error = FileError::at(&field_path, key.pos, message);
                    error.suggestion = closest.map(str::to_string);
                    self.push(error);
                }
            }
        }
        Some(out)
    }

    /// A field that must be there: `PATH.NAME: required field is missing` at the position
    /// of the mapping (`pos`) when it is not.
    pub fn required<'n>(
        &mut self,
        fields: &Fields<'n>,
        name: &'static str,
        path: &str,
        pos: Pos,
    ) -> Option<&'n Node> {
        let node = fields.get(name).copied();
        if node.is_none() {
            self.error(&join_path(path, name), pos, "required field is missing");
        }
        node
    }

    /// A string. A plain number where text is wanted (`ports: [80]`, `name: 2048`) is
    /// taken as written.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Str(s), _) => Some(s.clone()),
            NodeKind::Scalar(Scalar::Int(_) | Scalar::Float(_), text) => Some(text.clone()),
            _ => {
                self.type_error(path, node, "a string");
                None
            }
        }
    }

    /// Any scalar but null, as written (`true`, `80`, `tick`).
    pub fn scalar_text(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Null, _) | NodeKind::Mapping(_) | NodeKind::Sequence(_) => {
                self.type_error(path, node, "a string");
                None
            }
            NodeKind::Scalar(_, text) => Some(text.clone()),
        }
    }

    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Bool(b), _) => Some(*b),
            _ => {
                self.type_error(path, node, "true or false");
                None
            }
        }
    }

    /// A list's items.
    pub fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Sequence(items) => Some(items),
            NodeKind::Scalar(Scalar::Null, _) if self.null_section == NullSection::Empty => {
                Some(&[])
            }
            _ => {
                self.type_error(path, node, "a list");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{NullSection, Walker, join_path, parse_root};
    use crate::yaml::{Node, Pos};

    fn root(src: &str) -> Node {
        parse_root(src, "empty").unwrap()
    }

    fn messages(w: Walker) -> Vec<String> {
        w.into_errors().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn unknown_fields_list_the_allowed_ones_and_suggest_the_closest() {
        let mut w = Walker::new(NullSection::Refused);
        let node = root("nmae: x\nzzz: 1\nname: y\nname: z\n");
        let f = w.fields(&node, "top", &["name", "steps"]).unwrap();
        assert_eq!(f.len(), 1);
        let errors = w.into_errors();
        assert_eq!(
            errors[0].to_string(),
            "1:1: top.nmae: unknown field (did you mean `name`?); allowed fields: name, steps"
        );
        assert_eq!(errors[0].suggestion.as_deref(), Some("name"));
        assert_eq!(
            errors[1].to_string(),
            "2:1: top.zzz: unknown field; allowed fields: name, steps"
        );
        assert_eq!(errors[1].suggestion, None);
        assert_eq!(errors[2].to_string(), "4:1: top.name: duplicate key");
    }

    #[test]
    fn an_empty_section_is_empty_or_refused_as_the_language_says() {
        let node = root("a:\n");
        let crate::yaml::NodeKind::Mapping(entries) = &node.kind else {
            panic!()
        };
        let null = &entries[0].1;
        let mut w = Walker::new(NullSection::Empty);
        assert_eq!(w.fields(null, "a", &["x"]).map(|f| f.len()), Some(0));
        assert_eq!(w.list(null, "a").map(<[Node]>::len), Some(0));
        assert!(!w.has_errors());
        let mut w = Walker::new(NullSection::Refused);
        assert!(w.fields(null, "a", &["x"]).is_none());
        assert!(w.list(null, "a").is_none());
        assert_eq!(
            messages(w),
            [
                "1:2: a: expected a mapping, got null",
                "1:2: a: expected a list, got null"
            ]
        );
    }

    #[test]
    fn required_fields_and_types() {
        let mut w = Walker::new(NullSection::Empty);
        let node = root("flag: 3\ntext: [a]\nnum: 80\n");
        let f = w
            .fields(&node, "", &["flag", "text", "num", "name"])
            .unwrap();
        assert!(w.required(&f, "name", "", node.pos).is_none());
        assert_eq!(w.bool(f["flag"], "flag"), None);
        assert_eq!(w.string(f["text"], "text"), None);
        assert_eq!(w.string(f["num"], "num").as_deref(), Some("80"));
        assert_eq!(w.scalar_text(f["num"], "num").as_deref(), Some("80"));
        assert_eq!(
            messages(w),
            [
                "1:1: name: required field is missing",
                "1:7: flag: expected true or false, got a number",
                "2:7: text: expected a string, got a list",
            ]
        );
    }

    #[test]
    fn errors_come_in_file_order_with_unplaced_ones_last() {
        let mut w = Walker::new(NullSection::Empty);
        w.push(crate::yaml::FileError::unplaced("z", "later"));
        w.error("b", Pos { line: 2, column: 1 }, "second");
        w.error("a", Pos { line: 1, column: 4 }, "first");
        assert_eq!(messages(w), ["1:4: a: first", "2:1: b: second", "z: later"]);
    }

    #[test]
    fn a_file_that_is_not_yaml_or_empty_stops_at_the_root() {
        let e = parse_root("a: [1\n", "empty").unwrap_err();
        assert!(e.message.starts_with("invalid YAML: "), "{e}");
        assert!(e.line.is_some());
        let e = parse_root("", "the file is empty").unwrap_err();
        assert_eq!(e.to_string(), "the file is empty");
        assert_eq!(join_path("", "a"), "a");
        assert_eq!(join_path("a", "b"), "a.b");
    }
}
