//! What a process file names, found before (and regardless of) validation: the
//! `$(env:NAME)` values it needs and the services it uses, so the node can resolve those
//! services first and report unknown ones together with the file's other errors.

use crate::yaml::{self, Node, NodeKind};

/// `$(env:NAME)` references in a text.
pub fn env_references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("$(env:") {
        let after = &rest[i + 6..];
        match after.find(')') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// A service named by a step (`trigger.service` or `task.service`), found even in a file
/// that has other errors, so that unknown services are reported with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// `steps[2] (store).task.service`
    pub path: String,
    pub name: String,
    pub line: usize,
    pub column: usize,
}

/// Every service a process file names (best effort on malformed files).
pub fn service_refs(src: &str) -> Vec<ServiceRef> {
    let Ok(Some(root)) = yaml::parse(src) else {
        return Vec::new();
    };
    let get = |node: &Node, key: &str| -> Option<Node> {
        match &node.kind {
            NodeKind::Mapping(entries) => entries
                .iter()
                .find(|(k, _)| k.text == key)
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    };
    let Some(steps) = get(&root, "steps") else {
        return Vec::new();
    };
    let NodeKind::Sequence(items) = &steps.kind else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = match get(item, "key").map(|n| n.kind) {
            Some(NodeKind::Scalar(_, text)) => text,
            _ => format!("step{i}"),
        };
        for field in ["trigger", "task"] {
            if let Some(section) = get(item, field)
                && let Some(service) = get(&section, "service")
                && let NodeKind::Scalar(_, name) = &service.kind
            {
                out.push(ServiceRef {
                    path: format!("steps[{i}] ({key}).{field}.service"),
                    name: name.clone(),
                    line: service.pos.line,
                    column: service.pos.column,
                });
            }
        }
    }
    out
}
