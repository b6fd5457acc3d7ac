//! The `mesg.yml` service definition: types, strict parsing with every error of a file at
//! once (each with its field path and position), and the canonical encoding that the
//! [`ServiceHash`] is computed over.

use crate::hash::{Hash32, PackageHash, ServiceHash};
use crate::schema::{ParamMap, ParamType, Parameter};
use crate::yaml::{self, Key, Node, NodeKind, Pos, Scalar};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest `sid` (a DNS label limit, so a sid can name things in Docker too).
pub const MAX_SID_LEN: usize = 63;
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_DESCRIPTION_LEN: usize = 4096;
pub const MAX_KEY_LEN: usize = 64;
/// Longest per-task timeout: a day. Longer work should report progress as events.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Dependency key reserved for the main container (its DNS alias on the instance network).
pub const MAIN_CONTAINER_KEY: &str = "service";

/// A parsed and validated service definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDefinition {
    pub name: String,
    pub sid: Option<String>,
    pub description: Option<String>,
    pub repository: Option<String>,
    /// The main container (built from the service's package).
    pub configuration: ContainerSpec,
    /// Extra containers by key, from images that exist locally.
    pub dependencies: BTreeMap<String, ContainerSpec>,
    pub tasks: BTreeMap<String, TaskDefinition>,
    pub events: BTreeMap<String, EventDefinition>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Required for dependencies; never set for the main container.
    pub image: Option<String>,
    pub volumes: Vec<String>,
    #[serde(rename = "volumesFrom")]
    pub volumes_from: Vec<String>,
    pub ports: Vec<PortMapping>,
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Defaults; only these keys may be overridden when an instance starts.
    pub env: BTreeMap<String, String>,
}

/// `"80"` publishes container port 80 on a host port chosen by Docker;
/// `"8080:80"` publishes container port 80 on host port 8080 (Docker's `HOST:CONTAINER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container: u16,
    pub host: Option<u16>,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Some(h) => write!(f, "{h}:{}", self.container),
            None => write!(f, "{}", self.container),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinition {
    pub name: Option<String>,
    pub description: Option<String>,
    pub inputs: ParamMap,
    pub outputs: ParamMap,
    /// Default execution timeout of this task, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Price of one execution, for accounting.
    pub price: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDefinition {
    pub name: Option<String>,
    pub description: Option<String>,
    pub data: ParamMap,
}

/// One problem in a definition file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionError {
    /// Dotted field path, e.g. `tasks.send.inputs.email.type`; empty for the whole file.
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for DefinitionError {
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

/// Every problem found in a definition file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct DefinitionErrors(pub Vec<DefinitionError>);

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ServiceDefinition {
    /// Parse and validate `mesg.yml` text.
    pub fn from_yaml(src: &str) -> Result<ServiceDefinition, DefinitionErrors> {
        let root = match yaml::parse(src) {
            Ok(Some(root)) => root,
            Ok(None) => {
                return Err(DefinitionErrors(vec![DefinitionError {
                    path: String::new(),
                    line: None,
                    column: None,
                    message: "the definition is empty; it needs at least `name`".into(),
                }]));
            }
            Err(e) => {
                return Err(DefinitionErrors(vec![DefinitionError {
                    path: String::new(),
                    line: Some(e.line),
                    column: Some(e.column),
                    message: format!("invalid YAML: {}", e.message),
                }]));
            }
        };
        let mut v = Validator::default();
        let def = v.definition(&root);
        match def {
            Some(def) if v.errors.is_empty() => Ok(def),
            _ => {
                v.errors
                    .sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
                Err(DefinitionErrors(v.errors))
            }
        }
    }

    /// Validate a definition built in code (or decoded from the wire) with the same rules
    /// as a file, by round-tripping it through its YAML form.
    pub fn validate(&self) -> Result<(), DefinitionErrors> {
        let reparsed = ServiceDefinition::from_yaml(&self.to_yaml())?;
        if &reparsed == self {
            Ok(())
        } else {
            Err(DefinitionErrors(vec![DefinitionError {
                path: String::new(),
                line: None,
                column: None,
                message: "definition is not in normal form (sid must be lowercase)".into(),
            }]))
        }
    }

    /// The canonical encoding: JSON with sorted keys and no whitespace. Independent of the
    /// YAML it came from (key order, comments, quoting), stable across platforms.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).expect("definition serializes to JSON");
        let mut out = Vec::new();
        crate::canonical::write_canonical_json(&value, &mut out);
        out
    }

    /// `ServiceHash = H(canonical definition, package hash)`.
    pub fn service_hash(&self, package: &PackageHash) -> ServiceHash {
        ServiceHash(Hash32::domain(
            "mesg/service/1",
            &[&self.canonical_bytes(), package.as_bytes()],
        ))
    }

    pub fn task(&self, key: &str) -> Option<&TaskDefinition> {
        self.tasks.get(key)
    }

    /// Render back to `mesg.yml` (used for `service init` and to re-validate).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        let q = |s: &str| serde_json::to_string(s).expect("string");
        out.push_str(&format!("name: {}\n", q(&self.name)));
        if let Some(s) = &self.sid {
            out.push_str(&format!("sid: {}\n", q(s)));
        }
        if let Some(s) = &self.description {
            out.push_str(&format!("description: {}\n", q(s)));
        }
        if let Some(s) = &self.repository {
            out.push_str(&format!("repository: {}\n", q(s)));
        }
        let container = |out: &mut String, c: &ContainerSpec, indent: &str| {
            if let Some(i) = &c.image {
                out.push_str(&format!("{indent}image: {}\n", q(i)));
            }
            let list = |out: &mut String, key: &str, items: &[String]| {
                if !items.is_empty() {
                    let items: Vec<String> = items.iter().map(|s| q(s)).collect();
                    out.push_str(&format!("{indent}{key}: [{}]\n", items.join(", ")));
                }
            };
            list(out, "volumes", &c.volumes);
            list(out, "volumesFrom", &c.volumes_from);
            let ports: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
            list(out, "ports", &ports);
            if let Some(cmd) = &c.command {
                out.push_str(&format!("{indent}command: {}\n", q(cmd)));
            }
            list(out, "args", &c.args);
            let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            list(out, "env", &env);
        };
        if self.configuration != ContainerSpec::default() {
            out.push_str("configuration:\n");
            container(&mut out, &self.configuration, "  ");
        }
        if !self.dependencies.is_empty() {
            out.push_str("dependencies:\n");
            for (k, c) in &self.dependencies {
                out.push_str(&format!("  {}:\n", q(k)));
                container(&mut out, c, "    ");
            }
        }
        let named = |out: &mut String, n: &Option<String>, d: &Option<String>, ind: &str| {
            if let Some(n) = n {
                out.push_str(&format!("{ind}name: {}\n", q(n)));
            }
            if let Some(d) = d {
                out.push_str(&format!("{ind}description: {}\n", q(d)));
            }
        };
        fn params(out: &mut String, key: &str, p: &ParamMap, ind: &str) {
            let q = |s: &str| serde_json::to_string(s).expect("string");
            if p.is_empty() {
                return;
            }
            out.push_str(&format!("{ind}{key}:\n"));
            for (k, param) in p {
                out.push_str(&format!("{ind}  {}:\n", q(k)));
                let i2 = format!("{ind}    ");
                if let Some(n) = &param.name {
                    out.push_str(&format!("{i2}name: {}\n", q(n)));
                }
                if let Some(d) = &param.description {
                    out.push_str(&format!("{i2}description: {}\n", q(d)));
                }
                out.push_str(&format!("{i2}type: {}\n", param.kind));
                if param.optional {
                    out.push_str(&format!("{i2}optional: true\n"));
                }
                if param.repeated {
                    out.push_str(&format!("{i2}repeated: true\n"));
                }
                if let Some(o) = &param.object {
                    if o.is_empty() {
                        out.push_str(&format!("{i2}object: {{}}\n"));
                    } else {
                        params(out, "object", o, &i2);
                    }
                }
            }
        }
        if !self.tasks.is_empty() {
            out.push_str("tasks:\n");
            for (k, t) in &self.tasks {
                out.push_str(&format!("  {}:\n", q(k)));
                named(&mut out, &t.name, &t.description, "    ");
                if let Some(ms) = t.timeout_ms {
                    out.push_str(&format!("    timeout: {ms}ms\n"));
                }
                if let Some(p) = t.price {
                    out.push_str(&format!(
                        "    price: {}\n",
                        serde_json::Number::from_f64(p)
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "0".into())
                    ));
                }
                params(&mut out, "inputs", &t.inputs, "    ");
                params(&mut out, "outputs", &t.outputs, "    ");
            }
        }
        if !self.events.is_empty() {
            out.push_str("events:\n");
            for (k, e) in &self.events {
                out.push_str(&format!("  {}:\n", q(k)));
                named(&mut out, &e.name, &e.description, "    ");
                params(&mut out, "data", &e.data, "    ");
            }
        }
        out
    }
}

/// Parse a duration: a number of seconds (`30`, `1.5`) or a number with a unit
/// (`500ms`, `30s`, `2m`, `1h`). Returns milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (t, 1000.0)
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (use e.g. 30, 30s, 500ms, 2m, 1h)"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("`{text}` must be a positive duration"));
    }
    let ms = (value * unit_ms).round();
    if ms < 1.0 {
        return Err(format!("`{text}` is shorter than 1ms"));
    }
    if ms > MAX_TIMEOUT_MS as f64 {
        return Err(format!("`{text}` is longer than the 24h limit"));
    }
    Ok(ms as u64)
}

pub fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && key.len() <= MAX_KEY_LEN
}

pub fn is_valid_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Domain-style: dot-separated labels of `[a-z0-9-]`, not starting or ending with `-`.
pub fn is_valid_sid(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= MAX_SID_LEN
        && sid.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<DefinitionError>,
}

type Fields<'n> = BTreeMap<&'static str, &'n Node>;

impl Validator {
    fn err(&mut self, path: &str, pos: Pos, message: impl Into<String>) {
        self.errors.push(DefinitionError {
            path: path.to_string(),
            line: Some(pos.line),
            column: Some(pos.column),
            message: message.into(),
        });
    }

    /// A mapping's entries; `null` counts as an empty mapping (e.g. `tasks:` with nothing).
    fn mapping<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [(Key, Node)]> {
        match &node.kind {
            NodeKind::Mapping(entries) => Some(entries),
            NodeKind::Scalar(Scalar::Null, _) => Some(&[]),
            _ => {
                self.err(
                    path,
                    node.pos,
                    format!("expected a mapping, got {}", node.kind_name()),
                );
                None
            }
        }
    }

    /// Entries of a mapping with a fixed set of fields; unknown and duplicate keys are errors.
    fn fields<'n>(
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
                        self.err(&field_path, key.pos, "duplicate key");
                    }
                }
                None => {
                    let hint = allowed
                        .iter()
                        .filter(|a| edit_distance(a, &key.text) <= 2)
                        .min_by_key(|a| edit_distance(a, &key.text))
                        .map(|a| format!(" (did you mean `{a}`?)"))
                        .unwrap_or_default();
                    self.err(
                        &field_path,
                        key.pos,
                        format!(
                            "unknown field{hint}; allowed fields: {}",
                            allowed.join(", ")
                        ),
                    );
                }
            }
        }
        Some(out)
    }

    /// Entries of a user-keyed mapping (tasks, params...): keys validated, duplicates reported.
    fn keyed<'n>(&mut self, node: &'n Node, path: &str, what: &str) -> Vec<(String, &'n Node)> {
        let Some(entries) = self.mapping(node, path) else {
            return Vec::new();
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (key, value) in entries {
            let p = join_path(path, &key.text);
            if !seen.insert(key.text.as_str()) {
                self.err(&p, key.pos, format!("duplicate {what} key"));
                continue;
            }
            if !is_valid_key(&key.text) {
                self.err(
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

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Str(s), _) => Some(s.clone()),
            // A plain number where text is wanted (`ports: [80]`, `name: 2048`): take it as written.
            NodeKind::Scalar(Scalar::Int(_) | Scalar::Float(_), text) => Some(text.clone()),
            _ => {
                self.err(
                    path,
                    node.pos,
                    format!("expected a string, got {}", node.kind_name()),
                );
                None
            }
        }
    }

    fn printable(
        &mut self,
        node: &Node,
        path: &str,
        max: usize,
        multiline: bool,
    ) -> Option<String> {
        let s = self.string(node, path)?;
        if s.chars().count() > max {
            self.err(path, node.pos, format!("longer than {max} characters"));
            return None;
        }
        if s.chars()
            .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t')))
        {
            self.err(path, node.pos, "contains control characters");
            return None;
        }
        Some(s)
    }

    fn name(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = self.printable(node, path, MAX_NAME_LEN, false)?;
        if s.trim().is_empty() {
            self.err(path, node.pos, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Bool(b), _) => Some(*b),
            _ => {
                self.err(
                    path,
                    node.pos,
                    format!("expected true or false, got {}", node.kind_name()),
                );
                None
            }
        }
    }

    fn list<'n>(&mut self, node: &'n Node, path: &str) -> &'n [Node] {
        match &node.kind {
            NodeKind::Sequence(items) => items,
            NodeKind::Scalar(Scalar::Null, _) => &[],
            _ => {
                self.err(
                    path,
                    node.pos,
                    format!("expected a list, got {}", node.kind_name()),
                );
                &[]
            }
        }
    }

    fn string_list(&mut self, node: &Node, path: &str) -> Vec<(String, Pos)> {
        let mut out = Vec::new();
        for (i, item) in self.list(node, path).iter().enumerate() {
            if let Some(s) = self.printable(item, &format!("{path}[{i}]"), 4096, false) {
                out.push((s, item.pos));
            }
        }
        out
    }

    fn definition(&mut self, root: &Node) -> Option<ServiceDefinition> {
        let f = self.fields(
            root,
            "",
            &[
                "name",
                "sid",
                "description",
                "repository",
                "configuration",
                "dependencies",
                "tasks",
                "events",
            ],
        )?;
        let name = match f.get("name") {
            Some(n) => self.name(n, "name"),
            None => {
                self.err("name", root.pos, "required field is missing");
                None
            }
        };
        let sid = f.get("sid").and_then(|n| {
            let raw = self.string(n, "sid")?;
            let sid = raw.trim().to_ascii_lowercase();
            if sid.len() > MAX_SID_LEN {
                self.err("sid", n.pos, format!("longer than {MAX_SID_LEN} characters"));
                None
            } else if !is_valid_sid(&sid) {
                self.err(
                    "sid",
                    n.pos,
                    format!(
                        "`{}` is not domain-style: use dot-separated labels of letters, digits and `-` (e.g. `acme.email`)",
                        raw.escape_debug()
                    ),
                );
                None
            } else {
                Some(sid)
            }
        });
        let description = f
            .get("description")
            .and_then(|n| self.printable(n, "description", MAX_DESCRIPTION_LEN, true));
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
                self.err(
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
        Some(ServiceDefinition {
            name: name?,
            sid,
            description,
            repository,
            configuration: configuration?,
            dependencies,
            tasks,
            events,
        })
    }

    /// `dep_key` is `None` for the main container.
    fn container(
        &mut self,
        node: &Node,
        path: &str,
        dep_key: Option<&str>,
        dep_keys: &[String],
    ) -> Option<ContainerSpec> {
        let mut allowed = vec!["volumes", "volumesFrom", "ports", "command", "args", "env"];
        if dep_key.is_some() {
            allowed.insert(0, "image");
        }
        let f = self.fields(node, path, &allowed)?;
        let mut spec = ContainerSpec::default();
        if dep_key.is_some() {
            match f.get("image") {
                Some(n) => {
                    let p = join_path(path, "image");
                    if let Some(image) = self.printable(n, &p, 512, false) {
                        if image.trim().is_empty() || image.contains(char::is_whitespace) {
                            self.err(&p, n.pos, "must be an image reference like `redis:7`");
                        } else {
                            spec.image = Some(image);
                        }
                    }
                }
                None => self.err(path, node.pos, "`image` is required for a dependency"),
            }
        }
        if let Some(n) = f.get("volumes") {
            let p = join_path(path, "volumes");
            let mut seen = std::collections::HashSet::new();
            for (i, (v, pos)) in self.string_list(n, &p).into_iter().enumerate() {
                let ip = format!("{p}[{i}]");
                if !v.starts_with('/') {
                    self.err(
                        &ip,
                        pos,
                        format!("`{v}` must be an absolute path in the container"),
                    );
                } else if v.contains(':') {
                    self.err(
                        &ip,
                        pos,
                        "a volume is a container path; it must not contain `:`",
                    );
                } else if let Some(problem) = crate::hardening::volume_target_problem(&v) {
                    self.err(&ip, pos, problem);
                } else if !seen.insert(v.clone()) {
                    self.err(&ip, pos, format!("`{v}` is listed twice"));
                } else {
                    spec.volumes.push(v);
                }
            }
        }
        if let Some(n) = f.get("volumesFrom") {
            let p = join_path(path, "volumesFrom");
            for (i, (v, pos)) in self.string_list(n, &p).into_iter().enumerate() {
                let ip = format!("{p}[{i}]");
                let known = dep_keys.contains(&v) || (v == MAIN_CONTAINER_KEY && dep_key.is_some());
                if Some(v.as_str()) == dep_key || (dep_key.is_none() && v == MAIN_CONTAINER_KEY) {
                    self.err(&ip, pos, "a container cannot take volumes from itself");
                } else if !known {
                    let choices = if dep_keys.is_empty() {
                        "there are no dependencies".to_string()
                    } else {
                        format!("dependencies are: {}", dep_keys.join(", "))
                    };
                    self.err(&ip, pos, format!("`{v}` is not a dependency ({choices})"));
                } else {
                    spec.volumes_from.push(v);
                }
            }
        }
        if let Some(n) = f.get("ports") {
            let p = join_path(path, "ports");
            let mut seen_container = std::collections::HashSet::new();
            let mut seen_host = std::collections::HashSet::new();
            for (i, (v, pos)) in self.string_list(n, &p).into_iter().enumerate() {
                let ip = format!("{p}[{i}]");
                match parse_port(&v) {
                    Ok(pm) => {
                        if !seen_container.insert(pm.container) {
                            self.err(
                                &ip,
                                pos,
                                format!("container port {} is listed twice", pm.container),
                            );
                        } else if pm.host.is_some_and(|h| !seen_host.insert(h)) {
                            self.err(&ip, pos, "host port is listed twice");
                        } else {
                            spec.ports.push(pm);
                        }
                    }
                    Err(msg) => self.err(&ip, pos, msg),
                }
            }
        }
        if let Some(n) = f.get("command") {
            spec.command = self.printable(n, &join_path(path, "command"), 4096, false);
        }
        if let Some(n) = f.get("args") {
            let p = join_path(path, "args");
            spec.args = self
                .string_list(n, &p)
                .into_iter()
                .map(|(s, _)| s)
                .collect();
        }
        if let Some(n) = f.get("env") {
            let p = join_path(path, "env");
            for (i, item) in self.list(n, &p).iter().enumerate() {
                let ip = format!("{p}[{i}]");
                let Some(text) = self.printable(item, &ip, 8192, false) else {
                    continue;
                };
                let Some((key, value)) = text.split_once('=') else {
                    self.err(&ip, item.pos, format!("`{text}` must be KEY=VALUE"));
                    continue;
                };
                if !is_valid_env_name(key) {
                    self.err(
                        &ip,
                        item.pos,
                        format!("`{key}` is not a valid variable name (^[a-zA-Z][a-zA-Z0-9_]*$)"),
                    );
                } else if key.starts_with("MESG_") {
                    self.err(
                        &ip,
                        item.pos,
                        format!("`{key}`: MESG_* variables are set by the node"),
                    );
                } else if spec
                    .env
                    .insert(key.to_string(), value.to_string())
                    .is_some()
                {
                    self.err(&ip, item.pos, format!("`{key}` is set twice"));
                }
            }
        }
        Some(spec)
    }

    fn task(&mut self, node: &Node, path: &str) -> Option<TaskDefinition> {
        let f = self.fields(
            node,
            path,
            &[
                "name",
                "description",
                "inputs",
                "outputs",
                "timeout",
                "price",
            ],
        )?;
        let name = f
            .get("name")
            .and_then(|n| self.name(n, &join_path(path, "name")));
        let description = f.get("description").and_then(|n| {
            self.printable(
                n,
                &join_path(path, "description"),
                MAX_DESCRIPTION_LEN,
                true,
            )
        });
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
            Some(n) => {
                let p = join_path(path, "timeout");
                let text = match &n.kind {
                    NodeKind::Scalar(Scalar::Int(_) | Scalar::Float(_) | Scalar::Str(_), t) => {
                        Some(t.clone())
                    }
                    _ => {
                        self.err(
                            &p,
                            n.pos,
                            format!("expected a duration like 30s, got {}", n.kind_name()),
                        );
                        None
                    }
                };
                match text.map(|t| parse_duration_ms(&t)) {
                    Some(Ok(ms)) => Some(Some(ms)),
                    Some(Err(msg)) => {
                        self.err(&p, n.pos, msg);
                        None
                    }
                    None => None,
                }
            }
        };
        let price = match f.get("price") {
            None => Some(None),
            Some(n) => {
                let p = join_path(path, "price");
                match &n.kind {
                    NodeKind::Scalar(Scalar::Int(i), _) if *i >= 0 => Some(Some(*i as f64)),
                    NodeKind::Scalar(Scalar::Float(x), _) if x.is_finite() && *x >= 0.0 => {
                        Some(Some(*x))
                    }
                    _ => {
                        self.err(&p, n.pos, "expected a non-negative number");
                        None
                    }
                }
            }
        };
        Some(TaskDefinition {
            name,
            description,
            inputs: inputs?,
            outputs: outputs?,
            timeout_ms: timeout_ms?,
            price: price?,
        })
    }

    fn event(&mut self, node: &Node, path: &str) -> Option<EventDefinition> {
        let f = self.fields(node, path, &["name", "description", "data"])?;
        let name = f
            .get("name")
            .and_then(|n| self.name(n, &join_path(path, "name")));
        let description = f.get("description").and_then(|n| {
            self.printable(
                n,
                &join_path(path, "description"),
                MAX_DESCRIPTION_LEN,
                true,
            )
        });
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
        let f = self.fields(
            node,
            path,
            &[
                "name",
                "description",
                "type",
                "optional",
                "repeated",
                "object",
            ],
        )?;
        let name = f
            .get("name")
            .and_then(|n| self.name(n, &join_path(path, "name")));
        let description = f.get("description").and_then(|n| {
            self.printable(
                n,
                &join_path(path, "description"),
                MAX_DESCRIPTION_LEN,
                true,
            )
        });
        let kind = match f.get("type") {
            None => {
                self.err(
                    path,
                    node.pos,
                    "`type` is required (String, Number, Boolean, Object or Any)",
                );
                None
            }
            Some(n) => {
                let p = join_path(path, "type");
                let text = self.string(n, &p)?;
                match ParamType::parse(&text) {
                    Some(t) => Some(t),
                    None => {
                        let hint = ParamType::ALL
                            .iter()
                            .find(|t| t.as_str().eq_ignore_ascii_case(&text))
                            .map(|t| format!(" (did you mean `{t}`?)"))
                            .unwrap_or_default();
                        self.err(
                            &p,
                            n.pos,
                            format!("unknown type `{text}`{hint}; expected one of String, Number, Boolean, Object, Any"),
                        );
                        None
                    }
                }
            }
        };
        let optional = f
            .get("optional")
            .and_then(|n| self.bool(n, &join_path(path, "optional")))
            .unwrap_or(false);
        let repeated = f
            .get("repeated")
            .and_then(|n| self.bool(n, &join_path(path, "repeated")))
            .unwrap_or(false);
        let object = match f.get("object") {
            None => None,
            Some(n) => {
                let p = join_path(path, "object");
                if kind.is_some_and(|k| k != ParamType::Object) {
                    self.err(&p, n.pos, "`object` is only allowed with `type: Object`");
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
}

fn parse_port(text: &str) -> Result<PortMapping, String> {
    let one = |s: &str| -> Result<u16, String> {
        match s.trim().parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
            Ok(p) => Err(format!("port {p} is out of range 1-65535")),
            Err(_) => Err(format!(
                "`{text}` is not a port: use \"80\" or \"8080:80\" (HOST:CONTAINER)"
            )),
        }
    };
    match text.split_once(':') {
        None => Ok(PortMapping {
            container: one(text)?,
            host: None,
        }),
        Some((host, container)) => Ok(PortMapping {
            container: one(container)?,
            host: Some(one(host)?),
        }),
    }
}
