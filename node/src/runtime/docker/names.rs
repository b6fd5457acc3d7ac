//! Names and labels of what the runtime creates in Docker (networks, containers,
//! volumes), and reading labels back: the names are how a restarted node finds its
//! objects again, the labels how it tells its own from anyone else's (see the naming
//! scheme in [`crate::runtime`]).

use super::{DockerRuntime, Inner};
use crate::runtime::{InstanceSpec, labels};
use bollard::models::ContainerSummary;
use mesg_protocol::{Hash32, InstanceHash};
use std::collections::HashMap;

/// Bytes of the (publisher, sid) hash in a volume name: 64 bits, so nobody can make up a
/// publisher key whose volumes collide with another's.
const VOLUME_OWNER_BYTES: usize = 8;

impl DockerRuntime {
    /// Name of the network of `instance`.
    pub fn network_name(&self, instance: &InstanceHash) -> String {
        format!(
            "mesg-{}-{}",
            self.inner.node8(),
            short(&instance.to_string(), 12)
        )
    }

    /// Name of the container `key` (`service` or a dependency key) of `instance`.
    pub fn container_name(&self, instance: &InstanceHash, key: &str) -> String {
        format!("{}-{}", self.network_name(instance), sanitize(key))
    }

    /// Name of the volume mounted at `path` in container `key` of `spec`'s service: the
    /// same for every version of a sid by one publisher (data survives redeploys), another
    /// for the same sid by anyone else.
    pub fn volume_name(&self, spec: &InstanceSpec, key: &str, path: &str) -> String {
        let owner = match &spec.definition.sid {
            Some(sid) => {
                let publisher = spec.publisher.to_string();
                let owner = Hash32::domain(
                    "mesg/volume-owner/1",
                    &[publisher.as_bytes(), sid.as_bytes()],
                );
                format!(
                    "{}-{}",
                    sanitize(sid),
                    hex::encode(&owner.as_bytes()[..VOLUME_OWNER_BYTES])
                )
            }
            None => short(&spec.service_hash.to_string(), 12).to_string(),
        };
        let path_hash = hex::encode(&Hash32::sha256(path.as_bytes()).as_bytes()[..4]);
        format!(
            "mesg-{}-{owner}-{}-{path_hash}",
            self.inner.node8(),
            sanitize(key)
        )
    }

    /// Labels of `spec`'s network: node, service, instance (and sid).
    pub(super) fn network_labels(&self, spec: &InstanceSpec) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (labels::NODE.to_string(), self.inner.config.node_id.clone()),
            (labels::SERVICE.to_string(), spec.service_hash.to_string()),
            (labels::INSTANCE.to_string(), spec.instance_hash.to_string()),
        ]);
        with_sid(&mut l, spec);
        l
    }

    /// Labels of a volume of container `key`: node, service, key (and sid), no instance:
    /// a volume outlives its instance.
    pub(super) fn volume_labels(&self, spec: &InstanceSpec, key: &str) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (labels::NODE.to_string(), self.inner.config.node_id.clone()),
            (labels::SERVICE.to_string(), spec.service_hash.to_string()),
            (labels::KEY.to_string(), key.to_string()),
        ]);
        with_sid(&mut l, spec);
        l
    }

    /// Labels of container `key`: node, service, instance, key (and sid).
    pub(super) fn container_labels(
        &self,
        spec: &InstanceSpec,
        key: &str,
    ) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (labels::NODE.to_string(), self.inner.config.node_id.clone()),
            (labels::SERVICE.to_string(), spec.service_hash.to_string()),
            (labels::INSTANCE.to_string(), spec.instance_hash.to_string()),
            (labels::KEY.to_string(), key.to_string()),
        ]);
        with_sid(&mut l, spec);
        l
    }
}

impl Inner {
    /// The node id's first 8 characters, as every name of this node starts with.
    pub(super) fn node8(&self) -> String {
        sanitize(short(&self.config.node_id, 8))
    }
}

fn with_sid(l: &mut HashMap<String, String>, spec: &InstanceSpec) {
    if let Some(sid) = &spec.definition.sid {
        l.insert(labels::SID.to_string(), sid.clone());
    }
}

pub(super) fn label_of<'a>(
    labels: Option<&'a HashMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    labels.and_then(|l| l.get(key)).map(String::as_str)
}

/// The container's key (`service` or the dependency key), from its label.
pub(super) fn summary_key(c: &ContainerSummary) -> &str {
    label_of(c.labels.as_ref(), labels::KEY).unwrap_or("")
}

/// The container's name without Docker's leading `/` (its id when it has none).
pub(super) fn summary_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .or_else(|| c.id.clone())
        .unwrap_or_default()
}

/// The first `n` characters of `s`.
fn short(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Only characters Docker accepts in object names.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{sanitize, short};
    use crate::runtime::{
        ContainerPolicy, DockerRuntime, InstanceSpec, ResourceLimits, RuntimeConfig,
    };
    use mesg_protocol::Hash32;
    use std::collections::BTreeMap;

    #[test]
    fn volumes_of_one_sid_are_per_publisher() {
        let rt = DockerRuntime::new(RuntimeConfig {
            node_id: "node1234abcd".into(),
            service_api_port: 1,
            self_container: None,
            default_limits: ResourceLimits::default(),
            max_restarts: 1,
            policy: ContainerPolicy::default(),
        });
        let def = mesg_protocol::ServiceDefinition::from_yaml("name: t\nsid: acme.db\n").unwrap();
        let spec = |seed: u8, hash: u8| InstanceSpec {
            instance_hash: mesg_protocol::InstanceHash(Hash32::sha256(&[hash])),
            service_hash: mesg_protocol::ServiceHash(Hash32::sha256(&[hash])),
            definition: def.clone(),
            publisher: mesg_protocol::Keypair::from_secret_bytes([seed; 32]).public(),
            image: "i".into(),
            env: BTreeMap::new(),
            token: "t".into(),
            limits: None,
        };
        let name = |s: &InstanceSpec| rt.volume_name(s, "service", "/data");
        // A redeploy (another service hash) by the same publisher: the same volume.
        assert_eq!(name(&spec(1, 1)), name(&spec(1, 2)));
        // The same sid by another publisher: another volume.
        assert_ne!(name(&spec(1, 1)), name(&spec(2, 1)));
        assert!(name(&spec(1, 1)).starts_with("mesg-node1234-acme.db-"));
    }

    #[test]
    fn names_are_docker_safe() {
        assert_eq!(sanitize("a b/c"), "a-b-c");
        assert_eq!(short("abcdef", 3), "abc");
        assert_eq!(short("ab", 3), "ab");
    }
}
