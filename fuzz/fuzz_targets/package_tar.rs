//! A service package as a tar: the body of `POST /v1/services` and the bytes a peer sends
//! for a package this node fetches (outside input both).
//!
//! Properties checked (a panic, abort or sanitizer report is a failure):
//! - `Package::from_tar` and `mesg_package::hash_tar` never panic, whatever the headers
//!   declare (sizes near 2^64, PAX records, truncation), with a small and the default cap;
//! - they agree: a tar `from_tar` accepts hashes with `hash_tar` to the package's hash;
//! - an accepted package written back as a tar (`into_tar_bytes`) reads again to the same
//!   hash and definition text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesg_package::{DEFAULT_MAX_PACKAGE_BYTES, Package, hash_tar};

/// A cap small enough that the fuzzer reaches the size checks with short inputs.
const SMALL_CAP: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    for cap in [SMALL_CAP, DEFAULT_MAX_PACKAGE_BYTES] {
        let hashed = hash_tar(data, cap);
        let Ok(package) = Package::from_tar(data, cap) else {
            continue;
        };
        let hash = package.hash();
        match hashed {
            Ok(h) => assert_eq!(h, hash, "hash_tar and from_tar disagree"),
            Err(e) => panic!("from_tar accepts what hash_tar refuses: {e}"),
        }
        let text = package.definition_text().to_string();
        let tar = package.into_tar_bytes().expect("an accepted package writes");
        let back = Package::from_tar(&tar, cap).expect("a written package reads back");
        assert_eq!(back.hash(), hash, "round trip changed the hash");
        assert_eq!(back.definition_text(), text);
    }
});
