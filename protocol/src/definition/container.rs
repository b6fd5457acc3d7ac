//! The rules of a container in `mesg.yml`: the main container (`configuration`) and each
//! dependency (`dependencies.KEY`): image, volumes, volumes shared between containers,
//! ports, command, arguments and environment defaults.

use super::parse::DefinitionParser;
use super::syntax::{is_valid_env_name, parse_port};
use super::{ContainerSpec, MAIN_CONTAINER_KEY, PortMapping};
use crate::yaml::{Node, join_path};
use std::collections::{BTreeMap, HashSet};

const CONTAINER_FIELDS: &[&str] = &["volumes", "volumesFrom", "ports", "command", "args", "env"];
const DEPENDENCY_FIELDS: &[&str] = &[
    "image",
    "volumes",
    "volumesFrom",
    "ports",
    "command",
    "args",
    "env",
];

impl DefinitionParser {
    /// A container; `dep_key` is `None` for the main container. `dep_keys` are the keys
    /// of all dependencies (what `volumesFrom` may name).
    pub(super) fn container(
        &mut self,
        node: &Node,
        path: &str,
        dep_key: Option<&str>,
        dep_keys: &[String],
    ) -> Option<ContainerSpec> {
        let allowed = match dep_key {
            Some(_) => DEPENDENCY_FIELDS,
            None => CONTAINER_FIELDS,
        };
        let f = self.walker.fields(node, path, allowed)?;
        let mut spec = ContainerSpec::default();
        if dep_key.is_some() {
            match f.get("image") {
                Some(n) => spec.image = self.image(n, &join_path(path, "image")),
                None => self
                    .walker
                    .error(path, node.pos, "`image` is required for a dependency"),
            }
        }
        if let Some(n) = f.get("volumes") {
            spec.volumes = self.volumes(n, &join_path(path, "volumes"));
        }
        if let Some(n) = f.get("volumesFrom") {
            let p = join_path(path, "volumesFrom");
            spec.volumes_from = self.volumes_from(n, &p, dep_key, dep_keys);
        }
        if let Some(n) = f.get("ports") {
            spec.ports = self.ports(n, &join_path(path, "ports"));
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
            spec.env = self.env(n, &join_path(path, "env"));
        }
        Some(spec)
    }

    fn image(&mut self, node: &Node, path: &str) -> Option<String> {
        let image = self.printable(node, path, 512, false)?;
        if image.trim().is_empty() || image.contains(char::is_whitespace) {
            self.walker
                .error(path, node.pos, "must be an image reference like `redis:7`");
            return None;
        }
        Some(image)
    }

    /// Container paths: absolute, without `:`, not over the system's own, each once.
    fn volumes(&mut self, node: &Node, path: &str) -> Vec<String> {
        let mut volumes = Vec::new();
        let mut seen = HashSet::new();
        for (i, (v, pos)) in self.string_list(node, path).into_iter().enumerate() {
            let ip = format!("{path}[{i}]");
            if !v.starts_with('/') {
                self.walker.error(
                    &ip,
                    pos,
                    format!("`{v}` must be an absolute path in the container"),
                );
            } else if v.contains(':') {
                self.walker.error(
                    &ip,
                    pos,
                    "a volume is a container path; it must not contain `:`",
                );
            } else if let Some(problem) = crate::hardening::volume_target_problem(&v) {
                self.walker.error(&ip, pos, problem);
            } else if !seen.insert(v.clone()) {
                self.walker
                    .error(&ip, pos, format!("`{v}` is listed twice"));
            } else {
                volumes.push(v);
            }
        }
        volumes
    }

    /// Other containers of the service (by dependency key, or `service` for the main
    /// one), never the container itself.
    fn volumes_from(
        &mut self,
        node: &Node,
        path: &str,
        dep_key: Option<&str>,
        dep_keys: &[String],
    ) -> Vec<String> {
        let mut out = Vec::new();
        for (i, (v, pos)) in self.string_list(node, path).into_iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let known = dep_keys.contains(&v) || (v == MAIN_CONTAINER_KEY && dep_key.is_some());
            if Some(v.as_str()) == dep_key || (dep_key.is_none() && v == MAIN_CONTAINER_KEY) {
                self.walker
                    .error(&ip, pos, "a container cannot take volumes from itself");
            } else if !known {
                let choices = if dep_keys.is_empty() {
                    "there are no dependencies".to_string()
                } else {
                    format!("dependencies are: {}", dep_keys.join(", "))
                };
                self.walker
                    .error(&ip, pos, format!("`{v}` is not a dependency ({choices})"));
            } else {
                out.push(v);
            }
        }
        out
    }

    /// Port mappings; a container port and a host port each at most once.
    fn ports(&mut self, node: &Node, path: &str) -> Vec<PortMapping> {
        let mut out = Vec::new();
        let mut seen_container = HashSet::new();
        let mut seen_host = HashSet::new();
        for (i, (v, pos)) in self.string_list(node, path).into_iter().enumerate() {
            let ip = format!("{path}[{i}]");
            match parse_port(&v) {
                Ok(pm) => {
                    if !seen_container.insert(pm.container) {
                        self.walker.error(
                            &ip,
                            pos,
                            format!("container port {} is listed twice", pm.container),
                        );
                    } else if pm.host.is_some_and(|h| !seen_host.insert(h)) {
                        self.walker.error(&ip, pos, "host port is listed twice");
                    } else {
                        out.push(pm);
                    }
                }
                Err(msg) => self.walker.error(&ip, pos, msg),
            }
        }
        out
    }

    /// `KEY=VALUE` defaults; `MESG_*` belongs to the node.
    fn env(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let items = self.walker.list(node, path).unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let Some(text) = self.printable(item, &ip, 8192, false) else {
                continue;
            };
            let Some((key, value)) = text.split_once('=') else {
                self.walker
                    .error(&ip, item.pos, format!("`{text}` must be KEY=VALUE"));
                continue;
            };
            if !is_valid_env_name(key) {
                self.walker.error(
                    &ip,
                    item.pos,
                    format!("`{key}` is not a valid variable name (^[a-zA-Z][a-zA-Z0-9_]*$)"),
                );
            } else if key.starts_with("MESG_") {
                self.walker.error(
                    &ip,
                    item.pos,
                    format!("`{key}`: MESG_* variables are set by the node"),
                );
            } else if env.insert(key.to_string(), value.to_string()).is_some() {
                self.walker
                    .error(&ip, item.pos, format!("`{key}` is set twice"));
            }
        }
        env
    }
}
