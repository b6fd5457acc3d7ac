//! The syntax of single values in `mesg.yml` (and in process files, which use the same
//! keys and durations): keys, sids, environment variable names, durations and ports.

use super::{MAX_KEY_LEN, MAX_SID_LEN, MAX_TIMEOUT_MS, PortMapping};

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

/// A port mapping as written in `ports`: `"80"` or `"8080:80"` (HOST:CONTAINER).
pub(crate) fn parse_port(text: &str) -> Result<PortMapping, String> {
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
