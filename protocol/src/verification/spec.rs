//! What an execution asks of verification: `replicas` distinct executors at first,
//! `quorum` agreeing results to complete, at most `max_total` executors in all when
//! results disagree. Written `"2/3"` (quorum/replicas) or `"2/3/5"` (with `max_total`) on
//! the command line and in the API, or as an object; a task's defaults in `mesg.yml`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Most executors one verified execution may use (each does the whole task).
pub const MAX_VERIFY_EXECUTORS: u32 = 16;

/// A valid verification request: `1 <= quorum <= replicas <= max_total <= 16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "SpecFields", into = "SpecFields")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifySpec {
    /// Distinct executors asked at first.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16))]
    pub replicas: u8,
    /// Agreeing results that complete the execution.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16))]
    pub quorum: u8,
    /// Most executors asked in all, when results disagree.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16))]
    pub max_total: u8,
}

/// The serialized form: `max_total` may be left out (its default), counts are read wide
/// so that an out-of-range figure gets this module's message, not a type error.
#[derive(Serialize, Deserialize)]
struct SpecFields {
    replicas: u32,
    quorum: u32,
    #[serde(default)]
    max_total: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifySpecError {
    #[error("quorum must be at least 1 (got {0})")]
    QuorumZero(u32),
    #[error("quorum {quorum} is more than replicas {replicas}: quorum <= replicas")]
    QuorumAboveReplicas { quorum: u32, replicas: u32 },
    #[error("max_total {max_total} is less than replicas {replicas}: replicas <= max_total")]
    MaxBelowReplicas { max_total: u32, replicas: u32 },
    #[error(
        "{field} {value} is more than {MAX_VERIFY_EXECUTORS}, the most executors one execution may use"
    )]
    TooMany { field: &'static str, value: u32 },
    #[error(
        "`{0}` is not a verification spec: write QUORUM/REPLICAS like `2/3`, or QUORUM/REPLICAS/MAX_TOTAL like `2/3/5`"
    )]
    Syntax(String),
}

impl VerifySpec {
    /// Check `1 <= quorum <= replicas <= max_total <= 16`; `max_total` None is
    /// [`VerifySpec::default_max_total`].
    pub fn new(
        quorum: u32,
        replicas: u32,
        max_total: Option<u32>,
    ) -> Result<Self, VerifySpecError> {
        for (field, value) in [("quorum", quorum), ("replicas", replicas)]
            .into_iter()
            .chain(max_total.map(|m| ("max_total", m)))
        {
            if value > MAX_VERIFY_EXECUTORS {
                return Err(VerifySpecError::TooMany { field, value });
            }
        }
        if quorum == 0 {
            return Err(VerifySpecError::QuorumZero(quorum));
        }
        if quorum > replicas {
            return Err(VerifySpecError::QuorumAboveReplicas { quorum, replicas });
        }
        let max_total = max_total.unwrap_or_else(|| Self::default_max_total(replicas));
        if max_total < replicas {
            return Err(VerifySpecError::MaxBelowReplicas {
                max_total,
                replicas,
            });
        }
        Ok(VerifySpec {
            replicas: replicas as u8,
            quorum: quorum as u8,
            max_total: max_total as u8,
        })
    }

    /// `max_total` when not given: twice `replicas` (room for as many again when results
    /// disagree), at most [`MAX_VERIFY_EXECUTORS`].
    pub fn default_max_total(replicas: u32) -> u32 {
        replicas.saturating_mul(2).min(MAX_VERIFY_EXECUTORS)
    }

    /// Whether it holds (a value built field by field may not).
    pub fn check(&self) -> Result<(), VerifySpecError> {
        VerifySpec::new(
            self.quorum.into(),
            self.replicas.into(),
            Some(self.max_total.into()),
        )
        .map(|_| ())
    }
}

impl TryFrom<SpecFields> for VerifySpec {
    type Error = VerifySpecError;
    fn try_from(f: SpecFields) -> Result<Self, Self::Error> {
        VerifySpec::new(f.quorum, f.replicas, f.max_total)
    }
}

impl From<VerifySpec> for SpecFields {
    fn from(s: VerifySpec) -> SpecFields {
        SpecFields {
            replicas: s.replicas.into(),
            quorum: s.quorum.into(),
            max_total: Some(s.max_total.into()),
        }
    }
}

/// `QUORUM/REPLICAS[/MAX_TOTAL]`.
impl FromStr for VerifySpec {
    type Err = VerifySpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || VerifySpecError::Syntax(s.escape_debug().to_string());
        let parts: Vec<&str> = s.trim().split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(syntax());
        }
        let mut nums = Vec::with_capacity(3);
        for p in &parts {
            let p = p.trim();
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            // More digits than fit: certainly above the limit.
            nums.push(p.parse::<u32>().unwrap_or(u32::MAX));
        }
        VerifySpec::new(nums[0], nums[1], nums.get(2).copied())
    }
}

/// `QUORUM/REPLICAS/MAX_TOTAL`, which [`VerifySpec::from_str`] reads back.
impl fmt::Display for VerifySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.quorum, self.replicas, self.max_total)
    }
}
