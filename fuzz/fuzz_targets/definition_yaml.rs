//! `mesg.yml` text as a user (or a published package) supplies it.
//!
//! Properties checked (a panic, abort or sanitizer report is a failure):
//! - `ServiceDefinition::from_yaml` never panics on any UTF-8 text;
//! - a definition it accepts renders with `to_yaml()` to text that `from_yaml` accepts
//!   again and that gives back an equal definition; so `validate()` accepts it too;
//! - its canonical encoding and service hash can be computed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesg_protocol::{Hash32, PackageHash, ServiceDefinition};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(def) = ServiceDefinition::from_yaml(text) else {
        return;
    };
    let yaml = def.to_yaml();
    let back = match ServiceDefinition::from_yaml(&yaml) {
        Ok(back) => back,
        Err(e) => panic!("to_yaml output is rejected by from_yaml:\n{e}\n--- to_yaml:\n{yaml}"),
    };
    assert_eq!(
        def, back,
        "to_yaml/from_yaml round trip changed the definition:\n{yaml}"
    );
    if let Err(e) = def.validate() {
        panic!("validate() rejects a parsed definition: {e}");
    }
    let _ = def.service_hash(&PackageHash(Hash32([0; 32])));
});
