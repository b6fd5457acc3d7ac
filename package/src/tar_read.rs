//! Reading package tars, an outside input (a deploy's body, a package a peer sends): every
//! header is a claim to check. Sizes are added with checked arithmetic against the cap,
//! compared with the bytes the tar really holds, and never reserved beyond
//! [`MAX_ENTRY_PREALLOC`]; [`hash_tar`] gives a tar's package hash without keeping any
//! content, so that a fetched package is compared with its record before it is parsed.

use crate::{Content, MAX_ENTRY_PREALLOC, MAX_PACKAGE_ENTRIES, PackageIoError};
use mesg_protocol::package::{EntryKind, PackageEntry, is_clean_relative_path};
use mesg_protocol::{Hash32, PackageHash};
use std::io::Read;

/// The hash of a package tar, computed while reading it with the same checks as
/// [`Package::from_tar`] but keeping no file content: a package fetched from a peer is
/// compared with the hash its signed record names before anything parses its definition.
pub fn hash_tar(bytes: &[u8], max_bytes: u64) -> Result<PackageHash, PackageIoError> {
    let mut entries = Vec::new();
    read_tar(bytes, max_bytes, |entry, _| {
        entries.push(entry);
        Ok(())
    })?;
    Ok(PackageHash::of_entries(entries)?)
}

pub(crate) fn content_len(content: &Content) -> u64 {
    match content {
        Content::Bytes(b) => b.len() as u64,
        Content::Link(t) => t.len() as u64,
        Content::File(_) => 0,
    }
}

/// Walk a tar's entries, checking each, and hand each kept entry (with its content read
/// into memory) to `keep`. Returns the total size of the contents.
pub(crate) fn read_tar(
    bytes: &[u8],
    max_bytes: u64,
    mut keep: impl FnMut(PackageEntry, Content) -> Result<(), PackageIoError>,
) -> Result<u64, PackageIoError> {
    let tar_err = |e: std::io::Error| PackageIoError::Tar(e.to_string());
    let total_len = bytes.len() as u64;
    let mut archive = tar::Archive::new(bytes);
    let mut size = 0u64;
    let mut count = 0usize;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let path = entry.path().map_err(tar_err)?.to_string_lossy().to_string();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let header = entry.header();
        let ty = header.entry_type();
        if ty.is_dir() {
            continue;
        }
        if !is_clean_relative_path(&path) {
            return Err(PackageIoError::UnsafeEntry(path));
        }
        count += 1;
        if count > MAX_PACKAGE_ENTRIES {
            return Err(PackageIoError::TooManyEntries {
                limit: MAX_PACKAGE_ENTRIES,
            });
        }
        let (kind, content) = if ty.is_symlink() {
            let target = entry
                .link_name()
                .map_err(tar_err)?
                .map(|t| t.to_string_lossy().to_string())
                .unwrap_or_default();
            // A target the tar writer refuses (empty, no path component) would make an
            // accepted package impossible to write back, to disk or to a peer: refuse it here,
            // by the writer's own rule (found by the package_tar fuzz target).
            if tar::Header::new_gnu().set_link_name(&target).is_err() {
                return Err(PackageIoError::UnsafeEntry(path));
            }
            (EntryKind::Symlink, Content::Link(target))
        } else if ty.is_file() {
            let mode = header.mode().map_err(tar_err)?;
            let declared = entry.size();
            let grown = size.checked_add(declared).filter(|s| *s <= max_bytes);
            if grown.is_none() {
                return Err(PackageIoError::TooLarge {
                    size: size.saturating_add(declared),
                    limit: max_bytes,
                });
            }
            let available = total_len.saturating_sub(entry.raw_file_position());
            if declared > available {
                return Err(PackageIoError::Truncated {
                    path,
                    declared,
                    available,
                });
            }
            let mut data = Vec::with_capacity(declared.min(MAX_ENTRY_PREALLOC) as usize);
            (&mut entry)
                .take(declared)
                .read_to_end(&mut data)
                .map_err(tar_err)?;
            let kind = if mode & 0o111 != 0 {
                EntryKind::Executable
            } else {
                EntryKind::File
            };
            (kind, Content::Bytes(data))
        } else {
            return Err(PackageIoError::UnsafeEntry(path));
        };
        let (len, content_hash) = match &content {
            Content::Bytes(b) => (b.len() as u64, Hash32::sha256(b)),
            Content::Link(t) => (t.len() as u64, Hash32::sha256(t.as_bytes())),
            Content::File(_) => unreachable!("tar entries are read into memory"),
        };
        size =
            size.checked_add(len)
                .filter(|s| *s <= max_bytes)
                .ok_or(PackageIoError::TooLarge {
                    size: size.saturating_add(len),
                    limit: max_bytes,
                })?;
        keep(
            PackageEntry {
                path,
                kind,
                content_hash,
            },
            content,
        )?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_MAX_PACKAGE_BYTES, Package};

    /// A tar whose entries are given as (name, declared size, bytes actually present).
    fn forged_tar(entries: &[(&str, u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, declared, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_path(name).unwrap();
            h.set_mode(0o644);
            h.set_size(*declared);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            out.extend(std::iter::repeat_n(0u8, pad));
        }
        out
    }

    #[test]
    fn a_symlink_without_a_target_is_refused_so_every_accepted_package_writes_back() {
        let mut tar = Vec::new();
        let mut h = tar::Header::new_gnu();
        h.set_path("link").unwrap();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend(std::iter::repeat_n(0u8, 1024));
        let err = Package::from_tar(&tar, DEFAULT_MAX_PACKAGE_BYTES).unwrap_err();
        assert!(
            matches!(err, PackageIoError::UnsafeEntry(ref p) if p == "link"),
            "{err}"
        );
    }

    /// A PAX extended header saying the next entry holds `size` bytes.
    fn pax_size(out: &mut Vec<u8>, size: u64) {
        let body = {
            let rest = format!(" size={size}\n");
            // The record's length counts its own digits.
            let mut len = rest.len() + 1;
            while len.to_string().len() + rest.len() != len {
                len += 1;
            }
            format!("{len}{rest}")
        };
        let mut h = tar::Header::new_ustar();
        h.set_path("pax").unwrap();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(body.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body.as_bytes());
        out.extend(std::iter::repeat_n(0u8, (512 - body.len() % 512) % 512));
    }

    #[test]
    fn header_sizes_that_overflow_are_too_large_not_a_panic() {
        // The 6 KiB tar of the review: a PAX `size` gives the real length (the tar reader
        // follows it) while the header's own size field says almost 2^64; adding that to
        // the running total panicked the deploy handler.
        let mut tar = forged_tar(&[("mesg.yml", 1, b"x")]);
        pax_size(&mut tar, 2);
        tar.extend(forged_tar(&[("b", u64::MAX, b"yy")]));
        let err = Package::from_tar(&tar, DEFAULT_MAX_PACKAGE_BYTES).unwrap_err();
        // The entry is read with the size the tar reader uses (2 bytes); then the
        // package lacks a Dockerfile: an ordinary error, no panic.
        assert!(matches!(err, PackageIoError::NoDockerfile), "{err}");
        assert!(hash_tar(&tar, DEFAULT_MAX_PACKAGE_BYTES).is_ok());
        // A running total near 2^64 is refused as too large, not wrapped.
        let tar = forged_tar(&[("a", 3, b"abc")]);
        let err = Package::from_tar(&tar, 2).unwrap_err();
        assert!(
            matches!(err, PackageIoError::TooLarge { size: 3, limit: 2 }),
            "{err}"
        );
    }

    #[test]
    fn declared_sizes_beyond_the_tar_are_refused_before_any_reservation() {
        // Each entry declares 200 MiB and holds 3 bytes: the old reader reserved 200 MiB
        // per entry (586 GiB of address space for a 6 MB tar).
        let tar = forged_tar(&[("a", 200 << 20, b"abc"), ("b", 200 << 20, b"abc")]);
        let err = Package::from_tar(&tar, DEFAULT_MAX_PACKAGE_BYTES).unwrap_err();
        match err {
            PackageIoError::Truncated {
                path,
                declared,
                available,
            } => {
                assert_eq!(path, "a");
                assert_eq!(declared, 200 << 20);
                assert!(available < 2048, "{available}");
            }
            other => panic!("expected Truncated, got {other}"),
        }
        assert!(err_text(&tar).contains("truncated or forged"));
    }

    fn err_text(tar: &[u8]) -> String {
        Package::from_tar(tar, DEFAULT_MAX_PACKAGE_BYTES)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn too_many_entries_are_refused() {
        let names: Vec<String> = (0..=MAX_PACKAGE_ENTRIES).map(|i| format!("f{i}")).collect();
        let entries: Vec<(&str, u64, &[u8])> =
            names.iter().map(|n| (n.as_str(), 0, &b""[..])).collect();
        let tar = forged_tar(&entries);
        assert!(matches!(
            Package::from_tar(&tar, DEFAULT_MAX_PACKAGE_BYTES),
            Err(PackageIoError::TooManyEntries { .. })
        ));
    }

    #[test]
    fn hash_tar_matches_the_parsed_package_and_into_tar_keeps_the_bytes() {
        let tmp = crate::tests::service_dir();
        let p = Package::from_dir(tmp.path(), DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        let tar = p.to_tar_bytes().unwrap();
        assert_eq!(hash_tar(&tar, DEFAULT_MAX_PACKAGE_BYTES).unwrap(), p.hash());
        let back = Package::from_tar(&tar, DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        assert_eq!(back.into_tar_bytes().unwrap(), tar);
    }
}
