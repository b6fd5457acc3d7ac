//! The identity of a service: the canonical encoding of its definition and the
//! [`ServiceHash`] over it and the package. Any change here changes every service hash.

use super::ServiceDefinition;
use crate::hash::{Hash32, PackageHash, ServiceHash};

impl ServiceDefinition {
    /// The canonical encoding: JSON with sorted keys and no whitespace. Independent of the
    /// YAML it came from (key order, comments, quoting), stable across platforms.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).expect("definition serializes to JSON");
        // Fields added after the first release are left out while unset, so that a
        // definition without them keeps the hash it always had.
        if let Some(map) = value.as_object_mut()
            && map.get("economy").is_some_and(serde_json::Value::is_null)
        {
            map.remove("economy");
        }
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
}
