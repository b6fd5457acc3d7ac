//! Bounds on the resource limits an Application may ask for when it starts an instance.
//!
//! Docker reads 0 (and negative values) as "no limit", and refuses values it cannot
//! apply (too little memory, more CPUs than the host has) only when the container is
//! created — after the node has stored them, so every later start failed too. The API
//! therefore checks each requested limit against a floor (refused with a 400) and clamps
//! it to the operator's maximum (`--max-instance-*` flags) before anything is stored.

use super::ResourceLimits;

/// Less memory than this cannot start a container (Docker's own floor is 6 MiB; a
/// service also needs room for its runtime).
pub const MIN_MEMORY: i64 = 16 * 1024 * 1024;
/// Docker's smallest CPU quota: 0.01 CPU.
pub const MIN_NANO_CPUS: i64 = 10_000_000;
/// Fewer processes than this cannot run a service with a shell or a few threads.
pub const MIN_PIDS: i64 = 16;

/// Default operator maximum of an instance's memory: 4 GiB.
pub const DEFAULT_MAX_MEMORY: i64 = 4 * 1024 * 1024 * 1024;
/// Default operator maximum of an instance's processes.
pub const DEFAULT_MAX_PIDS: i64 = 4096;

/// The operator's maxima; requests above them are lowered to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitBounds {
    pub max_memory: i64,
    pub max_nano_cpus: i64,
    pub max_pids: i64,
}

impl Default for LimitBounds {
    /// 4 GiB, every CPU of the host, 4096 processes.
    fn default() -> Self {
        LimitBounds {
            max_memory: DEFAULT_MAX_MEMORY,
            max_nano_cpus: host_nano_cpus(),
            max_pids: DEFAULT_MAX_PIDS,
        }
    }
}

/// The host's CPUs in billionths (Docker refuses a larger quota).
pub fn host_nano_cpus() -> i64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    i64::try_from(cpus)
        .unwrap_or(1)
        .saturating_mul(1_000_000_000)
}

/// A requested limit below its floor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "limits.{field} = {value} is too small: the least is {min} ({unit}); omit it to keep the node's default"
)]
pub struct LimitError {
    pub field: &'static str,
    pub value: i64,
    pub min: i64,
    pub unit: &'static str,
}

impl LimitBounds {
    /// The maxima with the operator's overrides; each is also kept at or above its floor
    /// and the CPUs at or below the host's.
    pub fn new(memory: Option<i64>, nano_cpus: Option<i64>, pids: Option<i64>) -> LimitBounds {
        let d = LimitBounds::default();
        LimitBounds {
            max_memory: memory.unwrap_or(d.max_memory).max(MIN_MEMORY),
            max_nano_cpus: nano_cpus
                .unwrap_or(d.max_nano_cpus)
                .clamp(MIN_NANO_CPUS, d.max_nano_cpus.max(MIN_NANO_CPUS)),
            max_pids: pids.unwrap_or(d.max_pids).max(MIN_PIDS),
        }
    }

    /// Check each requested limit against its floor and lower it to its maximum.
    /// Omitted fields stay omitted (the caller fills in its defaults).
    pub fn check(&self, requested: ResourceLimits) -> Result<ResourceLimits, LimitError> {
        let one = |field, value: Option<i64>, min, max, unit| match value {
            None => Ok(None),
            Some(v) if v < min => Err(LimitError {
                field,
                value: v,
                min,
                unit,
            }),
            Some(v) => Ok(Some(v.min(max))),
        };
        Ok(ResourceLimits {
            memory: one(
                "memory",
                requested.memory,
                MIN_MEMORY,
                self.max_memory,
                "bytes",
            )?,
            nano_cpus: one(
                "nano_cpus",
                requested.nano_cpus,
                MIN_NANO_CPUS,
                self.max_nano_cpus,
                "billionths of a CPU",
            )?,
            pids: one("pids", requested.pids, MIN_PIDS, self.max_pids, "processes")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> LimitBounds {
        LimitBounds {
            max_memory: 1 << 30,
            max_nano_cpus: 2_000_000_000,
            max_pids: 1000,
        }
    }

    fn limits(memory: Option<i64>, nano_cpus: Option<i64>, pids: Option<i64>) -> ResourceLimits {
        ResourceLimits {
            memory,
            nano_cpus,
            pids,
        }
    }

    #[test]
    fn zero_and_negative_limits_are_refused_not_lifted() {
        for (l, field) in [
            (limits(Some(0), None, None), "memory"),
            (limits(Some(-1), None, None), "memory"),
            (limits(None, Some(0), None), "nano_cpus"),
            (limits(None, None, Some(0)), "pids"),
            (limits(None, None, Some(-1)), "pids"),
            (limits(Some(1024), None, None), "memory"),
        ] {
            let e = bounds().check(l).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.to_string().contains("too small"), "{e}");
        }
    }

    #[test]
    fn large_limits_are_lowered_to_the_operator_maxima() {
        let l = bounds()
            .check(limits(Some(i64::MAX), Some(i64::MAX), Some(i64::MAX)))
            .unwrap();
        assert_eq!(l, limits(Some(1 << 30), Some(2_000_000_000), Some(1000)));
        let l = bounds()
            .check(limits(Some(64 << 20), None, Some(100)))
            .unwrap();
        assert_eq!(l, limits(Some(64 << 20), None, Some(100)));
    }

    #[test]
    fn operator_maxima_stay_above_the_floors_and_within_the_host() {
        let b = LimitBounds::new(Some(0), Some(i64::MAX), Some(-5));
        assert_eq!(b.max_memory, MIN_MEMORY);
        assert_eq!(b.max_nano_cpus, host_nano_cpus());
        assert_eq!(b.max_pids, MIN_PIDS);
    }
}
