//! The container policy: the least a service's containers get on this node, and the few
//! things the operator may add back.
//!
//! A node runs definitions published by other nodes, so nothing a definition says may
//! widen what its containers can reach beyond what the operator chose:
//! - ports are published on [`DEFAULT_PUBLISH_IP`] (loopback) unless the operator names
//!   another address (`--publish-ports-on`), and never on a host port the node itself uses;
//! - every Linux capability is dropped; the operator may add some back for all containers
//!   (`--allow-capability`);
//! - a dependency's `image:`, and every image a package's Dockerfile builds from (`FROM`,
//!   `COPY --from`), must be an image this node built (it carries the node's `mesg.node`
//!   label) or one the operator allowed (`--allow-image`); `scratch` always is.
//!
//! The pure rules live here (unit-tested); the Docker side (inspecting an image's labels)
//! is in [`super::docker`].

use mesg_protocol::ServiceDefinition;
use mesg_protocol::definition::MAIN_CONTAINER_KEY;
use std::net::{IpAddr, Ipv4Addr};

/// Where published ports listen unless the operator opts in to more: loopback, so a
/// service's port is reachable from the node's host only, never from the network.
pub const DEFAULT_PUBLISH_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Most capabilities an operator may grant; the Linux set has 41, and a node granting
/// more than a handful should run services elsewhere.
pub const MAX_ALLOWED_CAPABILITIES: usize = 16;

/// Most entries of `--allow-image`: each start checks every dependency against the list.
pub const MAX_ALLOWED_IMAGES: usize = 256;

/// What the node lets containers have (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPolicy {
    /// Host address that published ports are bound to.
    pub publish_ip: IpAddr,
    /// Capabilities added back to every container after dropping `ALL` (names without
    /// `CAP_`, e.g. `NET_BIND_SERVICE`).
    pub capabilities: Vec<String>,
    /// Images usable as dependencies besides those this node built: `redis:7` allows that
    /// tag only, `redis` any tag of `redis`.
    pub allowed_images: Vec<String>,
    /// Host ports the node itself listens on, with what listens there (`service API`,
    /// `Application API`, `peer-to-peer`): no definition may publish on them.
    pub reserved_ports: Vec<(u16, String)>,
}

impl Default for ContainerPolicy {
    fn default() -> Self {
        ContainerPolicy {
            publish_ip: DEFAULT_PUBLISH_IP,
            capabilities: Vec::new(),
            allowed_images: Vec::new(),
            reserved_ports: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "dependency `{key}` uses image `{image}`, which this node did not build and its operator did not allow; the operator can allow it with `mesg-node --allow-image {image}`"
    )]
    ImageNotAllowed { key: String, image: String },
    #[error(
        "container `{key}` publishes host port {port}, which is this node's {what}; use another host port, or write only the container port (\"{container}\") to let Docker choose"
    )]
    ReservedPort {
        key: String,
        port: u16,
        container: u16,
        what: String,
    },
    #[error(
        "the Dockerfile builds from image `{image}`, which is not an image this node built nor one its operator allowed (mesg never pulls); start FROM scratch or an image the node built, or the operator can allow it with `mesg-node --allow-image {image}`"
    )]
    BaseImageNotAllowed { image: String },
    #[error("the Dockerfile cannot be checked: {0}")]
    Dockerfile(String),
    #[error("--allow-capability {name}: {problem}")]
    BadCapability { name: String, problem: String },
    #[error(
        "--allow-capability is given {count} times; at most {MAX_ALLOWED_CAPABILITIES} capabilities can be granted"
    )]
    TooManyCapabilities { count: usize },
    #[error("--allow-image `{0}` is not an image reference like `redis:7` or `redis`")]
    BadImage(String),
    #[error(
        "--allow-image is given {count} times; at most {MAX_ALLOWED_IMAGES} images can be allowed"
    )]
    TooManyImages { count: usize },
}

impl ContainerPolicy {
    /// Check the operator's settings once, at node start.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.capabilities.len() > MAX_ALLOWED_CAPABILITIES {
            return Err(PolicyError::TooManyCapabilities {
                count: self.capabilities.len(),
            });
        }
        for name in &self.capabilities {
            if let Some(problem) = mesg_protocol::hardening::capability_problem(name) {
                return Err(PolicyError::BadCapability {
                    name: name.clone(),
                    problem,
                });
            }
        }
        if self.allowed_images.len() > MAX_ALLOWED_IMAGES {
            return Err(PolicyError::TooManyImages {
                count: self.allowed_images.len(),
            });
        }
        if let Some(bad) = self
            .allowed_images
            .iter()
            .find(|i| i.is_empty() || i.contains(char::is_whitespace))
        {
            return Err(PolicyError::BadImage(bad.clone()));
        }
        Ok(())
    }

    /// No container of `def` publishes on a host port the node uses.
    pub fn check_ports(&self, def: &ServiceDefinition) -> Result<(), PolicyError> {
        let containers = std::iter::once((MAIN_CONTAINER_KEY, &def.configuration))
            .chain(def.dependencies.iter().map(|(k, c)| (k.as_str(), c)));
        for (key, c) in containers {
            for p in &c.ports {
                let Some(port) = p.host else { continue };
                if let Some((_, what)) = self.reserved_ports.iter().find(|(r, _)| *r == port) {
                    return Err(PolicyError::ReservedPort {
                        key: key.to_string(),
                        port,
                        container: p.container,
                        what: what.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether the operator's list allows `image` (images this node built are allowed
    /// anyway; the runtime checks that on the engine).
    pub fn image_listed(&self, image: &str) -> bool {
        self.allowed_images.iter().any(|e| image_matches(e, image))
    }
}

/// Longest Dockerfile the node reads to find its base images.
pub const MAX_DOCKERFILE_BYTES: usize = 256 * 1024;

/// The images a Dockerfile builds from: the image of each `FROM` and each `COPY`/`ADD
/// --from=` that is not `scratch`, an earlier stage's name or a stage index. Refuses what
/// would let the image be chosen at build time (`$` variables) and the `escape` parser
/// directive (which would change how lines continue).
pub fn dockerfile_images(text: &str) -> Result<Vec<String>, PolicyError> {
    if text.len() > MAX_DOCKERFILE_BYTES {
        return Err(PolicyError::Dockerfile(format!(
            "it is larger than {MAX_DOCKERFILE_BYTES} bytes"
        )));
    }
    let mut instructions: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_directives = true;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(comment) = trimmed.strip_prefix('#') {
            if in_directives && current.is_empty() {
                let directive = comment.trim().to_ascii_lowercase();
                if directive.replace(' ', "").starts_with("escape=") {
                    return Err(PolicyError::Dockerfile(
                        "the `escape` parser directive is not supported; remove it".into(),
                    ));
                }
            }
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        in_directives = false;
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        instructions.push(current);
    }
    let mut stages: Vec<String> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    let mut add = |image: &str, stages: &[String]| -> Result<(), PolicyError> {
        if image.contains('$') {
            return Err(PolicyError::Dockerfile(format!(
                "image `{image}` uses a variable; write the image name out"
            )));
        }
        let known_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(image));
        if !image.eq_ignore_ascii_case("scratch")
            && !known_stage
            && !images.iter().any(|i| i == image)
        {
            images.push(image.to_string());
        }
        Ok(())
    };
    for instruction in &instructions {
        let mut words = instruction.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        if keyword.eq_ignore_ascii_case("FROM") {
            let mut args = rest.iter().skip_while(|w| w.starts_with("--"));
            let Some(image) = args.next() else {
                return Err(PolicyError::Dockerfile("a FROM names no image".into()));
            };
            add(image, &stages)?;
            if args.next().is_some_and(|w| w.eq_ignore_ascii_case("AS"))
                && let Some(name) = args.next()
            {
                stages.push(name.to_string());
            }
        } else if keyword.eq_ignore_ascii_case("COPY") || keyword.eq_ignore_ascii_case("ADD") {
            for flag in rest.iter().take_while(|w| w.starts_with("--")) {
                if let Some(from) = flag.strip_prefix("--from=")
                    && !from.chars().all(|c| c.is_ascii_digit())
                {
                    add(from, &stages)?;
                }
            }
        }
    }
    Ok(images)
}

/// `entry` (from `--allow-image`) allows `image`: the same reference, or `entry` names a
/// repository without tag or digest and `image` is a tag of it.
pub fn image_matches(entry: &str, image: &str) -> bool {
    if entry == image {
        return true;
    }
    let (entry_repo, entry_pinned) = split_reference(entry);
    let (repo, _) = split_reference(image);
    !entry_pinned && entry_repo == repo
}

/// A reference's repository, and whether it names a tag or digest.
fn split_reference(reference: &str) -> (&str, bool) {
    if let Some((repo, _)) = reference.split_once('@') {
        return (repo, true);
    }
    // A `:` after the last `/` starts the tag; one before it is a registry port.
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (&reference[..last_slash + i], true),
        None => (reference, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_allow_list() {
        assert!(image_matches("redis", "redis"));
        assert!(image_matches("redis", "redis:7"));
        assert!(image_matches("redis:7", "redis:7"));
        assert!(!image_matches("redis:7", "redis:6"));
        assert!(!image_matches("redis:7", "redis"));
        assert!(!image_matches("redis", "redis-evil:1"));
        assert!(!image_matches("redis", "evil/redis:1"));
        assert!(image_matches("reg:5000/app", "reg:5000/app:1"));
        assert!(!image_matches("reg:5000/app:1", "reg:5000/app:2"));
        assert!(!image_matches("app@sha256:ab", "app:1"));
        assert!(image_matches("app", "app@sha256:ab"));
    }

    #[test]
    fn base_images_of_a_dockerfile() {
        let text = "# syntax=docker/dockerfile:1\nFROM scratch\nCOPY x /x\n";
        assert!(dockerfile_images(text).unwrap().is_empty());
        let text = "FROM --platform=linux/amd64 builder:1 AS build\nRUN make \\\n  all\nfrom build\nCOPY --from=build /a /a\nCOPY --from=0 /b /b\nCOPY --chown=1 --from=tools:2 /c /c\nFROM private/db\n";
        assert_eq!(
            dockerfile_images(text).unwrap(),
            ["builder:1", "tools:2", "private/db"]
        );
        assert!(matches!(
            dockerfile_images("ARG B=x\nFROM $B\n"),
            Err(PolicyError::Dockerfile(m)) if m.contains("variable")
        ));
        assert!(matches!(
            dockerfile_images("# escape=`\nFROM scratch\n"),
            Err(PolicyError::Dockerfile(m)) if m.contains("escape")
        ));
        // A continued line does not hide a FROM.
        assert_eq!(
            dockerfile_images("LABEL a=b \\\n  c=d\nFROM secret:1\n").unwrap(),
            ["secret:1"]
        );
    }

    #[test]
    fn reserved_ports_are_refused() {
        let policy = ContainerPolicy {
            reserved_ports: vec![(50053, "service API".into())],
            ..ContainerPolicy::default()
        };
        let ok = ServiceDefinition::from_yaml(
            "name: x\nconfiguration:\n  ports: [\"50053\", \"8080:80\"]\n",
        )
        .unwrap();
        policy.check_ports(&ok).unwrap();
        let bad = ServiceDefinition::from_yaml(
            "name: x\ndependencies:\n  db:\n    image: d\n    ports: [\"50053:80\"]\n",
        )
        .unwrap();
        let e = policy.check_ports(&bad).unwrap_err();
        assert_eq!(
            e,
            PolicyError::ReservedPort {
                key: "db".into(),
                port: 50053,
                container: 80,
                what: "service API".into()
            }
        );
        assert!(e.to_string().contains("this node's service API"), "{e}");
    }

    #[test]
    fn operator_settings_are_checked() {
        let mut p = ContainerPolicy::default();
        assert_eq!(p.publish_ip.to_string(), "127.0.0.1");
        p.validate().unwrap();
        p.capabilities = vec!["NET_BIND_SERVICE".into()];
        p.validate().unwrap();
        p.capabilities = vec!["cap_chown".into()];
        assert!(matches!(
            p.validate(),
            Err(PolicyError::BadCapability { .. })
        ));
        p.capabilities = vec![];
        p.allowed_images = vec!["a b".into()];
        assert!(matches!(p.validate(), Err(PolicyError::BadImage(_))));
    }
}
