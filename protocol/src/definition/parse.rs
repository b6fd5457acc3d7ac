//! Reading `mesg.yml`: [`ServiceDefinition::from_yaml`] walks the YAML tree with the
//! shared [`Walker`] and checks the top level, tasks, events and parameters here (the
//! containers in [`super::container`]), reporting every problem of the file at once.

use super::syntax::{is_valid_key, is_valid_sid, parse_duration_ms};
use super::{
    ContainerSpec, DefinitionErrors, EventDefinition, MAIN_CONTAINER_KEY, MAX_DESCRIPTION_LEN,
    MAX_KEY_LEN, MAX_NAME_LEN, MAX_SID_LEN, ServiceDefinition, TaskDefinition,
};
use crate::schema::{ParamMap, ParamType, Parameter};
use crate::yaml::{
    FileError, Node, NodeKind, NullSection, Pos, Scalar, Walker, join_path, parse_root, suggestion,
};
use std::collections::BTreeMap;

/// Fields of the top level of `mesg.yml`.
const DEFINITION_FIELDS: &[&str] = &[
    "name",
    "sid",
    "description",
    "repository",
    "configuration",
    "dependencies",
    "tasks",
    "events",
    "economy",
];
const TASK_FIELDS: &[&str] = &[
    "name",
    "description",
    "inputs",
    "outputs",
    "timeout",
    "price",
    "deterministic",
    "verify",
];
const EVENT_FIELDS: &[&str] = &["name", "description", "data"];
const PARAMETER_FIELDS: &[&str] = &[
    "name",
    "description",
    "type",
    "optional",
    "repeated",
    "object",
];

impl ServiceDefinition {
    /// Parse and validate `mesg.yml` text.
    pub fn from_yaml(src: &str) -> Result<ServiceDefinition, DefinitionErrors> {
        let root = parse_root(src, "the definition is empty; it needs at least `name`")
            .map_err(|e| DefinitionErrors(vec![e]))?;
        let mut parser = DefinitionParser {
            walker: Walker::new(NullSection::Empty),
        };
        match parser.definition(&root) {
            Some(def) if !parser.walker.has_errors() => Ok(def),
            _ => Err(DefinitionErrors(parser.walker.into_errors())),
        }
    }

    /// Validate a definition built in code (or decoded from the wire) with the same rules
    /// as a file, by round-tripping it through its YAML form.
    pub fn validate(&self) -> Result<(), DefinitionErrors> {
        let reparsed = ServiceDefinition::from_yaml(&self.to_yaml())?;
        if &reparsed == self {
            Ok(())
        } else {
            Err(DefinitionErrors(vec![FileError::whole_file(
                "definition is not in normal form (sid must be lowercase)",
            )]))
        }
    }
}

/// The definition's rules on top of the shared walker; [`super::container`] adds the
/// container rules.
pub(super) struct DefinitionParser {
    pub(super) walker: Walker,
}

impl DefinitionParser {
    /// Entries of a user-keyed mapping (tasks, params...): keys validated, duplicates reported.
    pub(super) fn keyed<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &str,
    ) -> Vec<(String, &'n Node)> {
        let Some(entries) = self.walker.mapping(node, path) else {
            return Vec::new();
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (key, value) in entries {
            let p = join_path(path, &key.text);
            if !seen.insert(key.text.as_str()) {
                self.walker
                    .error(&p, key.pos, format!("duplicate {what} key"));
                continue;
            }
            if !is_valid_key(&key.text) {
                self.walker.error(
                    &p,
                    key.pos,
                    format!(
                        "invalid {what} key `{}`: use letters, digits, `_` and `-`, starting with a letter, at most {MAX_KEY_LEN} characters",
                        key.text.escape_debug()
                    ),
                );
                continue;
            }
            out.push((key.text.clone(), value));
        }
        out
    }

    /// A string of at most `max` characters without control characters (`multiline`
    /// allows newlines and tabs).
    pub(super) fn printable(
        &mut self,
        node: &Node,
        path: &str,
        max: usize,
        multiline: bool,
    ) -> Option<String> {
        let s = self.walker.string(node, path)?;
        if s.chars().count() > max {
            self.walker
                .error(path, node.pos, format!("longer than {max} characters"));
            return None;
        }
        if s.chars()
            .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t')))
        {
            self.walker
                .error(path, node.pos, "contains control characters");
            return None;
        }
        Some(s)
    }

    fn name(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = self.printable(node, path, MAX_NAME_LEN, false)?;
        if s.trim().is_empty() {
            self.walker.error(path, node.pos, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn description(&mut self, node: &Node, path: &str) -> Option<String> {
        self.printable(node, path, MAX_DESCRIPTION_LEN, true)
    }

    /// A list of printable strings, each with its position.
    pub(super) fn string_list(&mut self, node: &Node, path: &str) -> Vec<(String, Pos)> {
        let mut out = Vec::new();
        let items = self.walker.list(node, path).unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.printable(item, &format!("{path}[{i}]"), 4096, false) {
                out.push((s, item.pos));
            }
        }
        out
    }

    fn definition(&mut self, root: &Node) -> Option<ServiceDefinition> {
        let f = self.walker.fields(root, "", DEFINITION_FIELDS)?;
        let name = self
            .walker
            .required(&f, "name", "", root.pos)
            .and_then(|n| self.name(n, "name"));
        let sid = f.get("sid").and_then(|n| self.sid(n));
        let description = f
            .get("description")
            .and_then(|n| self.description(n, "description"));
        let repository = f
            .get("repository")
            .and_then(|n| self.printable(n, "repository", 2048, false));

        let dep_nodes: Vec<(String, &Node)> = match f.get("dependencies") {
            Some(n) => self.keyed(n, "dependencies", "dependency"),
            None => Vec::new(),
        };
        let dep_keys: Vec<String> = dep_nodes.iter().map(|(k, _)| k.clone()).collect();
        let configuration = match f.get("configuration") {
            Some(n) => self.container(n, "configuration", None, &dep_keys),
            None => Some(ContainerSpec::default()),
        };
        let mut dependencies = BTreeMap::new();
        for (key, node) in &dep_nodes {
            let path = format!("dependencies.{key}");
            if key == MAIN_CONTAINER_KEY {
                self.walker.error(
                    &path,
                    node.pos,
                    "`service` is reserved for the main container; choose another key",
                );
                continue;
            }
            if let Some(c) = self.container(node, &path, Some(key), &dep_keys) {
                dependencies.insert(key.clone(), c);
            }
        }

        let mut tasks = BTreeMap::new();
        if let Some(n) = f.get("tasks") {
            for (key, node) in self.keyed(n, "tasks", "task") {
                if let Some(t) = self.task(node, &format!("tasks.{key}")) {
                    tasks.insert(key, t);
                }
            }
        }
        let mut events = BTreeMap::new();
        if let Some(n) = f.get("events") {
            for (key, node) in self.keyed(n, "events", "event") {
                if let Some(e) = self.event(node, &format!("events.{key}")) {
                    events.insert(key, e);
                }
            }
        }
        let economy = match f.get("economy") {
            None => Some(None),
            Some(n) => self.economy(n, "economy"),
        };
        Some(ServiceDefinition {
            name: name?,
            sid,
            description,
            repository,
            configuration: configuration?,
            dependencies,
            tasks,
            events,
            economy: economy?,
        })
    }

    /// The sid, lowercased.
    fn sid(&mut self, node: &Node) -> Option<String> {
        let raw = self.walker.string(node, "sid")?;
        let sid = raw.trim().to_ascii_lowercase();
        if sid.len() > MAX_SID_LEN {
            self.walker.error(
                "sid",
                node.pos,
                format!("longer than {MAX_SID_LEN} characters"),
            );
            None
        } else if !is_valid_sid(&sid) {
            self.walker.error(
                "sid",
                node.pos,
                format!(
                    "`{}` is not domain-style: use dot-separated labels of letters, digits and `-` (e.g. `acme.email`)",
                    raw.escape_debug()
                ),
            );
            None
        } else {
            Some(sid)
        }
    }

    fn task(&mut self, node: &Node, path: &str) -> Option<TaskDefinition> {
        let f = self.walker.fields(node, path, TASK_FIELDS)?;
        let name = f
            .get("name")
            .and_then(|n| self.name(n, &join_path(path, "name")));
        let description = f
            .get("description")
            .and_then(|n| self.description(n, &join_path(path, "description")));
        let inputs = match f.get("inputs") {
            Some(n) => self.params(n, &join_path(path, "inputs")),
            None => Some(ParamMap::new()),
        };
        let outputs = match f.get("outputs") {
            Some(n) => self.params(n, &join_path(path, "outputs")),
            None => Some(ParamMap::new()),
        };
        let timeout_ms = match f.get("timeout") {
            None => Some(None),
            Some(n) => self.timeout(n, &join_path(path, "timeout")).map(Some),
        };
        let price = match f.get("price") {
            None => Some(None),
            Some(n) => self.price(n, &join_path(path, "price")),
        };
        let (deterministic, verify) = self.verification(&f, path)?;
        Some(TaskDefinition {
            name,
            description,
            inputs: inputs?,
            outputs: outputs?,
            timeout_ms: timeout_ms?,
            price: price?,
            deterministic,
            verify,
        })
    }

    /// A task's `timeout`, in milliseconds.
    fn timeout(&mut self, node: &Node, path: &str) -> Option<u64> {
        let text = match &node.kind {
            NodeKind::Scalar(Scalar::Int(_) | Scalar::Float(_) | Scalar::Str(_), t) => t,
            _ => {
                self.walker.type_error(path, node, "a duration like 30s");
                return None;
            }
        };
        match parse_duration_ms(text) {
            Ok(ms) => Some(ms),
            Err(msg) => {
                self.walker.error(path, node.pos, msg);
                None
            }
        }
    }

    fn event(&mut self, node: &Node, path: &str) -> Option<EventDefinition> {
        let f = self.walker.fields(node, path, EVENT_FIELDS)?;
        let name = f
            .get("name")
            .and_then(|n| self.name(n, &join_path(path, "name")));
        let description = f
            .get("description")
            .and_then(|n| self.description(n, &join_path(path, "description")));
        let data = match f.get("data") {
            Some(n) => self.params(n, &join_path(path, "data"))?,
            None => ParamMap::new(),
        };
        Some(EventDefinition {
            name,
            description,
            data,
        })
    }

    fn params(&mut self, node: &Node, path: &str) -> Option<ParamMap> {
        let mut out = ParamMap::new();
        let mut ok = true;
        for (key, n) in self.keyed(node, path, "parameter") {
            match self.param(n, &join_path(path, &key)) {
                Some(p) => {
                    out.insert(key, p);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn param(&mut self, node: &Node, path: &str) -> Option<Parameter> {
        let f = self.walker.fields(node, path, PARAMETER_FIELDS)?;
        let name = f
            .get("name")
            .and_then(|n| self.name(n, &join_path(path, "name")));
        let description = f
            .get("description")
            .and_then(|n| self.description(n, &join_path(path, "description")));
        let kind = match f.get("type") {
            None => {
                self.walker.error(
                    path,
                    node.pos,
                    "`type` is required (String, Number, Boolean, Object or Any)",
                );
                None
            }
            Some(n) => self.param_type(n, &join_path(path, "type")),
        };
        let optional = f
            .get("optional")
            .and_then(|n| self.walker.bool(n, &join_path(path, "optional")))
            .unwrap_or(false);
        let repeated = f
            .get("repeated")
            .and_then(|n| self.walker.bool(n, &join_path(path, "repeated")))
            .unwrap_or(false);
        let object = match f.get("object") {
            None => None,
            Some(n) => {
                let p = join_path(path, "object");
                if kind.is_some_and(|k| k != ParamType::Object) {
                    self.walker
                        .error(&p, n.pos, "`object` is only allowed with `type: Object`");
                    None
                } else {
                    Some(self.params(n, &p)?)
                }
            }
        };
        Some(Parameter {
            name,
            description,
            kind: kind?,
            optional,
            repeated,
            object,
        })
    }

    /// A parameter's `type`; a known type in the wrong case is suggested.
    fn param_type(&mut self, node: &Node, path: &str) -> Option<ParamType> {
        let text = self.walker.string(node, path)?;
        if let Some(t) = ParamType::parse(&text) {
            return Some(t);
        }
        let closest = ParamType::ALL
            .iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(&text))
            .map(|t| t.as_str());
        let message = format!(
            "unknown type `{text}`{}; expected one of String, Number, Boolean, Object, Any",
            suggestion::hint(closest)
        );
        let mut error = FileError::at(path, node.pos, message);
        error.suggestion = closest.map(str::to_string);
        self.walker.push(error);
        None
    }
}
